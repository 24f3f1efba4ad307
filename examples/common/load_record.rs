//! The run record both audit load examples append (`audit_load`, `pg_audit_load`): the contract's
//! example request, started, with its own trace id.

use serde_json::json;
use sustainbot::audit::{Outcome, Record, RunRecord};

pub fn record(i: u64) -> Record {
    Record::Run(RunRecord {
        trace_id: format!("load-{i}"),
        aim: json!({"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"},
                    "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}], "constraints": ["Read-only"]},
                    "mission": {"objective": "Deploy app to staging with zero downtime", "success_criteria": ["Health checks pass"]}}),
        drag_mode: Some("execute".into()),
        workflow_name: Some("noop".into()),
        parameters: json!({"environment": "staging", "version": "v1.2.3"}),
        outcome: Outcome::Started,
        error: None,
        code: None,
        duration_seconds: None,
        principal: None,
        steps: serde_json::Value::Null,
        governed: None,
        policy_rule: None,
    })
}

//! Writes a valid audit log of N realistic run records (no fsync), for verify benchmarks.
//!
//!     cargo run --release --example gen_audit_log -- PATH N

use std::path::PathBuf;

use serde_json::json;
use sustainbot::audit::{FsyncMode, JsonlStore, Outcome, Record, RunRecord, StoreOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().expect("usage: gen_audit_log PATH N"));
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: gen_audit_log PATH N");
    let _ = std::fs::remove_file(&path);
    let (mut store, _) =
        JsonlStore::open(&path, StoreOptions::new(FsyncMode::Never)).expect("open");
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(Record::Run(RunRecord {
            trace_id: uuid::Uuid::new_v4().to_string(),
            aim: json!({"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"},
                        "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}],
                                  "constraints": ["Read-only", "No destructive ops"]},
                        "mission": {"objective": "Deploy app to staging with zero downtime",
                                    "success_criteria": ["Health checks pass", "Rollback ready"]}}),
            drag_mode: Some("execute".into()),
            workflow_name: Some("deploy-to-staging".into()),
            parameters: json!({"environment": "staging", "version": format!("v1.2.{i}")}),
            outcome: if i % 2 == 0 { Outcome::Started } else { Outcome::Success },
            error: None,
            code: None,
            duration_seconds: (i % 2 == 1).then_some(0.0123),
            principal: None,
        steps: serde_json::Value::Null,
        governed: None,
        policy_rule: None,
        }));
        if batch.len() == 10_000 {
            store.append_batch(&batch).expect("append");
            batch.clear();
        }
    }
    store.append_batch(&batch).expect("append");
    println!(
        "{} records, {} bytes",
        n,
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    );
}

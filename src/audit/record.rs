//! What the audit trail records.

use serde::Serialize;
use serde_json::{Map, Value};

use super::format::PreEncoded;

use crate::auth::Principal;

/// The outcome of a run record. `started` is the write-ahead record made before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Started,
    Success,
    Failure,
    Rejected,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Started => "started",
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One governed run event, with the contract's field names. Fields the request did not let us read
/// are `null` (a refused request is recorded with whatever of it could be read).
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub trace_id: String,
    pub aim: Value,
    pub drag_mode: Option<String>,
    pub workflow_name: Option<String>,
    pub parameters: Value,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// The stable error code of a refusal or failure.
    pub code: Option<&'static str>,
    pub duration_seconds: Option<f64>,
    /// Who asked: the token's identity (or the local operator for the command line).
    pub principal: Option<Principal>,
    /// For an outcome: what each step did (`null` otherwise).
    pub steps: Value,
    /// `false` for a run of the ungoverned path (`GOVERNANCE_ENABLED=false`: no AIM declaration,
    /// no DRAG mode); absent for a governed run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub governed: Option<bool>,
    /// Under a policy file (`POLICY_PATH`): the rule that decided the run (its number from 1;
    /// 0: the file's default). Absent without a policy file, and on refusals made before the
    /// policy was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_rule: Option<u32>,
}

/// A record of any kind. The writer adds `seq`, `prev_hash`, `timestamp` and `integrity_hash`.
// Run records are the common case; boxing them to shrink the rare recovery variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Run(RunRecord),
    /// Written at start-up when the previous process left a torn final line, which was cut off.
    Recovery {
        cut_offset: u64,
        cut_length: u64,
        cut_hash: String,
        reason: String,
    },
    /// A human decision about a run that needs approval: `requested` (the run waits), then
    /// `approved`, `denied` or `expired`. `actor` is who decided (the requester for `requested`).
    Approval {
        trace_id: String,
        workflow_name: String,
        decision: String,
        actor: Principal,
        requested_by: Option<String>,
        reason: Option<String>,
        expires_at: String,
        /// On `requested` only: the declaration as it will run (workflow, AIM, mode, parameters),
        /// so that the request is on the record before anyone decides, and survives a restart.
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<Value>,
        /// Under a policy file: the rule that decided (see [`RunRecord::policy_rule`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        policy_rule: Option<u32>,
    },
    /// A person replaced or edited an AI (or any step's) output: who, which step, what it was and
    /// what it became (as hashes), and why.
    Override {
        trace_id: String,
        workflow_name: String,
        step: String,
        actor: Principal,
        before_sha256: String,
        after_sha256: String,
        reason: String,
        /// Under a policy file: the rule that allowed it (see [`RunRecord::policy_rule`]).
        #[serde(skip_serializing_if = "Option::is_none")]
        policy_rule: Option<u32>,
    },
    /// A signature over the record just before it (see `checkpoint.rs`).
    Checkpoint {
        covered_seq: u64,
        covered_hash: String,
        signed_at: String,
        public_key: String,
        signature: String,
    },
    /// Whole old segments were removed under the retention policy. Written before the files are
    /// deleted; names the removed range so what remains still verifies.
    Retention {
        removed_segments: Vec<String>,
        removed_first_seq: u64,
        removed_through_seq: u64,
        removed_last_hash: String,
        retention_days: u32,
    },
    /// An older audit log, verified and anchored here by its digest (`sustainbot audit
    /// import-legacy`): any later edit of that file changes `sha256`, which no longer matches.
    Genesis {
        /// The old file's name (without its directory).
        source: String,
        /// How its lines were checked: [`super::legacy::LEGACY_FORMAT`].
        legacy_format: String,
        /// Its line count (one record each), all of which verified.
        lines: u64,
        /// `sha256:` + hex SHA-256 of every byte of the file.
        sha256: String,
        /// The first and last lines' `timestamp`, as written there.
        first_timestamp: String,
        last_timestamp: String,
        /// The last line's `integrity_hash` (bare hex, as the original wrote it).
        last_integrity_hash: String,
        imported_at: String,
        /// Who imported it (the local operator of the command line).
        principal: Principal,
    },
    /// An API key was created or revoked (`action`): which key, whose, with which role and
    /// workflows, when it happened (`at`; the record's `timestamp` is when it was recorded) and
    /// who did it (`principal`). Never the key or its hash.
    #[serde(rename = "apikey")]
    ApiKey {
        action: String,
        at: String,
        expires_at: Option<String>,
        key_id: String,
        name: String,
        owner: String,
        principal: Principal,
        role: String,
        workflows: Option<Vec<String>>,
    },
}

impl Record {
    /// Its `kind` member, as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Run(_) => "run",
            Record::Recovery { .. } => "recovery",
            Record::Approval { .. } => "approval",
            Record::Override { .. } => "override",
            Record::Checkpoint { .. } => "checkpoint",
            Record::Retention { .. } => "retention",
            Record::Genesis { .. } => "genesis",
            Record::ApiKey { .. } => "apikey",
        }
    }

    /// Its `trace_id` member, for the kinds that have one.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            Record::Run(run) => Some(&run.trace_id),
            Record::Approval { trace_id, .. } | Record::Override { trace_id, .. } => Some(trace_id),
            _ => None,
        }
    }
}

/// Proof that a record is durable: its position and hash in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: String,
}

/// Encodes a whole record's own members.
pub fn encode(record: &Record) -> PreEncoded {
    encode_for(record, None)
}

/// [`encode`], with an `instance` member naming the server instance that appends the record (a
/// store shared by several instances; the JSONL file of one server has none).
pub fn encode_for(record: &Record, instance: Option<&str>) -> PreEncoded {
    match record {
        // The hot path: members written straight from the record, in key order, without building an
        // intermediate JSON tree (a test checks this equals the generic encoding).
        Record::Run(run) => {
            let mut encoded = PreEncoded::default();
            encoded.member("aim", &run.aim);
            encoded.member("code", &run.code);
            encoded.member("drag_mode", &run.drag_mode);
            encoded.member("duration_seconds", &run.duration_seconds);
            encoded.member("error", &run.error);
            if let Some(governed) = run.governed {
                encoded.member("governed", &governed);
            }
            if let Some(instance) = instance {
                encoded.member("instance", instance);
            }
            encoded.member("kind", "run");
            encoded.member("outcome", &run.outcome);
            encoded.member("parameters", &run.parameters);
            if let Some(rule) = run.policy_rule {
                encoded.member("policy_rule", &rule);
            }
            encoded.member("principal", &run.principal);
            encoded.member("steps", &run.steps);
            encoded.member("trace_id", &run.trace_id);
            encoded.member("workflow_name", &run.workflow_name);
            encoded
        }
        other => encode_tree(other, instance),
    }
}

/// Encodes any record through a JSON tree (sorted by construction).
pub fn encode_generic(record: &Record) -> PreEncoded {
    encode_tree(record, None)
}

fn encode_tree(record: &Record, instance: Option<&str>) -> PreEncoded {
    match serde_json::to_value(record) {
        Ok(Value::Object(mut map)) => {
            if let Some(instance) = instance {
                map.insert("instance".to_owned(), Value::from(instance));
            }
            PreEncoded::new(&map)
        }
        _ => PreEncoded::new(&Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_the_kind_member_as_written() {
        let records = [
            Record::Recovery {
                cut_offset: 1,
                cut_length: 2,
                cut_hash: String::new(),
                reason: String::new(),
            },
            Record::Checkpoint {
                covered_seq: 1,
                covered_hash: String::new(),
                signed_at: String::new(),
                public_key: String::new(),
                signature: String::new(),
            },
            Record::Retention {
                removed_segments: Vec::new(),
                removed_first_seq: 1,
                removed_through_seq: 2,
                removed_last_hash: String::new(),
                retention_days: 1,
            },
        ];
        for record in records {
            let written = serde_json::to_value(&record).unwrap();
            assert_eq!(written["kind"], record.kind());
        }
    }
}

//! The changes to a run's row that commit with the audit record saying so (see
//! [`crate::db::Change`]). Each is guarded by the state it expects, so that when two instances
//! race (a decision on each, a takeover against a late outcome), one record wins and the other is
//! not appended. The SQL of each is in the database's `sustainbot_apply` (migrations/0003): a
//! change here is its arguments.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use super::RunMeta;
use crate::db::{Change, Op};

/// The `started` record: the run turns `running`, owned by `instance` under a lease. A run this
/// instance accepted (or took over, or approved) must still be `queued` and its own; a run
/// without a row (a synchronous one) gets its row now. Not applied: the trace id is another
/// run's, or another instance took the run over.
pub struct Started {
    pub run: RunMeta,
    pub instance: String,
    pub lease_seconds: f64,
    /// The run has a row this instance owns (accepted, approved or taken over); otherwise the
    /// row is made now, and only if the trace id is free.
    pub owned: bool,
}

impl Change for Started {
    fn op(&self) -> Option<Op> {
        let run = &self.run;
        let op = RowOp {
            op: "started",
            run: Some(run),
            instance: Some(&self.instance),
            lease_seconds: Some(self.lease_seconds),
            owned: Some(self.owned),
            ..RowOp::new(&run.trace_id)
        };
        op.encode()
    }

    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        apply_op(self.op(), conn)
    }
}

/// A run's end. `from` is the status it must be in (`running` for an outcome, `queued` for a run
/// cancelled or refused before it started), owned by `instance`.
pub struct Ended {
    pub trace_id: String,
    pub from: &'static str,
    pub status: &'static str,
    pub instance: String,
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// The steps' reports, as `GET /runs/{trace_id}` shows them.
    pub steps: Option<Value>,
}

impl Change for Ended {
    fn op(&self) -> Option<Op> {
        let op = RowOp {
            op: "ended",
            from: Some(self.from),
            status: Some(self.status),
            instance: Some(&self.instance),
            outcome: self.outcome.as_deref(),
            error: self.error.as_deref(),
            steps: self.steps.as_ref(),
            ..RowOp::new(&self.trace_id)
        };
        op.encode()
    }

    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        apply_op(self.op(), conn)
    }
}

/// The `requested` record of an approval: the run waits (no owner) until a decision on any
/// instance, or its expiry.
pub struct ApprovalRequested {
    pub run: RunMeta,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Change for ApprovalRequested {
    fn op(&self) -> Option<Op> {
        let run = &self.run;
        let expires_at = self.expires_at.to_rfc3339();
        let op = RowOp {
            op: "approval_requested",
            run: Some(run),
            expires_at: Some(&expires_at),
            ..RowOp::new(&run.trace_id)
        };
        op.encode()
    }

    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        apply_op(self.op(), conn)
    }
}

/// A decision that ends the wait: `approved` queues the run on the deciding instance (`owner`);
/// `denied`, `expired` and `withdrawn` end it. Applies only while the run still waits: of two
/// decisions on two instances, one is recorded.
pub struct Decided {
    pub trace_id: String,
    /// `queued` (approved), `rejected` (denied or expired) or `cancelled` (withdrawn).
    pub status: &'static str,
    pub owner: Option<String>,
    pub lease_seconds: f64,
    pub error: Option<String>,
}

impl Change for Decided {
    fn op(&self) -> Option<Op> {
        let op = RowOp {
            op: "decided",
            status: Some(self.status),
            owner: self.owner.as_deref(),
            lease_seconds: Some(self.lease_seconds),
            error: self.error.as_deref(),
            ..RowOp::new(&self.trace_id)
        };
        op.encode()
    }

    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        apply_op(self.op(), conn)
    }
}

/// Closes a run whose owner's lease lapsed while it ran: `failed` (`INSTANCE_LOST`), once.
pub struct Lost {
    pub trace_id: String,
    pub error: String,
}

impl Change for Lost {
    fn op(&self) -> Option<Op> {
        let op = RowOp {
            op: "lost",
            error: Some(&self.error),
            ..RowOp::new(&self.trace_id)
        };
        op.encode()
    }

    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        apply_op(self.op(), conn)
    }
}

/// Applies one change alone (a batch whose one call failed goes change by change, each in a
/// savepoint): the same function, so both ways behave the same.
fn apply_op(op: Option<Op>, conn: &mut PgConnection) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        let Some(op) = op else {
            return Ok(false);
        };
        let batch = format!("[{}]", op.json);
        let verdicts: Vec<String> = sqlx::query_scalar("SELECT sustainbot_apply($1::jsonb)")
            .bind(batch)
            .fetch_one(&mut *conn)
            .await?;
        Ok(verdicts.first().is_some_and(|v| v == "applied"))
    })
}

/// What `sustainbot_apply` reads of one change (migrations/0003): written straight from the change's
/// fields, without building a JSON tree.
#[derive(Serialize)]
struct RowOp<'a> {
    op: &'static str,
    trace_id: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    run: Option<&'a RunMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owned: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<&'a str>,
}

impl<'a> RowOp<'a> {
    fn new(trace_id: &'a str) -> RowOp<'a> {
        RowOp {
            op: "",
            trace_id,
            run: None,
            instance: None,
            lease_seconds: None,
            owned: None,
            from: None,
            status: None,
            owner: None,
            outcome: None,
            error: None,
            steps: None,
            expires_at: None,
        }
    }

    fn encode(&self) -> Option<Op> {
        Some(Op {
            trace_id: self.trace_id.to_owned(),
            json: serde_json::to_string(self).ok()?,
        })
    }
}

//! `GET /audit/entries`, `GET /audit/entries/{trace_id}`, `GET /audit/verify`: reading the audit
//! trail back, for callers whose token has the `auditor` or `admin` role. The log is read on the
//! blocking pool, never on the async runtime.

use std::io;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::openapi::refusals::refusals;
use super::{ApiError, AppState, AuthUser};
use crate::audit::query::{parse_timestamp, Filter};
use crate::audit::verify::VerifyOptions;
use crate::audit::AuditStore;
use crate::auth::{may, Action, Principal};

/// Entries per page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The most entries one page holds.
pub const MAX_LIMIT: usize = 1000;

use crate::audit::verify::VERIFYING;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/entries", get(entries))
        .route("/audit/entries/{trace_id}", get(entries_of_trace))
        .route("/audit/verify", get(verify))
}

#[derive(OpenApi)]
#[openapi(paths(entries, entries_of_trace, verify))]
pub(super) struct Api;

refusals!(
    /// The errors of `GET /audit/entries` and `GET /audit/verify`.
    ReadRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE"]
);

refusals!(
    /// The errors of `GET /audit/entries/{trace_id}`.
    TraceRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE", "NOT_FOUND"]
);

/// The query string of `GET /audit/entries`, as text: values are parsed here so that a bad one
/// gets our JSON error naming it. An unknown parameter is refused, so that a misspelt filter
/// cannot silently return the whole log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EntriesParams {
    /// Records of this trace id.
    trace_id: Option<String>,
    /// Records whose actor (email or name) is this, ignoring case.
    actor: Option<String>,
    /// Records of this workflow.
    workflow: Option<String>,
    /// `started`, `success`, `failure`, `rejected` or `cancelled` (any case).
    outcome: Option<String>,
    /// Records of runs in this DRAG mode.
    #[param(value_type = Option<crate::governance::DragMode>)]
    drag_mode: Option<String>,
    /// The record kind (any case): `run`, `recovery`, `checkpoint`, `retention`, `approval`,
    /// `override`, `genesis`, `apikey`.
    kind: Option<String>,
    /// Records at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Records before this RFC 3339 time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Records per page (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<u64>)]
    cursor: Option<String>,
}

/// The audit store, once the caller may read it (403 for other roles).
fn readable_log(state: &AppState, principal: &Principal) -> Result<Arc<dyn AuditStore>, ApiError> {
    may(&state.gate.policy(), principal, Action::ReadAudit).map_err(ApiError::forbidden)?;
    Ok(Arc::clone(state.gate.audit()))
}

/// Runs blocking log I/O on the blocking pool; a failure is logged and answered as 500.
async fn blocking<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the audit log failed");
            Err(ApiError::internal())
        }
        Err(e) => {
            tracing::error!(error = %e, "audit reader task failed");
            Err(ApiError::internal())
        }
    }
}

/// A parameter's value, trimmed; `None` when absent or empty.
fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The filter and page size a query string asks for.
fn parse_params(params: EntriesParams) -> Result<(Filter, usize), ApiError> {
    let time = |name: &str, value: Option<String>| {
        given(value)
            .map(|v| parse_timestamp(&v))
            .transpose()
            .map_err(|e| ApiError::validation(format!("Invalid {name}: {e}")))
    };
    let since = time("since", params.since)?;
    let until = time("until", params.until)?;
    let limit = match given(params.limit) {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "Invalid limit '{text}': expected a whole number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    let after_seq = given(params.cursor)
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                ApiError::validation(format!(
                    "Invalid cursor '{text}': expected the next_cursor of a previous page (a seq)"
                ))
            })
        })
        .transpose()?;
    let mut filter = Filter {
        trace_id: given(params.trace_id),
        actor: given(params.actor),
        workflow: given(params.workflow),
        outcome: given(params.outcome),
        drag_mode: given(params.drag_mode),
        kind: given(params.kind),
        since,
        until,
        after_seq,
    };
    filter
        .check()
        .map_err(|e| ApiError::validation(capitalize(&e)))?;
    Ok((filter, limit))
}

/// A page of records, exactly as written (each still carries its verifiable `integrity_hash`).
#[derive(Serialize, ToSchema)]
struct EntriesPage {
    /// For `GET /audit/entries/{trace_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    trace_id: Option<String>,
    count: usize,
    /// The audit records, in `seq` order, as `docs/audit-format.md` specifies them.
    #[schema(value_type = Vec<Object>)]
    entries: Vec<Value>,
    /// The `cursor` of the next page; `null` on the last.
    next_cursor: Option<u64>,
}

/// Audit records, filtered and paged.
///
/// `GET /audit/entries?trace_id=&actor=&workflow=&outcome=&drag_mode=&kind=&since=&until=&limit=&cursor=`
/// -> `{"entries": [...], "count": n, "next_cursor": seq | null}`, for tokens with the `auditor`
/// or `admin` role. An unknown parameter is refused (400), so that a misspelt filter cannot
/// silently return the whole log.
#[utoipa::path(get, path = "/audit/entries", operation_id = "list_audit_entries", tag = "audit", security(("bearer" = [])),
    params(EntriesParams),
    responses((status = 200, description = "A page of records.", body = EntriesPage),
        ReadRefusals))]
async fn entries(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    params: Result<Query<EntriesParams>, QueryRejection>,
) -> Result<Json<EntriesPage>, ApiError> {
    let store = readable_log(&state, &principal)?;
    let Query(params) = params.map_err(|rejection| {
        ApiError::validation(format!("Invalid query string: {}", rejection.body_text()))
    })?;
    let (filter, limit) = parse_params(params)?;
    let page = blocking(move || store.query(&filter, limit)).await?;
    Ok(Json(EntriesPage {
        trace_id: None,
        count: page.entries.len(),
        entries: page.entries,
        next_cursor: page.next_cursor,
    }))
}

/// Every record of one trace id.
///
/// `GET /audit/entries/{trace_id}` -> `{"trace_id", "entries", "count", "next_cursor"}`: the
/// records of one trace in order (a run's `started` and its outcome). At most 1000 (`MAX_LIMIT`); a
/// trace id reused beyond that continues at `/audit/entries?trace_id=..&cursor=<next_cursor>`.
#[utoipa::path(get, path = "/audit/entries/{trace_id}", operation_id = "audit_entries_of_trace", tag = "audit", security(("bearer" = [])),
    params(("trace_id" = String, Path, description = "The trace id.")),
    responses((status = 200, description = "Every record of the trace id.", body = EntriesPage),
        TraceRefusals))]
async fn entries_of_trace(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    trace_id: Result<Path<String>, PathRejection>,
) -> Result<Json<EntriesPage>, ApiError> {
    let store = readable_log(&state, &principal)?;
    let Path(trace_id) = trace_id.map_err(|rejection| {
        ApiError::validation(format!("Invalid trace id: {}", rejection.body_text()))
    })?;
    let filter = Filter {
        trace_id: Some(trace_id.clone()),
        ..Filter::default()
    };
    let page = blocking(move || store.query(&filter, MAX_LIMIT)).await?;
    if page.entries.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("No audit records for trace id '{trace_id}'"),
        ));
    }
    Ok(Json(EntriesPage {
        trace_id: Some(trace_id),
        count: page.entries.len(),
        entries: page.entries,
        next_cursor: page.next_cursor,
    }))
}

/// Verifies the audit trail's chain.
///
/// `GET /audit/verify`: the hash chain and checkpoint structure of the whole log (signatures need
/// the public key, which an auditor checks offline with `sustainbot audit verify --public-key`).
#[utoipa::path(get, path = "/audit/verify", operation_id = "verify_audit", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The verdict (`valid: false` names the first \
        problem).", body = Verdict), ReadRefusals))]
async fn verify(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> Result<Json<Verdict>, ApiError> {
    let store = readable_log(&state, &principal)?;
    let _slot = VERIFYING
        .acquire()
        .await
        .map_err(|_| ApiError::internal())?;
    let name = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let active = name(&store.status().path);
    // The log is being written: a line still being written is left out, not reported as torn.
    let live = VerifyOptions {
        public_key: None,
        live: true,
    };
    let report = blocking(move || match store.verify(&live) {
        Ok(report) => Ok(Some(report)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await?;
    let Some(report) = report else {
        // The server created the file at start-up: its absence is a finding, not an empty log.
        return Ok(Json(Verdict {
            valid: false,
            records: 0,
            files: 0,
            first_seq: None,
            head_seq: None,
            head_hash: None,
            checkpoints: 0,
            last_checkpoint_seq: None,
            unfinished_tail_bytes: None,
            problem: Some(Problem {
                file: active,
                line: 0,
                message: "the audit log file does not exist".to_owned(),
            }),
        }));
    };
    // Files are named, not located: the server's directories are none of the caller's business.
    let problem = report.problem.as_ref().map(|p| Problem {
        file: p.file.as_deref().map_or_else(|| active.clone(), name),
        line: p.line,
        message: p.message.clone(),
    });
    Ok(Json(Verdict {
        valid: report.is_valid(),
        records: report.records,
        files: report.files,
        first_seq: Some(report.first_seq),
        head_seq: Some(report.head_seq),
        head_hash: Some(report.head_hash),
        checkpoints: report.checkpoints,
        last_checkpoint_seq: report.last_checkpoint_seq,
        unfinished_tail_bytes: Some(report.unfinished_tail_bytes),
        problem,
    }))
}

/// `GET /audit/verify`.
#[derive(Serialize, ToSchema)]
struct Verdict {
    valid: bool,
    records: u64,
    files: usize,
    first_seq: Option<u64>,
    head_seq: Option<u64>,
    head_hash: Option<String>,
    checkpoints: u64,
    last_checkpoint_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unfinished_tail_bytes: Option<u64>,
    problem: Option<Problem>,
}

/// The first bad line, by file name.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditProblem)]
struct Problem {
    file: String,
    line: u64,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> EntriesParams {
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B").replace(' ', "%20")))
            .collect();
        let uri = format!("/audit/entries?{}", query.join("&"));
        Query::<EntriesParams>::try_from_uri(&uri.parse().unwrap())
            .unwrap()
            .0
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        parse_params(params(pairs)).unwrap_err().message
    }

    #[test]
    fn parameters_parse_with_defaults() {
        let (filter, limit) = parse_params(params(&[])).unwrap();
        assert_eq!(limit, DEFAULT_LIMIT);
        assert!(filter.trace_id.is_none() && filter.after_seq.is_none());
        let (filter, limit) = parse_params(params(&[
            ("trace_id", "t-1"),
            ("actor", " Jake@Example.org "),
            ("outcome", "SUCCESS"),
            ("drag_mode", "execute"),
            ("kind", "run"),
            ("since", "2026-01-01T00:00:00Z"),
            ("until", "2026-01-02T00:00:00+01:00"),
            ("limit", "1000"),
            ("cursor", "42"),
            ("workflow", ""),
        ]))
        .unwrap();
        assert_eq!(limit, 1000);
        assert_eq!(filter.trace_id.as_deref(), Some("t-1"));
        assert_eq!(filter.actor.as_deref(), Some("Jake@Example.org"));
        assert_eq!(filter.outcome.as_deref(), Some("success"));
        assert_eq!(filter.after_seq, Some(42));
        assert!(filter.workflow.is_none(), "an empty value is no filter");
        assert_eq!(
            filter.until.unwrap().to_rfc3339(),
            "2026-01-01T23:00:00+00:00"
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_parameter() {
        for (name, value) in [
            ("since", "yesterday"),
            ("until", "2026-01-01"),
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "ten"),
            ("limit", "-1"),
            ("cursor", "x"),
            ("cursor", "-5"),
            ("outcome", "succeeded"),
            ("drag_mode", "analysis"),
            ("kind", "runs"),
        ] {
            let message = error(&[(name, value)]);
            assert!(message.contains(name), "{name}={value}: {message}");
        }
        let message = error(&[
            ("since", "2026-01-02T00:00:00Z"),
            ("until", "2026-01-01T00:00:00Z"),
        ]);
        assert!(message.contains("since"), "{message}");
    }
}

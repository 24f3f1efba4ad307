//! The error answers of each operation: which stable codes it may answer with, at which status,
//! in which body. One table says what each code means and at which status it comes; an operation
//! lists its codes ([`refusals!`]) and gets one response per status, its `code` an enum of exactly
//! those codes.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Response};

/// A stable error code of the API: the status it comes with and what it means.
pub struct Code {
    pub code: &'static str,
    pub status: u16,
    pub meaning: &'static str,
}

const fn code(code: &'static str, status: u16, meaning: &'static str) -> Code {
    Code {
        code,
        status,
        meaning,
    }
}

/// Every error code an HTTP answer can carry (a failed run's report carries its own, see
/// `RunReport.code`). The README's error table says the same for people.
pub const CODES: &[Code] = &[
    code("VALIDATION_ERROR", 400, "The request is unusable: an empty body or `{}` (\"Request body required\"), a body that is not JSON or not an object, a bad query or path parameter, an invalid workflow name, or an unusable `X-Trace-ID` header (any endpoint)."),
    code("GOVERNANCE_ERROR", 400, "The body is not a governance request (a missing field, a wrong type, the human-only `analysis` mode, an objective under 10 characters...); `errors` lists every violation."),
    code("GOVERNANCE_VALIDATION_FAILED", 400, "A business rule refused the declaration (an actor name under 3 characters after trimming, a padded objective); `errors` lists every violation."),
    code("GOVERNANCE_REQUIRED", 400, "Ungoverned execution while governance is enabled: use `POST /workflows/governed/execute`."),
    code("DRAG_MODE_NOT_ALLOWED", 400, "The workflow's `drag_modes` do not include the requested mode."),
    code("INVALID_PARAMETERS", 400, "The workflow's parameter schema refuses the parameters; `errors` lists every problem."),
    code("AUTH_REQUIRED", 401, "No `Authorization` header."),
    code("INVALID_TOKEN", 401, "A bad, expired, wrongly signed or `alg: none` token, or a claim of the wrong type; for an identity provider's token also a wrong issuer or audience, no `exp`, an algorithm its key does not serve, or no person (email) in it."),
    code("UNKNOWN_SIGNING_KEY", 401, "An identity provider's token under a key (`kid`) the provider does not publish, even after refreshing its keys, or while they cannot be fetched."),
    code("INVALID_API_KEY", 401, "An API key (`Authorization: Bearer sbk_...` or `X-API-Key`) that is unknown, wrong, revoked, expired or not yet on the audit trail (the message says which, to the holder of the right secret only), or both headers at once."),
    code("MISSING_SIGNATURE", 401, "A Slack request without `X-Slack-Signature` and `X-Slack-Request-Timestamp`."),
    code("INVALID_SIGNATURE", 401, "A Slack request not signed with `SLACK_SIGNING_SECRET`."),
    code("STALE_REQUEST", 401, "A Slack request whose timestamp is unreadable or more than 5 minutes off."),
    code("REPLAYED_REQUEST", 401, "The same signed Slack request a second time."),
    code("ACTOR_MISMATCH", 403, "The AIM actor's email (or, for a display-name token, name) is not the token's `actor`."),
    code("FORBIDDEN_ROLE", 403, "The token's role may not do this (run this workflow, reload, read the audit trail, cancel another's run, record an override); under a policy file (`POLICY_PATH`), any action its rules do not allow, the message naming the action and the rule."),
    code("APPROVAL_REFUSED", 403, "Self-approval, or the caller is not an approver of this workflow."),
    code("WORKFLOW_NOT_FOUND", 404, "No workflow of that name is loaded."),
    code("NOT_FOUND", 404, "Nothing of that name here: an unknown path, run, trace id or step (or `/metrics` with `PROMETHEUS_ENABLED=false`)."),
    code("METHOD_NOT_ALLOWED", 405, "The path does not serve this method (`Allow` lists those it does; `OPTIONS` answers 200)."),
    code("TRACE_ID_IN_USE", 409, "The `X-Trace-ID` names a run still queued, running or waiting for approval, or another principal's run (finished ones too)."),
    code("CANCELLED", 409, "The run was cancelled before it started (on the record as `cancelled`)."),
    code("APPROVAL_REQUIRED", 409, "The workflow requires approval, which only the governed endpoint can request."),
    code("RUN_NOT_PENDING", 409, "No run by that trace id is waiting for approval."),
    code("RUN_FINISHED", 409, "The run has already finished."),
    code("APPROVAL_EXPIRED", 410, "The approval request expired before this decision."),
    code("REQUEST_TIMEOUT", 408, "The body did not arrive within `HTTP_BODY_TIMEOUT_SECONDS` (any endpoint; the connection is closed)."),
    code("PAYLOAD_TOO_LARGE", 413, "The body is over 1 MiB (64 KiB for Slack)."),
    code("PARAMETERS_TOO_LARGE", 413, "The run's parameters are over `RUN_MAX_PARAMETER_BYTES` of JSON (on the record)."),
    code("TOO_MANY_RUNS", 429, "Workers busy and the run queue full, or too many runs waiting for approval (`Retry-After` set)."),
    code("RATE_LIMITED", 429, "Over `RATE_LIMIT_PER_IP_PER_MINUTE` for the client address (any endpoint) or `RATE_LIMIT_PER_MINUTE` for the token's principal; both off by default (`Retry-After`: seconds until the next request is allowed)."),
    code("INTERNAL_ERROR", 500, "Anything unexpected (any endpoint); no internals in the body."),
    code("EXECUTION_FAILED", 500, "The ungoverned run failed."),
    code("AUDIT_UNAVAILABLE", 503, "The audit trail cannot record: nothing runs without a record (fail closed; `Retry-After` set)."),
    code("SHUTTING_DOWN", 503, "The server is draining for shutdown (`Retry-After` set)."),
    code("TOO_MANY_CONNECTIONS", 503, "Every one of the `HTTP_MAX_CONNECTIONS` connections is serving a request (any endpoint; `Retry-After: 1`, the connection is closed)."),
    code("SLACK_NOT_CONFIGURED", 503, "A Slack URL while `SLACK_SIGNING_SECRET` is not set, outside dev mode."),
];

/// The codes every operation may answer with, whatever it does: the edge refuses an unusable
/// `X-Trace-ID` (400), turns a panic into a 500, and applies the rate limits (429, when set).
const EDGE: [&str; 4] = [
    "VALIDATION_ERROR",
    "INTERNAL_ERROR",
    "REQUEST_TIMEOUT",
    "RATE_LIMITED",
];

/// The connection layer's refusal: any operation may meet it, but it is documented where the
/// operation's 503 is already an error answer (the health pages' 503 is their own body).
const CONNECTIONS_FULL: &str = "TOO_MANY_CONNECTIONS";

/// Where a token is checked, an identity provider's may also be refused for its key, and an API
/// key (accepted by the same extractor) for itself.
const WITH_INVALID_TOKEN: [&str; 2] = ["UNKNOWN_SIGNING_KEY", "INVALID_API_KEY"];

/// The body an operation's errors come in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `ErrorBody`.
    Plain,
    /// `ValidateError`: `valid: false` beside the error.
    Validate,
    /// `RunError`: `success: false`, and for the gate's refusals whether they are on the record.
    Run,
    /// [`Shape::Run`], and a 500 may also be the `RunReport` of a run that failed.
    GovernedRun,
}

impl Shape {
    fn component(self) -> &'static str {
        match self {
            Shape::Plain => "ErrorBody",
            Shape::Validate => "ValidateError",
            Shape::Run | Shape::GovernedRun => "RunError",
        }
    }
}

/// The code's table entry.
pub fn lookup(code: &str) -> Option<&'static Code> {
    CODES.iter().find(|c| c.code == code)
}

/// One response per status of `codes` (and the edge's), each error body's `code` an enum of the
/// codes at that status. Panics on a code missing from [`CODES`]: a mistake in an annotation,
/// found by every test that builds the document.
pub fn responses(shape: Shape, codes: &[&str]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<&'static Code>> = BTreeMap::new();
    let unavailable = codes
        .iter()
        .any(|name| lookup(name).is_some_and(|c| c.status == 503));
    let full = unavailable.then_some(&CONNECTIONS_FULL);
    let keyed = codes
        .contains(&"INVALID_TOKEN")
        .then_some(WITH_INVALID_TOKEN.iter())
        .into_iter()
        .flatten();
    for name in codes.iter().chain(EDGE.iter()).chain(full).chain(keyed) {
        let entry = lookup(name).unwrap_or_else(|| panic!("error code {name} is not in CODES"));
        let list = by_status.entry(entry.status).or_default();
        if !list.iter().any(|c| c.code == entry.code) {
            list.push(entry);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            (
                status.to_string(),
                RefOr::T(response(shape, status, &codes)),
            )
        })
        .collect()
}

fn response(shape: Shape, status: u16, codes: &[&'static Code]) -> Response {
    let mut description = String::from("Refused; `code` is one of:");
    for code in codes {
        description.push_str(&format!("\n- `{}`: {}", code.code, code.meaning));
    }
    let names: Vec<&str> = codes.iter().map(|c| c.code).collect();
    let mut schema = coded(shape.component(), &names);
    if shape == Shape::GovernedRun && status == 500 {
        description.push_str(
            "\n\nOr the run started and failed: its `RunReport` with `success: false` and the \
             failure's code (`WORKFLOW_FAILED`, `PRESCRIPTIVE_LANGUAGE`, `OPENCLAW_UNAVAILABLE`, \
             `CANCELLED`), on the record as `failure` or `cancelled`.",
        );
        let failed = json!({
            "allOf": [
                {"$ref": "#/components/schemas/RunReport"},
                {"type": "object", "required": ["code", "error"],
                 "properties": {"success": {"type": "boolean", "enum": [false]}}}
            ]
        });
        schema = json!({"oneOf": [failed, schema]});
    }
    let mut response = json!({
        "description": description,
        "content": {"application/json": {"schema": schema}},
    });
    if matches!(status, 429 | 503) {
        response["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer"}
        }});
    }
    serde_json::from_value(response).expect("a refusal is a valid OpenAPI response")
}

/// `component` with its `code` narrowed to `codes`.
fn coded(component: &str, codes: &[&str]) -> Value {
    json!({
        "allOf": [
            {"$ref": format!("#/components/schemas/{component}")},
            {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}}
        ]
    })
}

/// Declares `$name`, the error answers of one operation for `#[utoipa::path(responses(...))]`:
/// `$shape` ([`Shape`]) and the operation's codes (the edge's are added).
macro_rules! refusals {
    ($(#[$doc:meta])* $name:ident, $shape:ident, [$($code:literal),* $(,)?]) => {
        $(#[$doc])*
        pub(super) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::Response>,
            > {
                $crate::http::openapi::refusals::responses(
                    $crate::http::openapi::refusals::Shape::$shape,
                    &[$($code),*],
                )
            }
        }
    };
}
pub(crate) use refusals;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_screaming_snake() {
        for (i, code) in CODES.iter().enumerate() {
            assert!(
                code.code
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_'),
                "{}",
                code.code
            );
            assert!(
                CODES[..i].iter().all(|other| other.code != code.code),
                "{} twice",
                code.code
            );
        }
    }

    #[test]
    fn an_operation_gets_one_response_per_status_with_its_codes_and_the_edges() {
        let responses = responses(
            Shape::Plain,
            &["AUTH_REQUIRED", "INVALID_TOKEN", "NOT_FOUND"],
        );
        let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(statuses, ["400", "401", "404", "408", "429", "500"]);
        let RefOr::T(unauthorized) = &responses["401"] else {
            panic!("inline response")
        };
        let body = serde_json::to_value(unauthorized).unwrap();
        let schema = &body["content"]["application/json"]["schema"];
        assert_eq!(
            schema["allOf"][1]["properties"]["code"]["enum"],
            json!([
                "AUTH_REQUIRED",
                "INVALID_TOKEN",
                "UNKNOWN_SIGNING_KEY",
                "INVALID_API_KEY"
            ])
        );
    }
}

//! The API's OpenAPI 3.1 description, generated from the code: each resource module's handlers
//! carry `#[utoipa::path]` (method, path, parameters, bodies, every status and error code they
//! answer with) and the types they answer with derive `ToSchema`. Served at `GET /openapi.json`
//! and kept in `docs/openapi.json`, which a test compares with the served document.

pub(crate) mod refusals;
mod schemas;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use super::AppState;
use refusals::refusals;
pub use refusals::{lookup, Code, CODES};
pub(super) use schemas::{
    Decision, SlackAction, SlackEvent, SlackEventAnswer, SlackMessage, SlackModalAnswer,
    SlashCommand,
};
pub use schemas::{FilterRequest, GovernanceRequestBody};

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve))
}

refusals!(
    /// The errors of `GET /openapi.json`: the edge's only.
    Refusals,
    Plain,
    []
);

/// This document: the API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API (also in \
        `docs/openapi.json`).", content_type = "application/json", body = Object), Refusals))]
async fn serve() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let body = JSON.get_or_init(|| {
        serde_json::to_string_pretty(&document()).unwrap_or_else(|_| "{}".to_owned())
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SustainBot",
        description = "A governed workflow-automation server: every run names an accountable human \
(AIM: Actor, Input, Mission), declares how much the AI may do (DRAG mode), and leaves a chained \
audit record. A drop-in replacement for the Python/Flask SustainBot.\n\n\
Every request may carry `X-Trace-ID` (else the server makes a UUID v4); every response carries it \
back, and every error body carries it as `trace_id`. Errors are JSON `{error, code, trace_id}` \
with a stable `code`; each response below lists the codes it may carry. An unknown path answers \
404 `NOT_FOUND`, a method a path does not serve 405 `METHOD_NOT_ALLOWED` (`OPTIONS` answers 200 \
with `Allow`).",
    ),
    paths(serve),
    components(schemas(schemas::ErrorBody, schemas::ValidateError, schemas::RunError)),
    modifiers(&Edge),
    tags(
        (name = "governance", description = "AIM/DRAG validation and the prescriptive-language filter"),
        (name = "workflows", description = "Workflows and running them through the governance gate"),
        (name = "runs", description = "The live view of runs, approvals, cancellation, overrides"),
        (name = "audit", description = "Reading and verifying the audit trail (auditors and admins)"),
        (name = "apikeys", description = "API keys for machines: each speaks for its owning human (admins manage them)"),
        (name = "slack", description = "Slack's request URLs (signed by Slack)"),
        (name = "health", description = "Status and metrics"),
        (name = "meta", description = "This description"),
    )
)]
struct ApiDoc;

/// The whole description: this module's part, each resource module's, and what the edge adds to
/// every operation.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in [
        super::health::Api::openapi(),
        super::governance::Api::openapi(),
        super::workflows::Api::openapi(),
        super::runs::Api::openapi(),
        super::audit::Api::openapi(),
        super::apikeys::Api::openapi(),
        super::slack::Api::openapi(),
    ] {
        doc.merge(part);
    }
    Edge.modify(&mut doc);
    doc
}

/// What the edge does for every operation: the security schemes, the `X-Trace-ID` header in
/// and out, and the answers to unknown paths and methods.
struct Edge;

impl Modify for Edge {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <jwt>` (the bare token is accepted too, as the \
                         original did), signed with `JWT_SECRET` (HS256 unless `JWT_ALGORITHM` \
                         says otherwise). Claims: `actor` (an email, or a display name), `role` \
                         (a string or a list; default `user`), `user_id`; `exp` and `nbf` \
                         enforced when present. Or, with an identity provider configured \
                         (`JWT_ISSUER`, `JWT_JWKS_URL`, `JWT_PUBLIC_KEY_FILE`), its RS/PS/ES/EdDSA \
                         token: `exp` required, issuer and audience checked, the person from \
                         `JWT_EMAIL_CLAIM` and the roles from `JWT_ROLES_CLAIM` (docs/identity.md). \
                         Without the header: 401 `AUTH_REQUIRED`; a bad token: 401 \
                         `INVALID_TOKEN`; a provider's token under a key it does not publish: 401 \
                         `UNKNOWN_SIGNING_KEY`. A bearer value beginning `sbk_` is an API key \
                         instead (see `api_key`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "slack_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Slack-Signature",
                "Slack's request signature: `v0=` and the hex HMAC-SHA256, keyed with \
                 `SLACK_SIGNING_SECRET`, of `v0:<X-Slack-Request-Timestamp>:<raw body>`. The \
                 `X-Slack-Request-Timestamp` header (Unix seconds) must be within 5 minutes, and \
                 a signed request is accepted once. Refusals: 401 `MISSING_SIGNATURE`, \
                 `INVALID_SIGNATURE`, `STALE_REQUEST`, `REPLAYED_REQUEST`; without a signing \
                 secret (outside dev mode) 503 `SLACK_NOT_CONFIGURED`.",
            ))),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (`sbk_<id>_<secret>`, from `sustainbot apikey create` or `POST \
                 /apikeys`), in `X-API-Key` or as `Authorization: Bearer <key>` (not both). It \
                 speaks for its owner (the actor) with its role, within its workflow patterns. \
                 An unknown, wrong, revoked or expired key: 401 `INVALID_API_KEY`.",
            ))),
        );
        for (name, status, code) in [
            ("NotFound", 404, "NOT_FOUND"),
            ("MethodNotAllowed", 405, "METHOD_NOT_ALLOWED"),
        ] {
            let meaning = lookup(code).map_or("", |c| c.meaning);
            let response = json!({
                "description": format!("{status} `{code}`: {meaning}"),
                "content": {"application/json": {"schema": {"allOf": [
                    {"$ref": "#/components/schemas/ErrorBody"},
                    {"type": "object", "properties": {"code": {"type": "string", "enum": [code]}}}
                ]}}}
            });
            if let Ok(response) = serde_json::from_value(response) {
                components.responses.insert(name.to_owned(), response);
            }
        }
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                trace_id(operation);
                api_key_too(operation);
            }
        }
    }
}

/// An operation that takes a JWT takes an API key too (the same extractor).
fn api_key_too(operation: &mut Operation) {
    let Some(security) = operation.security.as_mut() else {
        return;
    };
    let bearer = serde_json::to_value(&*security).is_ok_and(|v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|r| r.get("bearer").is_some()))
    });
    if bearer {
        security.push(SecurityRequirement::new::<&str, [&str; 0], &str>(
            "api_key",
            [],
        ));
    }
}

/// `X-Trace-ID` on the way in (optional) and out (every answer).
fn trace_id(operation: &mut Operation) {
    let parameter = json!({
        "name": "X-Trace-ID",
        "in": "header",
        "required": false,
        "description": "The caller's trace id (1 to 128 visible ASCII characters, no spaces); \
            else the server makes a UUID v4. An unusable one is 400 `VALIDATION_ERROR`.",
        "schema": {"type": "string", "minLength": 1, "maxLength": crate::trace::MAX_TRACE_ID,
                   "pattern": "^[!-~]+$"}
    });
    if let Ok(parameter) = serde_json::from_value(parameter) {
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(parameter);
    }
    for response in operation.responses.responses.values_mut() {
        if let utoipa::openapi::RefOr::T(response) = response {
            let header = json!({
                "description": "The request's trace id (absent only on the 400 for an unusable \
                    `X-Trace-ID`).",
                "schema": {"type": "string"}
            });
            if let Ok(header) = serde_json::from_value(header) {
                response.headers.insert("X-Trace-ID".to_owned(), header);
            }
        }
    }
}

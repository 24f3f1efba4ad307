//! API keys at the edge: how a request presents one (`Authorization: Bearer sbk_...` or
//! `X-API-Key: sbk_...`), and `POST`/`GET /apikeys`, `DELETE /apikeys/{id}` for admins (in
//! person: a key may not manage keys). The keys themselves live in `auth::apikey`.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::openapi::refusals::refusals;
use super::{ApiError, AppState, AuthUser, JsonBody};
use crate::auth::apikey::{self, ApiKey, KeyId, KeyRequest, KeyStoreError, ManageError};
use crate::auth::{may, token_from_header, Action, Principal};
use crate::metrics::AuthFailure;

/// The header a key may come in instead of `Authorization`.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The API key a request presents, if any: `X-API-Key`, or an `Authorization` value beginning
/// `sbk_` (anything else there is a JWT). Both headers at once are refused: one credential per
/// request, so that no one has to guess which one counted.
pub fn presented(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION);
    match (headers.get(&X_API_KEY), authorization) {
        (Some(_), Some(_)) => Err(invalid(
            "Send an API key in X-API-Key or a credential in Authorization, not both",
        )),
        (Some(value), None) => value
            .to_str()
            .map(|key| Some(key.trim()))
            .map_err(|_| invalid(apikey::Refusal::Invalid.message())),
        (None, Some(value)) => Ok(value
            .to_str()
            .ok()
            .map(token_from_header)
            .filter(|token| token.starts_with(apikey::PREFIX))),
        (None, None) => Ok(None),
    }
}

/// The caller a presented key speaks for, or 401 `INVALID_API_KEY`.
pub fn authenticate(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    state.api_keys.authenticate(key).map_err(|refusal| {
        state.metrics.authentication_failures.inc(&AuthFailure {
            failure_type: "invalid_api_key",
        });
        tracing::info!(reason = refusal.message(), "API key refused");
        invalid(refusal.message())
    })
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", message)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apikeys", get(list))
        .route("/apikeys", post(create))
        .route("/apikeys/{id}", delete(revoke))
}

#[derive(OpenApi)]
#[openapi(paths(list, create, revoke))]
pub(super) struct Api;

refusals!(
    /// The errors of `GET /apikeys`.
    ListRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE"]
);

refusals!(
    /// The errors of `POST /apikeys`.
    CreateRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE", "PAYLOAD_TOO_LARGE", "AUDIT_UNAVAILABLE"]
);

refusals!(
    /// The errors of `DELETE /apikeys/{id}`.
    RevokeRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE", "NOT_FOUND", "AUDIT_UNAVAILABLE"]
);

/// A key as lists show it: never the key or its hash.
#[derive(Serialize, ToSchema)]
struct KeyView {
    /// The key's public id (16 hex digits; the key is `sbk_<id>_<secret>`).
    id: String,
    name: String,
    /// The accountable human: every use runs as them (the AIM actor must be this email).
    owner: String,
    role: String,
    /// Workflow patterns the key may run (`*` for any characters); `null`: every workflow its
    /// role may run.
    workflows: Option<Vec<String>>,
    /// `active`; `pending` (its creation is not on the audit trail yet), `expired` or `revoked`:
    /// refused.
    #[schema(pattern = "^(pending|active|expired|revoked)$")]
    status: &'static str,
    /// RFC 3339 times.
    created_at: String,
    created_by: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    revoked_by: Option<String>,
    /// The last request it authenticated (to the second).
    last_used_at: Option<String>,
}

impl From<&ApiKey> for KeyView {
    fn from(key: &ApiKey) -> KeyView {
        KeyView {
            id: key.id.to_string(),
            name: key.name.clone(),
            owner: key.owner.clone(),
            role: key.role.to_string(),
            workflows: key.workflows.clone(),
            status: key.status(chrono::Utc::now()).as_str(),
            created_at: apikey::rfc3339(key.created_at),
            created_by: apikey::who(&key.created_by),
            expires_at: key.expires_at.map(apikey::rfc3339),
            revoked_at: key.revoked_at.map(apikey::rfc3339),
            revoked_by: key.revoked_by.as_ref().map(apikey::who),
            last_used_at: key.last_used_at.map(apikey::rfc3339),
        }
    }
}

/// `GET /apikeys`.
#[derive(Serialize, ToSchema)]
struct KeyList {
    count: usize,
    keys: Vec<KeyView>,
}

/// `POST /apikeys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// The accountable human's email.
    owner: String,
    /// The role every use has.
    role: String,
    /// A name for people (default: the id).
    name: Option<String>,
    /// Days until it expires (1 to 3650; default: never).
    #[schema(minimum = 1, maximum = 3650)]
    expires_days: Option<u32>,
    /// Workflow patterns it may run (`*` for any characters; default: every workflow its role may
    /// run).
    workflows: Option<Vec<String>>,
}

/// A new key: the key itself, shown this once.
#[derive(Serialize, ToSchema)]
struct CreatedKey {
    /// `sbk_<id>_<secret>`: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`. The
    /// server keeps only its hash; it cannot be shown again.
    key: String,
    #[serde(flatten)]
    view: KeyView,
}

/// Admins, in person (not with an API key).
fn manager(policy: &crate::auth::Policy, principal: &Principal) -> Result<(), ApiError> {
    may(policy, principal, Action::ManageApiKeys)
        .and_then(|_| apikey::in_person(principal, "manage API keys"))
        .map_err(ApiError::forbidden)
}

fn refused(error: ManageError) -> ApiError {
    match error {
        ManageError::Store(KeyStoreError::NotFound(id)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("No API key {id}"),
        ),
        ManageError::Store(KeyStoreError::Invalid(problem)) => ApiError::validation(problem),
        ManageError::Store(e) => {
            tracing::error!(error = %e, "API key store");
            ApiError::internal()
        }
        ManageError::Audit(e) => {
            tracing::error!(error = %e, "an API key change could not be recorded");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "AUDIT_UNAVAILABLE",
                "The audit trail cannot record the change; try again",
            )
        }
    }
}

/// The API keys (admins).
///
/// Every key, revoked and expired ones too, oldest first; never a key or its hash.
#[utoipa::path(get, path = "/apikeys", operation_id = "list_api_keys", tag = "apikeys", security(("bearer" = [])),
    responses((status = 200, description = "The keys, oldest first.", body = KeyList),
        ListRefusals))]
async fn list(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> Result<Json<KeyList>, ApiError> {
    manager(&state.gate.policy(), &principal)?;
    let keys: Vec<KeyView> = state.api_keys.list().iter().map(KeyView::from).collect();
    Ok(Json(KeyList {
        count: keys.len(),
        keys,
    }))
}

/// Creates an API key (admins, in person).
///
/// The key speaks for its owner: every use has the owner as its actor (a governed run's AIM actor
/// must be the owner) and the key's role, and names the key on the audit trail. The creation is
/// on the audit trail (`kind: apikey`) before the key is answered; the key is in this answer only.
#[utoipa::path(post, path = "/apikeys", operation_id = "create_api_key", tag = "apikeys", security(("bearer" = [])),
    request_body = CreateBody,
    responses((status = 201, description = "Created and recorded; `key` is shown this once.", body = CreatedKey),
        CreateRefusals))]
async fn create(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    manager(&state.gate.policy(), &principal)?;
    let Some(body) = body else {
        return Err(ApiError::validation(
            "Request body required: {\"owner\", \"role\"} and optionally \"name\", \"expires_days\", \"workflows\"",
        ));
    };
    let body: CreateBody = serde_json::from_value(body)
        .map_err(|e| ApiError::validation(format!("Invalid API key request: {e}")))?;
    let request = KeyRequest {
        owner: body.owner,
        role: body.role,
        name: body.name,
        expires_days: body.expires_days,
        workflows: body.workflows,
    };
    request.check().map_err(ApiError::validation)?;
    let (key, text) = state
        .api_keys
        .create(&request, principal)
        .await
        .map_err(refused)?;
    tracing::info!(key_id = %key.id, owner = %key.owner, role = %key.role, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: text.expose().to_owned(),
            view: KeyView::from(&key),
        }),
    ))
}

/// Revokes an API key (admins, in person).
///
/// Refused from now on, and on the audit trail. Revoking a revoked key changes nothing.
#[utoipa::path(delete, path = "/apikeys/{id}", operation_id = "revoke_api_key", tag = "apikeys", security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (16 hex digits).")),
    responses((status = 200, description = "Revoked (now or before).", body = KeyView),
        RevokeRefusals))]
async fn revoke(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    manager(&state.gate.policy(), &principal)?;
    let Some(id) = KeyId::parse(&id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("No API key {id:?}"),
        ));
    };
    let key = state
        .api_keys
        .revoke(id, principal)
        .await
        .map_err(refused)?;
    tracing::info!(key_id = %key.id, "API key revoked");
    Ok(Json(KeyView::from(&key)))
}

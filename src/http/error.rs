//! The one error type of the HTTP edge: a status, a stable code, a human message, and the request's
//! trace id (stamped by the trace-id middleware, so handlers never pass it). Internal causes are
//! logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::governance::Violation;
use crate::pipeline::GateError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub trace_id: Option<String>,
    /// Every violation, for validation failures.
    pub errors: Option<Vec<Violation>>,
    /// Extra members merged into the body (`"valid": false` on the validate endpoint).
    pub extra: Map<String, Value>,
    /// `Retry-After` in seconds for a 429 or 503 (5 when not set).
    /// (A `u16` keeps the error small: results carry it by value.)
    pub retry_after: Option<std::num::NonZeroU16>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            trace_id: None,
            errors: None,
            extra: Map::new(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = std::num::NonZeroU16::new(seconds.clamp(1, u64::from(u16::MAX)) as u16);
        self
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Endpoint not found")
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
        )
    }

    pub fn forbidden(forbidden: crate::auth::Forbidden) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN_ROLE", forbidden.message)
    }

    pub fn with_trace(mut self, trace_id: &str) -> ApiError {
        self.trace_id = Some(trace_id.to_owned());
        self
    }

    pub fn with_errors(mut self, errors: Vec<Violation>) -> ApiError {
        self.errors = Some(errors);
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_owned(), value);
        self
    }
}

impl From<GateError> for ApiError {
    fn from(error: GateError) -> ApiError {
        let status = match &error {
            GateError::ActorMismatch(_) | GateError::ForbiddenRole { .. } => StatusCode::FORBIDDEN,
            GateError::ApprovalRequired { .. }
            | GateError::NotPending(_)
            | GateError::TraceInUse(_)
            | GateError::RunFinished(_) => StatusCode::CONFLICT,
            GateError::RunNotFound(_) => StatusCode::NOT_FOUND,
            GateError::ApprovalRefused(_) | GateError::UnknownUser(_) => StatusCode::FORBIDDEN,
            GateError::ApprovalExpired(_) => StatusCode::GONE,
            GateError::TooManyRuns => StatusCode::TOO_MANY_REQUESTS,
            GateError::ParametersTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GateError::Cancelled => StatusCode::CONFLICT,
            GateError::WorkflowNotFound(_) => StatusCode::NOT_FOUND,
            GateError::AuditUnavailable(_) | GateError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GateError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GateError::Unreadable {
                code: "PAYLOAD_TOO_LARGE",
                ..
            } => StatusCode::PAYLOAD_TOO_LARGE,
            GateError::Unreadable {
                code: "REQUEST_TIMEOUT",
                ..
            } => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        };
        let api = ApiError::new(status, error.code(), error.to_string());
        match error {
            GateError::Invalid(rejection) => api.with_errors(rejection.violations),
            GateError::InvalidParameters(problems) => api.with_errors(problems),
            _ => api,
        }
    }
}

impl IntoResponse for ApiError {
    /// Without a trace id the error travels in the response's extensions to the trace-id
    /// middleware, which stamps the request's id and renders it; with one it renders at once.
    fn into_response(self) -> Response {
        if self.trace_id.is_some() {
            return self.render();
        }
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

impl ApiError {
    /// The response as it goes out.
    pub fn render(self) -> Response {
        let mut body = self.extra;
        body.insert("error".into(), Value::String(self.message));
        body.insert("code".into(), Value::String(self.code.to_owned()));
        if let Some(trace_id) = self.trace_id {
            body.insert("trace_id".into(), Value::String(trace_id));
        }
        if let Some(errors) = self.errors {
            body.insert("errors".into(), json!(errors));
        }
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            let seconds = self.retry_after.map_or(5, std::num::NonZeroU16::get);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

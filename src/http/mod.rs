//! The HTTP edge: routes, shared state, the trace-id and metrics middleware, and fallbacks.

mod apikeys;
mod audit;
pub mod connections;
mod error;
mod extract;
mod governance;
mod rate_limit;
pub use rate_limit::RateLimits;
mod health;
pub mod openapi;
mod runs;
mod slack;
mod workflows;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::field::Empty;
use tracing::Instrument;

pub use error::ApiError;
pub use extract::{AuthUser, JsonBody};

use crate::auth::JwtKeys;
use crate::config::Config;
use crate::governance::filter::PhraseList;
use crate::metrics::{method_label, HttpRequest, HttpRoute, Metrics};
use crate::pipeline::Gate;
use crate::trace::TraceId;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub static X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// What every handler shares: one pointer, so extractors and middleware clone it for free.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The shared parts behind [`AppState`].
pub struct Shared {
    /// The API keys, in memory (`auth::apikey`).
    pub api_keys: crate::auth::apikey::ApiKeys,
    pub config: Arc<Config>,
    /// The last probes of the model server and OpenClaw (`/health`, `/status`).
    pub probes: health::Probes,
    pub slack: Arc<crate::slack::Slack>,
    pub keys: JwtKeys,
    /// Tokens from an identity provider, when one is configured (beside `keys`).
    pub identity_provider: Option<Arc<crate::auth::IdentityProvider>>,
    pub gate: Gate,
    pub metrics: Arc<Metrics>,
    pub phrases: Arc<PhraseList>,
    pub rate_limits: rate_limit::RateLimits,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(health::router())
        .merge(governance::router())
        .merge(workflows::router())
        .merge(runs::router())
        .merge(slack::router())
        .merge(audit::router())
        .merge(apikeys::router())
        .merge(openapi::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            rate_limit::by_address,
        ));
    edge(api).with_state(state)
}

/// The whole API as the server serves it: [`router`], and around it what must see the finished
/// response (axum sets a route's `Allow` header last): `OPTIONS` added to `Allow`.
pub fn service(state: AppState) -> tower::util::MapResponse<Router, fn(Response) -> Response> {
    tower::ServiceExt::<Request>::map_response(
        router(state),
        allow_options as fn(Response) -> Response,
    )
}

/// Every route answers `OPTIONS` (see [`method_not_allowed`]): its `Allow` says so, as Flask's did.
fn allow_options(mut response: Response) -> Response {
    let allow = response
        .headers()
        .get(axum::http::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(allow) = allow.filter(|a| !a.split(',').any(|m| m.trim() == "OPTIONS")) {
        let value = if allow.is_empty() {
            "OPTIONS".to_owned()
        } else {
            format!("{allow},OPTIONS")
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(axum::http::header::ALLOW, value);
        }
    }
    response
}

/// What every request passes through, outermost first: the trace id (and the request's span), a
/// caught panic (a 500 `INTERNAL_ERROR` that still carries the trace id), the body limit.
fn edge<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                ApiError::internal().into_response()
            },
        ))
        .layer(middleware::from_fn(trace_id))
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// A method a route does not serve: 405. `OPTIONS` answers 200 instead, as the original (Flask)
/// did; axum adds the route's `Allow` header to both.
async fn method_not_allowed(method: axum::http::Method) -> Response {
    if method == axum::http::Method::OPTIONS {
        return StatusCode::OK.into_response();
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed for this endpoint",
    )
    .into_response()
}

/// An error answered as plain text by axum's own extractors, as one of ours.
async fn plain_rejection(response: &mut Response) -> Option<ApiError> {
    let status = response.status();
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let body = std::mem::take(response.body_mut());
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        s if s.is_server_error() => "INTERNAL_ERROR",
        _ => "VALIDATION_ERROR",
    };
    Some(ApiError::new(
        status,
        code,
        String::from_utf8_lossy(&text).into_owned(),
    ))
}

/// Takes the client's `X-Trace-ID` or makes one, hands it to the handlers, opens the request's
/// span (every log line of the request carries the trace id; `AuthUser` or Slack names the actor,
/// the gate the workflow, DRAG mode and outcome), stamps the id on an error body, returns it as a
/// response header, and ends with one `request finished` line (status and duration). With traces
/// exported, the span continues the caller's `traceparent`.
async fn trace_id(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let trace = match request.headers().get(&X_TRACE_ID) {
        None => TraceId::random(),
        Some(value) => match value.to_str().map(TraceId::parse) {
            Ok(Ok(trace)) => trace,
            Ok(Err(invalid)) => return ApiError::validation(invalid.to_string()).render(),
            Err(_) => {
                return ApiError::validation(crate::trace::InvalidTraceId.to_string()).render()
            }
        },
    };
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = Empty,
        trace_id = %trace,
        w3c_trace_id = Empty,
        actor = Empty,
        workflow = Empty,
        drag_mode = Empty,
        outcome = Empty,
        status = Empty,
        duration_ms = Empty,
    );
    crate::trace::otel::continue_remote(&span, request.headers());
    request.extensions_mut().insert(trace.clone());
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        response = error.with_trace(trace.as_str()).render();
    } else if let Some(error) = plain_rejection(&mut response).await {
        // An extractor's own rejection (a path that is not UTF-8, say): our JSON error body too.
        response = error.with_trace(trace.as_str()).render();
    }
    if let Ok(value) = HeaderValue::from_str(trace.as_str()) {
        response.headers_mut().insert(X_TRACE_ID.clone(), value);
    }
    span.record("status", i64::from(response.status().as_u16()));
    span.record("duration_ms", started.elapsed().as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("request finished"));
    response
}

/// Counts requests by route template (never by raw path, which a client controls).
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let metrics = &state.metrics;
    let method = method_label(request.method());
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    tracing::Span::current().record("route", endpoint.as_str());
    metrics.active_requests.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.active_requests.dec();
    let route = HttpRoute { method, endpoint };
    metrics
        .http_request_duration
        .observe(&route, started.elapsed().as_secs_f64());
    metrics.http_requests.inc(&HttpRequest {
        method,
        endpoint: route.endpoint,
        status_code: response.status().as_u16(),
    });
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_its_trace_id() {
        let app = edge(Router::new().route(
            "/boom",
            get(|| async {
                panic!("boom");
                #[allow(unreachable_code)]
                ()
            }),
        ));
        let request = Request::get("/boom")
            .header("x-trace-id", "panic-1")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-trace-id"], "panic-1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "INTERNAL_ERROR");
        assert_eq!(body["error"], "Internal server error");
        assert_eq!(body["trace_id"], "panic-1");
    }
}

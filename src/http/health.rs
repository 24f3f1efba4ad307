//! `GET /health`, `GET /status`, `GET /metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
}

/// Cheap: no network probes, so load balancers may call it often. 503 when the audit sink cannot
/// record (governed runs are refused until it can).
async fn health(State(state): State<AppState>) -> Response {
    let (healthy, body) = health_body(&state);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `/health` plus reachability of the model server and the orchestrator (short TCP probes).
async fn status(State(state): State<AppState>) -> Response {
    let (healthy, mut body) = health_body(&state);
    let config = &state.config;
    let llm = format!("{}:{}", config.llm.host, config.llm.port);
    let openclaw = openclaw_address(&config.runs.openclaw_url);
    let (llm_up, openclaw_up) = tokio::join!(reachable(&llm), async {
        match &openclaw {
            Some(address) => reachable(address).await,
            None => false,
        }
    });
    body["components"]["llm"]["healthy"] = json!(llm_up);
    body["components"]["openclaw"] =
        json!({"endpoint": without_credentials(&config.runs.openclaw_url), "healthy": openclaw_up});
    body["governance"] = json!({
        "enabled": config.server.governance_enabled,
        "drag_modes": ["draft", "research", "grunt", "execute"],
        "prescriptive_phrases": state.phrases.len(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

fn health_body(state: &AppState) -> (bool, Value) {
    let config = &state.config;
    let workflows = state.gate.workflows();
    let sink = state.gate.audit().status();
    // Unauthenticated: the file name, not the server's directory layout.
    let file = sink
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let audit = json!({"enabled": true, "healthy": sink.healthy, "file": file, "head_seq": sink.head_seq,
                       "signing": sink.signing, "last_error": sink.last_error});
    let healthy = audit["healthy"].as_bool().unwrap_or(false);
    let body = json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "version": env!("CARGO_PKG_VERSION"),
        "components": {
            "audit": audit,
            "workflows": {
                "healthy": workflows.problems().is_empty(),
                "count": workflows.len(),
                "invalid": workflows.problems(),
                "endpoint": without_credentials(&config.runs.openclaw_url),
            },
            "llm": {
                "model": config.llm.model,
                "endpoint": format!("http://{}:{}", config.llm.host, config.llm.port),
            },
        },
    });
    (healthy, body)
}

/// A URL without its `user:password@` part, for unauthenticated status pages.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

async fn reachable(address: &str) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(address)
        )
        .await,
        Ok(Ok(_))
    )
}

/// `host:port` of an `http://` or `https://` URL.
fn openclaw_address(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.contains(':') && !authority.ends_with(']') {
        return Some(authority.to_owned());
    }
    let port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    Some(format!("{authority}:{port}"))
}

async fn metrics(State(state): State<AppState>) -> Response {
    if !state.config.server.prometheus_enabled {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Metrics are disabled (PROMETHEUS_ENABLED=false)",
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::openclaw_address;

    #[test]
    fn credentials_never_reach_the_status_page() {
        assert_eq!(
            super::without_credentials("http://user:pw@oc:8080/api"),
            "http://oc:8080/api"
        );
        assert_eq!(
            super::without_credentials("http://oc:8080"),
            "http://oc:8080"
        );
    }

    #[test]
    fn openclaw_urls_become_socket_addresses() {
        assert_eq!(
            openclaw_address("http://localhost:8080").as_deref(),
            Some("localhost:8080")
        );
        assert_eq!(
            openclaw_address("https://oc.example.org/api").as_deref(),
            Some("oc.example.org:443")
        );
        assert_eq!(openclaw_address("not a url"), None);
    }
}

//! `GET /health`, `GET /status`, `GET /metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{ApiError, AppState};
use crate::workflow::LoadProblem;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
}

/// `GET /health`; `GET /status` adds the probes and the governance facts.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    timestamp: String,
    version: &'static str,
    components: Components,
    #[serde(skip_serializing_if = "Option::is_none")]
    governance: Option<GovernanceFacts>,
}

#[derive(Serialize)]
struct Components {
    audit: AuditHealth,
    workflows: WorkflowsHealth,
    llm: LlmHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    openclaw: Option<OpenClawHealth>,
}

#[derive(Serialize)]
struct AuditHealth {
    enabled: bool,
    healthy: bool,
    /// The file name, not the server's directory layout (this page is unauthenticated).
    file: Option<String>,
    head_seq: u64,
    signing: bool,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct WorkflowsHealth {
    healthy: bool,
    count: usize,
    invalid: Vec<LoadProblem>,
    endpoint: String,
}

#[derive(Serialize)]
struct LlmHealth {
    model: String,
    endpoint: String,
    /// Whether the model server answers (`/status` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy: Option<bool>,
}

#[derive(Serialize)]
struct OpenClawHealth {
    endpoint: String,
    healthy: bool,
}

#[derive(Serialize)]
struct GovernanceFacts {
    enabled: bool,
    drag_modes: [&'static str; 4],
    prescriptive_phrases: usize,
}

impl Health {
    /// 200 while the audit trail can record, 503 when it cannot.
    fn answer(self) -> Response {
        let code = if self.components.audit.healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, Json(self)).into_response()
    }
}

/// Cheap: no network probes, so load balancers may call it often. 503 when the audit sink cannot
/// record (governed runs are refused until it can).
async fn health(State(state): State<AppState>) -> Response {
    health_of(&state).answer()
}

/// `/health` plus reachability of the model server and the orchestrator (short TCP probes).
async fn status(State(state): State<AppState>) -> Response {
    let mut body = health_of(&state);
    let config = &state.config;
    let llm = format!("{}:{}", config.llm.host, config.llm.port);
    let openclaw = openclaw_address(&config.runs.openclaw_url);
    let (llm_up, openclaw_up) = tokio::join!(reachable(&llm), async {
        match &openclaw {
            Some(address) => reachable(address).await,
            None => false,
        }
    });
    body.components.llm.healthy = Some(llm_up);
    body.components.openclaw = Some(OpenClawHealth {
        endpoint: without_credentials(&config.runs.openclaw_url),
        healthy: openclaw_up,
    });
    body.governance = Some(GovernanceFacts {
        enabled: config.server.governance_enabled,
        drag_modes: ["draft", "research", "grunt", "execute"],
        prescriptive_phrases: state.phrases.len(),
    });
    body.answer()
}

fn health_of(state: &AppState) -> Health {
    let config = &state.config;
    let workflows = state.gate.workflows();
    let sink = state.gate.audit().status();
    let audit = AuditHealth {
        enabled: true,
        healthy: sink.healthy,
        file: sink
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        head_seq: sink.head_seq,
        signing: sink.signing,
        last_error: sink.last_error,
    };
    let invalid = workflows.problems();
    Health {
        status: if audit.healthy { "healthy" } else { "degraded" },
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        version: env!("CARGO_PKG_VERSION"),
        components: Components {
            audit,
            workflows: WorkflowsHealth {
                healthy: invalid.is_empty(),
                count: workflows.len(),
                invalid,
                endpoint: without_credentials(&config.runs.openclaw_url),
            },
            llm: LlmHealth {
                model: config.llm.model.clone(),
                endpoint: format!("http://{}:{}", config.llm.host, config.llm.port),
                healthy: None,
            },
            openclaw: None,
        },
        governance: None,
    }
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

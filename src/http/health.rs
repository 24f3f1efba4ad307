//! `GET /health`, `GET /status`, `GET /metrics`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::openapi::refusals::refusals;
use super::{ApiError, AppState};
use crate::metrics::Format;
use crate::workflow::LoadProblem;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
}

#[derive(OpenApi)]
#[openapi(paths(health, status, metrics))]
pub(super) struct Api;

refusals!(
    /// The errors of `GET /health` and `GET /status`: the edge's only.
    HealthRefusals,
    Plain,
    []
);

refusals!(
    /// The errors of `GET /metrics`.
    MetricsRefusals,
    Plain,
    ["NOT_FOUND"]
);

/// `GET /health`; `GET /status` adds the probes and the governance facts.
#[derive(Serialize, ToSchema)]
struct Health {
    /// `healthy`, or `degraded` while the audit sink cannot record (503) or after another process
    /// wrote into the audit log (200, `components.audit.foreign_tail_events`).
    #[schema(example = "healthy")]
    status: &'static str,
    timestamp: String,
    version: &'static str,
    components: Components,
    #[serde(skip_serializing_if = "Option::is_none")]
    governance: Option<GovernanceFacts>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = HealthComponents)]
struct Components {
    audit: AuditHealth,
    workflows: WorkflowsHealth,
    llm: LlmHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    openclaw: Option<OpenClawHealth>,
    /// The identity provider's keys, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_provider: Option<IdentityProviderHealth>,
    /// The roles policy in force (`POLICY_PATH`); absent under the built-in rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyHealth>,
}

/// The identity provider's signing keys: where they come from and whether they are fresh. While
/// they cannot be fetched the cached ones keep serving (`healthy: false`).
#[derive(Serialize, ToSchema)]
struct IdentityProviderHealth {
    /// `issuer` (discovery), `jwks_url` or `public_key_file`.
    source: &'static str,
    /// Keys cached.
    keys: usize,
    /// When they were last fetched (RFC 3339; none for a key file).
    last_refresh: Option<String>,
    healthy: bool,
    /// Why the last fetch failed.
    last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct PolicyHealth {
    /// The file name, not the server's directory layout (this page is unauthenticated).
    file: String,
    /// How many rules it has.
    rules: usize,
    /// `sha256:` + hex of the file in force.
    sha256: String,
    /// Why the last reload kept the policy in force as it was (the file no longer loads).
    last_error: Option<String>,
}

impl PolicyHealth {
    fn of(status: crate::auth::policy::PolicyStatus) -> PolicyHealth {
        let file = status
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = status.path.to_string_lossy();
        PolicyHealth {
            last_error: status.last_error.map(|e| e.replace(path.as_ref(), &file)),
            file,
            rules: status.rules,
            sha256: status.sha256,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct AuditHealth {
    enabled: bool,
    healthy: bool,
    /// The file name, not the server's directory layout (this page is unauthenticated).
    file: Option<String>,
    head_seq: u64,
    signing: bool,
    last_error: Option<String>,
    /// Times another process appended bytes to the active audit file since the server started:
    /// each was cut before the next record and is on the trail as a `recovery` record. Non-zero
    /// keeps `status` `degraded` (with 200: the trail records) until the server restarts.
    foreign_tail_events: u64,
    /// The last such event: length, offset and SHA-256 of what was cut.
    last_foreign_tail: Option<String>,
}

/// `healthy`, `count` and `endpoint` as the original: `healthy` is whether OpenClaw answers.
#[derive(Serialize, ToSchema)]
struct WorkflowsHealth {
    healthy: bool,
    count: usize,
    endpoint: String,
    /// Whether every file in `WORKFLOWS_DIR` loaded.
    files_valid: bool,
    /// The files that did not load: file names and reasons, never the server's paths.
    invalid: Vec<InvalidFile>,
}

#[derive(Serialize, ToSchema)]
struct InvalidFile {
    file: String,
    reason: String,
}

impl InvalidFile {
    fn of(problem: LoadProblem, dir: &std::path::Path) -> InvalidFile {
        let file = problem
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut reason = problem.reason;
        for prefix in [problem.file.to_string_lossy(), dir.to_string_lossy()] {
            if !prefix.is_empty() {
                reason = reason.replace(prefix.as_ref(), "");
            }
        }
        InvalidFile { file, reason }
    }
}

/// How long a probe of the model server and OpenClaw is trusted: `/health` may be called often.
const PROBE_TTL: Duration = Duration::from_secs(5);

/// The last probes of the model server and OpenClaw: `(when, llm up, openclaw up)`.
#[derive(Default)]
pub struct Probes(std::sync::Mutex<Option<(std::time::Instant, bool, bool)>>);

impl Probes {
    /// Whether the model server and OpenClaw answer (short TCP probes, cached for [`PROBE_TTL`]).
    async fn check(&self, state: &AppState) -> (bool, bool) {
        if let Some((at, llm, openclaw)) = *crate::sync::lock(&self.0) {
            if at.elapsed() < PROBE_TTL {
                return (llm, openclaw);
            }
        }
        let config = &state.config;
        let llm = format!("{}:{}", config.llm.host, config.llm.port);
        let openclaw = openclaw_address(&config.runs.openclaw_url);
        let (llm_up, openclaw_up) = tokio::join!(reachable(&llm), async {
            match &openclaw {
                Some(address) => reachable(address).await,
                None => false,
            }
        });
        *crate::sync::lock(&self.0) = Some((std::time::Instant::now(), llm_up, openclaw_up));
        (llm_up, openclaw_up)
    }
}

#[derive(Serialize, ToSchema)]
struct LlmHealth {
    model: String,
    /// Whether the model server answers.
    healthy: bool,
    endpoint: String,
}

#[derive(Serialize, ToSchema)]
struct OpenClawHealth {
    endpoint: String,
    healthy: bool,
}

#[derive(Serialize, ToSchema)]
struct GovernanceFacts {
    enabled: bool,
    #[schema(value_type = Vec<String>)]
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

/// Component status.
///
/// The original's status: the model server and OpenClaw probed (cached a few seconds, so load
/// balancers may call it often). 503 when the audit sink cannot record (governed runs are refused
/// until it can).
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "health",
    responses(
        (status = 200, description = "Healthy: the audit sink can record.", body = Health),
        (status = 503, description = "Degraded: the audit sink cannot record, so runs are \
            refused (`components.audit.last_error` says why).", body = Health),
        HealthRefusals))]
async fn health(State(state): State<AppState>) -> Response {
    health_of(&state).await.answer()
}

/// Component status with OpenClaw and the governance facts.
///
/// `/health` plus OpenClaw on its own and the governance facts.
#[utoipa::path(get, path = "/status", operation_id = "status", tag = "health",
    responses(
        (status = 200, description = "Healthy: the audit sink can record.", body = Health),
        (status = 503, description = "Degraded: the audit sink cannot record.", body = Health),
        HealthRefusals))]
async fn status(State(state): State<AppState>) -> Response {
    let mut body = health_of(&state).await;
    let config = &state.config;
    let openclaw_up = body.components.workflows.healthy;
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

async fn health_of(state: &AppState) -> Health {
    let (llm_up, openclaw_up) = state.probes.check(state).await;
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
        foreign_tail_events: sink.foreign_tail_events,
        last_foreign_tail: sink.last_foreign_tail,
    };
    let invalid: Vec<InvalidFile> = workflows
        .problems()
        .into_iter()
        .map(|p| InvalidFile::of(p, &config.runs.workflows_dir))
        .collect();
    Health {
        status: if audit.healthy && audit.foreign_tail_events == 0 {
            "healthy"
        } else {
            "degraded"
        },
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        version: env!("CARGO_PKG_VERSION"),
        components: Components {
            audit,
            workflows: WorkflowsHealth {
                healthy: openclaw_up,
                count: workflows.len(),
                endpoint: without_credentials(&config.runs.openclaw_url),
                files_valid: invalid.is_empty(),
                invalid,
            },
            llm: LlmHealth {
                model: config.llm.model.clone(),
                healthy: llm_up,
                endpoint: format!("http://{}:{}", config.llm.host, config.llm.port),
            },
            openclaw: None,
            identity_provider: state.identity_provider.as_ref().map(|provider| {
                let health = provider.health();
                IdentityProviderHealth {
                    source: health.source,
                    keys: health.keys,
                    last_refresh: health.last_refresh,
                    healthy: health.healthy,
                    last_error: health.last_error,
                }
            }),
            policy: state.gate.policy_store().status().map(PolicyHealth::of),
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

/// Prometheus metrics: OpenMetrics for a scraper that asks for it (Prometheus does), else the text
/// format 0.0.4 the original served. The gauges of the gate's state are read now.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    responses(
        (status = 200, description = "The original's metric names: Prometheus text exposition format 0.0.4, or OpenMetrics 1.0.0 when the `Accept` header asks for `application/openmetrics-text`.",
            content_type = "text/plain", body = String),
        MetricsRefusals))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.config.server.prometheus_enabled {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Metrics are disabled (PROMETHEUS_ENABLED=false)",
        )
        .into_response();
    }
    let format = Format::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok()),
    );
    state.metrics.set_gate_state(&state.gate.state());
    (
        [(header::CONTENT_TYPE, format.content_type())],
        state.metrics.render(format),
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

//! SustainBot: a governed workflow-automation server.
//!
//! Every run names an accountable human (AIM: Actor, Input, Mission), declares how much the AI may do
//! (DRAG: draft, research, grunt, execute), and leaves a chained, durable audit record before and
//! after it runs. See `README.md` and `docs/`.

pub mod audit;
pub mod auth;
pub mod config;
pub mod governance;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod runs;
pub mod slack;
pub mod sync;
pub mod trace;
pub mod workflow;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::audit::checkpoint::{KeyFileError, Signer};
use crate::audit::{AuditError, AuditLog, AuditOptions, AuditStore};
use crate::auth::JwtKeys;
use crate::config::{AuditConfig, Config};
use crate::governance::filter::{PhraseList, PhraseListError};
use crate::http::{AppState, Shared};
use crate::metrics::Metrics;
use crate::pipeline::{Gate, RunLimits};
use crate::slack::Slack;
use crate::workflow::llm::{Api, LlmEndpoint};
use crate::workflow::{EnvSecrets, Runner, Services, WorkflowRegistry};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Phrases(#[from] PhraseListError),
    #[error("AUDIT_SIGNING_KEY: {0}")]
    SigningKey(#[from] KeyFileError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot restore the approval requests on the audit trail: {0}")]
    Approvals(String),
    #[error("{0}")]
    Slack(String),
}

/// The audit writer's options from the configuration (reads the signing key).
pub fn audit_options(audit: &AuditConfig) -> Result<AuditOptions, StartError> {
    let signer = match &audit.signing_key {
        Some(path) => Some(Signer::from_file(path)?),
        None => None,
    };
    let mut options = AuditOptions::new(audit.fsync);
    options.store.segment_max_bytes = audit.segment_max_bytes;
    options.store.rotate_daily = audit.rotate_daily;
    options.store.retention_days = audit.retention_days;
    options.store.checkpoint_every = audit.checkpoint_every;
    options.store.signer = signer;
    options.maintenance_interval = std::time::Duration::from_secs(audit.checkpoint_seconds);
    Ok(options)
}

/// `{{ server.url }}` for a server listening on `address`: `http://host:port`, with the loopback
/// address standing for an unspecified one (0.0.0.0 is reached at 127.0.0.1, :: at [::1]).
fn server_url(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}

/// `{{ server.url }}` from the configured host and port (a host name is kept as it is).
fn configured_server_url(config: &Config) -> String {
    match config.server.host.parse::<IpAddr>() {
        Ok(ip) => server_url(SocketAddr::new(ip, config.server.port)),
        Err(_) => format!("http://{}:{}", config.server.host, config.server.port),
    }
}

/// Builds the shared state: keys, audit log, workflows, filter phrases, the gate. With no listener
/// (`--run`), `{{ server.url }}` is the configured host and port.
pub fn build_state(config: Config) -> Result<AppState, StartError> {
    let server_url = configured_server_url(&config);
    build_state_at(config, server_url)
}

/// [`build_state`] for a server whose base URL is `server_url`.
fn build_state_at(config: Config, server_url: String) -> Result<AppState, StartError> {
    let metrics = Arc::new(Metrics::new());
    let mut options = audit_options(&config.audit)?;
    options.metrics = metrics.audit.clone();
    // The trail is always kept: with governance disabled, ungoverned runs are on it as such.
    let audit: Arc<dyn AuditStore> =
        Arc::new(AuditLog::open_with(&config.audit.log_path, options)?);
    let phrases = match &config.server.prescriptive_phrases_path {
        Some(path) => PhraseList::from_file(path)?,
        None => PhraseList::default_forbidden(),
    };
    let workflows = Arc::new(WorkflowRegistry::load(&config.runs.workflows_dir));
    let phrases = Arc::new(phrases);
    let mut llm = LlmEndpoint::ollama(&config.llm.host, config.llm.port, &config.llm.model);
    if config.llm.api_openai {
        llm.api = Api::OpenAi;
    }
    llm.api_key = config
        .llm
        .api_key
        .as_ref()
        .map(|key| key.expose().to_owned());
    let services = Services {
        http: Default::default(),
        llm,
        phrases: Arc::clone(&phrases),
        openclaw_url: config.runs.openclaw_url.clone(),
        server_url,
    };
    tracing::info!(count = workflows.len(), dir = %config.runs.workflows_dir.display(), "workflows loaded");
    let gate = Gate::new(
        audit,
        workflows,
        Runner::new(
            std::fs::canonicalize(&config.runs.workflows_dir)
                .unwrap_or_else(|_| config.runs.workflows_dir.clone()),
            services,
        )
        .with_secrets(Arc::new(EnvSecrets)),
        Arc::clone(&metrics),
        RunLimits {
            workers: config.runs.workers,
            queue: config.runs.queue,
            waiting_for_approval: config.runs.approvals_max,
        },
        !config.server.governance_enabled,
    );
    let slack = Arc::new(
        Slack::new(&config.slack, gate.clone(), Arc::clone(&metrics)).map_err(StartError::Slack)?,
    );
    gate.listen(Arc::clone(&slack.notifier) as Arc<dyn pipeline::Listener>);
    Ok(AppState::new(Shared {
        probes: Default::default(),
        slack,
        keys: JwtKeys::new(
            config.auth.jwt_secret.expose().as_bytes(),
            config.auth.jwt_algorithm,
        ),
        config: Arc::new(config),
        gate,
        metrics,
        phrases,
    }))
}

/// At shutdown, how long Slack deliveries in flight get.
const SLACK_DRAIN_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// At shutdown, how long cancelled runs get to record `cancelled` once the grace period is over.
const CANCEL_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// A server bound to its address, ready to run. Tests build it on port 0 and read the real port.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartError> {
        let address = format!("{}:{}", config.server.host, config.server.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        // The actual port: a server asked for port 0 calls itself where it really listens.
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            address: format!("{}:{}", config.server.host, config.server.port),
            source,
        })?;
        let state = build_state_at(config, server_url(bound))?;
        // Runs that waited for approval when the server last stopped wait again.
        match state.gate.restore_approvals().await {
            Ok(0) => {}
            Ok(restored) => tracing::info!(restored, "approval requests waiting again"),
            Err(e) => return Err(StartError::Approvals(e.to_string())),
        }
        Ok(Application { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, lets in-flight requests finish, then closes the audit
    /// log (a final signed checkpoint when signing).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let gate = self.state.gate.clone();
        let slack = Arc::clone(&self.state.slack);
        let grace = std::time::Duration::from_secs(self.state.config.server.shutdown_grace_seconds);
        tokio::spawn(watch_workflows(self.state.gate.clone()));
        tokio::spawn(expire_approvals(self.state.gate.clone()));
        let app = http::service(self.state);
        // The grace period runs from the signal, also for runs a request is waiting on: past it
        // they are cancelled, so that their requests are answered and the HTTP shutdown completes.
        let (signalled, deadline) = tokio::sync::oneshot::channel();
        let timer = gate.clone();
        let shutdown = async move {
            shutdown.await;
            let end_of_grace = tokio::time::Instant::now() + grace;
            tokio::spawn(async move {
                tokio::time::sleep_until(end_of_grace).await;
                timer.cancel_working("shutdown");
            });
            let _ = signalled.send(end_of_grace);
        };
        let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        // Requests are answered; runs may still be going (asynchronous ones). They get what is left
        // of the grace period, then are cancelled (their command steps killed) and recorded as
        // `cancelled`.
        let left = deadline
            .await
            .map(|end| end.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or_default();
        gate.drain(left, CANCEL_BOUND).await;
        // Results and notifications of the last runs go out (bounded).
        slack.notifier.drain(SLACK_DRAIN_BOUND).await;
        // A final signed checkpoint, then the writer stops.
        gate.audit().close().await;
        served
    }
}

/// Ends approval requests nobody decided in time (checked every second).
async fn expire_approvals(gate: Gate) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let expired = gate.expire_approvals().await;
        if expired > 0 {
            tracing::info!(expired, "approval requests expired");
        }
    }
}

/// Reloads the workflows when their files change (checked every 2 s) and on SIGHUP.
async fn watch_workflows(gate: Gate) {
    let changed = |gate: Gate| async move {
        tokio::task::spawn_blocking(move || gate.workflows().changed())
            .await
            .unwrap_or(false)
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        let reason = tokio::select! {
            _ = tick.tick() => {
                if !changed(gate.clone()).await {
                    continue;
                }
                "files changed"
            }
            Some(()) = hup => "SIGHUP",
        };
        let reloading = gate.clone();
        if tokio::task::spawn_blocking(move || reloading.workflows().reload())
            .await
            .is_ok()
        {
            tracing::info!(reason, count = gate.workflows().len(), "workflows reloaded");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_reaches_an_unspecified_address_on_loopback() {
        let url = |address: &str| server_url(address.parse().unwrap());
        assert_eq!(url("0.0.0.0:5000"), "http://127.0.0.1:5000");
        assert_eq!(url("[::]:5000"), "http://[::1]:5000");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80");
        assert_eq!(url("[fe80::1]:8080"), "http://[fe80::1]:8080");
    }
}

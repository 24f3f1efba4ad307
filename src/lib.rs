//! SustainBot: a governed workflow-automation server.
//!
//! Every run names an accountable human (AIM: Actor, Input, Mission), declares how much the AI may do
//! (DRAG: draft, research, grunt, execute), and leaves a chained, durable audit record before and
//! after it runs. See `README.md` and `docs/`.

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod db;
#[cfg(test)]
mod fuzz;
pub mod governance;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod pipeline;
pub mod runs;
mod shutdown;
pub mod slack;
pub mod strict_json;
pub mod sync;
pub mod trace;
pub mod workflow;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;

use crate::audit::checkpoint::{KeyFileError, Signer};
use crate::audit::{AuditError, AuditLog, AuditOptions, AuditStore, PgAuditStore, PgStoreOptions};
use crate::auth::policy::PolicyStore;
use crate::auth::JwtKeys;
use crate::cluster::Cluster;
use crate::config::{AuditConfig, Config};
use crate::governance::filter::{PhraseList, PhraseListError};
use crate::http::{AppState, Shared};
use crate::metrics::Metrics;
use crate::pipeline::{Gate, RunLimits};
use crate::slack::Slack;
use crate::workflow::command::RunAs;
use crate::workflow::llm::{Api, LlmEndpoint};
use crate::workflow::{EnvSecrets, Runner, Services, WorkflowRegistry};

pub use shutdown::stop_requests;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Database(#[from] db::DbError),
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
    #[error("COMMAND_RUN_AS: {0}")]
    RunAs(String),
    #[error("identity provider: {0}")]
    Identity(String),
    #[error("POLICY_PATH: {0}")]
    Policy(String),
    #[error("API keys: {0}")]
    ApiKeys(#[from] auth::apikey::KeyStoreError),
}

/// Marks the process non-dumpable: other processes of its user (a workflow step among them) can
/// no longer read its `/proc` environment or memory, and it leaves no core dump with secrets in it.
pub fn keep_memory_private() {
    // SAFETY: PR_SET_DUMPABLE with 0 has no pointer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!("could not mark the process non-dumpable");
    }
}

/// The user command steps run as: as root, `nobody` (or `COMMAND_RUN_AS`), so that a step cannot
/// read the server's environment, memory or files; `COMMAND_RUN_AS=root` keeps root, on purpose.
/// Not as root, the server's own user (another one cannot be switched to).
pub fn command_user(config: &Config) -> Result<Option<RunAs>, StartError> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match config.runs.command_run_as.as_deref() {
        Some("root") if root => {
            tracing::warn!(
                "COMMAND_RUN_AS=root: command steps run as root and can read the server's secrets"
            );
            Ok(None)
        }
        Some(name) if root => RunAs::lookup(name).map(Some).map_err(StartError::RunAs),
        None if root => RunAs::lookup("nobody").map(Some).map_err(|e| {
            StartError::RunAs(format!(
                "{e}; name an unprivileged user, or root on purpose"
            ))
        }),
        Some(name) => {
            let own = RunAs::lookup(name).map_err(StartError::RunAs)?;
            // SAFETY: getuid has no preconditions.
            if own.uid == unsafe { libc::getuid() } {
                Ok(None)
            } else {
                Err(StartError::RunAs(format!(
                    "{name:?} needs the server to run as root (it runs as uid {})",
                    unsafe { libc::getuid() }
                )))
            }
        }
        None => Ok(None),
    }
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
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    let server_url = configured_server_url(&config);
    build_state_at(config, server_url).await
}

/// Where the server keeps what outlives it.
struct Stores {
    audit: Arc<dyn AuditStore>,
    /// The runs, queue and approvals shared with the other instances on the same database.
    cluster: Option<Arc<Cluster>>,
    api_keys: Arc<dyn auth::apikey::ApiKeyStore>,
}

/// The stores: with `DATABASE_URL`, the audit chain, the run state and the API keys in PostgreSQL,
/// on one pool and shared by every instance; else the JSONL log and the key file of this server.
/// The audit trail is always kept: with governance disabled, ungoverned runs are on it as such.
async fn open_stores(config: &Config, metrics: &Metrics) -> Result<Stores, StartError> {
    let mut options = audit_options(&config.audit)?;
    options.metrics = metrics.audit.clone();
    let Some(database) = &config.server.database else {
        let store = AuditLog::open_with(&config.audit.log_path, options)?;
        return Ok(Stores {
            audit: Arc::new(store),
            cluster: None,
            api_keys: auth::apikey::open_store(&config.api_keys, None),
        });
    };
    let pool = db::open(database).await?;
    let instance = database.instance_id.clone();
    let options = PgStoreOptions::from_audit(&options, database.timeout);
    let store = PgAuditStore::open(pool.clone(), instance.clone(), options).await?;
    tracing::info!(%instance, "audit store: postgresql (instance {instance})");
    let api_keys =
        auth::apikey::open_store(&config.api_keys, Some((pool.clone(), database.timeout)));
    tracing::info!("API keys: postgresql (table api_keys)");
    if config.api_keys.path.exists() {
        tracing::warn!(
            path = %config.api_keys.path.display(),
            "API keys: with DATABASE_URL the key file is not read and its keys are not accepted; \
             create them again with `sustainbot apikey create` against the database"
        );
    }
    Ok(Stores {
        audit: Arc::new(store),
        cluster: Some(Cluster::new(pool, instance, database.lease)),
        api_keys,
    })
}

/// [`build_state`] for a server whose base URL is `server_url`.
async fn build_state_at(config: Config, server_url: String) -> Result<AppState, StartError> {
    let metrics = Arc::new(Metrics::new());
    let Stores {
        audit,
        cluster,
        api_keys,
    } = open_stores(&config, &metrics).await?;
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
    let run_as = command_user(&config)?;
    let services = Services {
        run_as,
        http: Default::default(),
        llm,
        phrases: Arc::clone(&phrases),
        openclaw_url: config.runs.openclaw_url.clone(),
        server_url,
    };
    tracing::info!(count = workflows.len(), dir = %config.runs.workflows_dir.display(), "workflows loaded");
    let policy = Arc::new(load_policy(&config)?);
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
            max_parameter_bytes: config.runs.max_parameter_bytes,
        },
        !config.server.governance_enabled,
    )
    .with_policy(policy);
    let gate = match cluster {
        Some(cluster) => gate.with_cluster(cluster),
        None => gate,
    };
    let slack = Arc::new(
        Slack::new(&config.slack, gate.clone(), Arc::clone(&metrics)).map_err(StartError::Slack)?,
    );
    gate.listen(Arc::clone(&slack.notifier) as Arc<dyn pipeline::Listener>);
    let api_keys = auth::apikey::ApiKeys::new(api_keys, Arc::clone(gate.audit()));
    let identity_provider = match &config.auth.identity {
        Some(settings) => {
            let provider =
                auth::IdentityProvider::new(settings.clone()).map_err(StartError::Identity)?;
            // The policy file's `groups` over JWT_GROUP_ROLES, now and after every reload.
            provider.follow_policy(gate.policy_store());
            Some(provider)
        }
        None => None,
    };
    Ok(AppState::new(Shared {
        api_keys,
        identity_provider,
        rate_limits: http::RateLimits::new(&config.server.http),
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

/// The policy file (`POLICY_PATH`), which must load for the server to start, or the built-in
/// rules; either way the log says which is in force.
fn load_policy(config: &Config) -> Result<PolicyStore, StartError> {
    let Some(path) = &config.runs.policy_path else {
        tracing::info!("no POLICY_PATH: the built-in roles decide who may do what");
        return Ok(PolicyStore::built_in());
    };
    let store = PolicyStore::load(path).map_err(StartError::Policy)?;
    if let Some(status) = store.status() {
        tracing::info!(
            path = %status.path.display(),
            rules = status.rules,
            sha256 = status.sha256,
            "policy in force"
        );
    }
    Ok(store)
}

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
        let state = build_state_at(config, server_url(bound)).await?;
        // The provider's keys, fetched before the first request (bounded; a failure is logged).
        if let Some(provider) = &state.identity_provider {
            provider.start().await;
        }
        // The keys as stored, and their creations and revocations not yet on the trail recorded,
        // before the first request.
        state.api_keys.refresh().await?;
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

    /// Serves until `shutdown` completes, then shuts down within the grace period (see
    /// [`Application::run`]).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stops = futures_util::stream::once(shutdown).chain(futures_util::stream::pending());
        self.run(Box::pin(stops)).await;
    }

    /// Serves until the first of `stops` (see [`stop_requests`]), then shuts down: the listener
    /// and the connections without a request in progress close, the requests and runs in progress
    /// share the grace period, what is left is cancelled on the record, the audit log closes. A
    /// second item of `stops` cancels what is left at once. See `shutdown.rs`.
    pub async fn run(self, mut stops: impl Stream<Item = ()> + Unpin + Send) {
        let state = self.state;
        tokio::spawn(watch_workflows(state.gate.clone()));
        tokio::spawn(expire_approvals(state.gate.clone()));
        if let Some(cluster) = state.gate.cluster() {
            cluster.start_listening();
            state.gate.answer_notices();
            tokio::spawn(every_second(state.gate.clone(), |gate| async move {
                gate.heartbeat_shared().await
            }));
            tokio::spawn(every_second(state.gate.clone(), |gate| async move {
                gate.sweep_shared().await
            }));
        }
        tokio::spawn(state.api_keys.clone().watch());
        let api_keys = state.api_keys.clone();
        let limits = http::connections::Limits::from(&state.config.server.http);
        let server = http::connections::serve(self.listener, http::service(state.clone()), limits);
        stops.next().await;
        tracing::info!("shutting down");
        let shutdown = shutdown::Shutdown {
            gate: state.gate.clone(),
            slack: Arc::clone(&state.slack),
            server,
            grace: std::time::Duration::from_secs(state.config.server.shutdown_grace_seconds),
        };
        drop(state);
        shutdown.run(stops).await;
        api_keys.flush_uses().await;
    }
}

/// Calls `beat` every second (a late beat is not made up for), with a shared store: the heartbeat
/// and the takeover each in a task of their own, so that a slow takeover never delays a renewal.
async fn every_second<F, Fut>(gate: Gate, beat: F)
where
    F: Fn(Gate) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        beat(gate.clone()).await;
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

/// Reloads the workflows and the policy file when their files change (checked every 2 s), and
/// both on SIGHUP.
async fn watch_workflows(gate: Gate) {
    // Which of the two changed: (workflows, policy).
    let changed = |gate: Gate| async move {
        tokio::task::spawn_blocking(move || {
            (gate.workflows().changed(), gate.policy_store().changed())
        })
        .await
        .unwrap_or((false, false))
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
        let (reason, (workflows, policy)) = tokio::select! {
            _ = tick.tick() => {
                match changed(gate.clone()).await {
                    (false, false) => continue,
                    which => ("files changed", which),
                }
            }
            Some(()) = hup => ("SIGHUP", (true, true)),
        };
        let reloading = gate.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            if workflows {
                reloading.workflows().reload();
            }
            if policy {
                // The store logs what the reload did (and keeps the policy when the file is bad).
                let _ = reloading.policy_store().reload();
            }
        })
        .await;
        if reloaded.is_ok() && workflows {
            tracing::info!(reason, count = gate.workflows().len(), "workflows reloaded");
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    stop_requests().next().await;
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

//! Typed configuration, in sections, read once from one snapshot of the environment (after `.env`)
//! and the command line, and validated as a whole so one start reports every mistake. `serve` reads
//! every section; each subcommand reads only the sections it needs (an auditor verifying a log
//! needs no `JWT_SECRET`).

mod apikeys;
mod database;
mod http;
mod identity;
mod observability;
mod secret;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use jsonwebtoken::Algorithm;

pub use apikeys::ApiKeysConfig;
pub use database::{default_instance_id, DatabaseConfig};
pub use http::HttpConfig;
pub use observability::{JsonLog, LoggingConfig, TracesConfig, DEFAULT_JSON_LOG_PATH};
pub use secret::Secret;

use crate::audit::FsyncMode;
use crate::auth;

/// What the command line may override; everything else comes from the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Development mode: a throwaway JWT secret when none (or a weak one) is set, and Slack requests
    /// accepted unsigned when no signing secret is set. Never for production.
    pub dev: bool,
}

/// The validated configuration of a server.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub runs: RunsConfig,
    pub llm: LlmConfig,
    pub logging: LoggingConfig,
    pub slack: SlackConfig,
    pub api_keys: ApiKeysConfig,
    /// What reading the configuration found worth a warning; logged once logging is up (the
    /// configuration is read before it, since it says how to log).
    pub warnings: Vec<String>,
}

/// Where and how the server listens and governs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub dev: bool,
    /// `false` opens the ungoverned path (development only).
    pub governance_enabled: bool,
    /// `GET /metrics` answers.
    pub prometheus_enabled: bool,
    /// At shutdown, how long running work may finish before it is cancelled.
    pub shutdown_grace_seconds: u64,
    /// The connection layer's timeouts and cap (`HTTP_*`).
    pub http: HttpConfig,
    /// The prescriptive-language phrases, one per line (the built-in list when `None`).
    pub prescriptive_phrases_path: Option<PathBuf>,
    /// `DATABASE_URL` and its pool: PostgreSQL instead of the embedded JSONL store, shared by
    /// several instances.
    pub database: Option<DatabaseConfig>,
}

/// How tokens are checked (and, for `sustainbot token`, minted).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwt_secret: Secret,
    /// True when dev mode made the secret for this process.
    pub jwt_secret_generated: bool,
    pub jwt_algorithm: Algorithm,
    /// Tokens from an identity provider too (`JWT_ISSUER`, `JWT_JWKS_URL` or
    /// `JWT_PUBLIC_KEY_FILE`); see `config/identity.rs`.
    pub identity: Option<crate::auth::provider::ProviderSettings>,
}

/// The audit trail's file, durability, checkpoints, rotation and retention.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub log_path: PathBuf,
    pub fsync: FsyncMode,
    /// Private key file for signed checkpoints (`sustainbot audit keygen`); unsigned when `None`.
    pub signing_key: Option<PathBuf>,
    /// A checkpoint every this many records (0: only on the timer and at shutdown).
    pub checkpoint_every: u64,
    /// A checkpoint (when anything is new) and a retention pass this often, in seconds.
    pub checkpoint_seconds: u64,
    /// Rotate the active audit file at this size in bytes (0: never by size).
    pub segment_max_bytes: u64,
    /// Rotate the active audit file when the UTC day changes.
    pub rotate_daily: bool,
    /// Remove whole segments older than this many days (0: keep forever).
    pub retention_days: u32,
}

/// The workflows, who may do what with them, and the limits of their runs.
#[derive(Debug, Clone)]
pub struct RunsConfig {
    pub workflows_dir: PathBuf,
    /// `POLICY_PATH`: the roles policy (YAML, `docs/identity.md`, "Roles policy"), reloaded with the workflows;
    /// the built-in rules when `None`.
    pub policy_path: Option<PathBuf>,
    /// Runs that may execute at once.
    pub workers: usize,
    /// Runs that may wait for a worker; beyond that, 429.
    pub queue: usize,
    /// Runs that may wait for approval at once; beyond that, 429.
    pub approvals_max: usize,
    /// `RUN_MAX_PARAMETER_BYTES`: the most bytes of JSON a run's parameters may take.
    pub max_parameter_bytes: usize,
    /// Where `openclaw` steps are sent.
    pub openclaw_url: String,
    /// `COMMAND_RUN_AS`: the user command steps run as. Unset: `nobody` when the server runs as
    /// root, the server's own user otherwise; `root` must be said explicitly.
    pub command_run_as: Option<String>,
}

/// The model `llm` steps ask.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub model: String,
    pub host: String,
    pub port: u16,
    /// `LLM_API=openai`: an OpenAI-compatible server at `LLM_HOST` (default: Ollama).
    pub api_openai: bool,
    /// Bearer key for an OpenAI-compatible server.
    pub api_key: Option<Secret>,
}

/// Slack: credentials, who the users are, where messages go.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub signing_secret: Option<Secret>,
    /// For notifications (kept secret: the URL is the credential).
    pub webhook_url: Option<Secret>,
    /// `SLACK_BOT_TOKEN` (`xoxb-...`): `chat.postMessage`, `chat.update`, `users.info`, `views.open`.
    pub bot_token: Option<Secret>,
    /// `SLACK_USERS_FILE`: Slack user id -> accountable human and role (JSON or YAML).
    pub users_file: Option<PathBuf>,
    /// `SLACK_DEFAULT_ROLE`: the role of a user not in the file, looked up with `users.info`.
    pub default_role: Option<String>,
    /// `SLACK_APPROVALS_CHANNEL`: where approval requests are posted (with the bot token).
    pub approvals_channel: Option<String>,
    /// `SLACK_API_URL`: the Web API's base (`https://slack.com/api`).
    pub api_url: String,
    /// `SLACK_NOTIFY`: which runs' completions go to the webhook.
    pub notify: Notify,
    /// `SLACK_RESPONSE_TYPE`: whether results are `ephemeral` (default) or `in_channel`.
    pub in_channel: bool,
}

/// Which completions are posted to `SLACK_WEBHOOK_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    All,
    Failures,
    None,
}

/// Everything wrong with the configuration, one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads variables through one lookup and gathers every problem and warning.
pub struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Reader<'a> {
        Reader {
            lookup,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// A variable's value, trimmed; `None` when unset or blank.
    fn text(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A secret's value exactly as set (its spaces are part of it); `None` when unset or empty.
    /// `NAME_FILE` names a file holding it instead (the container-secrets convention: the secret
    /// need never be in the environment); one final line break is not part of it.
    fn secret(&mut self, name: &str) -> Option<Secret> {
        let file_name = format!("{name}_FILE");
        let direct = (self.lookup)(name).filter(|v| !v.is_empty());
        match (self.text(&file_name), direct) {
            (None, direct) => direct.map(Secret::new),
            (Some(_), Some(_)) => {
                self.problems
                    .push(format!("set {name} or {file_name}, not both"));
                None
            }
            (Some(path), None) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let value = text
                        .strip_suffix("\r\n")
                        .or_else(|| text.strip_suffix('\n'))
                        .unwrap_or(&text);
                    Some(value.to_owned())
                        .filter(|v| !v.is_empty())
                        .map(Secret::new)
                }
                Err(e) => {
                    self.problems.push(format!("{file_name} {path}: {e}"));
                    None
                }
            },
        }
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.text(name) {
            None => default,
            Some(v) => parse_bool(&v).unwrap_or_else(|| {
                self.problems
                    .push(format!("{name} must be true or false, not '{v}'"));
                default
            }),
        }
    }

    fn count(&mut self, name: &str, default: u64) -> u64 {
        match self.text(name) {
            None => default,
            Some(v) => v.parse::<u64>().unwrap_or_else(|_| {
                self.problems
                    .push(format!("{name} must be a whole number, not '{v}'"));
                default
            }),
        }
    }

    fn size(&mut self, name: &str, default: usize) -> usize {
        usize::try_from(self.count(name, default as u64)).unwrap_or(default)
    }

    fn port(&mut self, name: &str, default: u16) -> u16 {
        match self.text(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.problems
                    .push(format!("{name} must be a port number (0-65535), not '{v}'"));
                default
            }),
        }
    }

    fn path(&self, name: &str, default: &str) -> PathBuf {
        self.text(name).unwrap_or_else(|| default.to_owned()).into()
    }

    /// What was read, or every problem found.
    pub fn finish<T>(self, value: T) -> Result<(T, Vec<String>), ConfigError> {
        if self.problems.is_empty() {
            Ok((value, self.warnings))
        } else {
            Err(ConfigError(self.problems))
        }
    }
}

impl Config {
    /// Reads every section through any variable lookup (tests pass a map).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut reader = Reader::new(&lookup);
        let dev = overrides.dev;
        let config = Config {
            server: ServerConfig::read(&mut reader, overrides),
            auth: AuthConfig::read(&mut reader, dev),
            audit: AuditConfig::read(&mut reader, dev),
            runs: RunsConfig::read(&mut reader),
            llm: LlmConfig::read(&mut reader),
            logging: LoggingConfig::read(&mut reader),
            slack: SlackConfig::read(&mut reader),
            api_keys: ApiKeysConfig::read(&mut reader),
            warnings: Vec::new(),
        };
        let (mut config, warnings) = reader.finish(config)?;
        config.warnings = warnings;
        Ok(config)
    }
}

/// Reads one section through `lookup` (for the subcommands that need only it).
pub fn section<T>(
    lookup: &dyn Fn(&str) -> Option<String>,
    read: impl FnOnce(&mut Reader<'_>) -> T,
) -> Result<T, ConfigError> {
    let mut reader = Reader::new(lookup);
    let value = read(&mut reader);
    reader.finish(value).map(|(value, _)| value)
}

impl ServerConfig {
    pub fn read(reader: &mut Reader<'_>, overrides: Overrides) -> ServerConfig {
        let governance_enabled = reader.flag("GOVERNANCE_ENABLED", true);
        if !governance_enabled && !overrides.dev {
            reader.warnings.push(
                "GOVERNANCE_ENABLED=false: the ungoverned path is open (development only)".into(),
            );
        }
        let database = DatabaseConfig::read(reader);
        ServerConfig {
            host: overrides
                .host
                .or_else(|| reader.text("SUSTAINBOT_HOST"))
                // Dev mode prints a working admin token: it listens on this machine only unless
                // told otherwise.
                .unwrap_or_else(|| {
                    if overrides.dev {
                        "127.0.0.1"
                    } else {
                        "0.0.0.0"
                    }
                    .into()
                }),
            port: match overrides.port {
                Some(port) => port,
                None => reader.port("SUSTAINBOT_PORT", 5000),
            },
            dev: overrides.dev,
            governance_enabled,
            prometheus_enabled: reader.flag("PROMETHEUS_ENABLED", true),
            shutdown_grace_seconds: reader.count("SHUTDOWN_GRACE_SECONDS", 30),
            http: HttpConfig::read(reader),
            prescriptive_phrases_path: reader.text("PRESCRIPTIVE_PHRASES_PATH").map(PathBuf::from),
            database,
        }
    }
}

impl AuthConfig {
    /// Outside dev mode a missing, placeholder or short `JWT_SECRET` is a problem; in dev mode it
    /// is replaced by a throwaway secret for this process.
    pub fn read(reader: &mut Reader<'_>, dev: bool) -> AuthConfig {
        let algorithm = reader
            .text("JWT_ALGORITHM")
            .unwrap_or_else(|| "HS256".into());
        let jwt_algorithm = auth::parse_algorithm(&algorithm).unwrap_or_else(|e| {
            reader.problems.push(e.to_string());
            Algorithm::HS256
        });
        let identity = identity::read(reader, dev);
        let raw = reader.secret("JWT_SECRET");
        let (jwt_secret, jwt_secret_generated) = match auth::check_secret(
            raw.as_ref().map(Secret::expose),
        ) {
            Ok(secret) => (Secret::new(secret), false),
            // With an identity provider the shared secret is optional: without one, no HMAC
            // token verifies (the secret is random and never shown).
            Err(auth::KeyError::Missing) if identity.is_some() => {
                reader.warnings.push(
                    "JWT_SECRET is not set: only the identity provider's tokens are accepted"
                        .into(),
                );
                (Secret::new(random_secret()), true)
            }
            Err(e) if dev => {
                if raw.is_some() {
                    reader.warnings.push(format!(
                            "dev mode: ignoring the configured JWT_SECRET ({e}); using a throwaway secret"
                        ));
                }
                (Secret::new(random_secret()), true)
            }
            Err(e) => {
                reader.problems.push(e.to_string());
                (Secret::new(String::new()), false)
            }
        };
        AuthConfig {
            jwt_secret,
            jwt_secret_generated,
            jwt_algorithm,
            identity,
        }
    }
}

impl AuditConfig {
    /// `AUDIT_LOG_PATH` alone, for the commands that only read a log.
    pub fn read_log_path(reader: &mut Reader<'_>) -> PathBuf {
        reader.path("AUDIT_LOG_PATH", "./logs/audit.jsonl")
    }

    pub fn read(reader: &mut Reader<'_>, dev: bool) -> AuditConfig {
        let fsync = match reader.text("AUDIT_FSYNC").map(|v| v.parse::<FsyncMode>()) {
            None => FsyncMode::Always,
            Some(Ok(mode)) => mode,
            Some(Err(e)) => {
                reader.problems.push(e);
                FsyncMode::Always
            }
        };
        if fsync == FsyncMode::Never && !dev {
            reader.warnings.push(
                "AUDIT_FSYNC=never: acknowledged audit records can be lost on power failure".into(),
            );
        }
        AuditConfig {
            log_path: AuditConfig::read_log_path(reader),
            fsync,
            // The key is a file already; AUDIT_SIGNING_KEY_FILE names it too, as the other secrets.
            signing_key: reader
                .text("AUDIT_SIGNING_KEY")
                .or_else(|| reader.text("AUDIT_SIGNING_KEY_FILE"))
                .map(PathBuf::from),
            checkpoint_every: reader.count("AUDIT_CHECKPOINT_EVERY", 1000),
            checkpoint_seconds: reader.count("AUDIT_CHECKPOINT_SECONDS", 60).max(1),
            segment_max_bytes: reader.count("AUDIT_SEGMENT_MAX_BYTES", 64 * 1024 * 1024),
            rotate_daily: reader.flag("AUDIT_ROTATE_DAILY", true),
            retention_days: u32::try_from(reader.count("AUDIT_RETENTION_DAYS", 90))
                .unwrap_or(u32::MAX),
        }
    }
}

impl RunsConfig {
    /// `WORKFLOWS_DIR` alone, for the commands that only read definition files.
    pub fn read_workflows_dir(reader: &mut Reader<'_>) -> PathBuf {
        reader.path("WORKFLOWS_DIR", "./workflows")
    }

    /// `POLICY_PATH` alone, for the commands that only read the policy file.
    pub fn read_policy_path(reader: &mut Reader<'_>) -> Option<PathBuf> {
        reader.text("POLICY_PATH").map(PathBuf::from)
    }

    pub fn read(reader: &mut Reader<'_>) -> RunsConfig {
        RunsConfig {
            workflows_dir: RunsConfig::read_workflows_dir(reader),
            policy_path: RunsConfig::read_policy_path(reader),
            workers: reader.size("RUN_WORKERS", 32).max(1),
            queue: reader.size("RUN_QUEUE", 256),
            approvals_max: reader.size("RUN_APPROVALS_MAX", 10_000),
            max_parameter_bytes: reader.size("RUN_MAX_PARAMETER_BYTES", 64 * 1024).max(2),
            openclaw_url: reader
                .text("OPENCLAW_URL")
                .unwrap_or_else(|| "http://localhost:8080".into()),
            command_run_as: reader.text("COMMAND_RUN_AS"),
        }
    }
}

impl LlmConfig {
    pub fn read(reader: &mut Reader<'_>) -> LlmConfig {
        let api_openai = match reader.text("LLM_API").map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(api) if api == "ollama" => false,
            Some(api) if api == "openai" => true,
            Some(other) => {
                reader
                    .problems
                    .push(format!("LLM_API must be ollama or openai, not '{other}'"));
                false
            }
        };
        LlmConfig {
            model: reader.text("LLM_MODEL").unwrap_or_else(|| "llama2".into()),
            host: reader
                .text("LLM_HOST")
                .unwrap_or_else(|| "localhost".into()),
            port: reader.port("LLM_PORT", 11434),
            api_openai,
            api_key: reader.secret("LLM_API_KEY"),
        }
    }
}

impl SlackConfig {
    pub fn read(reader: &mut Reader<'_>) -> SlackConfig {
        let notify = match reader.text("SLACK_NOTIFY").map(|v| v.to_ascii_lowercase()) {
            None => Notify::All,
            Some(v) if v == "all" => Notify::All,
            Some(v) if v == "failures" => Notify::Failures,
            Some(v) if v == "none" => Notify::None,
            Some(other) => {
                reader.problems.push(format!(
                    "SLACK_NOTIFY must be all, failures or none, not '{other}'"
                ));
                Notify::All
            }
        };
        let in_channel = match reader
            .text("SLACK_RESPONSE_TYPE")
            .map(|v| v.to_ascii_lowercase())
        {
            None => false,
            Some(v) if v == "ephemeral" => false,
            Some(v) if v == "in_channel" => true,
            Some(other) => {
                reader.problems.push(format!(
                    "SLACK_RESPONSE_TYPE must be ephemeral or in_channel, not '{other}'"
                ));
                false
            }
        };
        let default_role = reader.text("SLACK_DEFAULT_ROLE");
        let bot_token = reader.secret("SLACK_BOT_TOKEN");
        if default_role.is_some() && bot_token.is_none() {
            reader.warnings.push(
                "SLACK_DEFAULT_ROLE is set without SLACK_BOT_TOKEN: users not in SLACK_USERS_FILE cannot be looked up and are refused".into(),
            );
        }
        SlackConfig {
            signing_secret: reader.secret("SLACK_SIGNING_SECRET"),
            webhook_url: reader.secret("SLACK_WEBHOOK_URL"),
            bot_token,
            users_file: reader.text("SLACK_USERS_FILE").map(PathBuf::from),
            default_role,
            approvals_channel: reader.text("SLACK_APPROVALS_CHANNEL"),
            api_url: reader
                .text("SLACK_API_URL")
                .unwrap_or_else(|| "https://slack.com/api".into()),
            notify,
            in_channel,
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// 32 random bytes, hex-encoded: a secret for this process only.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // Without an OS random source, fall back to two v4 UUIDs (themselves random).
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        bytes[..16].copy_from_slice(a.as_bytes());
        bytes[16..].copy_from_slice(b.as_bytes());
    }
    hex::encode(bytes)
}

//! Typed configuration, read once at start-up from the environment (after `.env`) and the command
//! line, and validated as a whole so one start reports every mistake.

use std::fmt;
use std::path::PathBuf;

use jsonwebtoken::Algorithm;

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

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub dev: bool,
    pub jwt_secret: String,
    /// True when dev mode made the secret for this process.
    pub jwt_secret_generated: bool,
    pub jwt_algorithm: Algorithm,
    pub governance_enabled: bool,
    pub audit_log_path: PathBuf,
    pub audit_fsync: FsyncMode,
    /// Private key file for signed checkpoints (`sustainbot audit keygen`); unsigned when `None`.
    pub audit_signing_key: Option<PathBuf>,
    /// A checkpoint every this many records (0: only on the timer and at shutdown).
    pub audit_checkpoint_every: u64,
    /// A checkpoint (when anything is new) and a retention pass this often, in seconds.
    pub audit_checkpoint_seconds: u64,
    /// Rotate the active audit file at this size in bytes (0: never by size).
    pub audit_segment_max_bytes: u64,
    /// Rotate the active audit file when the UTC day changes.
    pub audit_rotate_daily: bool,
    /// Remove whole segments older than this many days (0: keep forever).
    pub audit_retention_days: u32,
    /// Runs that may execute at once.
    pub run_workers: usize,
    /// At shutdown, how long running work may finish before it is cancelled.
    pub shutdown_grace_seconds: u64,
    /// Runs that may wait for a worker; beyond that, 429.
    pub run_queue: usize,
    /// Runs that may wait for approval at once; beyond that, 429.
    pub run_approvals_max: usize,
    pub workflows_dir: PathBuf,
    pub slack_signing_secret: Option<String>,
    pub slack_webhook_url: Option<String>,
    pub llm_model: String,
    pub llm_host: String,
    pub llm_port: u16,
    /// `LLM_API=openai`: an OpenAI-compatible server at `LLM_HOST` (default: Ollama).
    pub llm_api_openai: bool,
    /// Bearer key for an OpenAI-compatible server.
    pub llm_api_key: Option<String>,
    pub openclaw_url: String,
    pub prometheus_enabled: bool,
    pub json_logging_enabled: bool,
    pub json_log_path: Option<PathBuf>,
    pub database_url: Option<String>,
    pub prescriptive_phrases_path: Option<PathBuf>,
}

impl fmt::Debug for Config {
    // Secrets and the database URL (which may hold a password) never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dev", &self.dev)
            .field("jwt_secret", &"<redacted>")
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("governance_enabled", &self.governance_enabled)
            .field("audit_log_path", &self.audit_log_path)
            .field("audit_fsync", &self.audit_fsync)
            .field("audit_signing_key", &self.audit_signing_key)
            .field("audit_retention_days", &self.audit_retention_days)
            .field("workflows_dir", &self.workflows_dir)
            .field(
                "slack_signing_secret",
                &self.slack_signing_secret.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "llm",
                &format_args!("{} at {}:{}", self.llm_model, self.llm_host, self.llm_port),
            )
            .field("openclaw_url", &self.openclaw_url)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
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

impl Config {
    /// Reads the process environment (call `dotenvy::dotenv()` first to honour `.env`).
    pub fn from_env(overrides: Overrides) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok(), overrides)
    }

    /// Builds the configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let flag = |name: &str, default: bool, problems: &mut Vec<String>| match var(name) {
            None => default,
            Some(v) => parse_bool(&v).unwrap_or_else(|| {
                problems.push(format!("{name} must be true or false, not '{v}'"));
                default
            }),
        };
        let governance_enabled = flag("GOVERNANCE_ENABLED", true, &mut problems);
        let prometheus_enabled = flag("PROMETHEUS_ENABLED", true, &mut problems);
        let json_logging_enabled = flag("JSON_LOGGING_ENABLED", false, &mut problems);
        let audit_rotate_daily = flag("AUDIT_ROTATE_DAILY", true, &mut problems);
        let count = |name: &str, default: u64, problems: &mut Vec<String>| match var(name) {
            None => default,
            Some(v) => v.parse::<u64>().unwrap_or_else(|_| {
                problems.push(format!("{name} must be a whole number, not '{v}'"));
                default
            }),
        };
        let audit_checkpoint_every = count("AUDIT_CHECKPOINT_EVERY", 1000, &mut problems);
        let audit_checkpoint_seconds = count("AUDIT_CHECKPOINT_SECONDS", 60, &mut problems).max(1);
        let audit_segment_max_bytes =
            count("AUDIT_SEGMENT_MAX_BYTES", 64 * 1024 * 1024, &mut problems);
        let audit_retention_days =
            u32::try_from(count("AUDIT_RETENTION_DAYS", 90, &mut problems)).unwrap_or(u32::MAX);

        let port = match overrides.port {
            Some(port) => port,
            None => parse_number(
                var("SUSTAINBOT_PORT"),
                "SUSTAINBOT_PORT",
                5000,
                &mut problems,
            ),
        };
        let llm_port = parse_number(var("LLM_PORT"), "LLM_PORT", 11434, &mut problems);

        let jwt_algorithm =
            match auth::parse_algorithm(&var("JWT_ALGORITHM").unwrap_or_else(|| "HS256".into())) {
                Ok(alg) => alg,
                Err(e) => {
                    problems.push(e.to_string());
                    Algorithm::HS256
                }
            };
        // The raw value, untrimmed: a secret's spaces are part of it.
        let raw_secret = lookup("JWT_SECRET").filter(|s| !s.is_empty());
        let (jwt_secret, jwt_secret_generated) = match auth::check_secret(raw_secret.as_deref()) {
            Ok(secret) => (secret.to_owned(), false),
            Err(_) if overrides.dev => (random_secret(), true),
            Err(e) => {
                problems.push(e.to_string());
                (String::new(), false)
            }
        };
        if jwt_secret_generated {
            if let Some(Err(e)) = raw_secret.as_deref().map(|s| auth::check_secret(Some(s))) {
                tracing::warn!(
                    "dev mode: ignoring the configured JWT_SECRET ({e}); using a throwaway secret"
                );
            }
        }

        let audit_fsync = match var("AUDIT_FSYNC").map(|v| v.parse::<FsyncMode>()) {
            None => FsyncMode::Always,
            Some(Ok(mode)) => mode,
            Some(Err(e)) => {
                problems.push(e);
                FsyncMode::Always
            }
        };
        if audit_fsync == FsyncMode::Never && !overrides.dev {
            tracing::warn!(
                "AUDIT_FSYNC=never: acknowledged audit records can be lost on power failure"
            );
        }

        let config = Config {
            host: overrides
                .host
                .or_else(|| var("SUSTAINBOT_HOST"))
                .unwrap_or_else(|| "0.0.0.0".into()),
            port,
            dev: overrides.dev,
            jwt_secret,
            jwt_secret_generated,
            jwt_algorithm,
            governance_enabled,
            audit_log_path: var("AUDIT_LOG_PATH")
                .unwrap_or_else(|| "./logs/audit.jsonl".into())
                .into(),
            audit_fsync,
            audit_signing_key: var("AUDIT_SIGNING_KEY").map(PathBuf::from),
            audit_checkpoint_every,
            audit_checkpoint_seconds,
            audit_segment_max_bytes,
            audit_rotate_daily,
            audit_retention_days,
            shutdown_grace_seconds: count("SHUTDOWN_GRACE_SECONDS", 30, &mut problems),
            run_workers: usize::try_from(count("RUN_WORKERS", 32, &mut problems).max(1))
                .unwrap_or(32),
            run_queue: usize::try_from(count("RUN_QUEUE", 256, &mut problems)).unwrap_or(256),
            run_approvals_max: usize::try_from(count("RUN_APPROVALS_MAX", 10_000, &mut problems))
                .unwrap_or(10_000),
            workflows_dir: var("WORKFLOWS_DIR")
                .unwrap_or_else(|| "./workflows".into())
                .into(),
            slack_signing_secret: lookup("SLACK_SIGNING_SECRET").filter(|s| !s.is_empty()),
            slack_webhook_url: var("SLACK_WEBHOOK_URL"),
            llm_model: var("LLM_MODEL").unwrap_or_else(|| "llama2".into()),
            llm_host: var("LLM_HOST").unwrap_or_else(|| "localhost".into()),
            llm_port,
            llm_api_openai: match var("LLM_API").map(|v| v.to_ascii_lowercase()) {
                None => false,
                Some(api) if api == "ollama" => false,
                Some(api) if api == "openai" => true,
                Some(other) => {
                    problems.push(format!("LLM_API must be ollama or openai, not '{other}'"));
                    false
                }
            },
            llm_api_key: lookup("LLM_API_KEY").filter(|k| !k.is_empty()),
            openclaw_url: var("OPENCLAW_URL").unwrap_or_else(|| "http://localhost:8080".into()),
            prometheus_enabled,
            json_logging_enabled,
            json_log_path: var("JSON_LOG_PATH").map(PathBuf::from),
            database_url: var("DATABASE_URL"),
            prescriptive_phrases_path: var("PRESCRIPTIVE_PHRASES_PATH").map(PathBuf::from),
        };
        if !config.governance_enabled && !config.dev {
            tracing::warn!(
                "GOVERNANCE_ENABLED=false: runs are validated but not audited (development only)"
            );
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
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

fn parse_number(
    value: Option<String>,
    name: &str,
    default: u16,
    problems: &mut Vec<String>,
) -> u16 {
    match value {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            problems.push(format!("{name} must be a port number (0-65535), not '{v}'"));
            default
        }),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    fn load(vars: &[(&str, &str)], overrides: Overrides) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned(), overrides)
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = load(&[("JWT_SECRET", GOOD)], Overrides::default()).unwrap();
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.port, 5000);
        assert_eq!(config.jwt_algorithm, Algorithm::HS256);
        assert!(config.governance_enabled);
        assert_eq!(config.audit_log_path, PathBuf::from("./logs/audit.jsonl"));
        assert_eq!(config.workflows_dir, PathBuf::from("./workflows"));
        assert_eq!(
            (
                config.llm_model.as_str(),
                config.llm_host.as_str(),
                config.llm_port
            ),
            ("llama2", "localhost", 11434)
        );
        assert_eq!(config.audit_fsync, FsyncMode::Always);
    }

    #[test]
    fn refuses_to_start_without_a_strong_secret_outside_dev_mode() {
        for vars in [
            vec![],
            vec![("JWT_SECRET", "dev-secret-key-change-in-production")],
            vec![(
                "JWT_SECRET",
                "your-256-bit-secret-key-here-change-in-production",
            )],
            vec![("JWT_SECRET", "too-short")],
        ] {
            let err = load(&vars, Overrides::default()).expect_err("must refuse");
            assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        }
    }

    #[test]
    fn dev_mode_makes_a_throwaway_secret() {
        let config = load(
            &[],
            Overrides {
                dev: true,
                ..Overrides::default()
            },
        )
        .unwrap();
        assert!(config.jwt_secret_generated);
        assert_eq!(config.jwt_secret.len(), 64);
        let again = load(
            &[],
            Overrides {
                dev: true,
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_ne!(config.jwt_secret, again.jwt_secret);
    }

    #[test]
    fn reports_every_bad_variable_at_once() {
        let err = load(
            &[
                ("JWT_SECRET", GOOD),
                ("SUSTAINBOT_PORT", "http"),
                ("GOVERNANCE_ENABLED", "maybe"),
                ("JWT_ALGORITHM", "RS256"),
            ],
            Overrides::default(),
        )
        .expect_err("invalid");
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn flags_override_the_environment() {
        let config = load(
            &[
                ("JWT_SECRET", GOOD),
                ("SUSTAINBOT_PORT", "7000"),
                ("SUSTAINBOT_HOST", "127.0.0.1"),
            ],
            Overrides {
                host: Some("::1".into()),
                port: Some(0),
                dev: false,
            },
        )
        .unwrap();
        assert_eq!((config.host.as_str(), config.port), ("::1", 0));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = load(
            &[
                ("JWT_SECRET", GOOD),
                ("DATABASE_URL", "postgres://u:pw@h/db"),
            ],
            Overrides::default(),
        )
        .unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains(GOOD) && !text.contains("pw@"), "{text}");
    }
}

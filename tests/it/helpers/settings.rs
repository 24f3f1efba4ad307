//! The server's settings as tests set them: one typed method per setting, for the in-process app
//! ([`TestAppBuilder`](super::TestAppBuilder)) and the binary ([`Process`](super::Process)) alike.
//! Each feeds the environment variable the server reads, so the tests do not depend on how the
//! server's `Config` is laid out.

use std::collections::BTreeMap;
use std::path::Path;

/// A server (or command line) about to start, configured through its environment.
pub trait Settings: Sized {
    /// Sets one environment variable; for a one-off, when no typed method below fits.
    fn env(self, key: &str, value: &str) -> Self;

    /// `JWT_SECRET`: the key tokens are signed with.
    fn jwt_secret(self, secret: &str) -> Self {
        self.env("JWT_SECRET", secret)
    }

    /// `GOVERNANCE_ENABLED`.
    fn governance(self, enabled: bool) -> Self {
        self.env("GOVERNANCE_ENABLED", flag(enabled))
    }

    /// `PROMETHEUS_ENABLED`: whether `/metrics` is served.
    fn prometheus(self, enabled: bool) -> Self {
        self.env("PROMETHEUS_ENABLED", flag(enabled))
    }

    /// `WORKFLOWS_DIR`.
    fn workflows_dir(self, dir: &Path) -> Self {
        self.env("WORKFLOWS_DIR", utf8(dir))
    }

    /// `POLICY_PATH`: the roles policy (YAML).
    fn policy(self, path: &Path) -> Self {
        self.env("POLICY_PATH", utf8(path))
    }

    /// `AUDIT_LOG_PATH`: the audit log (a file, or `/dev/full` to make every write fail).
    fn audit_log(self, path: &Path) -> Self {
        self.env("AUDIT_LOG_PATH", utf8(path))
    }

    /// `AUDIT_SIGNING_KEY`: the private key checkpoints are signed with.
    fn signing_key(self, path: &Path) -> Self {
        self.env("AUDIT_SIGNING_KEY", utf8(path))
    }

    /// `AUDIT_CHECKPOINT_EVERY`: a checkpoint after this many records (0: never by count).
    fn checkpoint_every(self, records: u64) -> Self {
        self.env("AUDIT_CHECKPOINT_EVERY", &records.to_string())
    }

    /// `AUDIT_CHECKPOINT_SECONDS`: a checkpoint at least this often.
    fn checkpoint_seconds(self, seconds: u64) -> Self {
        self.env("AUDIT_CHECKPOINT_SECONDS", &seconds.to_string())
    }

    /// `AUDIT_SEGMENT_MAX_BYTES`: the log rotates into a new segment past this size.
    fn segment_max_bytes(self, bytes: u64) -> Self {
        self.env("AUDIT_SEGMENT_MAX_BYTES", &bytes.to_string())
    }

    /// `JSON_LOGGING_ENABLED` and `JSON_LOG_PATH`: the log as JSON lines, to `path`.
    fn json_log(self, path: &Path) -> Self {
        self.env("JSON_LOGGING_ENABLED", "true")
            .env("JSON_LOG_PATH", utf8(path))
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: traces to the collector at `base`, exported every 100 ms.
    fn otlp(self, base: &str) -> Self {
        self.env("OTEL_EXPORTER_OTLP_ENDPOINT", base)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
    }

    /// `RUN_WORKERS`: runs executing at once.
    fn workers(self, workers: usize) -> Self {
        self.env("RUN_WORKERS", &workers.to_string())
    }

    /// `RUN_QUEUE`: runs waiting for a worker before new ones are refused.
    fn queue(self, places: usize) -> Self {
        self.env("RUN_QUEUE", &places.to_string())
    }

    /// `RUN_APPROVALS_MAX`: runs waiting for approval before new ones are refused.
    fn approvals_max(self, runs: usize) -> Self {
        self.env("RUN_APPROVALS_MAX", &runs.to_string())
    }

    /// `SHUTDOWN_GRACE_SECONDS`: how long shutdown waits for running runs before cancelling them.
    fn grace_seconds(self, seconds: u64) -> Self {
        self.env("SHUTDOWN_GRACE_SECONDS", &seconds.to_string())
    }

    /// `HTTP_HEADER_TIMEOUT_SECONDS`: how long a connection may take to send a request's header.
    fn header_timeout(self, seconds: u64) -> Self {
        self.env("HTTP_HEADER_TIMEOUT_SECONDS", &seconds.to_string())
    }

    /// `HTTP_BODY_TIMEOUT_SECONDS`: how long a request may take to send its whole body.
    fn body_timeout(self, seconds: u64) -> Self {
        self.env("HTTP_BODY_TIMEOUT_SECONDS", &seconds.to_string())
    }

    /// `HTTP_IDLE_TIMEOUT_SECONDS`: how long a kept-alive connection may wait for its next request.
    fn idle_timeout(self, seconds: u64) -> Self {
        self.env("HTTP_IDLE_TIMEOUT_SECONDS", &seconds.to_string())
    }

    /// `HTTP_MAX_CONNECTIONS`: connections served at once.
    fn max_connections(self, connections: usize) -> Self {
        self.env("HTTP_MAX_CONNECTIONS", &connections.to_string())
    }

    /// `LLM_HOST` and `LLM_PORT`: the model server, on loopback.
    fn llm_port(self, port: u16) -> Self {
        self.env("LLM_HOST", "127.0.0.1")
            .env("LLM_PORT", &port.to_string())
    }

    /// The model server and OpenClaw on a loopback port where nothing listens: status probes fail
    /// fast instead of finding a stray local service.
    fn nothing_listening(self) -> Self {
        self.llm_port(9).env("OPENCLAW_URL", "http://127.0.0.1:9")
    }

    /// `SLACK_SIGNING_SECRET`.
    fn slack_signing_secret(self, secret: &str) -> Self {
        self.env("SLACK_SIGNING_SECRET", secret)
    }

    /// `SLACK_USERS_FILE`: Slack user id -> accountable human.
    fn slack_users_file(self, path: &Path) -> Self {
        self.env("SLACK_USERS_FILE", utf8(path))
    }

    /// `SLACK_API_URL`, `SLACK_BOT_TOKEN` and `SLACK_WEBHOOK_URL` pointing at a stand-in for Slack.
    fn slack_at(self, base: &str) -> Self {
        self.env("SLACK_API_URL", &format!("{base}/api"))
            .env("SLACK_BOT_TOKEN", "xoxb-test-token")
            .env("SLACK_WEBHOOK_URL", &format!("{base}/webhook"))
    }
}

/// The variables themselves, as the in-process server's `Config::from_lookup` reads them.
impl Settings for BTreeMap<String, String> {
    fn env(mut self, key: &str, value: &str) -> Self {
        self.insert(key.to_owned(), value.to_owned());
        self
    }
}

fn flag(enabled: bool) -> &'static str {
    if enabled {
        "true"
    } else {
        "false"
    }
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

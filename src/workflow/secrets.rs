//! The secrets a step may read, where they come from, and the ones it may never read.

use std::collections::BTreeMap;
use std::fmt;

/// The server's own secrets: no step may read them (a workflow could otherwise send the JWT
/// secret anywhere).
const SERVER_SECRETS: [&str; 9] = [
    "JWT_SECRET",
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "LLM_API_KEY",
    "AUDIT_SIGNING_KEY",
    "DATABASE_URL",
    // The trace collector's credentials.
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
];

/// Why a step may not read the environment variable `name`, if it may not.
pub(super) fn server_secret(name: &str) -> Option<String> {
    SERVER_SECRETS
        .contains(&name)
        .then(|| format!("{name} is the server's own secret; no step may read it"))
}

/// Where a run's secrets come from: the values of `{{ secrets.NAME }}` in `http` steps and of the
/// names in a `command` step's `secrets` list. The runner reads secrets only through its source.
pub trait SecretSource: fmt::Debug + Send + Sync {
    /// The value of the secret `name` if it is set (it may be empty; whoever uses it decides).
    fn secret(&self, name: &str) -> Option<String>;
}

/// The server's process environment, less the server's own secrets (which no step may read, even
/// if a definition that names one were ever loaded).
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn secret(&self, name: &str) -> Option<String> {
        if server_secret(name).is_some() {
            return None;
        }
        std::env::var(name).ok()
    }
}

/// Fixed secrets, by name: for tests, or for an embedder that reads its secrets elsewhere. Shows
/// the names only.
#[derive(Clone, Default)]
pub struct SecretMap(BTreeMap<String, String>);

impl SecretMap {
    /// No secrets.
    pub fn new() -> SecretMap {
        SecretMap::default()
    }

    /// The map with `name` set to `value`.
    pub fn with(mut self, name: &str, value: &str) -> SecretMap {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }
}

impl fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretSource for SecretMap {
    fn secret(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_never_gives_the_servers_own_secrets() {
        // Whatever the test's environment holds, these names read as unset.
        for name in SERVER_SECRETS {
            assert_eq!(EnvSecrets.secret(name), None, "{name}");
        }
        assert_eq!(EnvSecrets.secret("PATH"), std::env::var("PATH").ok());
    }

    #[test]
    fn a_secret_map_shows_its_names_never_its_values() {
        let map = SecretMap::new().with("DEPLOY_TOKEN", "t0ken");
        assert_eq!(map.secret("DEPLOY_TOKEN").as_deref(), Some("t0ken"));
        assert_eq!(map.secret("OTHER"), None);
        assert_eq!(format!("{map:?}"), "{\"DEPLOY_TOKEN\"}");
    }
}

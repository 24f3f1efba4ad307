//! The secrets a step may read, and the ones it may never read.

/// The server's own secrets: no step may read them (a workflow could otherwise send the JWT
/// secret anywhere).
const SERVER_SECRETS: [&str; 4] = [
    "JWT_SECRET",
    "SLACK_SIGNING_SECRET",
    "LLM_API_KEY",
    "AUDIT_SIGNING_KEY",
];

/// Why a step may not read the environment variable `name`, if it may not.
pub(super) fn server_secret(name: &str) -> Option<String> {
    SERVER_SECRETS
        .contains(&name)
        .then(|| format!("{name} is the server's own secret; no step may read it"))
}

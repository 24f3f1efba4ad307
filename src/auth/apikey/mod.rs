//! API keys for machines. A key speaks for its owning human: the principal it authenticates has
//! the owner's email as its actor (so the AIM actor must be the owner) and the key's role, and
//! names the key (`api_key`) so every use is on the audit trail under both.
//!
//! A key is `sbk_<id>_<secret>`: the id (16 hex digits) finds the stored key in O(1) and is public
//! (lists, the audit trail); the secret is 32 random bytes (64 hex digits). Only a hash is stored:
//! SHA-256 of `sustainbot-apikey-v1\n` and the whole key. A slow password hash (argon2, bcrypt)
//! protects low-entropy secrets people choose; 256 random bits cannot be guessed however fast the
//! hash is, so one SHA-256 is as strong and costs microseconds per request. Stored and presented
//! hashes are compared in constant time.

mod file;
mod postgres;
mod registry;
mod store;

pub use file::FileKeyStore;
pub use postgres::PgKeyStore;
pub use registry::{ApiKeys, ManageError, Refusal};
pub use store::{ApiKeyStore, KeyEvent, KeyStoreError, StoreVersion};

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Forbidden, Principal, Role};
use crate::config::Secret;

/// What every key begins with: a bearer value starting with it is a key, not a JWT.
pub const PREFIX: &str = "sbk_";

/// Domain separation of the stored hashes.
const HASH_DOMAIN: &[u8] = b"sustainbot-apikey-v1\n";

/// Hex digits of an id (8 random bytes).
const ID_HEX: usize = 16;
/// Hex digits of a secret (32 random bytes).
const SECRET_HEX: usize = 64;

/// The most days a key may live.
pub const MAX_EXPIRES_DAYS: u32 = 3650;
/// The most workflow patterns a key may carry, and the longest name.
const MAX_PATTERNS: usize = 64;
const MAX_NAME_CHARS: usize = 100;

/// A key's public id: 16 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// An id as written in a key, a list or a path; `None` unless exactly 16 lower-case hex digits.
    pub fn parse(text: &str) -> Option<KeyId> {
        (text.len() == ID_HEX && text.bytes().all(is_lower_hex)).then(|| KeyId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = String;

    fn try_from(text: String) -> Result<KeyId, String> {
        KeyId::parse(&text).ok_or_else(|| format!("{text:?} is not an API key id (16 hex digits)"))
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

/// The id of a presented key, when it has a key's shape (`sbk_`, 16 hex digits, `_`, 64 hex
/// digits); `None` for anything else. Nothing is looked up.
pub fn presented_id(key: &str) -> Option<KeyId> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let shaped = secret.len() == SECRET_HEX && secret.bytes().all(is_lower_hex);
    shaped.then(|| KeyId::parse(id)).flatten()
}

/// The stored hash of a key: `sha256:` and the hex SHA-256 of the domain prefix and the key.
pub fn hash(key: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(HASH_DOMAIN);
    digest.update(key.as_bytes());
    format!("sha256:{}", hex::encode(digest.finalize()))
}

/// Whether `presented` is the key whose stored hash is `stored` (constant time in the hash).
pub fn matches(stored: &str, presented: &str) -> bool {
    bool::from(stored.as_bytes().ct_eq(hash(presented).as_bytes()))
}

/// A new key's text, shown once to its creator: `sbk_<id>_<secret>`.
fn generate() -> Result<(KeyId, Secret), KeyStoreError> {
    let mut bytes = [0u8; 8 + 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| KeyStoreError::Io(format!("no random bytes from the system: {e}")))?;
    let id = KeyId(hex::encode(&bytes[..8]));
    let key = Secret::new(format!("{PREFIX}{id}_{}", hex::encode(&bytes[8..])));
    Ok((id, key))
}

/// What an API key is limited to beyond its role: the workflows it may run. Patterns are workflow
/// names where `*` stands for any run of characters (`deploy-*`); `None` is every workflow the
/// role may run.
pub fn workflow_allowed(patterns: &[String], name: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| glob(pattern.as_bytes(), name.as_bytes()))
}

/// `*`-only glob matching (iterative, linear in practice: backtracks to the last star only).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Refuses a run of `workflow` by a caller whose API key does not list it (others pass).
pub fn check_scope(principal: &Principal, workflow: &str) -> Result<(), Forbidden> {
    match principal
        .api_key
        .as_ref()
        .and_then(|key| key.workflows.as_ref())
    {
        Some(patterns) if !workflow_allowed(patterns, workflow) => {
            Err(Forbidden::built_in(&format!(
                "API key {} may not run workflow '{workflow}' (its workflows: {})",
                principal.api_key.as_ref().map_or("", |k| k.id.as_str()),
                patterns.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses what only a person may do (decide a run, record an override, manage keys) to a caller
/// that authenticated with an API key.
pub fn in_person(principal: &Principal, what: &str) -> Result<(), Forbidden> {
    match &principal.api_key {
        Some(key) => Err(Forbidden::built_in(&format!(
            "An API key ({}) may not {what}: that takes a person's own token",
            key.id
        ))),
        None => Ok(()),
    }
}

/// The API key a principal authenticated with, as the audit trail records it (in key order: the
/// principal is encoded directly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    pub id: KeyId,
    /// The key's workflow patterns, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflows: Option<Vec<String>>,
}

/// What a key is asked for (`apikey create`, `POST /apikeys`), before it is checked.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    pub owner: String,
    pub role: String,
    pub name: Option<String>,
    pub expires_days: Option<u32>,
    pub workflows: Option<Vec<String>>,
}

impl KeyRequest {
    /// Checks the request; every problem, one per line, when it is refused.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let owner = self.owner.as_str();
        if !crate::identity::is_plain(owner) || !crate::governance::is_email(owner) {
            problems.push(format!(
                "owner {owner:?} must be the accountable human's email, written plainly"
            ));
        }
        let role = self.role.as_str();
        if role.is_empty() || role.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!("role {role:?} must be one word"));
        } else if matches!(Role::from(role), Role::Cli | Role::System) {
            problems.push(format!("role '{role}' is the server's own, not a key's"));
        }
        if let Some(name) = &self.name {
            if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
                problems.push(format!(
                    "name must be at most {MAX_NAME_CHARS} characters, without control characters"
                ));
            }
        }
        if let Some(days) = self.expires_days {
            if days == 0 || days > MAX_EXPIRES_DAYS {
                problems.push(format!(
                    "expires_days must be 1 to {MAX_EXPIRES_DAYS}, not {days}"
                ));
            }
        }
        if let Some(patterns) = &self.workflows {
            if patterns.is_empty() || patterns.len() > MAX_PATTERNS {
                problems.push(format!(
                    "workflows must list 1 to {MAX_PATTERNS} patterns (leave it out for every workflow)"
                ));
            }
            for pattern in patterns {
                let ok = !pattern.is_empty()
                    && pattern.len() <= 128
                    && pattern
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'));
                if !ok {
                    problems.push(format!(
                        "workflow pattern {pattern:?} may hold only letters, digits, '-', '_' and '*'"
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The stored key and its text (shown once), created now by `by`.
    pub fn issue(&self, by: Principal) -> Result<(ApiKey, Secret), KeyStoreError> {
        self.check().map_err(KeyStoreError::Invalid)?;
        let (id, key) = generate()?;
        let now = now();
        let expires_at = self
            .expires_days
            .map(|days| now + chrono::Duration::days(i64::from(days)));
        let stored = ApiKey {
            hash: hash(key.expose()),
            name: self.name.clone().unwrap_or_else(|| id.to_string()),
            id,
            owner: self.owner.clone(),
            role: Role::from(self.role.as_str()),
            workflows: self.workflows.clone(),
            created_at: now,
            created_by: by,
            expires_at,
            revoked_at: None,
            revoked_by: None,
            last_used_at: None,
            creation_recorded: false,
            revocation_recorded: false,
        };
        Ok((stored, key))
    }
}

/// Now, to the second (what the store and the lists show).
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now)
}

/// A stored key: everything about it but the key itself (its hash only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub name: String,
    /// The accountable human (an email): the actor of every use.
    pub owner: String,
    pub role: Role,
    /// Workflow patterns the key may run (`None`: every workflow its role may run).
    #[serde(default)]
    pub workflows: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub created_by: Principal,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked_by: Option<Principal>,
    /// The last use the server has written back (at most a minute behind; see `registry.rs`).
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// `sha256:` + hex: see [`hash`].
    pub hash: String,
    /// Whether the creation is on the audit trail; until it is, the key is not accepted.
    #[serde(default)]
    pub creation_recorded: bool,
    /// Whether the revocation is on the audit trail (a revoked key is refused at once either way).
    #[serde(default)]
    pub revocation_recorded: bool,
}

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Created, but its creation is not on the audit trail yet: not accepted.
    Pending,
    Active,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "pending",
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl ApiKey {
    pub fn status(&self, at: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|expiry| expiry <= at) {
            KeyStatus::Expired
        } else if !self.creation_recorded {
            KeyStatus::Pending
        } else {
            KeyStatus::Active
        }
    }

    /// The caller this key speaks for: its owner, with its role.
    pub fn principal(&self) -> Principal {
        let mut principal = Principal::new(
            Some(self.owner.clone()),
            self.role.clone(),
            Some(serde_json::Value::String(self.owner.clone())),
        );
        principal.api_key = Some(KeyUse {
            id: self.id.clone(),
            workflows: self.workflows.clone(),
        });
        principal
    }
}

/// Who did something, in a word: the principal's actor, else its role and user (`cli:alice`).
pub fn who(principal: &Principal) -> String {
    match (&principal.actor, &principal.user_id) {
        (Some(actor), _) => actor.clone(),
        (None, Some(serde_json::Value::String(user))) => format!("{}:{user}", principal.role),
        (None, _) => principal.role.to_string(),
    }
}

/// The time as lists and records write it.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The key store: the `api_keys` table when a database is configured (`DATABASE_URL`: `pool`,
/// its schema applied, and the longest an operation may take), else the key file
/// (`API_KEYS_PATH`).
pub fn open_store(
    config: &crate::config::ApiKeysConfig,
    database: Option<(sqlx::PgPool, std::time::Duration)>,
) -> Arc<dyn ApiKeyStore> {
    match database {
        Some((pool, timeout)) => Arc::new(PgKeyStore::new(pool, timeout)),
        None => Arc::new(FileKeyStore::new(&config.path)),
    }
}

#[cfg(test)]
mod contract;
#[cfg(test)]
mod tests;

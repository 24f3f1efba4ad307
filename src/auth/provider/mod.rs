//! Tokens from an identity provider (Keycloak, Entra ID, Okta, Google...): its public keys, found
//! by OpenID Connect discovery (`JWT_ISSUER`), at a JWK set URL (`JWT_JWKS_URL`) or in a PEM file
//! (`JWT_PUBLIC_KEY_FILE`); its tokens checked against them (issuer, audience, `exp` required) and
//! their claims read into a [`Principal`].
//!
//! Keys are cached by `kid`. A token under an unknown `kid` triggers one refresh, at most every
//! `min_refresh` (so random `kid`s cannot make the server hammer the provider); the cache is also
//! refreshed periodically (the provider's `max-age`, at most `refresh`). A failed refresh keeps the
//! keys already known (stale-if-error): only a token under a key never seen is refused meanwhile.

mod claims;
mod jwks;
mod keys;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, Algorithm, Header, Validation};
use reqwest::Url;
use serde_json::{Map, Value};

pub use claims::{parse_required, ClaimPath, ClaimRules, GroupMapping, PersonError};
pub use jwks::{check_url, FetchError};
pub use keys::{read_jwks, read_pem, Candidates, KeySet, ProviderKey, PROVIDER_ALGORITHMS};

use self::jwks::JwksClient;
use super::policy::{Policy, PolicyStore};
use super::token::TokenRefusal;
use super::Principal;
use crate::sync::{lock, read, write};

/// Where the provider's keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `JWT_ISSUER`: its discovery document names the JWK set (`jwks_uri`).
    Discovery(Url),
    /// `JWT_JWKS_URL`: the JWK set itself.
    JwksUrl(Url),
    /// `JWT_PUBLIC_KEY_FILE`: fixed keys, read at start-up, never refreshed.
    File { path: PathBuf, keys: KeySet },
}

impl KeySource {
    /// `issuer`, `jwks_url` or `public_key_file` (for `/health` and the log).
    pub fn kind(&self) -> &'static str {
        match self {
            KeySource::Discovery(_) => "issuer",
            KeySource::JwksUrl(_) => "jwks_url",
            KeySource::File { .. } => "public_key_file",
        }
    }
}

/// How provider tokens are checked (read from the environment by `config`).
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub source: KeySource,
    /// `JWT_ISSUER`: the `iss` every token must carry (when set).
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: a token's `aud` must name one of these (when any).
    pub audiences: Vec<String>,
    /// The algorithms accepted (a subset of [`PROVIDER_ALGORITHMS`]), each only with a key of its type.
    pub algorithms: Vec<Algorithm>,
    pub claims: ClaimRules,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// The longest the keys go without a refresh.
    pub refresh_seconds: u64,
    /// The shortest time between two fetches (an unknown `kid` waits for the next chance).
    pub min_refresh_seconds: u64,
    /// Plain `http://` to a non-loopback host (`--dev` only).
    pub allow_http: bool,
}

/// What `/health` tells about the provider's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderHealth {
    /// `issuer`, `jwks_url` or `public_key_file`.
    pub source: &'static str,
    /// Keys cached now.
    pub keys: usize,
    /// When the keys were last fetched successfully (RFC 3339).
    pub last_refresh: Option<String>,
    /// Keys are cached and the last fetch succeeded.
    pub healthy: bool,
    /// Why the last fetch failed.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct FetchState {
    /// Found by discovery; forgotten when the JWK set cannot be fetched, so the next attempt asks again.
    jwks_uri: Option<Url>,
    last_attempt: Option<Instant>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
}

/// An identity provider's keys and the rules its tokens are checked by.
pub struct IdentityProvider {
    settings: ProviderSettings,
    /// `None` for keys from a file (nothing to fetch).
    client: Option<JwksClient>,
    /// Read (and the `Arc` cloned) by every token check; written only when a fetch succeeded.
    keys: RwLock<Arc<KeySet>>,
    /// Bumped each time new keys are installed: a request that waited for a refresh sees it.
    generation: AtomicU64,
    state: std::sync::Mutex<FetchState>,
    /// One fetch at a time. Held across the fetch, but only by the refresher and by requests whose
    /// `kid` is unknown; a token under a cached key never waits for it.
    fetching: tokio::sync::Mutex<()>,
    group_roles: RwLock<Arc<GroupMapping>>,
}

impl IdentityProvider {
    pub fn new(settings: ProviderSettings) -> Result<Arc<IdentityProvider>, String> {
        let (client, keys) = match &settings.source {
            KeySource::File { keys, .. } => (None, keys.clone()),
            _ => (
                Some(JwksClient::new(settings.allow_http)?),
                KeySet::default(),
            ),
        };
        let group_roles = settings.claims.group_roles.clone();
        Ok(Arc::new(IdentityProvider {
            settings,
            client,
            keys: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(0),
            state: std::sync::Mutex::new(FetchState::default()),
            fetching: tokio::sync::Mutex::new(()),
            group_roles: RwLock::new(Arc::new(group_roles)),
        }))
    }

    /// Fetches the keys once (a failure is logged: tokens are refused until a later fetch
    /// succeeds) and keeps them fresh in a task that ends when the provider is dropped.
    pub async fn start(self: &Arc<Self>) {
        if self.client.is_none() {
            tracing::info!(
                keys = self.cached().len(),
                "identity provider keys read from JWT_PUBLIC_KEY_FILE"
            );
            return;
        }
        let delay = {
            let _turn = self.fetching.lock().await;
            self.fetch().await
        };
        let provider: Weak<IdentityProvider> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = delay;
            loop {
                tokio::time::sleep(delay).await;
                let Some(provider) = provider.upgrade() else {
                    break;
                };
                let _turn = provider.fetching.lock().await;
                delay = provider.fetch().await;
            }
        });
    }

    /// Replaces the group -> role mapping (`JWT_GROUP_ROLES` at start-up; see
    /// [`IdentityProvider::follow_policy`]). Tokens checked afterwards use it.
    pub fn set_group_roles(&self, mapping: GroupMapping) {
        *write(&self.group_roles) = Arc::new(mapping);
    }

    /// The group mapping under `policy`: `JWT_GROUP_ROLES`, with each group the policy file's
    /// `groups` names given the file's roles instead (the file, reloadable and reviewed with the
    /// rules, wins; groups it does not name keep the environment's roles).
    pub fn group_roles_under(&self, policy: &Policy) -> GroupMapping {
        let mut mapping = self.settings.claims.group_roles.clone();
        if let Some(file) = policy.file() {
            for (group, roles) in &file.groups {
                mapping.set(group, roles);
            }
        }
        mapping
    }

    /// Keeps the group mapping in step with the roles policy: installed now, and again each time
    /// the policy file is reloaded with a change.
    pub fn follow_policy(self: &Arc<Self>, store: &PolicyStore) {
        let provider = Arc::downgrade(self);
        store.follow(move |policy| {
            let Some(provider) = provider.upgrade() else {
                return;
            };
            let mapping = provider.group_roles_under(policy);
            let from_policy = policy.file().map_or(0, |file| file.groups.len());
            if from_policy > 0 || !mapping.is_empty() {
                tracing::info!(
                    groups = mapping.len(),
                    from_policy,
                    "identity provider group mapping in force"
                );
            }
            provider.set_group_roles(mapping);
        });
    }

    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// What `/health` shows.
    pub fn health(&self) -> ProviderHealth {
        let keys = self.cached().len();
        let state = lock(&self.state);
        let last_refresh = match (&self.client, state.last_success) {
            (None, _) => None,
            (Some(_), at) => at.map(|at| {
                chrono::DateTime::<chrono::Utc>::from(at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }),
        };
        ProviderHealth {
            source: self.settings.source.kind(),
            keys,
            last_refresh,
            healthy: keys > 0 && state.last_error.is_none(),
            last_error: state.last_error.clone(),
        }
    }

    fn cached(&self) -> Arc<KeySet> {
        Arc::clone(&read(&self.keys))
    }

    fn group_roles(&self) -> Arc<GroupMapping> {
        Arc::clone(&read(&self.group_roles))
    }

    /// Checks a token whose header is `header` (not an HMAC one): its key by `kid`, its signature,
    /// `exp` (required), `nbf`, issuer and audience; then the person it names.
    pub async fn verify(&self, token: &str, header: &Header) -> Result<Principal, TokenRefusal> {
        let algorithm = header.alg;
        if !self.settings.algorithms.contains(&algorithm) {
            tracing::info!(?algorithm, "token refused: algorithm not accepted");
            return Err(TokenRefusal::Invalid);
        }
        let kid = header.kid.as_deref();
        let seen = self.generation.load(Ordering::Acquire);
        let keys = self.cached();
        let found = match keys.candidates(kid, algorithm) {
            Candidates::Unknown => None,
            other => Some(self.check(token, algorithm, other)),
        };
        if let Some(verdict) = found {
            return verdict;
        }
        drop(keys);
        self.refresh_for_unknown_key(seen).await;
        let keys = self.cached();
        match keys.candidates(kid, algorithm) {
            Candidates::Unknown => {
                let health = self.health();
                tracing::info!(
                    kid = kid.map(|k| k.chars().take(64).collect::<String>()),
                    provider_healthy = health.healthy,
                    "token refused: signed with an unknown key"
                );
                Err(TokenRefusal::UnknownKey {
                    provider_healthy: health.healthy,
                })
            }
            other => self.check(token, algorithm, other),
        }
    }

    fn check(
        &self,
        token: &str,
        algorithm: Algorithm,
        candidates: Candidates<'_>,
    ) -> Result<Principal, TokenRefusal> {
        let Candidates::Keys(keys) = candidates else {
            tracing::info!(
                ?algorithm,
                "token refused: its key does not serve its algorithm"
            );
            return Err(TokenRefusal::Invalid);
        };
        let validation = self.validation(algorithm);
        for key in keys {
            match decode::<Map<String, Value>>(token, key.decoding_key(), &validation) {
                Ok(data) => {
                    return self
                        .settings
                        .claims
                        .principal(&data.claims, &self.group_roles())
                        .map_err(|e| TokenRefusal::Claim(e.to_string()));
                }
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                Err(e) => return Err(refusal_of(&e)),
            }
        }
        tracing::info!("token refused: bad signature");
        Err(TokenRefusal::Invalid)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // RFC 8725 §3.10: a provider's token must expire.
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if self.settings.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.settings.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// One fetch for a token whose key is not cached, unless another request's fetch installed
    /// keys while this one waited, or the last fetch was less than `min_refresh_seconds` ago.
    async fn refresh_for_unknown_key(&self, seen: u64) {
        if self.client.is_none() {
            return;
        }
        let _turn = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        let min = Duration::from_secs(self.settings.min_refresh_seconds);
        if lock(&self.state)
            .last_attempt
            .is_some_and(|at| at.elapsed() < min)
        {
            return;
        }
        self.fetch().await;
    }

    /// Fetches the keys (discovering the JWK set first when needed) and installs them; on failure
    /// the keys already cached stay. Called with `fetching` held. How long until the next
    /// periodic fetch.
    async fn fetch(&self) -> Duration {
        let settings = &self.settings;
        let longest = Duration::from_secs(settings.refresh_seconds.max(1));
        let shortest = Duration::from_secs(settings.min_refresh_seconds.max(1)).min(longest);
        let Some(client) = &self.client else {
            return longest;
        };
        let known_uri = {
            let mut state = lock(&self.state);
            state.last_attempt = Some(Instant::now());
            state.jwks_uri.clone()
        };
        let fetched = async {
            let uri = match (&settings.source, known_uri) {
                (KeySource::JwksUrl(url), _) => url.clone(),
                (_, Some(uri)) => uri,
                (KeySource::Discovery(issuer), None) => {
                    let issuer = settings.issuer.as_deref().unwrap_or(issuer.as_str());
                    let uri = client.discover(issuer).await?;
                    lock(&self.state).jwks_uri = Some(uri.clone());
                    uri
                }
                (KeySource::File { path, .. }, None) => {
                    return Err(FetchError::Invalid {
                        url: path.display().to_string(),
                        reason: "keys from a file are not fetched".to_owned(),
                    })
                }
            };
            let fetched = client.jwks(&uri).await.inspect_err(|_| {
                lock(&self.state).jwks_uri = None;
            })?;
            Ok::<_, FetchError>((uri, fetched))
        }
        .await;
        let outcome = fetched.and_then(|(uri, fetched)| {
            let keys = fetched.jwks.keys.restricted_to(&settings.algorithms);
            if keys.is_empty() {
                return Err(FetchError::Invalid {
                    url: uri.to_string(),
                    reason: format!(
                        "no key that verifies an accepted algorithm ({} skipped: {})",
                        fetched.jwks.skipped.len(),
                        fetched.jwks.skipped.join("; ")
                    ),
                });
            }
            Ok((uri, keys, fetched.jwks.skipped, fetched.max_age))
        });
        match outcome {
            Ok((uri, keys, skipped, max_age)) => {
                let count = keys.len();
                *write(&self.keys) = Arc::new(keys);
                self.generation.fetch_add(1, Ordering::AcqRel);
                {
                    let mut state = lock(&self.state);
                    state.last_success = Some(SystemTime::now());
                    state.last_error = None;
                }
                if !skipped.is_empty() {
                    tracing::debug!(skipped = %skipped.join("; "), "identity provider keys skipped");
                }
                tracing::info!(keys = count, jwks_uri = %uri, "identity provider keys fetched");
                max_age
                    .map_or(longest, |age| age.min(longest))
                    .max(shortest)
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity provider keys not fetched; the cached keys stay in use");
                lock(&self.state).last_error = Some(e.to_string());
                Duration::from_secs(30).min(longest).max(shortest)
            }
        }
    }
}

/// What a refused provider token is told, once its signature held (so the reason is safe to tell).
fn refusal_of(error: &jsonwebtoken::errors::Error) -> TokenRefusal {
    let claim = |text: &str| TokenRefusal::Claim(text.to_owned());
    tracing::info!(error = %error, "token refused");
    match error.kind() {
        ErrorKind::ExpiredSignature => claim("Token expired"),
        ErrorKind::ImmatureSignature => claim("Token not valid yet (nbf)"),
        ErrorKind::InvalidIssuer => claim("Token issuer is not the configured identity provider"),
        ErrorKind::InvalidAudience => claim("Token audience does not name this server"),
        ErrorKind::MissingRequiredClaim(name) if name == "exp" => {
            claim("Token has no 'exp' claim: identity-provider tokens must expire")
        }
        ErrorKind::MissingRequiredClaim(name) => {
            TokenRefusal::Claim(format!("Token has no '{name}' claim"))
        }
        ErrorKind::InvalidClaimFormat(name) => {
            TokenRefusal::Claim(format!("Token claim '{name}' is not a NumericDate"))
        }
        _ => TokenRefusal::Invalid,
    }
}

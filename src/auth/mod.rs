//! Who is calling (a JWT proves it: signed with `JWT_SECRET`, or by an identity provider, see
//! [`provider`]) and what they may do ([`may`]).

pub mod apikey;
pub mod policy;
pub mod provider;
mod role;
mod token;

pub use policy::{may, Action, Forbidden, Granted, Policy, Target};
pub use provider::{GroupMapping, IdentityProvider};
pub use role::Role;
pub use token::{authenticate, TokenRefusal};

use std::collections::HashSet;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Secrets that shipped as examples somewhere and must never protect a real server.
pub const PLACEHOLDER_SECRETS: [&str; 2] = [
    "dev-secret-key-change-in-production",
    "your-256-bit-secret-key-here-change-in-production",
];

/// The shortest secret accepted outside dev mode, in bytes (HS256 wants at least its output size).
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims the original server read, plus the registered time claims.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Value>,
    /// The caller: an email (the human the token speaks for) or, as the original's own demos mint
    /// it, a display name. Anything but a string is refused by [`JwtKeys::verify`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Value>,
    /// One role, or several (a list: the caller has all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Value>,
    /// NumericDate: whole seconds, or with a fraction as PyJWT writes `time.time() + 3600`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub iat: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub exp: Option<i64>,
}

/// A NumericDate (RFC 7519: seconds, "non-integer values can be represented") as whole seconds.
fn numeric_date<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    let value = Option::<f64>::deserialize(deserializer)?;
    value
        .map(|seconds| {
            if seconds.is_finite() && seconds.abs() < 1e15 {
                Ok(seconds.floor() as i64)
            } else {
                Err(serde::de::Error::custom(
                    "a NumericDate must be a number of seconds",
                ))
            }
        })
        .transpose()
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    // Fields in key order: the audit trail encodes this struct directly as canonical JSON.
    pub actor: Option<String>,
    /// The API key the caller authenticated with (the actor is then the key's owner); absent for
    /// a token, so records of tokens' principals are as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<apikey::KeyUse>,
    /// The caller's display name, from an identity provider's token (absent otherwise, so the
    /// records of `JWT_SECRET` tokens keep their bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The caller's (first) role.
    pub role: Role,
    /// Further roles, when the token's `role` claim was a list (the caller has every one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    pub user_id: Option<Value>,
}

impl Principal {
    /// The local operator of the command line: no token, role `cli`.
    pub fn local_operator() -> Principal {
        let user = std::env::var("USER").ok().map(Value::String);
        Principal {
            user_id: user,
            actor: None,
            api_key: None,
            name: None,
            role: Role::Cli,
            roles: Vec::new(),
        }
    }

    /// The server itself, for what it records on nobody's request (an approval that expired).
    pub fn server() -> Principal {
        Principal {
            actor: None,
            api_key: None,
            name: None,
            role: Role::System,
            roles: Vec::new(),
            user_id: None,
        }
    }

    /// A caller with one role.
    pub fn new(actor: Option<String>, role: Role, user_id: Option<Value>) -> Principal {
        Principal {
            actor,
            api_key: None,
            name: None,
            role,
            roles: Vec::new(),
            user_id,
        }
    }

    /// Every role the caller has.
    pub fn all_roles(&self) -> impl Iterator<Item = &Role> {
        std::iter::once(&self.role).chain(&self.roles)
    }

    /// Whether the caller has `role`.
    pub fn has(&self, role: &Role) -> bool {
        self.all_roles().any(|r| r == role)
    }

    /// Whether any of the caller's roles is one of `names` (as a definition writes them).
    pub fn has_any_of(&self, names: &[String]) -> bool {
        self.all_roles().any(|r| r.is_any_of(names))
    }

    /// The roles as a reader sees them: `admin` or `deployer, reviewer`.
    pub fn roles_text(&self) -> String {
        self.all_roles()
            .map(Role::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a verified token's claims cannot name a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("Token claim 'actor' must be a string (the caller's email or name)")]
    Actor,
    #[error("Token claim 'role' must be a string or a list of strings")]
    Role,
}

impl TryFrom<Claims> for Principal {
    type Error = ClaimError;

    fn try_from(claims: Claims) -> Result<Principal, ClaimError> {
        let actor = match claims.actor {
            None | Some(Value::Null) => None,
            Some(Value::String(actor)) => Some(actor).filter(|a| !a.trim().is_empty()),
            Some(_) => return Err(ClaimError::Actor),
        };
        let mut roles: Vec<Role> = match claims.role {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(role)) => vec![Role::from(role)],
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(role) => Ok(Role::from(role)),
                    _ => Err(ClaimError::Role),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ClaimError::Role),
        };
        roles.dedup();
        let role = if roles.is_empty() {
            Role::User
        } else {
            roles.remove(0)
        };
        Ok(Principal {
            actor,
            api_key: None,
            name: None,
            role,
            roles,
            user_id: claims.user_id,
        })
    }
}

/// Why a secret or algorithm cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("JWT_SECRET is not set; set a random secret of at least {MIN_SECRET_BYTES} bytes (for example `openssl rand -hex 32`), or run with --dev")]
    Missing,
    #[error("JWT_SECRET is a published placeholder ('{0}'); set a random secret of at least {MIN_SECRET_BYTES} bytes")]
    Placeholder(String),
    #[error("JWT_SECRET is {0} bytes; it must be at least {MIN_SECRET_BYTES} bytes")]
    TooShort(usize),
    #[error("JWT_ALGORITHM '{0}' is not supported; use HS256, HS384 or HS512")]
    Algorithm(String),
}

/// Checks a secret the way start-up does outside dev mode.
pub fn check_secret(secret: Option<&str>) -> Result<&str, KeyError> {
    let secret = secret.filter(|s| !s.is_empty()).ok_or(KeyError::Missing)?;
    if PLACEHOLDER_SECRETS.contains(&secret.trim()) {
        return Err(KeyError::Placeholder(secret.trim().to_owned()));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::TooShort(secret.len()));
    }
    Ok(secret)
}

/// Parses `JWT_ALGORITHM`: only the HMAC family, which a shared secret can serve.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, KeyError> {
    match name.trim().to_ascii_uppercase().as_str() {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        _ => Err(KeyError::Algorithm(name.to_owned())),
    }
}

/// Signs and checks tokens with one secret and one algorithm.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

impl JwtKeys {
    pub fn new(secret: &[u8], algorithm: Algorithm) -> JwtKeys {
        let mut validation = Validation::new(algorithm);
        // Only the configured algorithm verifies; `alg: none` and every other algorithm fail.
        validation.algorithms = vec![algorithm];
        // The original accepted tokens without `exp`; `exp` and `nbf` are enforced when present.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = 0;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            algorithm,
        }
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims)
    }

    /// Mints a token for `actor` with `role`, valid for `ttl_seconds` (none when `None`).
    pub fn mint(
        &self,
        actor: &str,
        role: &str,
        ttl_seconds: Option<u64>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            user_id: Some(Value::String(actor.to_owned())),
            actor: Some(Value::String(actor.to_owned())),
            role: Some(Value::String(role.to_owned())),
            iat: Some(now),
            exp: ttl_seconds.map(|ttl| now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))),
        };
        encode(&Header::new(self.algorithm), &claims, &self.encoding)
    }
}

/// Takes the token out of an `Authorization` header value: `Bearer <token>` (any case of the scheme)
/// or, as the original accepted, the bare token.
pub fn token_from_header(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn refuses_missing_placeholder_and_short_secrets() {
        assert_eq!(check_secret(None), Err(KeyError::Missing));
        assert_eq!(check_secret(Some("")), Err(KeyError::Missing));
        assert!(matches!(
            check_secret(Some("dev-secret-key-change-in-production")),
            Err(KeyError::Placeholder(_))
        ));
        assert!(matches!(
            check_secret(Some("your-256-bit-secret-key-here-change-in-production")),
            Err(KeyError::Placeholder(_))
        ));
        assert_eq!(check_secret(Some("short")), Err(KeyError::TooShort(5)));
        assert_eq!(check_secret(Some(SECRET)), Ok(SECRET));
    }

    #[test]
    fn only_hmac_algorithms_are_accepted() {
        assert_eq!(parse_algorithm("hs256"), Ok(Algorithm::HS256));
        assert!(parse_algorithm("RS256").is_err());
        assert!(parse_algorithm("none").is_err());
    }

    #[test]
    fn minted_tokens_verify_and_carry_the_actor() {
        let keys = JwtKeys::new(SECRET.as_bytes(), Algorithm::HS256);
        let token = keys
            .mint("jake@example.org", "admin", Some(60))
            .expect("mint");
        let principal = Principal::try_from(keys.verify(&token).expect("verify")).unwrap();
        assert_eq!(principal.actor.as_deref(), Some("jake@example.org"));
        assert_eq!(principal.role, Role::Admin);
    }

    fn token_of(keys: &JwtKeys, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap()
    }

    #[test]
    fn python_style_tokens_with_fractional_times_and_role_lists_verify() {
        let keys = JwtKeys::new(SECRET.as_bytes(), Algorithm::HS256);
        let now = chrono::Utc::now().timestamp() as f64 + 0.25;
        let token = token_of(
            &keys,
            serde_json::json!({"actor": "jake@example.org", "role": ["deployer", "admin"],
                               "iat": now, "exp": now + 3600.5}),
        );
        let claims = keys.verify(&token).expect("a float exp is a NumericDate");
        let principal = Principal::try_from(claims).unwrap();
        assert_eq!(principal.role, Role::Named("deployer".into()));
        assert!(principal.has(&Role::Admin));
        assert!(principal.has_any_of(&["admin".to_owned()]));
        assert_eq!(principal.roles_text(), "deployer, admin");

        let expired = token_of(
            &keys,
            serde_json::json!({"actor": "a@b.org", "exp": now - 10.5}),
        );
        assert!(keys.verify(&expired).is_err(), "a float exp in the past");
    }

    #[test]
    fn an_actor_or_role_of_the_wrong_type_is_named() {
        let keys = JwtKeys::new(SECRET.as_bytes(), Algorithm::HS256);
        for (claims, error) in [
            (serde_json::json!({"actor": 42}), ClaimError::Actor),
            (
                serde_json::json!({"actor": {"email": "a@b.org"}}),
                ClaimError::Actor,
            ),
            (
                serde_json::json!({"actor": "a@b.org", "role": 7}),
                ClaimError::Role,
            ),
            (
                serde_json::json!({"actor": "a@b.org", "role": ["x", 1]}),
                ClaimError::Role,
            ),
        ] {
            let claims = keys.verify(&token_of(&keys, claims)).expect("signed");
            assert_eq!(Principal::try_from(claims), Err(error));
        }
    }

    #[test]
    fn rejects_a_token_signed_with_another_key_or_algorithm() {
        let keys = JwtKeys::new(SECRET.as_bytes(), Algorithm::HS256);
        let other = JwtKeys::new(b"another-secret-another-secret-xx", Algorithm::HS256);
        assert!(keys
            .verify(&other.mint("a@b", "user", None).expect("mint"))
            .is_err());
        let hs512 = JwtKeys::new(SECRET.as_bytes(), Algorithm::HS512);
        assert!(keys
            .verify(&hs512.mint("a@b", "user", None).expect("mint"))
            .is_err());
    }

    #[test]
    fn extracts_bearer_and_bare_tokens() {
        assert_eq!(token_from_header("Bearer abc"), "abc");
        assert_eq!(token_from_header("bearer   abc "), "abc");
        assert_eq!(token_from_header("abc"), "abc");
    }
}

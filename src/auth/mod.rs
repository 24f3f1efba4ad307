//! Who is calling (a JWT proves it) and what they may do ([`may`]).

mod policy;
mod role;

pub use policy::{may, Action, Forbidden};
pub use role::Role;

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
    /// The caller's email: the human the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    // Fields in key order: the audit trail encodes this struct directly as canonical JSON.
    pub actor: Option<String>,
    pub role: Role,
    pub user_id: Option<Value>,
}

impl Principal {
    /// The local operator of the command line: no token, role `cli`.
    pub fn local_operator() -> Principal {
        let user = std::env::var("USER").ok().map(Value::String);
        Principal {
            user_id: user,
            actor: None,
            role: Role::Cli,
        }
    }

    /// The server itself, for what it records on nobody's request (an approval that expired).
    pub fn server() -> Principal {
        Principal {
            actor: None,
            role: Role::System,
            user_id: None,
        }
    }
}

impl From<Claims> for Principal {
    fn from(claims: Claims) -> Self {
        Principal {
            user_id: claims.user_id,
            actor: claims.actor.filter(|a| !a.trim().is_empty()),
            role: claims.role.map_or(Role::User, Role::from),
        }
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
            actor: Some(actor.to_owned()),
            role: Some(role.to_owned()),
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
        let principal = Principal::from(keys.verify(&token).expect("verify"));
        assert_eq!(principal.actor.as_deref(), Some("jake@example.org"));
        assert_eq!(principal.role, Role::Admin);
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

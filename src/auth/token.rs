//! From a bearer token to a [`Principal`]: HMAC tokens (`JWT_SECRET`: local and minted by
//! `sustainbot token`) and, when one is configured, an identity provider's signed tokens.

use jsonwebtoken::{decode_header, Algorithm};

use super::provider::IdentityProvider;
use super::{JwtKeys, Principal};

/// Why a token does not name a caller. Each has a stable code (401 for all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Bad, expired or wrongly signed, or `alg: none`: `INVALID_TOKEN`, said no more precisely
    /// (the cause is logged).
    Invalid,
    /// A signed token whose claims cannot be used, with the reason (`INVALID_TOKEN`).
    Claim(String),
    /// A provider token under a key the provider does not publish, even after a refresh, or
    /// while its keys cannot be fetched: `UNKNOWN_SIGNING_KEY`.
    UnknownKey { provider_healthy: bool },
}

impl TokenRefusal {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenRefusal::Invalid | TokenRefusal::Claim(_) => "INVALID_TOKEN",
            TokenRefusal::UnknownKey { .. } => "UNKNOWN_SIGNING_KEY",
        }
    }

    /// What the caller is told.
    pub fn message(&self) -> String {
        match self {
            TokenRefusal::Invalid => "Invalid or expired token".to_owned(),
            TokenRefusal::Claim(reason) => reason.clone(),
            TokenRefusal::UnknownKey {
                provider_healthy: true,
            } => "Token signed with a key the identity provider does not publish".to_owned(),
            TokenRefusal::UnknownKey {
                provider_healthy: false,
            } => "Token signed with an unknown key, and the identity provider's keys cannot be fetched now".to_owned(),
        }
    }

    /// The `failure_type` label of the authentication-failure metric.
    pub fn failure_type(&self) -> &'static str {
        match self {
            TokenRefusal::Invalid | TokenRefusal::Claim(_) => "invalid_token",
            TokenRefusal::UnknownKey { .. } => "unknown_signing_key",
        }
    }
}

fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

/// Verifies `token`: an HMAC one with `keys` (the shared secret, as always), any other with
/// `provider` when there is one. An HMAC token never reaches the provider's public keys, and a
/// provider's key never serves an HMAC algorithm: no algorithm confusion either way.
pub async fn authenticate(
    keys: &JwtKeys,
    provider: Option<&IdentityProvider>,
    token: &str,
) -> Result<Principal, TokenRefusal> {
    if let Some(provider) = provider {
        match decode_header(token) {
            Ok(header) if !is_hmac(header.alg) => return provider.verify(token, &header).await,
            Ok(_) => {}
            Err(e) => {
                tracing::info!(error = %e, "token refused");
                return Err(TokenRefusal::Invalid);
            }
        }
    }
    let claims = keys.verify(token).map_err(|e| {
        tracing::info!(error = %e, "token refused");
        TokenRefusal::Invalid
    })?;
    Principal::try_from(claims).map_err(|e| TokenRefusal::Claim(e.to_string()))
}

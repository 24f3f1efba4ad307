//! Fetching an identity provider's keys: OpenID Connect discovery (`jwks_uri`), the JWK set, and
//! how long the provider says it stays fresh (`Cache-Control: max-age`). Every request has a
//! deadline and a size cap; nothing here blocks the runtime.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::keys::{read_jwks, ReadJwks};

/// A whole fetch (connect, send, read) must end within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest discovery document or JWK set read.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Checks a provider URL: `https://`, or plain `http://` to a loopback host (or any host when
/// `allow_http`, development only). `what` names the setting in the message.
pub fn check_url(text: &str, what: &str, allow_http: bool) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{what} '{text}' is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or("");
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" if !host.is_empty() => Ok(url),
        "http" if loopback || (allow_http && !host.is_empty()) => Ok(url),
        "http" if !host.is_empty() => Err(format!(
            "{what} '{text}' must be https:// (plain http only to a loopback host, or with --dev): keys fetched in clear can be forged"
        )),
        _ => Err(format!("{what} '{text}' must be an https:// URL")),
    }
}

/// Why keys could not be fetched (for the log and `/health`: no secrets in it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: unreachable ({reason})")]
    Unreachable { url: String, reason: String },
    #[error("{url}: answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {reason}")]
    Invalid { url: String, reason: String },
}

/// A JWK set as fetched, and how long its provider says it is fresh.
pub struct Fetched {
    pub jwks: ReadJwks,
    pub max_age: Option<Duration>,
}

/// The HTTP client keys are fetched with (reqwest, rustls; deadlines and a size cap).
#[derive(Clone)]
pub struct JwksClient {
    client: reqwest::Client,
    allow_http: bool,
}

impl JwksClient {
    pub fn new(allow_http: bool) -> Result<JwksClient, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("sustainbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for the identity provider: {e}"))?;
        Ok(JwksClient { client, allow_http })
    }

    /// OpenID Connect discovery: `<issuer>/.well-known/openid-configuration`, whose `issuer` must
    /// be `issuer` exactly (OpenID Connect Discovery 1.0 §4.3); its `jwks_uri`.
    pub async fn discover(&self, issuer: &str) -> Result<Url, FetchError> {
        let address = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let invalid = |reason: String| FetchError::Invalid {
            url: address.clone(),
            reason,
        };
        let url = Url::parse(&address).map_err(|e| invalid(e.to_string()))?;
        let (body, _) = self.get(&url).await?;
        let document: Value = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("the discovery document is not JSON: {e}")))?;
        match document.get("issuer").and_then(Value::as_str) {
            Some(found) if found == issuer => {}
            found => {
                return Err(invalid(format!(
                    "the discovery document names issuer {found:?}, not JWT_ISSUER '{issuer}'"
                )))
            }
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("the discovery document has no jwks_uri".to_owned()))?;
        check_url(jwks_uri, "jwks_uri", self.allow_http).map_err(invalid)
    }

    /// The JWK set at `url`.
    pub async fn jwks(&self, url: &Url) -> Result<Fetched, FetchError> {
        let (body, max_age) = self.get(url).await?;
        let jwks = read_jwks(&body).map_err(|reason| FetchError::Invalid {
            url: url.to_string(),
            reason,
        })?;
        Ok(Fetched { jwks, max_age })
    }

    /// GETs `url`: its body (at most [`MAX_DOCUMENT_BYTES`]) and `Cache-Control: max-age`.
    async fn get(&self, url: &Url) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let unreachable = |e: reqwest::Error| FetchError::Unreachable {
            url: url.to_string(),
            reason: if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "connection failed".to_owned()
            } else {
                without_url(&e)
            },
        };
        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::Invalid {
                    url: url.to_string(),
                    reason: format!("larger than {} KiB", MAX_DOCUMENT_BYTES / 1024),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

/// A reqwest error's message without the URL it repeats.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    text
}

/// `max-age` of a `Cache-Control` value (`no-store` and `no-cache` are 0).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        lower
            .strip_prefix("max-age=")
            .and_then(|n| n.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_urls_are_https_or_loopback() {
        assert!(check_url("https://idp.example.org/realms/x", "JWT_ISSUER", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks", "JWT_JWKS_URL", false).is_ok());
        assert!(check_url("http://localhost/jwks", "JWT_JWKS_URL", false).is_ok());
        assert!(check_url("http://[::1]:9/jwks", "JWT_JWKS_URL", false).is_ok());
        let clear = check_url("http://idp.example.org", "JWT_ISSUER", false).unwrap_err();
        assert!(clear.contains("https://"), "{clear}");
        assert!(check_url("http://keycloak:8080/realms/x", "JWT_ISSUER", true).is_ok());
        assert!(check_url("idp.example.org", "JWT_ISSUER", false).is_err());
        assert!(check_url("file:///etc/passwd", "JWT_JWKS_URL", true).is_err());
    }

    #[test]
    fn cache_control_max_age_is_read() {
        assert_eq!(
            max_age("public, max-age=19845, must-revalidate"),
            Some(Duration::from_secs(19845))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}

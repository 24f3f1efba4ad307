//! `JWT_ISSUER`, `JWT_JWKS_URL`, `JWT_PUBLIC_KEY_FILE` and their companions: tokens from an
//! identity provider, checked beside the `JWT_SECRET` ones. See `docs/identity.md`.

use jsonwebtoken::Algorithm;

use super::Reader;
use crate::auth::provider::{
    check_url, parse_required, read_pem, ClaimPath, ClaimRules, GroupMapping, KeySet, KeySource,
    ProviderSettings, PROVIDER_ALGORITHMS,
};

/// The settings that only mean something with a provider (warned about when set without one).
const COMPANIONS: [&str; 10] = [
    "JWT_AUDIENCE",
    "JWT_PROVIDER_ALGORITHMS",
    "JWT_EMAIL_CLAIM",
    "JWT_NAME_CLAIM",
    "JWT_ROLES_CLAIM",
    "JWT_GROUP_ROLES",
    "JWT_REQUIRED_CLAIMS",
    "JWT_LEEWAY_SECONDS",
    "JWT_JWKS_REFRESH_SECONDS",
    "JWT_JWKS_MIN_REFRESH_SECONDS",
];

/// Reads the identity provider's settings; `None` when no provider is configured. `dev` allows
/// plain `http://` to hosts other than loopback.
pub fn read(reader: &mut Reader<'_>, dev: bool) -> Option<ProviderSettings> {
    let issuer = reader.text("JWT_ISSUER");
    let jwks_url = reader.text("JWT_JWKS_URL");
    let key_file = reader.text("JWT_PUBLIC_KEY_FILE");
    if issuer.is_none() && jwks_url.is_none() && key_file.is_none() {
        for name in COMPANIONS {
            if reader.text(name).is_some() {
                reader.warnings.push(format!(
                    "{name} is set without JWT_ISSUER, JWT_JWKS_URL or JWT_PUBLIC_KEY_FILE: ignored"
                ));
            }
        }
        return None;
    }
    let algorithms = algorithms(reader);
    let issuer_url = issuer
        .as_deref()
        .and_then(|text| problem(reader, check_url(text, "JWT_ISSUER", dev)));
    let source = match (jwks_url, key_file) {
        (Some(_), Some(_)) => {
            reader
                .problems
                .push("set JWT_JWKS_URL or JWT_PUBLIC_KEY_FILE, not both".to_owned());
            None
        }
        (Some(url), None) => {
            problem(reader, check_url(&url, "JWT_JWKS_URL", dev)).map(KeySource::JwksUrl)
        }
        (None, Some(path)) => key_file_source(reader, &path, &algorithms),
        (None, None) => issuer_url.map(KeySource::Discovery),
    };
    let audiences: Vec<String> = reader
        .text("JWT_AUDIENCE")
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        reader.warnings.push(
            "JWT_AUDIENCE is not set: a token the identity provider issued to any application is accepted; set it to this server's client id or audience".to_owned(),
        );
    }
    let group_roles = match reader.text("JWT_GROUP_ROLES") {
        None => GroupMapping::default(),
        Some(text) => GroupMapping::parse(&text).unwrap_or_else(|e| {
            reader.problems.push(format!(
                "JWT_GROUP_ROLES: {e} (write group=role pairs separated by commas)"
            ));
            GroupMapping::default()
        }),
    };
    let required = match reader.text("JWT_REQUIRED_CLAIMS") {
        None => Vec::new(),
        Some(text) => parse_required(&text).unwrap_or_else(|e| {
            reader.problems.push(format!(
                "JWT_REQUIRED_CLAIMS: {e} (write claim=value pairs separated by commas)"
            ));
            Vec::new()
        }),
    };
    let defaults = ClaimRules::default();
    let claims = ClaimRules {
        email: reader
            .text("JWT_EMAIL_CLAIM")
            .map_or(defaults.email, ClaimPath::new),
        name: reader
            .text("JWT_NAME_CLAIM")
            .map_or(defaults.name, ClaimPath::new),
        roles: reader
            .text("JWT_ROLES_CLAIM")
            .map_or(defaults.roles, ClaimPath::new),
        group_roles,
        required,
    };
    let leeway_seconds = reader.count("JWT_LEEWAY_SECONDS", 30);
    let refresh_seconds = reader.count("JWT_JWKS_REFRESH_SECONDS", 300).max(1);
    let min_refresh_seconds = reader.count("JWT_JWKS_MIN_REFRESH_SECONDS", 10);
    Some(ProviderSettings {
        source: source?,
        issuer,
        audiences,
        algorithms,
        claims,
        leeway_seconds,
        refresh_seconds,
        min_refresh_seconds,
        allow_http: dev,
    })
}

fn problem<T>(reader: &mut Reader<'_>, result: Result<T, String>) -> Option<T> {
    result.map_err(|e| reader.problems.push(e)).ok()
}

/// `JWT_PROVIDER_ALGORITHMS`: a comma-separated subset of the asymmetric algorithms (all of them
/// by default). An HMAC algorithm or `none` is a problem: those are never a provider's.
fn algorithms(reader: &mut Reader<'_>) -> Vec<Algorithm> {
    let Some(text) = reader.text("JWT_PROVIDER_ALGORITHMS") else {
        return PROVIDER_ALGORITHMS.to_vec();
    };
    let mut chosen = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let upper = name.to_ascii_uppercase();
        let canonical = if upper == "EDDSA" { "EdDSA" } else { &upper };
        match canonical.parse::<Algorithm>() {
            Ok(a) if PROVIDER_ALGORITHMS.contains(&a) => {
                if !chosen.contains(&a) {
                    chosen.push(a);
                }
            }
            Ok(_) => reader.problems.push(format!(
                "JWT_PROVIDER_ALGORITHMS: {name} is an HMAC algorithm; HMAC tokens are checked with JWT_SECRET (JWT_ALGORITHM), never with a provider's keys"
            )),
            Err(_) => reader.problems.push(format!(
                "JWT_PROVIDER_ALGORITHMS: '{name}' is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
            )),
        }
    }
    if chosen.is_empty() {
        reader
            .problems
            .push("JWT_PROVIDER_ALGORITHMS names no algorithm".to_owned());
        return PROVIDER_ALGORITHMS.to_vec();
    }
    chosen
}

/// `JWT_PUBLIC_KEY_FILE`: PEM public keys, each kept for the accepted algorithms its type serves.
fn key_file_source(
    reader: &mut Reader<'_>,
    path: &str,
    algorithms: &[Algorithm],
) -> Option<KeySource> {
    let text = problem(
        reader,
        std::fs::read_to_string(path).map_err(|e| format!("JWT_PUBLIC_KEY_FILE {path}: {e}")),
    )?;
    let keys = problem(
        reader,
        read_pem(&text).map_err(|e| format!("JWT_PUBLIC_KEY_FILE {path}: {e}")),
    )?;
    let served: Vec<String> = keys
        .iter()
        .flat_map(|k| k.algorithms().iter().map(|a| format!("{a:?}")))
        .collect();
    let keys = KeySet::new(keys).restricted_to(algorithms);
    if keys.is_empty() {
        let allowed: Vec<String> = algorithms.iter().map(|a| format!("{a:?}")).collect();
        reader.problems.push(format!(
            "JWT_PUBLIC_KEY_FILE {path}: its keys serve {}, none of which JWT_PROVIDER_ALGORITHMS ({}) allows",
            served.join(", "),
            allowed.join(", ")
        ));
        return None;
    }
    Some(KeySource::File {
        path: path.into(),
        keys,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::{Config, ConfigError, Overrides};

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/idp/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned(), Overrides::default())
    }

    #[track_caller]
    fn refused_saying(vars: &[(&str, &str)], says: &str) {
        let error = load(vars).expect_err("refused").to_string();
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }

    #[test]
    fn an_issuer_alone_is_enough_and_jwt_secret_becomes_optional() {
        let config = load(&[
            ("JWT_ISSUER", "https://idp.example.org/realms/acme"),
            ("JWT_AUDIENCE", "sustainbot, other"),
        ])
        .unwrap();
        let identity = config.auth.identity.expect("a provider");
        assert_eq!(identity.source.kind(), "issuer");
        assert_eq!(identity.audiences, ["sustainbot", "other"]);
        assert_eq!(identity.algorithms.len(), 9);
        assert_eq!(identity.claims.email.as_str(), "email");
        assert!(config.auth.jwt_secret_generated, "no HMAC token verifies");
        assert!(config.warnings.iter().any(|w| w.contains("JWT_SECRET")));
    }

    #[test]
    fn without_an_audience_or_a_provider_the_companions_are_warned_about() {
        let config = load(&[("JWT_ISSUER", "https://idp.example.org")]).unwrap();
        assert!(config.warnings.iter().any(|w| w.contains("JWT_AUDIENCE")));
        let config = load(&[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("JWT_ROLES_CLAIM", "groups"),
        ])
        .unwrap();
        assert!(config.auth.identity.is_none());
        assert!(config
            .warnings
            .iter()
            .any(|w| w.contains("JWT_ROLES_CLAIM")));
    }

    #[test]
    fn bad_urls_files_and_algorithm_lists_stop_the_start_with_clear_messages() {
        refused_saying(&[("JWT_ISSUER", "idp.example.org")], "not a URL");
        refused_saying(
            &[("JWT_ISSUER", "http://idp.example.org")],
            "must be https://",
        );
        refused_saying(
            &[("JWT_JWKS_URL", "ftp://idp.example.org/keys")],
            "https://",
        );
        let private = fixture("rsa-a.key.pem");
        refused_saying(&[("JWT_PUBLIC_KEY_FILE", &private)], "-pubout");
        refused_saying(
            &[("JWT_PUBLIC_KEY_FILE", "/no/such/key.pem")],
            "/no/such/key.pem",
        );
        let ec = fixture("ec-p256.pub.pem");
        refused_saying(
            &[
                ("JWT_PUBLIC_KEY_FILE", &ec),
                ("JWT_PROVIDER_ALGORITHMS", "RS256"),
            ],
            "its keys serve ES256, none of which",
        );
        refused_saying(
            &[
                ("JWT_ISSUER", "https://i.org"),
                ("JWT_PROVIDER_ALGORITHMS", "HS256"),
            ],
            "HMAC algorithm",
        );
        refused_saying(
            &[
                ("JWT_ISSUER", "https://i.org"),
                ("JWT_PROVIDER_ALGORITHMS", "none"),
            ],
            "'none' is not one of",
        );
        refused_saying(
            &[
                ("JWT_JWKS_URL", "https://i.org/keys"),
                ("JWT_PUBLIC_KEY_FILE", &ec),
            ],
            "not both",
        );
        refused_saying(
            &[("JWT_ISSUER", "https://i.org"), ("JWT_GROUP_ROLES", "sre")],
            "group=role",
        );
        refused_saying(
            &[
                ("JWT_ISSUER", "https://i.org"),
                ("JWT_REQUIRED_CLAIMS", "hd"),
            ],
            "claim=value",
        );
    }

    #[test]
    fn dev_mode_allows_plain_http_to_a_named_host() {
        let config = Config::from_lookup(
            |name| (name == "JWT_ISSUER").then(|| "http://keycloak:8080/realms/x".to_owned()),
            Overrides {
                dev: true,
                ..Overrides::default()
            },
        )
        .unwrap();
        assert!(config.auth.identity.is_some_and(|i| i.allow_http));
    }
}

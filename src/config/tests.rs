//! Reading the configuration: defaults, refusals, overrides, secrets.

use std::collections::HashMap;

use super::*;

const GOOD: &str = "0123456789abcdef0123456789abcdef";

fn load(vars: &[(&str, &str)], overrides: Overrides) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned(), overrides)
}

#[test]
fn defaults_match_the_contract() {
    let config = load(&[("JWT_SECRET", GOOD)], Overrides::default()).unwrap();
    assert_eq!(config.server.host, "0.0.0.0");
    assert_eq!(config.server.port, 5000);
    assert_eq!(config.auth.jwt_algorithm, Algorithm::HS256);
    assert!(config.server.governance_enabled);
    assert_eq!(config.audit.log_path, PathBuf::from("./logs/audit.jsonl"));
    assert_eq!(config.runs.workflows_dir, PathBuf::from("./workflows"));
    assert_eq!(
        (
            config.llm.model.as_str(),
            config.llm.host.as_str(),
            config.llm.port
        ),
        ("llama2", "localhost", 11434)
    );
    assert_eq!(config.audit.fsync, FsyncMode::Always);
}

#[test]
fn connection_limits_default_to_30_s_header_and_body_60_s_idle_and_refuse_zero() {
    let config = load(&[("JWT_SECRET", GOOD)], Overrides::default()).unwrap();
    assert_eq!(
        config.server.http,
        HttpConfig {
            header_timeout_seconds: 30,
            body_timeout_seconds: 30,
            idle_timeout_seconds: 60,
            max_connections: 1024,
            rate_limit_per_minute: 0,
            rate_limit_per_ip_per_minute: 0,
        }
    );
    let err = load(
        &[
            ("JWT_SECRET", GOOD),
            ("HTTP_HEADER_TIMEOUT_SECONDS", "0"),
            ("HTTP_BODY_TIMEOUT_SECONDS", "soon"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ],
        Overrides::default(),
    )
    .expect_err("invalid");
    assert_eq!(err.0.len(), 3, "{err}");
    assert!(
        err.to_string()
            .contains("HTTP_MAX_CONNECTIONS must be at least 1"),
        "{err}"
    );
}

#[test]
fn refuses_to_start_without_a_strong_secret_outside_dev_mode() {
    for vars in [
        vec![],
        vec![("JWT_SECRET", "dev-secret-key-change-in-production")],
        vec![(
            "JWT_SECRET",
            "your-256-bit-secret-key-here-change-in-production",
        )],
        vec![("JWT_SECRET", "too-short")],
    ] {
        let err = load(&vars, Overrides::default()).expect_err("must refuse");
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    }
}

#[test]
fn dev_mode_makes_a_throwaway_secret() {
    let config = load(
        &[],
        Overrides {
            dev: true,
            ..Overrides::default()
        },
    )
    .unwrap();
    assert!(config.auth.jwt_secret_generated);
    assert_eq!(config.auth.jwt_secret.expose().len(), 64);
    let again = load(
        &[],
        Overrides {
            dev: true,
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_ne!(config.auth.jwt_secret, again.auth.jwt_secret);
    // It prints a working admin token: it listens on this machine only unless told otherwise.
    assert_eq!(config.server.host, "127.0.0.1");
    let told = load(
        &[("SUSTAINBOT_HOST", "0.0.0.0")],
        Overrides {
            dev: true,
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(told.server.host, "0.0.0.0");
}

#[test]
fn reports_every_bad_variable_at_once() {
    let err = load(
        &[
            ("JWT_SECRET", GOOD),
            ("SUSTAINBOT_PORT", "http"),
            ("GOVERNANCE_ENABLED", "maybe"),
            ("JWT_ALGORITHM", "RS256"),
        ],
        Overrides::default(),
    )
    .expect_err("invalid");
    assert_eq!(err.0.len(), 3, "{err}");
}

#[test]
fn flags_override_the_environment() {
    let config = load(
        &[
            ("JWT_SECRET", GOOD),
            ("SUSTAINBOT_PORT", "7000"),
            ("SUSTAINBOT_HOST", "127.0.0.1"),
        ],
        Overrides {
            host: Some("::1".into()),
            port: Some(0),
            dev: false,
        },
    )
    .unwrap();
    assert_eq!(
        (config.server.host.as_str(), config.server.port),
        ("::1", 0)
    );
}

#[test]
fn debug_output_hides_secrets() {
    let config = load(
        &[
            ("JWT_SECRET", GOOD),
            ("DATABASE_URL", "postgres://u:pw@h/db"),
        ],
        Overrides::default(),
    )
    .unwrap();
    let text = format!("{config:?}");
    assert!(!text.contains(GOOD) && !text.contains("pw@"), "{text}");
}

#[test]
fn a_subcommand_reads_only_the_sections_it_needs() {
    // No JWT_SECRET: serving is refused, but reading the audit section is fine.
    let lookup = |name: &str| (name == "AUDIT_LOG_PATH").then(|| "/tmp/a.jsonl".to_owned());
    assert!(Config::from_lookup(lookup, Overrides::default()).is_err());
    let audit = section(&lookup, |r| AuditConfig::read(r, false)).unwrap();
    assert_eq!(audit.log_path, PathBuf::from("/tmp/a.jsonl"));
    let refused = section(&lookup, |r| AuthConfig::read(r, false)).unwrap_err();
    assert!(refused.to_string().contains("JWT_SECRET"), "{refused}");
}

#[test]
fn warnings_wait_for_logging() {
    let config = load(
        &[
            ("JWT_SECRET", GOOD),
            ("AUDIT_FSYNC", "never"),
            ("DATABASE_URL", "postgres://u:pw@h/db"),
        ],
        Overrides::default(),
    )
    .unwrap();
    // AUDIT_FSYNC=never; DATABASE_URL is in use now (the audit chain in PostgreSQL), no warning.
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings.iter().all(|w| !w.contains("pw@")));
    let database = config
        .server
        .database
        .expect("DATABASE_URL selects PostgreSQL");
    assert!(
        !format!("{database:?}").contains("pw@"),
        "the URL is a secret"
    );
    assert_eq!((database.pool_size, database.max_overflow), (10, 20));
}

#[test]
fn the_database_section_names_each_mistake() {
    let refused = load(
        &[
            ("JWT_SECRET", GOOD),
            ("DATABASE_URL", "mysql://h/db"),
            ("DB_POOL_SIZE", "0"),
            ("RUN_LEASE_SECONDS", "1"),
        ],
        Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    for expected in ["PostgreSQL URL", "DB_POOL_SIZE", "RUN_LEASE_SECONDS"] {
        assert!(refused.contains(expected), "{refused}");
    }
}

#[test]
fn a_secret_may_come_from_a_file_named_by_name_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwt");
    std::fs::write(&file, "file-secret-0123456789abcdef0123456789\n").unwrap();
    let path = file.to_str().unwrap();
    let config = load(&[("JWT_SECRET_FILE", path)], Overrides::default()).unwrap();
    assert_eq!(
        config.auth.jwt_secret.expose(),
        "file-secret-0123456789abcdef0123456789"
    );
    let both = load(
        &[
            ("JWT_SECRET_FILE", path),
            ("JWT_SECRET", "x".repeat(40).as_str()),
        ],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        both.to_string()
            .contains("set JWT_SECRET or JWT_SECRET_FILE, not both"),
        "{both}"
    );
    let missing = load(
        &[("JWT_SECRET_FILE", "/nonexistent/jwt")],
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("JWT_SECRET_FILE /nonexistent/jwt"),
        "{missing}"
    );
}

//! API keys in PostgreSQL (`DATABASE_URL`): the command line writes the table that every instance
//! on the database reads, so a key made or revoked there takes effect on each within two seconds,
//! and each creation and revocation is on the shared chain once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{bearer, run, send, until_answered};
use crate::helpers::{governance_request, Finished, ServerProcess, Settings, Site, TestDb, JAKE};

fn instance(site: &Site, database: &str, id: &str) -> ServerProcess {
    site.sustainbot()
        .env("DATABASE_URL", database)
        .env("SUSTAINBOT_INSTANCE_ID", id)
        .env("DB_POOL_TIMEOUT", "5")
        .start()
}

/// The `apikey` records of the database's chain, as (action, key id).
async fn recorded(database: &str) -> Vec<(String, String)> {
    let pool = sqlx::PgPool::connect(database).await.expect("connect");
    let lines: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT line FROM audit_records WHERE kind = 'apikey' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .expect("the chain");
    pool.close().await;
    lines
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_slice(line).expect("a record");
            let text = |name: &str| record[name].as_str().unwrap_or_default().to_owned();
            (text("action"), text("key_id"))
        })
        .collect()
}

#[tokio::test]
async fn a_key_made_on_the_command_line_works_on_every_instance_until_revoked() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    let (a, b) = (
        instance(&site, db.url(), "a"),
        instance(&site, db.url(), "b"),
    );

    let created = Instant::now();
    let output = site
        .sustainbot()
        .env("DATABASE_URL", db.url())
        .run(&["apikey", "create", "--owner", JAKE, "--role", "deployer"])
        .expect_exit(0);
    let key = output
        .stdout_text()
        .lines()
        .last()
        .expect("the key")
        .trim()
        .to_owned();
    let id = key[4..20].to_owned();
    for server in [&a, &b] {
        until_answered(server, &[bearer(&key)], 200, Duration::from_secs(3)).await;
    }
    let waited = created.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "accepted by both after {waited:?}"
    );
    assert!(
        !site.audit().with_file_name("api_keys.json").exists(),
        "no key file beside the log"
    );
    let ran = run(
        &b,
        &[bearer(&key)],
        &governance_request("noop"),
        "pg-key-run",
    )
    .await;
    assert_eq!(ran.expect_ok(200)["success"], true);

    // `--database-url` names the database without DATABASE_URL.
    site.sustainbot()
        .run(&["apikey", "list", "--database-url", db.url()])
        .expect_exit(0)
        .expect_stdout(&format!("{id} active owner={JAKE} role=deployer"));

    let revoked = Instant::now();
    site.sustainbot()
        .run(&["apikey", "revoke", &id, "--database-url", db.url()])
        .expect_exit(0)
        .expect_stdout("revoked");
    for server in [&a, &b] {
        until_answered(server, &[bearer(&key)], 401, Duration::from_secs(3)).await;
    }
    let waited = revoked.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "refused by both after {waited:?}"
    );

    // A key made through one instance's API works on the other.
    let made = send(
        &a,
        "POST",
        "/apikeys",
        &[bearer(&a.jake())],
        Some(&json!({"owner": JAKE, "role": "deployer"})),
    )
    .await
    .expect_ok(201);
    let other = made["key"].as_str().expect("the key").to_owned();
    let other_id = made["id"].as_str().expect("its id").to_owned();
    until_answered(&b, &[bearer(&other)], 200, Duration::from_secs(2)).await;

    assert_eq!(
        recorded(db.url()).await,
        [
            ("created".to_owned(), id.clone()),
            ("revoked".to_owned(), id),
            ("created".to_owned(), other_id),
        ],
        "each change once, whichever instance noticed it"
    );
}

//! What every key store does ([`keeps_keys`], run on the file and on the table), and what only the
//! table does: a change made by hand moves its version, and several servers on one database record
//! each creation and revocation once. The PostgreSQL tests skip loudly without a reachable server.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use super::*;
use crate::audit::{AuditOptions, AuditStore, FsyncMode, PgAuditStore, PgStoreOptions};
use crate::db::testing::TestDb;

fn request(owner: &str, role: &str) -> KeyRequest {
    KeyRequest {
        owner: owner.to_owned(),
        role: role.to_owned(),
        ..KeyRequest::default()
    }
}

fn issue(request: &KeyRequest) -> (ApiKey, String) {
    let (key, text) = request.issue(Principal::local_operator()).unwrap();
    (key, text.expose().to_owned())
}

/// The store contract: keys read back exactly, in the order of creation; every change moves the
/// version; an id is never added twice; the first revocation stands; recorded events and last uses
/// are noted (last uses forward only), unknown ids skipped.
async fn keeps_keys(store: &dyn ApiKeyStore) {
    let (keys, empty) = store.load().await.unwrap();
    assert!(keys.is_empty());
    assert_eq!(store.version().await.unwrap(), empty);

    let (first, _) = issue(&KeyRequest {
        name: Some("ci".into()),
        expires_days: Some(30),
        workflows: Some(vec!["deploy-*".into(), "report".into()]),
        ..request("jake@example.org", "deployer")
    });
    let (second, _) = issue(&request("ana@example.org", "admin"));
    store.insert(first.clone()).await.unwrap();
    let one = store.version().await.unwrap();
    assert_ne!(one, empty, "an insert moves the version");
    store.insert(second.clone()).await.unwrap();
    let (keys, version) = store.load().await.unwrap();
    assert_eq!(keys, [first.clone(), second.clone()], "exactly, in order");
    assert_ne!(version, one);
    assert_eq!(store.version().await.unwrap(), version);
    assert!(matches!(
        store.insert(first.clone()).await,
        Err(KeyStoreError::Invalid(_))
    ));

    let early = now() - chrono::Duration::seconds(60);
    let revoked = store
        .revoke(first.id.clone(), Principal::local_operator(), early)
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(early));
    assert_eq!(revoked.revoked_by, Some(Principal::local_operator()));
    let again = store
        .revoke(first.id.clone(), Principal::server(), now())
        .await
        .unwrap();
    assert_eq!(
        (again.revoked_at, again.revoked_by),
        (revoked.revoked_at, revoked.revoked_by)
    );
    let unknown = KeyId::parse("0000000000000000").unwrap();
    assert_eq!(
        store
            .revoke(unknown.clone(), Principal::server(), now())
            .await,
        Err(KeyStoreError::NotFound(unknown.clone()))
    );

    let before = store.version().await.unwrap();
    store
        .mark_recorded(vec![
            (first.id.clone(), KeyEvent::Created),
            (first.id.clone(), KeyEvent::Revoked),
            (unknown.clone(), KeyEvent::Created),
        ])
        .await
        .unwrap();
    assert_ne!(store.version().await.unwrap(), before);
    let (keys, _) = store.load().await.unwrap();
    assert!(keys[0].creation_recorded && keys[0].revocation_recorded);
    assert!(!keys[1].creation_recorded && !keys[1].revocation_recorded);
    assert_eq!(keys[0].revoked_at, Some(early));

    let later = now();
    let earlier = later - chrono::Duration::seconds(30);
    store
        .record_uses(vec![(second.id.clone(), later), (unknown, later)])
        .await
        .unwrap();
    store
        .record_uses(vec![(second.id.clone(), earlier)])
        .await
        .unwrap();
    let (keys, _) = store.load().await.unwrap();
    assert_eq!(keys[1].last_used_at, Some(later), "only forward");
    assert_eq!(keys[0].last_used_at, None);
}

#[tokio::test]
async fn the_key_file_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    keeps_keys(&FileKeyStore::new(&dir.path().join("api_keys.json"))).await;
}

async fn pool(db: &TestDb) -> PgPool {
    let pool = crate::db::connect(db.url(), Duration::from_secs(10))
        .await
        .unwrap();
    crate::db::migrate(&pool).await.unwrap();
    pool
}

fn table(pool: &PgPool) -> PgKeyStore {
    PgKeyStore::new(pool.clone(), Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_keeps_the_store_contract() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    keeps_keys(&table(&pool(&db).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_the_table_by_hand_moves_its_version() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let pool = pool(&db).await;
    let store = table(&pool);
    let (key, _) = issue(&request("jake@example.org", "deployer"));
    store.insert(key).await.unwrap();
    let version = store.version().await.unwrap();
    sqlx::query("UPDATE api_keys SET role = 'admin'")
        .execute(&pool)
        .await
        .unwrap();
    let edited = store.version().await.unwrap();
    assert_ne!(edited, version);
    sqlx::query("DELETE FROM api_keys")
        .execute(&pool)
        .await
        .unwrap();
    assert_ne!(store.version().await.unwrap(), edited);
    assert!(store.load().await.unwrap().0.is_empty());
}

/// The `apikey` records on the chain, as (action, key id).
async fn recorded(pool: &PgPool) -> Vec<(String, String)> {
    let lines: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT line FROM audit_records WHERE kind = 'apikey' ORDER BY seq")
            .fetch_all(pool)
            .await
            .unwrap();
    lines
        .iter()
        .map(|line| {
            let record: Value = serde_json::from_slice(line).unwrap();
            let text = |name: &str| record[name].as_str().unwrap_or_default().to_owned();
            (text("action"), text("key_id"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_on_one_database_record_each_change_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let pool = pool(&db).await;
    let server = |instance: &str| {
        let pool = pool.clone();
        let instance = instance.to_owned();
        async move {
            let options = PgStoreOptions::from_audit(
                &AuditOptions::new(FsyncMode::Always),
                Duration::from_secs(10),
            );
            let trail = PgAuditStore::open(pool.clone(), instance, options)
                .await
                .unwrap();
            let store: Arc<dyn ApiKeyStore> = Arc::new(table(&pool));
            ApiKeys::new(store, Arc::new(trail) as Arc<dyn AuditStore>)
        }
    };
    let (a, b) = (server("a").await, server("b").await);
    let cli = table(&pool);

    // The command line's key: both servers notice it at once; one records it.
    let (key, text) = issue(&request("jake@example.org", "deployer"));
    cli.insert(key.clone()).await.unwrap();
    let (left, right) = tokio::join!(a.refresh(), b.refresh());
    left.unwrap();
    right.unwrap();
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    assert!(a.authenticate(&text).is_ok() && b.authenticate(&text).is_ok());

    // One server's own key, while the other reads the table; then a revocation by each.
    let admin = Principal::new(Some("ana@example.org".into()), Role::Admin, None);
    let asked = request("ana@example.org", "deployer");
    let (created, b_read) = tokio::join!(a.create(&asked, admin.clone()), b.refresh());
    let (own, own_text) = created.unwrap();
    b_read.unwrap();
    b.refresh().await.unwrap();
    assert!(b.authenticate(own_text.expose()).is_ok());
    cli.revoke(key.id.clone(), Principal::local_operator(), now())
        .await
        .unwrap();
    let (left, right) = tokio::join!(a.refresh(), b.refresh());
    left.unwrap();
    right.unwrap();
    assert_eq!(a.authenticate(&text), Err(Refusal::Revoked));
    b.revoke(own.id.clone(), admin).await.unwrap();
    a.refresh().await.unwrap();
    assert_eq!(a.authenticate(own_text.expose()), Err(Refusal::Revoked));
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();

    let (id, own_id) = (key.id.to_string(), own.id.to_string());
    assert_eq!(
        recorded(&pool).await,
        [
            ("created".to_owned(), id.clone()),
            ("created".to_owned(), own_id.clone()),
            ("revoked".to_owned(), id),
            ("revoked".to_owned(), own_id),
        ]
    );
    let (stored, _) = cli.load().await.unwrap();
    assert!(stored
        .iter()
        .all(|k| k.creation_recorded && k.revocation_recorded));
}

//! What only the PostgreSQL store does: state changes that commit with their record, several
//! instances on one chain, failing closed and recovering when the database goes away (import and
//! export: `transfer_tests.rs`; what both stores do: `audit/conformance.rs`). Each test skips
//! loudly without a reachable server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::audit::conformance::{open_postgres, run};
use crate::audit::query::Filter;
use crate::audit::{AuditOptions, FsyncMode, Outcome};
use crate::db::testing::TestDb;

pub(super) async fn store(db: &TestDb, instance: &str) -> PgAuditStore {
    open_postgres(db, instance, &AuditOptions::new(FsyncMode::Always)).await
}

pub(super) fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    // The readers block on the runtime: from a thread of their own, as spawn_blocking gives them.
    std::thread::spawn(work).join().unwrap()
}

pub(super) async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// A change that registers an instance row, holding or not.
struct Register {
    id: String,
    holds: bool,
}

impl crate::db::Change for Register {
    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO instances (id) VALUES ($1)")
                .bind(&self.id)
                .execute(&mut *conn)
                .await?;
            Ok(self.holds)
        })
    }
}

/// A change the database refuses (a table that does not exist).
struct Broken;

impl crate::db::Change for Broken {
    fn apply<'c>(&'c self, conn: &'c mut PgConnection) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
        Box::pin(async move {
            sqlx::query("UPDATE no_such_table SET x = 1")
                .execute(conn)
                .await?;
            Ok(true)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_commits_with_its_record() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = store(&db, "a").await;
    let change = Arc::new(Register {
        id: "registered".into(),
        holds: true,
    });
    let receipt = store
        .append_with(run("t1", Outcome::Started), change)
        .await
        .unwrap();
    assert_eq!(receipt.seq, 1);
    let pool = store.pool();
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM instances WHERE id = 'registered'"
        )
        .await,
        1
    );
    assert_eq!(count(pool, "SELECT count(*) FROM audit_records").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_does_not_hold_is_a_conflict_and_nothing_is_appended() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = store(&db, "a").await;
    let change = Arc::new(Register {
        id: "undone".into(),
        holds: false,
    });
    let refused = store.append_with(run("t1", Outcome::Started), change).await;
    assert!(
        matches!(refused, Err(AuditError::Conflict(_))),
        "{refused:?}"
    );
    let pool = store.pool();
    assert_eq!(count(pool, "SELECT count(*) FROM audit_records").await, 0);
    assert_eq!(count(pool, "SELECT count(*) FROM instances").await, 0);
    assert_eq!(count(pool, "SELECT seq FROM audit_head").await, 0);
    assert!(store.status().healthy);
    // The chain goes on from where it was.
    assert_eq!(
        store.append(run("t2", Outcome::Started)).await.unwrap().seq,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_refused_changes_in_a_batch_leave_the_others_appended() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = store(&db, "a").await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let record = run(&format!("t{i}"), Outcome::Started);
            match i % 3 {
                0 => store.append(record).await,
                1 => {
                    let change = Arc::new(Register {
                        id: format!("i{i}"),
                        holds: i % 2 == 0,
                    });
                    store.append_with(record, change).await
                }
                _ => store.append_with(record, Arc::new(Broken)).await,
            }
        }));
    }
    let mut appended = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        match (i % 3, i % 2 == 0) {
            (0, _) | (1, true) => {
                result.unwrap();
                appended += 1;
            }
            (1, false) => assert!(matches!(result, Err(AuditError::Conflict(_)))),
            _ => assert!(matches!(result, Err(AuditError::Write(_))), "{result:?}"),
        }
    }
    let pool = store.pool();
    assert_eq!(
        count(pool, "SELECT count(*) FROM audit_records").await,
        appended
    );
    // Only the changes that held are left.
    assert_eq!(count(pool, "SELECT count(*) FROM instances").await, 10);
    assert!(store.status().healthy);
    let reader = store.reader().clone();
    let report = blocking(move || reader.verify(&VerifyOptions::default())).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, appended as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_append_to_one_chain_and_sign_their_records() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (a, b) = (
        store(&db, "instance-a").await,
        store(&db, "instance-b").await,
    );
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.append(run(&format!("t{i}"), Outcome::Started)).await
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());
    let reader = a.reader().clone();
    let (report, records) = blocking(move || {
        let report = reader.verify(&VerifyOptions::default());
        let mut records = Vec::new();
        reader.for_each(&Filter::default(), &mut |r| records.push(r))?;
        report.map(|report| (report, records))
    })
    .unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, 300);
    let by = |name: &str| records.iter().filter(|r| r["instance"] == name).count();
    assert_eq!((by("instance-a"), by("instance-b")), (150, 150));
    let columns: i64 = count(
        a.pool(),
        "SELECT count(*) FROM audit_records WHERE instance IN ('instance-a', 'instance-b')",
    )
    .await;
    assert_eq!(columns, 300);
    // Timestamps never go back along the chain, whichever instance stamped them.
    let stamps: Vec<&str> = records
        .iter()
        .filter_map(|r| r["timestamp"].as_str())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_behind_the_head_stamps_with_the_head() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = store(&db, "a").await;
    store.append(run("t1", Outcome::Started)).await.unwrap();
    let ahead = "2999-01-01T00:00:00.000000Z";
    sqlx::query("UPDATE audit_head SET stamp = $1")
        .bind(ahead)
        .execute(store.pool())
        .await
        .unwrap();
    store.append(run("t2", Outcome::Started)).await.unwrap();
    let reader = store.reader().clone();
    let page = blocking(move || reader.query(&Filter::default(), 10)).unwrap();
    assert_eq!(page.entries[1]["timestamp"], ahead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_row_fails_verification() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = store(&db, "a").await;
    for i in 0..5 {
        store
            .append(run(&format!("t{i}"), Outcome::Started))
            .await
            .unwrap();
    }
    sqlx::query(
        "UPDATE audit_records SET line = convert_to(replace(convert_from(line, 'UTF8'), 'started', 'success'), 'UTF8') WHERE seq = 3",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let reader = store.reader().clone();
    let report = blocking(move || reader.verify(&VerifyOptions::default())).unwrap();
    let problem = report.problem.expect("the edit is found");
    assert_eq!(problem.line, 3);
    assert!(problem.message.contains("edited"), "{}", problem.message);
}

/// A TCP relay to PostgreSQL that can be cut (every connection reset, new ones closed at once)
/// and restored, as a network or server outage looks to the store.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accepting, tracked) = (Arc::clone(&up), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                crate::sync::lock(&tracked).push(task.abort_handle());
            }
        });
        Relay {
            port,
            up,
            connections,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in crate::sync::lock(&self.connections).drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `url` reached through a relay on `port`.
fn through(url: &str, port: u16) -> String {
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let user = options.get_username();
    let database = options.get_database().unwrap_or("postgres");
    format!("postgres://{user}@127.0.0.1:{port}/{database}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_fails_appends_closed_and_the_store_recovers_by_itself() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let options: sqlx::postgres::PgConnectOptions = db.url().parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let relay = Relay::start(target).await;
    let timeout = Duration::from_secs(2);
    let pool = crate::db::connect(&through(db.url(), relay.port), timeout)
        .await
        .unwrap();
    crate::db::migrate(&pool).await.unwrap();
    let mut options = PgStoreOptions::new();
    options.timeout = timeout;
    let store = PgAuditStore::open(pool, "a".into(), options).await.unwrap();
    store.append(run("t1", Outcome::Started)).await.unwrap();

    relay.cut();
    let started = std::time::Instant::now();
    let failed = store.append(run("t2", Outcome::Started)).await;
    assert!(matches!(failed, Err(AuditError::Write(_))), "{failed:?}");
    assert!(started.elapsed() < timeout * 3, "{:?}", started.elapsed());
    let status = store.status();
    assert!(!status.healthy);
    assert!(status.last_error.is_some());

    // Healthy again without any append: the writer probes while unhealthy.
    relay.restore();
    let mut waited = Duration::ZERO;
    while !store.status().healthy && waited < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    let status = store.status();
    assert!(status.healthy, "{status:?}");
    assert_eq!(status.last_error, None);
    assert_eq!(
        store.append(run("t3", Outcome::Started)).await.unwrap().seq,
        2
    );
    let reader = store.reader().clone();
    let report = blocking(move || reader.verify(&VerifyOptions::default())).unwrap();
    assert!(report.is_valid() && report.records == 2, "{report:?}");
}

//! The `AuditStore` contract, run on both stores: the JSONL log and the PostgreSQL chain behave
//! alike behind the trait (order and receipts, a chain that verifies, the same answers to the same
//! filters, signed checkpoints, concurrent appends). PostgreSQL tests skip loudly when no server is
//! reachable (see `db::testing`).

use std::any::Any;
use std::sync::Arc;

use serde_json::{json, Value};

use super::checkpoint::{PublicKey, Signer};
use super::query::{parse_timestamp, Filter, Page};
use super::verify::{Report, VerifyOptions};
use super::*;
use crate::auth::Principal;
use crate::db::testing::TestDb;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Jsonl,
    Postgres,
}

/// A store under test, with what keeps it alive (its directory or database).
struct Subject {
    store: Arc<dyn AuditStore>,
    public_key: Option<PublicKey>,
    _keep: Vec<Box<dyn Any + Send>>,
}

const SEED: [u8; 32] = [7; 32];

fn public_key(dir: &Path) -> PublicKey {
    let path = dir.join("audit-signing.pub");
    std::fs::write(&path, Signer::from_seed(SEED).public_hex()).unwrap();
    PublicKey::from_file(&path).unwrap()
}

impl Subject {
    /// A new, empty store; signed with a checkpoint every `checkpoint_every` records when that is
    /// not 0. `None` when PostgreSQL is not reachable (the test is skipped).
    async fn open(kind: Kind, checkpoint_every: u64) -> Option<Subject> {
        let dir = tempfile::tempdir().unwrap();
        let signer = (checkpoint_every > 0).then(|| Signer::from_seed(SEED));
        let public_key = signer.as_ref().map(|_| public_key(dir.path()));
        let mut options = AuditOptions::new(FsyncMode::Always);
        options.store.signer = signer;
        options.store.checkpoint_every = checkpoint_every;
        match kind {
            Kind::Jsonl => {
                let log = AuditLog::open_with(&dir.path().join("audit.jsonl"), options).unwrap();
                Some(Subject {
                    store: Arc::new(log),
                    public_key,
                    _keep: vec![Box::new(dir)],
                })
            }
            Kind::Postgres => {
                let db = TestDb::create().await?;
                let store = open_postgres(&db, "instance-a", &options).await;
                Some(Subject {
                    store: Arc::new(store),
                    public_key,
                    _keep: vec![Box::new(dir), Box::new(db)],
                })
            }
        }
    }

    async fn append(&self, record: Record) -> Receipt {
        self.store.append(record).await.unwrap()
    }

    async fn query(&self, filter: Filter, limit: usize) -> Page {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.query(&filter, limit))
            .await
            .unwrap()
            .unwrap()
    }

    async fn all(&self) -> Vec<Value> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            store.for_each(&Filter::default(), &mut |v| all.push(v))?;
            Ok::<_, std::io::Error>(all)
        })
        .await
        .unwrap()
        .unwrap()
    }

    async fn verify(&self) -> Report {
        let store = Arc::clone(&self.store);
        let options = VerifyOptions {
            public_key: self.public_key.clone(),
            live: true,
        };
        tokio::task::spawn_blocking(move || store.verify(&options))
            .await
            .unwrap()
            .unwrap()
    }
}

/// A PostgreSQL store on `db` (its schema applied), as `instance`, with `options`' signing.
pub(super) async fn open_postgres(
    db: &TestDb,
    instance: &str,
    options: &AuditOptions,
) -> PgAuditStore {
    let pool = crate::db::connect(db.url(), std::time::Duration::from_secs(10))
        .await
        .unwrap();
    crate::db::migrate(&pool).await.unwrap();
    let options = PgStoreOptions::from_audit(options, std::time::Duration::from_secs(10));
    PgAuditStore::open(pool, instance.to_owned(), options)
        .await
        .unwrap()
}

pub(super) fn run(trace: &str, outcome: Outcome) -> Record {
    Record::Run(RunRecord {
        trace_id: trace.to_owned(),
        aim: json!({"actor": {"name": "Jake Smith", "email": "jake@example.org"}}),
        drag_mode: Some("execute".into()),
        workflow_name: Some("noop".into()),
        parameters: json!({"v": "é"}),
        outcome,
        error: None,
        code: None,
        duration_seconds: Some(0.25),
        principal: None,
        steps: Value::Null,
        governed: None,
        policy_rule: None,
    })
}

/// A mixed trail: runs of several traces, workflows, modes, actors and outcomes, and approvals.
fn mixed() -> Vec<Record> {
    let mut records = Vec::new();
    for i in 0..24 {
        let Record::Run(mut run) = run(&format!("t{}", i % 5), Outcome::Started) else {
            unreachable!()
        };
        run.outcome = [Outcome::Started, Outcome::Success, Outcome::Failure][i % 3];
        run.workflow_name = Some(["noop", "deploy"][i % 2].to_owned());
        run.drag_mode = Some(["execute", "draft", "research"][i % 3].to_owned());
        if i % 4 == 0 {
            run.aim = json!({"actor": {"name": "Ann", "email": "ann@example.org"}});
        }
        records.push(Record::Run(run));
        if i % 6 == 0 {
            records.push(Record::Approval {
                trace_id: format!("t{}", i % 5),
                workflow_name: "deploy".to_owned(),
                decision: "requested".to_owned(),
                actor: Principal::local_operator(),
                requested_by: None,
                reason: None,
                expires_at: "2030-01-01T00:00:00Z".to_owned(),
                request: None,
                policy_rule: None,
            });
        }
    }
    records
}

fn summary(page: &Page) -> (Vec<(u64, String, String)>, Option<u64>) {
    let rows = page
        .entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or(0),
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["trace_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    (rows, page.next_cursor)
}

fn filters() -> Vec<Filter> {
    let mut filters = vec![
        Filter::default(),
        Filter {
            trace_id: Some("t3".into()),
            ..Default::default()
        },
        Filter {
            kind: Some("approval".into()),
            ..Default::default()
        },
        // Not normalized: the matcher ignores ASCII case, and so must the index.
        Filter {
            kind: Some(" RUN ".into()),
            outcome: Some("success".into()),
            ..Default::default()
        },
        Filter {
            trace_id: Some("t1".into()),
            kind: Some("approval".into()),
            ..Default::default()
        },
        Filter {
            actor: Some("ANN@example.org".into()),
            ..Default::default()
        },
        Filter {
            workflow: Some("deploy".into()),
            drag_mode: Some("draft".into()),
            ..Default::default()
        },
        Filter {
            since: Some(parse_timestamp("2000-01-01T00:00:00Z").unwrap()),
            after_seq: Some(7),
            ..Default::default()
        },
        Filter {
            until: Some(parse_timestamp("2000-01-01T00:00:00Z").unwrap()),
            ..Default::default()
        },
        Filter {
            trace_id: Some("nobody".into()),
            ..Default::default()
        },
    ];
    for after in [0, 3, 11] {
        filters.push(Filter {
            after_seq: Some(after),
            ..Default::default()
        });
    }
    filters
}

async fn appends_are_numbered_in_order_and_receipts_name_the_lines(kind: Kind) {
    let Some(subject) = Subject::open(kind, 0).await else {
        return;
    };
    let mut receipts = Vec::new();
    for i in 0..5 {
        receipts.push(
            subject
                .append(run(&format!("t{i}"), Outcome::Started))
                .await,
        );
    }
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let all = subject.all().await;
    assert_eq!(all.len(), 5);
    let mut prev = format::GENESIS_HASH.to_owned();
    for (record, receipt) in all.iter().zip(&receipts) {
        assert_eq!(record["seq"], receipt.seq);
        assert_eq!(record["integrity_hash"], receipt.hash.as_str());
        assert_eq!(record["prev_hash"], prev.as_str());
        prev.clone_from(&receipt.hash);
    }
    assert_eq!(subject.store.status().head_seq, 5);
    assert!(subject.store.status().healthy);
}

async fn the_chain_verifies(kind: Kind) {
    let Some(subject) = Subject::open(kind, 0).await else {
        return;
    };
    for record in mixed() {
        subject.append(record).await;
    }
    let report = subject.verify().await;
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, mixed().len() as u64);
    assert_eq!(report.head_seq, mixed().len() as u64);
}

async fn signed_checkpoints_verify_with_the_public_key(kind: Kind) {
    let Some(subject) = Subject::open(kind, 4).await else {
        return;
    };
    for i in 0..10 {
        subject
            .append(run(&format!("t{i}"), Outcome::Started))
            .await;
    }
    subject.store.close().await;
    let report = subject.verify().await;
    assert!(report.is_valid(), "{report:?}");
    // After records 4 and 8 (each in the same write as the record completing the count), and at
    // close.
    assert_eq!(report.checkpoints, 3, "{report:?}");
    assert_eq!(report.last_checkpoint_seq, Some(report.head_seq - 1));
    assert!(subject.store.status().signing);
}

async fn concurrent_appends_land_in_one_gap_free_chain(kind: Kind) {
    let Some(subject) = Subject::open(kind, 0).await else {
        return;
    };
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = Arc::clone(&subject.store);
        tasks.push(tokio::spawn(async move {
            store.append(run(&format!("t{i}"), Outcome::Started)).await
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    let report = subject.verify().await;
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, 200);
    assert_eq!(subject.store.status().head_seq, 200);
}

async fn appends_after_close_are_refused(kind: Kind) {
    let Some(subject) = Subject::open(kind, 0).await else {
        return;
    };
    subject.append(run("t", Outcome::Started)).await;
    subject.store.close().await;
    assert!(matches!(
        subject.store.append(run("t", Outcome::Success)).await,
        Err(AuditError::Stopped)
    ));
}

macro_rules! on_both_stores {
    ($($behaviour:ident),* $(,)?) => {
        mod jsonl {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Kind::Jsonl).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::Kind::Postgres).await
                }
            )*
        }
    };
}

on_both_stores!(
    appends_are_numbered_in_order_and_receipts_name_the_lines,
    the_chain_verifies,
    signed_checkpoints_verify_with_the_public_key,
    concurrent_appends_land_in_one_gap_free_chain,
    appends_after_close_are_refused,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_answer_every_filter_and_cursor_alike() {
    let Some(postgres) = Subject::open(Kind::Postgres, 0).await else {
        return;
    };
    let jsonl = Subject::open(Kind::Jsonl, 0).await.unwrap();
    for record in mixed() {
        jsonl.append(record.clone()).await;
        postgres.append(record).await;
    }
    for filter in filters() {
        for limit in [1, 3, 1000] {
            let expected = summary(&jsonl.query(filter.clone(), limit).await);
            let found = summary(&postgres.query(filter.clone(), limit).await);
            assert_eq!(found, expected, "{filter:?}, limit {limit}");
        }
        // Paging through with the cursor gives the same records as one page.
        let mut paged = Vec::new();
        let mut cursor = filter.clone();
        loop {
            let page = postgres.query(cursor.clone(), 2).await;
            paged.extend(summary(&page).0);
            match page.next_cursor {
                Some(next) => cursor.after_seq = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, summary(&jsonl.query(filter.clone(), 1000).await).0);
    }
    let strip = |records: Vec<Value>| -> Vec<Value> {
        records
            .into_iter()
            .map(|mut r| {
                for volatile in ["timestamp", "prev_hash", "integrity_hash", "instance"] {
                    r.as_object_mut().unwrap().remove(volatile);
                }
                r
            })
            .collect()
    };
    assert_eq!(strip(postgres.all().await), strip(jsonl.all().await));
}

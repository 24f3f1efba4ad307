//! Import and export: a JSONL log into an empty chain and back, byte for byte. Each test skips
//! loudly without a reachable server.

use std::time::Duration;

use super::tests::{blocking, count, store};
use super::*;
use crate::audit::conformance::{open_postgres, run};
use crate::audit::query::Filter;
use crate::audit::{AuditOptions, FsyncMode, JsonlStore, Outcome, StoreOptions};
use crate::db::testing::TestDb;

fn write_jsonl(path: &std::path::Path, options: StoreOptions, n: usize) {
    let (mut store, _) = JsonlStore::open(path, options).unwrap();
    let records: Vec<Record> = (0..n)
        .map(|i| run(&format!("t{i}"), Outcome::Success))
        .collect();
    for chunk in records.chunks(3) {
        store.append_batch(chunk).unwrap();
    }
    store.checkpoint_now().unwrap();
}

/// Imports `path` into `db` from a thread outside the runtime, as the command line does.
async fn import_into(
    db: &TestDb,
    path: &std::path::Path,
    options: VerifyOptions,
) -> Result<Imported, ImportError> {
    let pool = crate::db::connect(db.url(), Duration::from_secs(10))
        .await
        .unwrap();
    crate::db::migrate(&pool).await.unwrap();
    let (runtime, path) = (tokio::runtime::Handle::current(), path.to_owned());
    blocking(move || import(&runtime, &pool, &path, &options))
}

fn exported(reader: &PgReader) -> Vec<u8> {
    let mut out = Vec::new();
    export(reader, &Filter::default(), &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_log_exports_byte_for_byte_and_the_chain_continues() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let signer = crate::audit::checkpoint::Signer::from_seed([3; 32]);
    let key_path = dir.path().join("key.pub");
    std::fs::write(&key_path, signer.public_hex()).unwrap();
    let mut options = StoreOptions::new(FsyncMode::Never);
    options.signer = Some(signer.clone());
    options.checkpoint_every = 4;
    options.segment_max_bytes = 2000;
    write_jsonl(&path, options, 10);
    assert!(!crate::audit::segments::rotated(&path).unwrap().is_empty());
    let key = crate::audit::checkpoint::PublicKey::from_file(&key_path).unwrap();
    let signed = VerifyOptions {
        public_key: Some(key),
        live: false,
    };
    let imported = import_into(&db, &path, signed.clone()).await.unwrap();
    let original: Vec<u8> = crate::audit::segments::log_files(&path)
        .unwrap()
        .iter()
        .flat_map(|f| std::fs::read(&f.path).unwrap())
        .collect();
    assert_eq!(
        imported.records,
        original.split(|b| *b == b'\n').count() as u64 - 1
    );
    assert_eq!(imported.first_seq, 1);
    assert_eq!(imported.checkpoint_seq, imported.head_seq);

    let mut audit = AuditOptions::new(FsyncMode::Always);
    audit.store.signer = Some(signer);
    audit.store.checkpoint_every = 4;
    let store = open_postgres(&db, "a", &audit).await;
    let reader = store.reader().clone();
    let copy = blocking(move || exported(&reader));
    assert_eq!(copy, original);

    let receipt = store.append(run("after", Outcome::Started)).await.unwrap();
    assert_eq!(receipt.seq, imported.head_seq + 1);
    let reader = store.reader().clone();
    let (report, page) = blocking(move || {
        let report = reader.verify(&signed).unwrap();
        let after = Filter {
            after_seq: Some(imported.head_seq),
            ..Default::default()
        };
        (report, reader.query(&after, 1).unwrap())
    });
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(page.entries[0]["prev_hash"], imported.head_hash.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_database_that_holds_a_chain() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = store(&db, "a").await;
    store.append(run("t1", Outcome::Started)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_jsonl(&path, StoreOptions::new(FsyncMode::Never), 3);
    let refused = import_into(&db, &path, VerifyOptions::default()).await;
    assert!(
        matches!(refused, Err(ImportError::NotEmpty(1))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_does_not_verify_imports_nothing() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_jsonl(&path, StoreOptions::new(FsyncMode::Never), 5);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"t3\"", "\"t9\"", 1)).unwrap();
    let refused = import_into(&db, &path, VerifyOptions::default()).await;
    match refused {
        Err(ImportError::Invalid(problem)) => assert_eq!(problem.line, 4),
        other => panic!("{other:?}"),
    }
    let pool = crate::db::connect(db.url(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM audit_records").await, 0);
    assert_eq!(count(&pool, "SELECT seq FROM audit_head").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_by_retention_imports_from_its_first_seq_and_verifies() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut options = StoreOptions::new(FsyncMode::Never);
    options.segment_max_bytes = 1500;
    write_jsonl(&path, options.clone(), 18);
    crate::audit::tests::age_log(&path, 100);
    options.retention_days = 90;
    let (mut log, _) = JsonlStore::open(&path, options).unwrap();
    log.apply_retention()
        .unwrap()
        .expect("old segments removed");
    drop(log);

    let imported = import_into(&db, &path, VerifyOptions::default())
        .await
        .unwrap();
    assert!(imported.first_seq > 1, "{imported:?}");
    let store = store(&db, "a").await;
    store.append(run("after", Outcome::Started)).await.unwrap();
    let reader = store.reader().clone();
    let report = blocking(move || reader.verify(&VerifyOptions::default())).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.first_seq, imported.first_seq);
}

use std::io::Write;

use serde_json::json;

use super::verify::verify_path;
use super::*;

fn run(trace: &str, outcome: Outcome) -> Record {
    Record::Run(RunRecord {
        trace_id: trace.to_owned(),
        aim: json!({"actor": {"name": "Jake Smith"}}),
        drag_mode: Some("execute".into()),
        workflow_name: Some("noop".into()),
        parameters: json!({"v": "é"}),
        outcome,
        error: None,
        code: None,
        duration_seconds: Some(0.25),
        principal: None,
    })
}

fn write_records(path: &Path, n: usize) {
    let (mut store, recovery) = JsonlStore::open(path, FsyncMode::Never).unwrap();
    assert!(recovery.is_none());
    let records: Vec<Record> = (0..n)
        .map(|i| run(&format!("t{i}"), Outcome::Success))
        .collect();
    store.append_batch(&records).unwrap();
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn a_written_log_verifies_and_carries_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/audit.jsonl");
    write_records(&path, 3);
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, 3);
    let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    for field in [
        "trace_id",
        "timestamp",
        "aim",
        "drag_mode",
        "workflow_name",
        "parameters",
        "outcome",
        "error",
        "duration_seconds",
        "integrity_hash",
        "seq",
        "prev_hash",
        "kind",
    ] {
        assert!(first.get(field).is_some(), "missing {field}");
    }
    assert_eq!(first["prev_hash"], format::GENESIS_HASH);
}

#[test]
fn an_edited_line_fails_verification_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 3);
    let mut all = lines(&path);
    all[1] = all[1].replace("\"success\"", "\"failure\"");
    rewrite(&path, &all);
    let problem = verify_path(&path)
        .unwrap()
        .problem
        .expect("tampering detected");
    assert_eq!(problem.line, 2);
    assert!(problem.message.contains("edited"), "{}", problem.message);
}

#[test]
fn a_deleted_line_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 3);
    let mut all = lines(&path);
    all.remove(1);
    rewrite(&path, &all);
    assert_eq!(
        verify_path(&path).unwrap().problem.expect("detected").line,
        2
    );
}

#[test]
fn reordered_lines_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 3);
    let mut all = lines(&path);
    all.swap(0, 1);
    rewrite(&path, &all);
    assert_eq!(
        verify_path(&path).unwrap().problem.expect("detected").line,
        1
    );
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 2);
    write_records(&path, 2);
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.head_seq, 4);
}

#[test]
fn a_torn_tail_is_cut_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 2);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"kind\":\"run\",\"seq\":3,\"tra")
        .unwrap();
    assert!(!verify_path(&path).unwrap().is_valid());
    let (mut store, recovery) = JsonlStore::open(&path, FsyncMode::Never).unwrap();
    let recovery = recovery.expect("a recovery record");
    store.append_batch(&[recovery]).unwrap();
    drop(store);
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid(), "{report:?}");
    let last: serde_json::Value = serde_json::from_str(lines(&path).last().unwrap()).unwrap();
    assert_eq!(last["kind"], "recovery");
    assert_eq!(last["cut_length"], 26);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let _first = JsonlStore::open(&path, FsyncMode::Never).unwrap();
    assert!(matches!(
        JsonlStore::open(&path, FsyncMode::Never),
        Err(AuditError::Locked(_))
    ));
}

#[test]
fn a_corrupt_head_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 1);
    let mut all = lines(&path);
    all[0] = all[0].replace("t0", "t9");
    rewrite(&path, &all);
    assert!(matches!(
        JsonlStore::open(&path, FsyncMode::Never),
        Err(AuditError::CorruptHead(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_land_in_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, FsyncMode::Always).unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(run(&format!("t{i}"), Outcome::Started)).await
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid());
    assert_eq!(report.records, 200);
    assert_eq!(log.status().head_seq, 200);
}

use std::io::Write;

use serde_json::json;

use super::verify::verify_path;
use super::*;
use super::{checkpoint, segments, verify};

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
        steps: serde_json::Value::Null,
        governed: None,
        policy_rule: None,
    })
}

fn write_records(path: &Path, n: usize) {
    let (mut store, recovery) =
        JsonlStore::open(path, StoreOptions::new(FsyncMode::Never)).unwrap();
    assert!(recovery.is_empty());
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
    let (mut store, recovery) =
        JsonlStore::open(&path, StoreOptions::new(FsyncMode::Never)).unwrap();
    assert_eq!(recovery.len(), 1, "a recovery record");
    store.append_batch(&recovery).unwrap();
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
    let _first = JsonlStore::open(&path, StoreOptions::new(FsyncMode::Never)).unwrap();
    assert!(matches!(
        JsonlStore::open(&path, StoreOptions::new(FsyncMode::Never)),
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
        JsonlStore::open(&path, StoreOptions::new(FsyncMode::Never)),
        Err(AuditError::CorruptHead(_))
    ));
}

fn store_with(path: &Path, options: StoreOptions) -> JsonlStore {
    let (store, startup) = JsonlStore::open(path, options).unwrap();
    assert!(startup.is_empty());
    store
}

fn append_runs(store: &mut JsonlStore, n: usize) {
    let records: Vec<Record> = (0..n)
        .map(|i| run(&format!("r{i}"), Outcome::Success))
        .collect();
    store.append_batch(&records).unwrap();
}

#[test]
fn rotation_by_size_continues_the_chain_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut options = StoreOptions::new(FsyncMode::Never);
    options.segment_max_bytes = 2000;
    let mut store = store_with(&path, options.clone());
    for _ in 0..10 {
        append_runs(&mut store, 3);
    }
    drop(store);
    let files = segments::log_files(&path).unwrap();
    assert!(files.len() > 3, "{files:?}");
    assert_eq!(files[0].first_seq, Some(1));
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!((report.records, report.files), (30, files.len()));
    assert_eq!(
        verify_path(dir.path()).unwrap(),
        report,
        "a directory verifies the same"
    );
    // A reopened store continues from the head even when the active file is empty.
    let mut store = store_with(&path, options);
    append_runs(&mut store, 1);
    drop(store);
    assert_eq!(verify_path(&path).unwrap().head_seq, 31);
}

#[test]
fn a_missing_segment_breaks_verification() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut options = StoreOptions::new(FsyncMode::Never);
    options.segment_max_bytes = 1500;
    let mut store = store_with(&path, options);
    for _ in 0..6 {
        append_runs(&mut store, 3);
    }
    drop(store);
    let files = segments::log_files(&path).unwrap();
    std::fs::remove_file(&files[1].path).unwrap();
    let report = verify_path(&path).unwrap();
    let problem = report.problem.expect("a gap is detected");
    assert_eq!(problem.file.as_deref(), Some(files[2].path.as_path()));
    assert_eq!(problem.line, 1);
}

/// Backdates every record of a segment by rewriting it with old timestamps (re-chained from its
/// original predecessor), as if it had been written `days` ago.
pub(super) fn age_log(path: &Path, days: i64) {
    let old = (chrono::Utc::now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut prev = format::GENESIS_HASH.to_owned();
    for file in segments::log_files(path).unwrap() {
        let mut out = Vec::new();
        for line in std::fs::read_to_string(&file.path).unwrap().lines() {
            let (body, _) = format::split_line(line.as_bytes()).unwrap();
            let mut fields: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&body).unwrap();
            fields.insert("timestamp".into(), json!(old));
            fields.insert("prev_hash".into(), json!(prev));
            let (encoded, hash) = format::encode_line(fields);
            out.extend_from_slice(&encoded);
            prev = hash;
        }
        std::fs::write(&file.path, out).unwrap();
    }
}

#[test]
fn retention_removes_old_segments_and_records_it_so_the_rest_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut options = StoreOptions::new(FsyncMode::Never);
    options.segment_max_bytes = 1500;
    let mut store = store_with(&path, options.clone());
    for _ in 0..6 {
        append_runs(&mut store, 3);
    }
    drop(store);
    age_log(&path, 100);
    let before = segments::rotated(&path).unwrap();
    assert!(before.len() >= 2);

    options.retention_days = 90;
    let (mut store, _) = JsonlStore::open(&path, options).unwrap();
    let receipt = store
        .apply_retention()
        .unwrap()
        .expect("old segments removed");
    append_runs(&mut store, 2);
    drop(store);
    for old in &before {
        assert!(
            !old.path.exists(),
            "{} is older than 90 days",
            old.path.display()
        );
    }
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert!(report.first_seq > 1);
    let retention = lines(&path)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "retention")
        .expect("a retention record");
    assert_eq!(retention["seq"], receipt.seq);
    assert_eq!(retention["removed_first_seq"], 1);
    assert_eq!(
        retention["removed_segments"].as_array().unwrap().len(),
        before.len()
    );
    assert_eq!(
        retention["removed_through_seq"].as_u64().unwrap() + 1,
        report.first_seq
    );
}

#[test]
fn a_log_cut_at_the_front_without_a_retention_record_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_records(&path, 4);
    let mut all = lines(&path);
    all.remove(0);
    rewrite(&path, &all);
    let problem = verify_path(&path).unwrap().problem.expect("detected");
    assert_eq!(problem.line, 1);
    assert!(problem.message.contains("retention"), "{}", problem.message);
}

fn signed_options(dir: &Path) -> (StoreOptions, checkpoint::PublicKey) {
    let (private, public) = checkpoint::keygen(&dir.join("keys")).unwrap();
    let mut options = StoreOptions::new(FsyncMode::Never);
    options.signer = Some(checkpoint::Signer::from_file(&private).unwrap());
    options.checkpoint_every = 4;
    (options, checkpoint::PublicKey::from_file(&public).unwrap())
}

fn verify_signed(path: &Path, key: &checkpoint::PublicKey) -> verify::Report {
    verify::verify_log(
        path,
        &verify::VerifyOptions {
            public_key: Some(key.clone()),
            live: false,
        },
    )
    .unwrap()
}

#[test]
fn checkpoints_are_signed_every_n_records_and_verify_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (options, key) = signed_options(dir.path());
    let mut store = store_with(&path, options);
    for _ in 0..5 {
        append_runs(&mut store, 2);
    }
    store.checkpoint_now().unwrap().expect("a final checkpoint");
    assert!(
        store.checkpoint_now().unwrap().is_none(),
        "nothing new since"
    );
    drop(store);
    let report = verify_signed(&path, &key);
    assert!(report.is_valid(), "{report:?}");
    assert!(report.checkpoints >= 3);
    assert_eq!(report.last_checkpoint_seq, Some(report.head_seq - 1));
}

#[test]
fn a_rehashed_forgery_verifies_as_a_chain_but_fails_against_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (options, key) = signed_options(dir.path());
    let mut store = store_with(&path, options);
    for _ in 0..4 {
        append_runs(&mut store, 2);
    }
    drop(store);
    // The forger edits the first record and re-hashes every line after it, checkpoints included.
    let mut prev = format::GENESIS_HASH.to_owned();
    let mut out = Vec::new();
    for (i, line) in lines(&path).iter().enumerate() {
        let (body, _) = format::split_line(line.as_bytes()).unwrap();
        let mut fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).unwrap();
        if i == 0 {
            fields.insert("outcome".into(), json!("failure"));
        }
        if fields["kind"] == "checkpoint" {
            fields.insert("covered_hash".into(), json!(prev));
        }
        fields.insert("prev_hash".into(), json!(prev));
        let (encoded, hash) = format::encode_line(fields);
        out.extend_from_slice(&encoded);
        prev = hash;
    }
    std::fs::write(&path, out).unwrap();
    assert!(
        verify_path(&path).unwrap().is_valid(),
        "the chain alone cannot tell"
    );
    let report = verify_signed(&path, &key);
    let problem = report.problem.expect("the signature catches the rewrite");
    assert!(problem.message.contains("signature"), "{}", problem.message);

    // Dropping the checkpoints altogether does not help either.
    let other = tempfile::tempdir().unwrap();
    let unsigned = other.path().join("audit.jsonl");
    write_records(&unsigned, 3);
    assert!(verify_signed(&unsigned, &key)
        .problem
        .expect("no checkpoint")
        .message
        .contains("no signed checkpoint"));
}

#[test]
fn a_checkpoint_signed_by_another_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (options, _) = signed_options(dir.path());
    let mut store = store_with(&path, options);
    append_runs(&mut store, 4);
    drop(store);
    let (_, other_public) = checkpoint::keygen(&dir.path().join("other")).unwrap();
    let other = checkpoint::PublicKey::from_file(&other_public).unwrap();
    assert!(verify_signed(&path, &other)
        .problem
        .expect("refused")
        .message
        .contains("another key"));
}

#[test]
fn a_removed_or_replaced_file_is_refused_and_service_resumes_when_it_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut store = store_with(&path, StoreOptions::new(FsyncMode::Never));
    append_runs(&mut store, 2);
    let moved = dir.path().join("moved-away.jsonl");
    std::fs::rename(&path, &moved).unwrap();
    assert!(
        store
            .append_batch(&[run("lost?", Outcome::Started)])
            .is_err(),
        "nothing is written where no one reads"
    );
    std::fs::write(&path, std::fs::read(&moved).unwrap()).unwrap();
    assert!(
        store
            .append_batch(&[run("copy", Outcome::Started)])
            .is_err(),
        "a copy is another file"
    );
    std::fs::remove_file(&path).unwrap();
    std::fs::rename(&moved, &path).unwrap();
    store
        .append_batch(&[run("back", Outcome::Started)])
        .unwrap();
    drop(store);
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid());
    assert_eq!(report.records, 3);
}

#[test]
fn run_records_encode_directly_exactly_as_through_a_json_tree() {
    let full = Record::Run(RunRecord {
        trace_id: "t-1".into(),
        aim: json!({"mission": {"objective": "x"}, "actor": {"role": "r", "name": "n", "email": "e@x"}}),
        drag_mode: Some("draft".into()),
        workflow_name: Some("w".into()),
        parameters: json!({"z": [1, {"b": 2, "a": 1}], "a": "é\"\n"}),
        outcome: Outcome::Failure,
        error: Some("boom".into()),
        code: Some("WORKFLOW_FAILED"),
        duration_seconds: Some(1.5e-7),
        principal: Some(crate::auth::Principal {
            actor: Some("a@b".into()),
            name: None,
            api_key: None,
            role: "admin".into(),
            roles: Vec::new(),
            user_id: Some(json!(42)),
        }),
        steps: serde_json::Value::Null,
        governed: None,
        // A policy file's rule: a member between `parameters` and `principal`.
        policy_rule: Some(3),
    });
    let sparse = run("t-2", Outcome::Started);
    let mut ungoverned = run("t-3", Outcome::Success);
    if let Record::Run(run) = &mut ungoverned {
        run.governed = Some(false);
    }
    for record in [full, sparse, ungoverned] {
        let (mut direct, mut generic) = (Vec::new(), Vec::new());
        let h1 = encode(&record).seal(3, format::GENESIS_HASH, "T", &mut direct);
        let h2 = encode_generic(&record).seal(3, format::GENESIS_HASH, "T", &mut generic);
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            String::from_utf8(generic).unwrap()
        );
        assert_eq!(h1, h2);
        // With an instance (the shared store): the member in its place by key, whichever way.
        let (mut direct, mut tree) = (Vec::new(), Vec::new());
        encode_for(&record, Some("i-1")).seal(3, format::GENESIS_HASH, "T", &mut direct);
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::to_value(&record) else {
            unreachable!()
        };
        fields.insert("instance".into(), json!("i-1"));
        PreEncoded::new(&fields).seal(3, format::GENESIS_HASH, "T", &mut tree);
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            String::from_utf8(tree).unwrap()
        );
    }
}

#[test]
fn only_the_shared_store_names_an_instance() {
    let record = Record::Recovery {
        cut_offset: 1,
        cut_length: 2,
        cut_hash: "h".into(),
        reason: "r".into(),
    };
    for (instance, expected) in [(None, None), (Some("i-1"), Some("i-1"))] {
        let mut line = Vec::new();
        encode_for(&record, instance).seal(1, format::GENESIS_HASH, "T", &mut line);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value.get("instance").and_then(|v| v.as_str()), expected);
    }
    let mut plain = Vec::new();
    encode(&record).seal(1, format::GENESIS_HASH, "T", &mut plain);
    assert!(!String::from_utf8(plain).unwrap().contains("instance"));
}

#[test]
fn rotation_never_overwrites_an_existing_segment_and_recovers_when_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut options = StoreOptions::new(FsyncMode::Never);
    options.segment_max_bytes = 100;
    let mut store = store_with(&path, options);
    append_runs(&mut store, 2);
    let squatter = segments::segment_path(&path, 1);
    std::fs::write(&squatter, "not ours\n").unwrap();
    let refused = store.append_batch(&[run("blocked", Outcome::Started)]);
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::AlreadyExists)
    );
    assert_eq!(std::fs::read_to_string(&squatter).unwrap(), "not ours\n");
    std::fs::remove_file(&squatter).unwrap();
    append_runs(&mut store, 1);
    drop(store);
    let report = verify_path(&path).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!((report.records, report.files), (3, 2));
}

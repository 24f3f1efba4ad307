use super::*;
use crate::audit::format::{encode_line, GENESIS_HASH};

fn write_log(path: &Path, n: u64) -> Vec<String> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut lines = Vec::new();
    for seq in 1..=n {
        let mut fields = serde_json::Map::new();
        fields.insert("seq".into(), seq.into());
        fields.insert("prev_hash".into(), prev.clone().into());
        fields.insert("kind".into(), "run".into());
        fields.insert("note".into(), "x".repeat((seq % 7) as usize).into());
        let (line, hash) = encode_line(fields);
        lines.push(String::from_utf8(line).unwrap());
        prev = hash;
    }
    std::fs::write(path, lines.concat()).unwrap();
    lines
}

fn both(path: &Path) -> (Report, Report) {
    let files = [path.to_owned()];
    (
        verify_files(&files, u64::MAX, 1, None, false).unwrap(),
        verify_files(&files, 0, 5, None, false).unwrap(),
    )
}

#[test]
fn parallel_and_sequential_verification_agree_on_a_good_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    write_log(&path, 500);
    let (one, many) = both(&path);
    assert!(one.is_valid());
    assert_eq!(one, many);
    assert_eq!(many.records, 500);
}

#[test]
fn parallel_and_sequential_verification_name_the_same_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let lines = write_log(&path, 500);
    for bad in [0usize, 1, 99, 100, 101, 250, 333, 499] {
        // edited
        let mut edited = lines.clone();
        edited[bad] = edited[bad].replace("\"run\"", "\"nur\"");
        std::fs::write(&path, edited.concat()).unwrap();
        let (one, many) = both(&path);
        assert_eq!(one.problem.as_ref().map(|p| p.line), Some(bad as u64 + 1));
        assert_eq!(one, many, "edited line {bad}");
        // deleted
        let mut deleted = lines.clone();
        deleted.remove(bad);
        std::fs::write(&path, deleted.concat()).unwrap();
        let (one, many) = both(&path);
        if bad < 499 {
            assert_eq!(
                one.problem.as_ref().map(|p| p.line),
                Some(bad as u64 + 1),
                "deleted {bad}"
            );
        } else {
            assert!(
                one.is_valid(),
                "deleting the last line leaves a valid shorter chain"
            );
        }
        assert_eq!(one, many, "deleted line {bad}");
    }
    let mut torn = lines.concat();
    torn.pop();
    std::fs::write(&path, torn).unwrap();
    let (one, many) = both(&path);
    assert_eq!(one.problem.as_ref().map(|p| p.line), Some(500));
    assert_eq!(one, many);
}

#[test]
fn a_live_log_leaves_out_a_line_being_written_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let lines = write_log(&path, 10);
    let mut partial = lines.concat().into_bytes();
    let half = lines[9].len() / 2;
    partial.truncate(partial.len() - half);
    std::fs::write(&path, &partial).unwrap();
    let offline = verify_path(&path).unwrap();
    assert!(offline
        .problem
        .as_ref()
        .is_some_and(|p| p.message.starts_with("torn line")));
    let live = VerifyOptions {
        public_key: None,
        live: true,
    };
    let report = verify_log(&path, &live).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.head_seq, 9);
    assert_eq!(report.unfinished_tail_bytes, (lines[9].len() - half) as u64);
    // Complete lines only: nothing is left out.
    std::fs::write(&path, lines.concat()).unwrap();
    let whole = verify_log(&path, &live).unwrap();
    assert_eq!((whole.head_seq, whole.unfinished_tail_bytes), (10, 0));
    // A file with no complete line at all.
    std::fs::write(&path, &lines[0].as_bytes()[..5]).unwrap();
    let none = verify_log(&path, &live).unwrap();
    assert_eq!((none.records, none.unfinished_tail_bytes), (0, 5));
}

#[test]
fn a_reader_verifies_like_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let lines = write_log(&path, 20);
    let report = verify_reader(std::io::Cursor::new(lines.concat())).unwrap();
    assert!(report.is_valid() && report.records == 20 && report.files == 1);
    let mut edited = lines.clone();
    edited[4] = edited[4].replace("\"run\"", "\"nur\"");
    let report = verify_reader(std::io::Cursor::new(edited.concat())).unwrap();
    let problem = report.problem.expect("detected");
    assert_eq!((problem.file, problem.line), (None, 5));
    assert!(verify_reader(std::io::Cursor::new("")).unwrap().is_valid());
}

#[test]
fn an_empty_log_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    std::fs::write(&path, "").unwrap();
    let (one, many) = both(&path);
    assert!(one.is_valid() && one == many && one.records == 0);
}

#[test]
fn a_repeated_chain_member_is_refused() {
    let body = br#"{"prev_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","seq":1,"seq":1}"#;
    let mut line = body[..body.len() - 1].to_vec();
    line.extend_from_slice(
        format!(",\"integrity_hash\":\"{}\"}}\n", &format::hash_body(body)).as_bytes(),
    );
    assert!(check_line(&line, None).is_err());
}

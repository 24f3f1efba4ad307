use std::io::Write;

use serde_json::json;

use super::tail::BACK_CHUNK;
use super::*;
use crate::audit::{FsyncMode, JsonlStore, Outcome, Record, RunRecord, StoreOptions};
use crate::auth::Principal;

fn run(trace: &str, outcome: Outcome, actor: &str, workflow: &str) -> Record {
    Record::Run(RunRecord {
        trace_id: trace.to_owned(),
        aim: json!({"actor": {"name": actor, "email": format!("{}@example.org", actor.to_lowercase())}}),
        drag_mode: Some("execute".into()),
        workflow_name: Some(workflow.into()),
        parameters: json!({"note": "\"quoted\" \\ é"}),
        outcome,
        error: None,
        code: None,
        duration_seconds: None,
        principal: Some(Principal {
            user_id: None,
            actor: Some("token-holder@example.org".into()),
            name: None,
            api_key: None,
            role: "admin".into(),
            roles: Vec::new(),
        }),
        steps: serde_json::Value::Null,
        governed: None,
        policy_rule: None,
    })
}

fn options() -> StoreOptions {
    StoreOptions::new(FsyncMode::Never)
}

/// A log of `n` runs `t0..`, alternating outcome, actor and workflow; one batch per record
/// when `rotate` (so that each batch rotates the active file into a segment).
fn write_log(path: &Path, n: usize, rotate: bool) {
    let mut options = options();
    if rotate {
        options.segment_max_bytes = 1;
    }
    let (mut store, _) = JsonlStore::open(path, options).unwrap();
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let (outcome, actor, workflow) = if i % 2 == 0 {
                (Outcome::Started, "Jake", "deploy")
            } else {
                (Outcome::Success, "Ana", "noop")
            };
            run(&format!("t{i}"), outcome, actor, workflow)
        })
        .collect();
    if rotate {
        for record in records {
            store.append_batch(&[record]).unwrap();
        }
    } else {
        store.append_batch(&records).unwrap();
    }
}

fn seqs(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn all(path: &Path, filter: &Filter) -> Vec<Value> {
    query(path, filter, usize::MAX).unwrap().entries
}

#[test]
fn filters_select_records_and_return_them_whole_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 10, false);

    let everything = all(&path, &Filter::default());
    assert_eq!(seqs(&everything), (1..=10).collect::<Vec<_>>());
    let first = &everything[0];
    assert_eq!(first["trace_id"], "t0");
    assert!(first["integrity_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(first["parameters"]["note"], "\"quoted\" \\ é");

    let by_trace = Filter {
        trace_id: Some("t3".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &by_trace)), [4]);
    let by_outcome = Filter {
        outcome: Some("SUCCESS".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &by_outcome)), [2, 4, 6, 8, 10]);
    let by_workflow = Filter {
        workflow: Some("deploy".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &by_workflow)), [1, 3, 5, 7, 9]);
    assert!(all(
        &path,
        &Filter {
            workflow: Some("Deploy".into()),
            ..Filter::default()
        }
    )
    .is_empty());

    for actor in ["ana", " ANA@example.org ", "Ana"] {
        let by_actor = Filter {
            actor: Some(actor.into()),
            ..Filter::default()
        };
        assert_eq!(seqs(&all(&path, &by_actor)), [2, 4, 6, 8, 10], "{actor}");
    }
    let by_principal = Filter {
        actor: Some("Token-Holder@example.org".into()),
        ..Filter::default()
    };
    assert_eq!(all(&path, &by_principal).len(), 10);
    let nobody = Filter {
        actor: Some("an".into()),
        ..Filter::default()
    };
    assert!(all(&path, &nobody).is_empty(), "no substring matches");

    let combined = Filter {
        actor: Some("jake".into()),
        outcome: Some("started".into()),
        drag_mode: Some("execute".into()),
        kind: Some("run".into()),
        after_seq: Some(4),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &combined)), [5, 7, 9]);
    let other_kind = Filter {
        kind: Some("checkpoint".into()),
        ..Filter::default()
    };
    assert!(all(&path, &other_kind).is_empty());
}

#[test]
fn check_normalizes_fixed_values_and_names_a_bad_one() {
    let mut filter = Filter {
        outcome: Some(" Success".into()),
        drag_mode: Some("EXECUTE".into()),
        kind: Some("Run".into()),
        ..Filter::default()
    };
    filter.check().unwrap();
    assert_eq!(filter.outcome.as_deref(), Some("success"));
    assert_eq!(filter.drag_mode.as_deref(), Some("execute"));
    assert_eq!(filter.kind.as_deref(), Some("run"));
    for (bad, name) in [
        (
            Filter {
                outcome: Some("succeeded".into()),
                ..Filter::default()
            },
            "outcome",
        ),
        (
            Filter {
                drag_mode: Some("analysis".into()),
                ..Filter::default()
            },
            "drag_mode",
        ),
        (
            Filter {
                kind: Some("runs".into()),
                ..Filter::default()
            },
            "kind",
        ),
        (
            Filter {
                since: parse_timestamp("2026-01-02T00:00:00Z").ok(),
                until: parse_timestamp("2026-01-01T00:00:00Z").ok(),
                ..Filter::default()
            },
            "since",
        ),
    ] {
        let mut bad = bad;
        let message = bad.check().unwrap_err();
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn since_is_inclusive_and_until_exclusive_on_the_record_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (mut store, _) = JsonlStore::open(&path, options()).unwrap();
    for i in 0..3 {
        store
            .append_batch(&[run(&format!("t{i}"), Outcome::Success, "Jake", "noop")])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let everything = all(&path, &Filter::default());
    let stamp = |i: usize| parse_timestamp(everything[i]["timestamp"].as_str().unwrap()).unwrap();
    assert!(stamp(0) < stamp(1) && stamp(1) < stamp(2));
    let between = Filter {
        since: Some(stamp(1)),
        until: Some(stamp(2)),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &between)), [2]);
    let from = Filter {
        since: Some(stamp(1)),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &from)), [2, 3]);
    let to = Filter {
        until: Some(stamp(1)),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &to)), [1]);
    let future = Filter {
        since: Some(parse_timestamp("2999-01-01T00:00:00Z").unwrap()),
        ..Filter::default()
    };
    assert!(all(&path, &future).is_empty());
    let past = Filter {
        until: Some(parse_timestamp("2000-01-01T00:00:00+02:00").unwrap()),
        ..Filter::default()
    };
    assert!(all(&path, &past).is_empty());
    assert!(parse_timestamp("yesterday").is_err());
    assert!(parse_timestamp("2026-01-01").is_err());
}

#[test]
fn pages_walk_every_record_once_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 9, true);
    assert_eq!(
        segments::log_files(&path).unwrap().len(),
        9,
        "8 segments and the active file"
    );
    for limit in [1, 2, 4, 9, 10] {
        let mut cursor = None;
        let mut walked = Vec::new();
        let mut pages = 0;
        loop {
            let filter = Filter {
                after_seq: cursor,
                ..Filter::default()
            };
            let page = query(&path, &filter, limit).unwrap();
            assert!(page.entries.len() <= limit);
            walked.extend(seqs(&page.entries));
            pages += 1;
            match page.next_cursor {
                Some(next) => {
                    assert_eq!(Some(&next), walked.last());
                    assert_eq!(page.entries.len(), limit);
                    cursor = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(walked, (1..=9).collect::<Vec<_>>(), "limit {limit}");
        assert_eq!(pages, 9 / limit + 1, "limit {limit}");
    }
    let filtered = Filter {
        outcome: Some("success".into()),
        ..Filter::default()
    };
    let page = query(&path, &filtered, 2).unwrap();
    assert_eq!(seqs(&page.entries), [2, 4]);
    assert_eq!(page.next_cursor, Some(4));
    let rest = query(
        &path,
        &Filter {
            after_seq: Some(4),
            ..filtered
        },
        2,
    )
    .unwrap();
    assert_eq!(seqs(&rest.entries), [6, 8]);
    assert!(query(&path, &Filter::default(), 0)
        .unwrap()
        .entries
        .is_empty());
}

#[test]
fn a_cursor_deep_in_a_large_file_is_found_by_bisection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 6000, false);
    assert!(std::fs::metadata(&path).unwrap().len() > 20 * CLOSE_ENOUGH);
    for after in [0, 1, 2, 777, 2999, 3000, 5997, 5999, 6000, 7000] {
        let filter = Filter {
            after_seq: Some(after),
            ..Filter::default()
        };
        let page = query(&path, &filter, 3).unwrap();
        let expected: Vec<u64> = (after + 1..=6000).take(3).collect();
        assert_eq!(seqs(&page.entries), expected, "after {after}");
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let target = text
        .lines()
        .take(3999)
        .map(|l| l.len() as u64 + 1)
        .sum::<u64>();
    let offset = offset_before(&mut File::open(&path).unwrap(), 4000).unwrap();
    assert!(
        offset <= target && target - offset <= CLOSE_ENOUGH,
        "{offset} for {target}"
    );
    assert!(
        offset == 0 || text.as_bytes()[offset as usize - 1] == b'\n',
        "a line start"
    );

    // A damaged line in the way stops the bisection early, and the answer stays right.
    let mut lines: Vec<&str> = text.lines().collect();
    lines[3000] = "damaged";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    for after in [2998, 2999, 3000, 3001, 5000] {
        let filter = Filter {
            after_seq: Some(after),
            ..Filter::default()
        };
        let expected: Vec<u64> = (after + 1..=6000).filter(|&s| s != 3001).take(3).collect();
        assert_eq!(seqs(&query(&path, &filter, 3).unwrap().entries), expected);
    }
}

#[test]
fn segments_that_end_before_the_cursor_are_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 5, true);
    // Turn the first segment (seq 1) into something that fails when read.
    let first = segments::segment_path(&path, 1);
    std::fs::remove_file(&first).unwrap();
    std::fs::create_dir(&first).unwrap();
    assert!(query(&path, &Filter::default(), 10).is_err());
    for after in [1, 2, 4] {
        let filter = Filter {
            after_seq: Some(after),
            ..Filter::default()
        };
        let page = query(&path, &filter, 10).unwrap();
        assert_eq!(seqs(&page.entries), ((after + 1)..=5).collect::<Vec<_>>());
    }
    assert_eq!(seqs(&tail(&path, 4).unwrap()), [2, 3, 4, 5]);
}

#[test]
fn tail_returns_the_last_records_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    for rotate in [false, true] {
        let path = dir.path().join(format!("audit-{rotate}.jsonl"));
        assert!(tail(&path, 3).unwrap().is_empty(), "no log yet");
        write_log(&path, 7, rotate);
        assert_eq!(seqs(&tail(&path, 3).unwrap()), [5, 6, 7]);
        assert_eq!(seqs(&tail(&path, 1).unwrap()), [7]);
        assert_eq!(seqs(&tail(&path, 7).unwrap()), (1..=7).collect::<Vec<_>>());
        assert_eq!(
            seqs(&tail(&path, 100).unwrap()),
            (1..=7).collect::<Vec<_>>()
        );
        assert!(tail(&path, 0).unwrap().is_empty());
        assert_eq!(tail(&path, 2).unwrap()[1]["trace_id"], "t6");
        let written: Vec<String> = segments::log_files(&path)
            .unwrap()
            .iter()
            .flat_map(|f| {
                let text = std::fs::read_to_string(&f.path).unwrap();
                text.lines().map(|l| format!("{l}\n")).collect::<Vec<_>>()
            })
            .collect();
        let raw = |lines: Vec<Vec<u8>>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        };
        assert_eq!(raw(tail_lines(&path, 2).unwrap()), written[5..]);
        let page = query_lines(
            &path,
            &Filter {
                after_seq: Some(1),
                ..Filter::default()
            },
            3,
        )
        .unwrap();
        assert_eq!(page.next_cursor, Some(4));
        assert_eq!(raw(page.lines), written[1..4]);
    }
}

#[test]
fn tail_reads_lines_longer_than_its_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (mut store, _) = JsonlStore::open(&path, options()).unwrap();
    let mut big = run("big", Outcome::Success, "Jake", "noop");
    if let Record::Run(record) = &mut big {
        record.parameters = json!({"blob": "x".repeat(3 * BACK_CHUNK as usize)});
    }
    store
        .append_batch(&[
            run("a", Outcome::Started, "Jake", "noop"),
            big.clone(),
            run("b", Outcome::Started, "Jake", "noop"),
            big,
        ])
        .unwrap();
    let last = tail(&path, 3).unwrap();
    assert_eq!(seqs(&last), [2, 3, 4]);
    assert_eq!(last[0]["trace_id"], "big");
    assert_eq!(
        last[2]["parameters"]["blob"].as_str().unwrap().len(),
        3 * BACK_CHUNK as usize
    );
    assert_eq!(seqs(&tail(&path, 10).unwrap()), [1, 2, 3, 4]);
}

#[test]
fn an_unfinished_final_line_and_damaged_lines_are_not_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_log(&path, 3, false);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(
        b"not json
{\"seq\":\"four\"}
",
    )
    .unwrap();
    let mut copy = all(&path, &Filter::default())[0].to_string();
    copy = copy.replace("\"seq\":1", "\"seq\":4");
    file.write_all(format!("{copy}\n").as_bytes()).unwrap();
    // A line the writer is still writing.
    file.write_all(&copy.as_bytes()[..40]).unwrap();
    drop(file);
    assert_eq!(seqs(&all(&path, &Filter::default())), [1, 2, 3, 4]);
    assert_eq!(seqs(&tail(&path, 2).unwrap()), [3, 4]);
    // Once the line is finished, it is read.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let finished = copy.replace("\"seq\":4", "\"seq\":5");
    file.write_all(&finished.as_bytes()[40..]).unwrap();
    file.write_all(b"\n").unwrap();
    drop(file);
    assert_eq!(seqs(&tail(&path, 2).unwrap()), [4, 5]);
}

#[test]
fn a_record_with_unexpected_member_types_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (mut store, _) = JsonlStore::open(&path, options()).unwrap();
    let mut odd = run("odd", Outcome::Rejected, "Jake", "noop");
    if let Record::Run(record) = &mut odd {
        record.aim = json!("whatever the client sent");
    }
    let mut odder = run("odder", Outcome::Rejected, "Jake", "noop");
    if let Record::Run(record) = &mut odder {
        record.aim = json!({"actor": {"name": 42, "email": "JAKE@example.org"}});
    }
    store.append_batch(&[odd, odder]).unwrap();
    let by_trace = Filter {
        trace_id: Some("odd".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &by_trace)), [1]);
    let by_actor = Filter {
        actor: Some("jake@example.org".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &by_actor)), [2]);
    let by_principal = Filter {
        actor: Some("token-holder@example.org".into()),
        outcome: Some("rejected".into()),
        ..Filter::default()
    };
    assert_eq!(seqs(&all(&path, &by_principal)), [1, 2]);
}

/// How many records [`rotating_writer`] appends.
const ROTATING_TOTAL: u64 = 1500;

/// A writer appending [`ROTATING_TOTAL`] records in batches of 7 to the log at `path`, rotating every
/// 8 KiB.
fn rotating_writer(path: &std::path::Path) -> std::thread::JoinHandle<()> {
    let mut options = options();
    options.segment_max_bytes = 8 * 1024;
    let (mut store, _) = JsonlStore::open(path, options).unwrap();
    let total = ROTATING_TOTAL;
    std::thread::spawn(move || {
        let mut written = 0;
        while written < total {
            let batch: Vec<Record> = (0..7.min(total - written))
                .map(|i| {
                    run(
                        &format!("w{}", written + i),
                        Outcome::Success,
                        "Jake",
                        "noop",
                    )
                })
                .collect();
            written += batch.len() as u64;
            store.append_batch(&batch).unwrap();
        }
    })
}

#[test]
fn reads_stay_consistent_while_the_writer_appends_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let writer = rotating_writer(&path);
    let mut rounds = 0;
    loop {
        let done = writer.is_finished();
        // One pass of pages: consecutive seqs from 1, each exactly once.
        let mut cursor = None;
        let mut expected = 1;
        loop {
            let filter = Filter {
                after_seq: cursor,
                ..Filter::default()
            };
            let page = query(&path, &filter, 97).unwrap();
            for seq in seqs(&page.entries) {
                assert_eq!(seq, expected, "round {rounds}");
                expected += 1;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let last = seqs(&tail(&path, 25).unwrap());
        for pair in last.windows(2) {
            assert_eq!(pair[0] + 1, pair[1], "round {rounds}: {last:?}");
        }
        rounds += 1;
        if done {
            assert_eq!(expected, ROTATING_TOTAL + 1);
            assert_eq!(last.last(), Some(&ROTATING_TOTAL));
            break;
        }
    }
    writer.join().unwrap();
}

#[test]
fn verification_never_reports_a_deletion_while_the_writer_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let writer = rotating_writer(&dir.path().join("audit.jsonl"));
    let live = crate::audit::verify::VerifyOptions {
        public_key: None,
        live: true,
    };
    let mut rounds = 0;
    while !writer.is_finished() || rounds == 0 {
        let report = crate::audit::verify::verify_log(dir.path(), &live).unwrap();
        assert!(
            report.problem.is_none(),
            "round {rounds}: {:?}",
            report.problem
        );
        rounds += 1;
    }
    writer.join().unwrap();
}

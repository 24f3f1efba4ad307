//! Reading the audit trail back: `GET /audit/entries`, `GET /audit/entries/{trace_id}`,
//! `GET /audit/verify` over HTTP, and `sustainbot audit tail` / `audit export` on a log.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use sustainbot::audit::{FsyncMode, JsonlStore, Outcome, Record, RunRecord, StoreOptions};

use crate::helpers::{
    governance_request, sustainbot, trace, Finished, Settings, TestApp, ANA, GOVERNED, JAKE,
};

/// Runs `workflow` as jake with a chosen trace id; returns the response body.
async fn run_as_jake(app: &TestApp, workflow: &str, trace_id: &str) -> Value {
    let reply = app
        .execute(&governance_request(workflow), &trace(trace_id))
        .await;
    assert!(
        reply.status.is_success() || reply.status.as_u16() == 500,
        "{}",
        reply.text
    );
    reply.json()
}

/// Runs `noop` as Ana López (her own token, role `user`).
async fn run_as_ana(app: &TestApp, trace_id: &str) {
    let mut request = governance_request("noop");
    request["aim"]["actor"] = json!({"name": "Ana López", "email": ANA, "role": "SRE"});
    app.execute_as(&app.token(ANA, "user"), &request, &trace(trace_id))
        .await
        .expect_ok(200);
}

/// A server with a small history: jake runs noop (t-1) and with-steps (t-2, fails), Ana runs noop
/// (t-3), and a request without a body is refused (t-4): 7 records.
async fn app_with_history() -> TestApp {
    let app = TestApp::spawn().await;
    run_as_jake(&app, "noop", "t-1").await;
    run_as_jake(&app, "with-steps", "t-2").await;
    run_as_ana(&app, "t-3").await;
    app.post_raw(
        GOVERNED,
        Vec::new(),
        &[
            ("authorization", format!("Bearer {}", app.jake())),
            ("x-trace-id", "t-4".to_owned()),
        ],
    )
    .await
    .expect_refused(&app, 400, "VALIDATION_ERROR");
    assert_eq!(app.audit_lines().len(), 7);
    app
}

fn auditor(app: &TestApp) -> String {
    app.token("auditor@example.org", "auditor")
}

/// GET as an auditor, expecting 200; returns the body.
async fn read(app: &TestApp, path: &str) -> Value {
    app.get(path, Some(&auditor(app))).await.expect_ok(200)
}

fn traces(body: &Value) -> Vec<String> {
    body["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("entries expected: {body}"))
        .iter()
        .map(|e| e["trace_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn outcomes(body: &Value) -> Vec<String> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn auditors_and_admins_read_other_roles_are_refused() {
    let app = app_with_history().await;
    let paths = ["/audit/entries", "/audit/entries/t-1", "/audit/verify"];
    for path in paths {
        for role in ["auditor", "admin"] {
            let token = app.token("reader@example.org", role);
            app.get(path, Some(&token)).await.expect_ok(200);
        }
        for role in ["user", "cli", "Auditor"] {
            let token = app.token("reader@example.org", role);
            let body = app
                .get(path, Some(&token))
                .await
                .expect(403, "FORBIDDEN_ROLE");
            assert!(
                body["error"].is_string() && body["trace_id"].is_string(),
                "{body}"
            );
            assert!(body.get("entries").is_none(), "{body}");
        }
        app.get(path, None).await.expect(401, "AUTH_REQUIRED");
        app.get(path, Some("not-a-token"))
            .await
            .expect(401, "INVALID_TOKEN");
    }
}

#[tokio::test]
async fn entries_are_the_records_as_written_in_seq_order() {
    let app = app_with_history().await;
    let body = read(&app, "/audit/entries").await;
    assert_eq!(body["count"], 7);
    assert_eq!(body["next_cursor"], Value::Null);
    assert_eq!(
        Value::Array(app.audit_lines()),
        body["entries"],
        "every record, whole, with its integrity_hash"
    );
    assert_eq!(
        traces(&body),
        ["t-1", "t-1", "t-2", "t-2", "t-3", "t-3", "t-4"]
    );
}

#[tokio::test]
async fn filters_select_by_trace_outcome_actor_workflow_and_mode() {
    let app = app_with_history().await;
    let body = read(&app, "/audit/entries?trace_id=t-2").await;
    assert_eq!(traces(&body), ["t-2", "t-2"]);
    assert_eq!(outcomes(&body), ["started", "failure"]);
    assert_eq!(body["count"], 2);

    let body = read(&app, "/audit/entries?outcome=success").await;
    assert_eq!(traces(&body), ["t-1", "t-3"]);
    let body = read(&app, "/audit/entries?outcome=rejected").await;
    assert_eq!(traces(&body), ["t-4"]);

    // The actor: the AIM email or name, or the token's actor, in any case.
    let body = read(&app, "/audit/entries?actor=ANA@example.org").await;
    assert_eq!(traces(&body), ["t-3", "t-3"]);
    let body = read(&app, "/audit/entries?actor=ana%20l%C3%93pez").await;
    assert_eq!(traces(&body), ["t-3", "t-3"]);
    let body = read(&app, &format!("/audit/entries?actor={JAKE}")).await;
    assert_eq!(traces(&body), ["t-1", "t-1", "t-2", "t-2", "t-4"]);
    let body = read(&app, "/audit/entries?actor=nobody@example.org").await;
    assert_eq!(body["count"], 0);
    assert_eq!(body["entries"], json!([]));

    let body = read(&app, "/audit/entries?workflow=with-steps").await;
    assert_eq!(traces(&body), ["t-2", "t-2"]);
    let body = read(
        &app,
        "/audit/entries?workflow=noop&actor=jake%20smith&outcome=started",
    )
    .await;
    assert_eq!(traces(&body), ["t-1"]);
    let body = read(&app, "/audit/entries?drag_mode=execute&kind=run").await;
    assert_eq!(body["count"], 6, "the refused request had no readable mode");

    // Time: everything is after an hour ago and before an hour from now; nothing is after that.
    let now = chrono::Utc::now();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let hour = chrono::Duration::hours(1);
    let body = read(
        &app,
        &format!(
            "/audit/entries?since={}&until={}",
            at(now - hour),
            at(now + hour)
        ),
    )
    .await;
    assert_eq!(body["count"], 7);
    let body = read(&app, &format!("/audit/entries?since={}", at(now + hour))).await;
    assert_eq!(body["count"], 0);
}

#[tokio::test]
async fn limit_1_pages_walk_every_record_exactly_once() {
    let app = app_with_history().await;
    let mut seen = Vec::new();
    let mut cursor: Option<u64> = None;
    let mut pages = 0;
    loop {
        let path = match cursor {
            Some(cursor) => format!("/audit/entries?limit=1&cursor={cursor}"),
            None => "/audit/entries?limit=1".to_owned(),
        };
        let body = read(&app, &path).await;
        pages += 1;
        assert!(body["count"].as_u64().unwrap() <= 1, "{body}");
        for entry in body["entries"].as_array().unwrap() {
            seen.push(entry["seq"].as_u64().unwrap());
        }
        match body["next_cursor"].as_u64() {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "{body}");
                cursor = Some(next);
            }
            None => {
                assert_eq!(body["next_cursor"], Value::Null);
                break;
            }
        }
        assert!(pages <= 8, "pagination does not end");
    }
    assert_eq!(seen, (1..=7).collect::<Vec<u64>>());
    // A full last page cannot know nothing follows: one more, empty, page ends the walk.
    assert_eq!(pages, 8);

    // Filtered pages carry the filter along.
    let first = read(&app, "/audit/entries?outcome=started&limit=2").await;
    assert_eq!(traces(&first), ["t-1", "t-2"]);
    let cursor = first["next_cursor"]
        .as_u64()
        .expect("a full page has a cursor");
    let rest = read(
        &app,
        &format!("/audit/entries?outcome=started&limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(traces(&rest), ["t-3"]);
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn one_trace_is_the_started_and_outcome_pair_of_a_governed_run() {
    let app = app_with_history().await;
    let trace = run_as_jake(&app, "noop", "pair-0001").await;
    assert_eq!(trace["trace_id"], "pair-0001");
    let body = read(&app, "/audit/entries/pair-0001").await;
    assert_eq!(body["trace_id"], "pair-0001");
    assert_eq!(outcomes(&body), ["started", "success"]);
    assert_eq!(body["entries"], Value::Array(app.audit_for("pair-0001")));
    let seqs: Vec<u64> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [8, 9]);
    assert_eq!(body["entries"][0]["workflow_name"], "noop");
    assert_eq!(body["entries"][1]["principal"]["actor"], JAKE);

    let missing = app
        .get("/audit/entries/no-such-trace", Some(&auditor(&app)))
        .await
        .expect(404, "NOT_FOUND");
    assert!(
        missing["error"].as_str().unwrap().contains("no-such-trace"),
        "{missing}"
    );
}

#[tokio::test]
async fn verify_reports_a_valid_chain_and_its_head() {
    let app = app_with_history().await;
    let body = read(&app, "/audit/verify").await;
    let lines = app.audit_lines();
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["records"], 7);
    assert_eq!(body["first_seq"], 1);
    assert_eq!(body["head_seq"], 7);
    assert_eq!(body["head_hash"], lines[6]["integrity_hash"]);
    assert_eq!(body["checkpoints"], 0);
    assert_eq!(body["last_checkpoint_seq"], Value::Null);
    assert_eq!(body["problem"], Value::Null);
    assert_eq!(body["unfinished_tail_bytes"], 0);

    // A line still being written (no newline yet) is left out, not reported as torn.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&app.audit_path)
        .unwrap();
    std::io::Write::write_all(&mut file, br#"{"aim":{"#).unwrap();
    let body = read(&app, "/audit/verify").await;
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["head_seq"], 7);
    assert_eq!(body["unfinished_tail_bytes"], 8);

    // An edited record: invalid, naming the file (not its directory) and the line.
    let text = std::fs::read_to_string(&app.audit_path).unwrap();
    std::fs::write(&app.audit_path, text.replacen("\"t-2\"", "\"t-X\"", 1)).unwrap();
    let body = read(&app, "/audit/verify").await;
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["records"], 2);
    assert_eq!(body["problem"]["file"], "audit.jsonl");
    assert_eq!(body["problem"]["line"], 3);
    assert!(body["problem"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let app = app_with_history().await;
    let token = auditor(&app);
    for (query, name) in [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("cursor=-1", "cursor"),
        ("cursor=abc", "cursor"),
        ("outcome=succeeded", "outcome"),
        ("drag_mode=analysis", "drag_mode"),
        ("kind=everything", "kind"),
        ("trace=t-1", "trace"),
    ] {
        let reply = app
            .get(&format!("/audit/entries?{query}"), Some(&token))
            .await;
        let body = reply.expect(400, "VALIDATION_ERROR");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(name), "{query}: {message}");
        assert!(body["trace_id"].is_string(), "{body}");
    }
    // Empty values are no filter; the largest page is allowed.
    let body = read(&app, "/audit/entries?actor=&limit=1000").await;
    assert_eq!(body["count"], 7);
}

#[tokio::test]
async fn with_governance_disabled_the_trail_is_still_kept_and_read_by_auditors_only() {
    let app = TestApp::builder().governance(false).spawn().await;
    app.post_raw(
        "/workflows/noop/execute",
        b"{}".to_vec(),
        &[
            ("x-trace-id", "t-1".to_owned()),
            ("authorization", format!("Bearer {}", app.jake())),
        ],
    )
    .await
    .expect_ok(200);
    for path in ["/audit/entries", "/audit/entries/t-1", "/audit/verify"] {
        app.get(path, Some(&auditor(&app))).await.expect_ok(200);
        app.get(path, Some(&app.token("someone@example.org", "user")))
            .await
            .expect(403, "FORBIDDEN_ROLE");
    }
    assert_eq!(read(&app, "/audit/entries/t-1").await["count"], 2);
}

/// The binary in `dir` with a clean environment (no inherited `AUDIT_LOG_PATH` or `.env`).
fn cli(dir: &Path, args: &[&str]) -> Output {
    sustainbot().current_dir(dir).run(args)
}

fn stdout_lines(output: &Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "status {:?}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn record(i: u64) -> Record {
    let (outcome, actor) = if i.is_multiple_of(3) {
        (Outcome::Failure, "Ana López")
    } else {
        (Outcome::Success, "Jake Smith")
    };
    Record::Run(RunRecord {
        trace_id: format!("trace-{i}"),
        aim: json!({"actor": {"name": actor}}),
        drag_mode: Some("grunt".into()),
        workflow_name: Some(if i.is_multiple_of(2) { "even" } else { "odd" }.into()),
        parameters: json!({"i": i}),
        outcome,
        error: None,
        code: None,
        duration_seconds: Some(0.5),
        principal: None,
        steps: serde_json::Value::Null,
        governed: None,
        policy_rule: None,
    })
}

#[test]
fn cli_tail_and_export_print_the_records_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/audit.jsonl");
    let total = 2500u64;
    {
        let mut options = StoreOptions::new(FsyncMode::Never);
        options.segment_max_bytes = 200 * 1024;
        let (mut store, _) = JsonlStore::open(&path, options).unwrap();
        for chunk in (1..=total).collect::<Vec<_>>().chunks(100) {
            let records: Vec<Record> = chunk.iter().map(|&i| record(i)).collect();
            store.append_batch(&records).unwrap();
        }
    }
    let written: Vec<String> = sustainbot::audit::segments::log_files(&path)
        .unwrap()
        .iter()
        .flat_map(|file| {
            std::fs::read_to_string(&file.path)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(written.len() as u64, total);
    assert!(
        sustainbot::audit::segments::log_files(&path).unwrap().len() > 2,
        "the log spans several segments"
    );

    // tail: the last N lines, byte for byte; 10 by default; the default path.
    let tail = stdout_lines(&cli(
        dir.path(),
        &["audit", "tail", "logs/audit.jsonl", "-n", "3"],
    ));
    assert_eq!(tail, written[written.len() - 3..]);
    let tail = stdout_lines(&cli(dir.path(), &["audit", "tail"]));
    assert_eq!(tail, written[written.len() - 10..]);
    let tail = stdout_lines(&cli(dir.path(), &["audit", "tail", "-n", "5000"]));
    assert_eq!(tail, written);

    // export: everything (more than one page), then filtered.
    let all = stdout_lines(&cli(dir.path(), &["audit", "export", "logs/audit.jsonl"]));
    assert_eq!(all, written);
    let one = stdout_lines(&cli(
        dir.path(),
        &["audit", "export", "--trace-id", "trace-1234"],
    ));
    assert_eq!(one, [written[1233].clone()]);
    let ana_failures = stdout_lines(&cli(
        dir.path(),
        &[
            "audit",
            "export",
            "--actor",
            "ANA LÓPEZ",
            "--outcome",
            "failure",
            "--workflow",
            "even",
        ],
    ));
    let expected: Vec<String> = (1..=total)
        .filter(|i| i % 6 == 0)
        .map(|i| written[i as usize - 1].clone())
        .collect();
    assert_eq!(ana_failures, expected);
    let none = stdout_lines(&cli(
        dir.path(),
        &["audit", "export", "--since", "2999-01-01T00:00:00Z"],
    ));
    assert!(none.is_empty());
    let until_now = stdout_lines(&cli(
        dir.path(),
        &[
            "audit",
            "export",
            "--until",
            "2999-01-01T00:00:00Z",
            "--outcome",
            "success",
        ],
    ));
    assert_eq!(until_now.len() as u64, total - total / 3);

    // Exported lines are the log's own: each still verifies on its own hash.
    for line in &all[..5] {
        let (body, stated) = sustainbot::audit::format::split_line(line.as_bytes()).unwrap();
        assert_eq!(sustainbot::audit::format::hash_body(&body), stated);
    }

    // Bad arguments: exit 2 with a message naming them.
    for (args, name) in [
        (vec!["audit", "export", "--since", "yesterday"], "since"),
        (vec!["audit", "export", "--outcome", "won"], "outcome"),
    ] {
        let output = cli(dir.path(), &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        output.expect_stderr(name);
    }
}

#[tokio::test]
async fn cli_reads_the_log_a_running_server_writes() {
    let app = app_with_history().await;
    let dir = app.audit_path.parent().unwrap().to_owned();
    let written: Vec<String> = std::fs::read_to_string(&app.audit_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let path = app.audit_path.to_str().unwrap();
    let tail = stdout_lines(&cli(&dir, &["audit", "tail", path, "-n", "2"]));
    assert_eq!(tail, written[5..]);
    let exported = stdout_lines(&cli(&dir, &["audit", "export", path, "--trace-id", "t-2"]));
    assert_eq!(exported, written[2..4]);
    let body = read(&app, "/audit/entries?trace_id=t-2").await;
    let parsed: Vec<Value> = exported
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(body["entries"], Value::Array(parsed));
}

//! Logs: every line a request causes carries its trace id (the request's span), also from the
//! run's own task; JSON lines go to `JSON_LOG_PATH` (by default the original's
//! `logs/sustainbot.jsonl`) while readable text still goes to the terminal; SIGHUP reopens the file.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{governance_request, json_lines, short_name_request, trace, Settings, Site};

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_trace_id() {
    let site = Site::new();
    let log = site.path().join("sustainbot.jsonl");
    let mut server = site.sustainbot().start_with_json_log(&log);
    // A run (logged from the gate's own task), a refusal, a refused token.
    let ran = server
        .execute(&governance_request("noop"), &trace("log-ran"))
        .await;
    assert_eq!(ran.status, 200);
    let refused = server
        .execute(&json!({"workflow_name": "noop"}), &trace("log-refused"))
        .await;
    assert_eq!(refused.status, 400);
    let forged = server
        .execute_as("not-a-token", &json!({}), &trace("log-forged"))
        .await;
    assert_eq!(forged.status, 401);
    server.kill();

    let lines = json_lines(&log);
    let of = |trace: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| line["span"]["trace_id"] == trace)
            .collect()
    };
    let messages = |trace: &str| -> Vec<String> {
        of(trace)
            .iter()
            .map(|line| line["message"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert!(
        messages("log-ran").contains(&"run queued".to_owned()),
        "{lines:?}"
    );
    assert!(
        messages("log-refused").contains(&"run refused".to_owned()),
        "{lines:?}"
    );
    assert!(
        messages("log-forged").contains(&"token refused".to_owned()),
        "{lines:?}"
    );
    for line in of("log-ran") {
        assert_eq!(line["span"]["method"], "POST", "{line}");
        assert_eq!(
            line["span"]["route"], "/workflows/governed/execute",
            "{line}"
        );
    }
    // No line names one of these trace ids outside its request's span.
    for line in &lines {
        let text = line.to_string();
        for trace in ["log-ran", "log-refused", "log-forged"] {
            if text.contains(trace) {
                assert_eq!(line["span"]["trace_id"], trace, "{line}");
            }
        }
    }
}

/// The `request finished` line of the request `trace`.
fn finished<'a>(lines: &'a [Value], trace: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == "request finished" && l["span"]["trace_id"] == trace)
        .unwrap_or_else(|| panic!("no request finished line for {trace}: {lines:#?}"))
}

#[tokio::test]
async fn json_lines_go_to_the_original_file_and_text_to_the_terminal() {
    let site = Site::new();
    // No JSON_LOG_PATH: the original's logs/sustainbot.jsonl, under the working directory.
    let mut server = site
        .sustainbot()
        .env("JSON_LOGGING_ENABLED", "true")
        .start();
    let ran = server
        .execute(&governance_request("noop"), &trace("json-ran"))
        .await;
    assert_eq!(ran.status, 200);
    let refused = server
        .execute(&short_name_request("noop"), &trace("json-refused"))
        .await;
    assert_eq!(refused.status, 400);
    let forged = server
        .execute_as("not-a-token", &json!({}), &trace("json-forged"))
        .await;
    assert_eq!(forged.status, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("trace_id=json-forged") {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();

    let text = server.stderr();
    assert!(text.contains("request finished"), "{text}");
    assert!(text.lines().all(|line| !line.starts_with('{')), "{text}");

    let lines = json_lines(&site.path().join("logs/sustainbot.jsonl"));
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "{key} in {line}");
        }
    }
    let ran = finished(&lines, "json-ran");
    assert_eq!(ran["level"], "INFO");
    assert_eq!(ran["target"], "sustainbot::http");
    let span = &ran["span"];
    assert_eq!(span["actor"], "jake@example.org");
    assert_eq!(span["workflow"], "noop");
    assert_eq!(span["drag_mode"], "execute");
    assert_eq!(span["outcome"], "success");
    assert_eq!(span["status"], 200);
    assert!(
        span["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{ran}"
    );
    assert_eq!(
        finished(&lines, "json-refused")["span"]["outcome"],
        "rejected"
    );
    let forged = &finished(&lines, "json-forged")["span"];
    assert_eq!(
        (forged["status"].clone(), forged["actor"].clone()),
        (json!(401), Value::Null)
    );
}

/// Waits up to 10 s for a line of `path` that `wanted` accepts.
fn wait_for_line(path: &Path, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = json_lines(path).into_iter().find(|l| wanted(l)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no such line in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn sighup_reopens_the_json_log_file_for_logrotate() {
    let site = Site::new();
    let log = site.path().join("sustainbot.jsonl");
    let server = site.sustainbot().start_with_json_log(&log);
    let before = server
        .execute(&governance_request("noop"), &trace("rotate-before"))
        .await;
    assert_eq!(before.status, 200);
    // logrotate: move the file away, then signal the server.
    let rotated = site.path().join("sustainbot.jsonl.1");
    std::fs::rename(&log, &rotated).expect("rotate the log");
    server.hangup();
    wait_for_line(&log, |l| l["message"] == "JSON log file reopened");
    let after = server
        .execute(&governance_request("noop"), &trace("rotate-after"))
        .await;
    assert_eq!(after.status, 200);
    wait_for_line(&log, |l| l["span"]["trace_id"] == "rotate-after");

    let old = json_lines(&rotated);
    assert!(old.iter().any(|l| l["span"]["trace_id"] == "rotate-before"));
    assert!(old.iter().all(|l| l["span"]["trace_id"] != "rotate-after"));
    assert!(json_lines(&log)
        .iter()
        .all(|l| l["span"]["trace_id"] != "rotate-before"));
    // SIGHUP still reloads the workflows too (that line goes to whichever file was open).
    let reloaded = |path: &Path| {
        json_lines(path)
            .iter()
            .any(|l| l["message"] == "workflows reloaded" && l["reason"] == "SIGHUP")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(reloaded(&log) || reloaded(&rotated)) {
        assert!(Instant::now() < deadline, "no workflows reload on SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
}

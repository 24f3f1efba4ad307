//! Logs: every line a request causes carries its trace id (the request's span), also from the
//! run's own task; JSON lines go to `JSON_LOG_PATH` as configured.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{governance_request, TEST_SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_sustainbot");

/// The log file's JSON lines so far.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
        .collect()
}

/// Starts the binary on an ephemeral port with JSON logs to `log`; returns it and its address.
// The caller kills and waits for the child it gets back.
#[allow(clippy::zombie_processes)]
fn start(dir: &Path, log: &Path) -> (Child, String) {
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(dir.join("workflows/noop.json"), r#"{"steps": []}"#).unwrap();
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("JWT_SECRET", TEST_SECRET)
        .env("JSON_LOGGING_ENABLED", "true")
        .env("JSON_LOG_PATH", log)
        .env("RUST_LOG", "info")
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listening = log_lines(log)
            .into_iter()
            .find(|line| line["fields"]["message"] == "SustainBot listening");
        if let Some(line) = listening {
            let address = line["fields"]["address"].as_str().unwrap().to_owned();
            return (child, format!("http://{address}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server never said it listens");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sustainbot.jsonl");
    let (mut server, url) = start(dir.path(), &log);
    let token =
        sustainbot::auth::JwtKeys::new(TEST_SECRET.as_bytes(), jsonwebtoken::Algorithm::HS256)
            .mint("jake@example.org", "admin", Some(600))
            .unwrap();
    let client = reqwest::Client::new();
    let execute = format!("{url}/workflows/governed/execute");
    let send = |trace: &'static str, token: String, body: Value| {
        client
            .post(&execute)
            .bearer_auth(token)
            .header("x-trace-id", trace)
            .json(&body)
            .send()
    };
    // A run (logged from the gate's own task), a refusal, a refused token.
    let ran = send("log-ran", token.clone(), governance_request("noop"));
    assert_eq!(ran.await.unwrap().status(), 200);
    let refused = send("log-refused", token, json!({"workflow_name": "noop"}));
    assert_eq!(refused.await.unwrap().status(), 400);
    let forged = send("log-forged", "not-a-token".into(), json!({}));
    assert_eq!(forged.await.unwrap().status(), 401);
    let _ = server.kill();
    let _ = server.wait();

    let lines = log_lines(&log);
    let of = |trace: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| line["span"]["trace_id"] == trace)
            .collect()
    };
    let messages = |trace: &str| -> Vec<String> {
        of(trace)
            .iter()
            .map(|line| line["fields"]["message"].as_str().unwrap_or("").to_owned())
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

//! Logs: every line a request causes carries its trace id (the request's span), also from the
//! run's own task; JSON lines go to `JSON_LOG_PATH` as configured.

use serde_json::{json, Value};

use crate::helpers::{governance_request, json_lines, trace, Site};

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

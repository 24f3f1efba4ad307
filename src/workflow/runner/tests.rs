//! The runner with what it is given: its secret source, and (with a live run) its observer.

use serde_json::json;

use super::*;
use crate::workflow::secrets::SecretMap;

fn runner() -> Runner {
    let services = Services {
        http: HttpClient::default(),
        llm: LlmEndpoint::ollama("127.0.0.1", 9, "none"),
        phrases: Arc::new(PhraseList::default_forbidden()),
        openclaw_url: "http://127.0.0.1:9".to_owned(),
        server_url: "http://127.0.0.1:9".to_owned(),
        run_as: None,
    };
    Runner::new(std::env::temp_dir(), services)
}

fn workflow(definition: serde_json::Value) -> Workflow {
    Workflow::from_value("w", definition).expect("valid")
}

/// A command step that prints its secret and the secret's length.
fn prints_its_token() -> Workflow {
    workflow(json!({"steps": [{"id": "show", "secrets": ["DEPLOY_TOKEN"],
        "command": ["/bin/sh", "-c", "printf '%s|%s' \"$DEPLOY_TOKEN\" \"${#DEPLOY_TOKEN}\""]}]}))
}

#[tokio::test]
async fn a_command_step_reads_its_secrets_from_the_runners_source_and_redacts_them() {
    assert!(
        std::env::var("DEPLOY_TOKEN").is_err(),
        "not from the environment"
    );
    let runner = runner().with_secrets(Arc::new(
        SecretMap::new().with("DEPLOY_TOKEN", "unit-t0ken-value"),
    ));
    let output = runner
        .run(&prints_its_token(), &Map::new(), "t1", None, None)
        .await
        .expect("succeeds");
    assert_eq!(output.steps[0].stdout, "[REDACTED]|16");
}

#[tokio::test]
async fn a_secret_its_source_lacks_fails_the_step_before_it_starts() {
    let runner = runner().with_secrets(Arc::new(SecretMap::new()));
    let failure = runner
        .run(&prints_its_token(), &Map::new(), "t1", None, None)
        .await
        .expect_err("fails");
    assert_eq!(
        failure.steps[0].error.as_deref(),
        Some("secret DEPLOY_TOKEN is not set in the server's environment")
    );
    assert_eq!(failure.steps[0].exit_code, None, "nothing ran");
}

/// Writes down what it hears; its switch stops the run.
struct Recorder {
    heard: std::sync::Mutex<Vec<String>>,
    stop: watch::Sender<bool>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            heard: std::sync::Mutex::default(),
            stop: watch::channel(false).0,
        }
    }

    fn heard(&self) -> Vec<String> {
        self.heard.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn note(&self, line: String) {
        if let Ok(mut heard) = self.heard.lock() {
            heard.push(line);
        }
    }
}

impl RunObserver for Recorder {
    fn step_started(&self, id: &str) {
        self.note(format!("started {id}"));
    }

    fn step_finished(&self, report: &StepReport) {
        self.note(format!("finished {} {}", report.id, report.success));
    }

    fn cancellation(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

#[tokio::test]
async fn an_observer_hears_each_step_start_and_end_in_order() {
    let recorder = Recorder::new();
    let two = workflow(json!({"steps": [{"id": "a", "command": ["/bin/echo", "a"]},
                                        {"id": "b", "command": ["/bin/echo", "b"]}]}));
    runner()
        .run(&two, &Map::new(), "t1", None, Some(&recorder))
        .await
        .expect("succeeds");
    assert_eq!(
        recorder.heard(),
        [
            "started a",
            "finished a true",
            "started b",
            "finished b true"
        ]
    );
}

#[tokio::test]
async fn an_observers_cancellation_stops_the_running_step_and_the_run() {
    let recorder = Recorder::new();
    let slow = workflow(
        json!({"steps": [{"id": "wait", "command": ["/bin/sleep", "30"]},
                                         {"id": "never", "command": ["/bin/echo", "no"]}]}),
    );
    let (runner, parameters) = (runner(), Map::new());
    let run = runner.run(&slow, &parameters, "t1", None, Some(&recorder));
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        recorder.stop.send_replace(true);
    };
    let (result, ()) = tokio::join!(run, cancel);
    let failure = result.expect_err("cancelled");
    assert!(failure.cancelled, "{failure:?}");
    assert_eq!(failure.steps.len(), 1);
    assert_eq!(recorder.heard(), ["started wait", "finished wait false"]);
}

/// A loopback server answering every request with `reply`.
async fn serve_text(reply: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(axum::routing::any(move || async move { reply }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test]
async fn an_llm_steps_report_says_when_the_answer_was_cut() {
    // 70,000 bytes of answer: more than the 64 KiB a step keeps.
    let answer: &'static str = Box::leak(
        format!(
            "{{\"response\": \"{}\", \"done\": true}}",
            "o".repeat(70_000)
        )
        .into_boxed_str(),
    );
    let base = serve_text(answer).await;
    let mut runner = runner();
    Arc::get_mut(&mut runner.services).unwrap().llm = crate::workflow::llm::LlmEndpoint {
        base_url: base,
        ..crate::workflow::llm::LlmEndpoint::ollama("127.0.0.1", 9, "none")
    };
    let w = workflow(json!({"steps": [{"id": "ai", "llm": {"prompt": "x"}}]}));
    let output = runner
        .run(&w, &Map::new(), "t1", None, None)
        .await
        .expect("succeeds");
    assert_eq!(output.steps[0].stdout.len(), 64 * 1024);
    assert!(output.steps[0].truncated, "the answer was cut");
}

#[tokio::test]
async fn an_unreachable_orchestrator_fails_the_run_with_openclaw_unavailable() {
    let legacy = workflow(
        json!({"steps": [{"id": "submit", "openclaw_body": "original",
                                            "openclaw": {"name": "example-workflow"}}]}),
    );
    let failure = runner()
        .run(&legacy, &Map::new(), "t-oc", None, None)
        .await
        .expect_err("nothing listens on port 9");
    assert_eq!(failure.code, Some("OPENCLAW_UNAVAILABLE"));
    assert!(!failure.cancelled);
    let error = &failure.error;
    assert!(
        error.contains("OpenClaw is unreachable") && error.contains("/api/workflows/execute"),
        "{error}"
    );
    assert_eq!(failure.steps[0].code, Some("OPENCLAW_UNAVAILABLE"));
}

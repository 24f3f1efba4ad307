//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the server exports one trace per request (and per
//! run started apart from one) over OTLP/HTTP to a stand-in collector that decodes the protobuf:
//! validation, audit appends, a span per step, the outcome; a caller's `traceparent` is continued
//! and an `http` step's request carries the run's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::Router;
use serde_json::{json, Value};

use crate::helpers::{
    governance_request, serve, trace, Collector, ReceivedSpan, Settings, Site, ANA, JAKE,
};

const GOVERNED_SPAN: &str = "POST /workflows/governed/execute";

/// A loopback endpoint for `http` steps that keeps the headers of every request it gets.
struct Hook {
    url: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Hook {
    async fn start() -> Hook {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        let app = Router::new().fallback(move |headers: HeaderMap| {
            sustainbot::sync::lock(&kept).push(headers);
            async { "received" }
        });
        Hook {
            url: format!("http://{}/hook", serve(app).await),
            seen,
        }
    }

    /// The `traceparent` header of each request it got (`None` where there was none).
    fn traceparents(&self) -> Vec<Option<String>> {
        sustainbot::sync::lock(&self.seen)
            .iter()
            .map(|h| {
                h.get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// A command step, then an `http` step to `hook`.
fn deploy(hook: &Hook) -> Value {
    json!({"steps": [
        {"id": "build", "command": ["echo", "built"]},
        {"id": "notify", "http": {"url": hook.url, "method": "POST", "body": {"done": true}}}
    ]})
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    match named(spans, name).as_slice() {
        [span] => span,
        other => panic!("{} spans named {name}: {spans:#?}", other.len()),
    }
}

/// The trace of a governed run is complete once its request span and its outcome's arrived.
fn run_complete(spans: &[ReceivedSpan]) -> bool {
    !named(spans, GOVERNED_SPAN).is_empty() && !named(spans, "run.outcome").is_empty()
}

#[tokio::test]
async fn a_governed_run_is_one_trace_with_validation_audit_steps_and_outcome() {
    let collector = Collector::start().await;
    let hook = Hook::start().await;
    let site = Site::new();
    site.workflow("deploy", &deploy(&hook));
    let server = site.sustainbot().otlp(&collector.base).start();
    let reply = server
        .execute(&governance_request("deploy"), &trace("otel-run"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let spans = collector
        .trace_of(
            GOVERNED_SPAN,
            ("sustainbot.trace_id", "otel-run"),
            run_complete,
        )
        .await;
    let request = one(&spans, GOVERNED_SPAN);
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(request.parent_span_id, "", "a trace of its own");
    assert_eq!(request.service, "sustainbot");
    for (key, value) in [
        ("http.request.method", json!("POST")),
        ("http.route", json!("/workflows/governed/execute")),
        ("http.response.status_code", json!(200)),
        ("sustainbot.actor", json!(JAKE)),
        ("sustainbot.workflow", json!("deploy")),
        ("sustainbot.drag_mode", json!("execute")),
        ("sustainbot.outcome", json!("success")),
    ] {
        assert_eq!(request.attribute(key), value, "{key}: {request:#?}");
    }

    let validation = one(&spans, "governance.validate");
    assert_eq!(validation.parent_span_id, request.span_id);
    assert_eq!(validation.attribute("sustainbot.outcome"), "accepted");

    let run = one(&spans, "run");
    assert_eq!(run.parent_span_id, request.span_id);
    assert_eq!(run.attribute("sustainbot.outcome"), "success");

    let build = one(&spans, "step build");
    assert_eq!(build.parent_span_id, run.span_id);
    assert_eq!(build.attribute("sustainbot.step.kind"), "command");
    assert_eq!(build.attribute("process.exit.code"), 0);
    let notify = one(&spans, "step notify");
    assert_eq!(notify.parent_span_id, run.span_id);
    assert_eq!(notify.attribute("sustainbot.step.kind"), "http");
    assert_eq!(notify.attribute("http.response.status_code"), 200);

    let outcome = one(&spans, "run.outcome");
    assert_eq!(outcome.parent_span_id, run.span_id);
    assert_eq!(outcome.attribute("sustainbot.outcome"), "success");
    assert!(outcome.attribute("sustainbot.duration_seconds").is_f64());

    // The intent under the run, the outcome's record under the outcome.
    let appends = named(&spans, "audit.append");
    let append = |outcome: &str| {
        appends
            .iter()
            .find(|s| s.attribute("sustainbot.audit.outcome") == outcome)
            .unwrap_or_else(|| panic!("no audit append of {outcome}: {appends:#?}"))
    };
    assert_eq!(append("started").parent_span_id, run.span_id);
    assert_eq!(append("success").parent_span_id, outcome.span_id);
    assert!(append("started").attribute("sustainbot.audit.seq").is_i64());

    // The http step's request carried the run's trace, from its own span.
    assert_eq!(
        hook.traceparents(),
        [Some(format!(
            "00-{}-{}-01",
            request.trace_id, notify.span_id
        ))]
    );
}

#[tokio::test]
async fn a_callers_traceparent_is_continued() {
    let collector = Collector::start().await;
    let site = Site::new();
    let server = site.sustainbot().otlp(&collector.base).start();
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let reply = server
        .execute(
            &governance_request("noop"),
            &[
                ("x-trace-id", "otel-continued".to_owned()),
                ("traceparent", format!("00-{caller_trace}-{caller_span}-01")),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let spans = collector
        .trace_of(
            GOVERNED_SPAN,
            ("sustainbot.trace_id", "otel-continued"),
            run_complete,
        )
        .await;
    let request = one(&spans, GOVERNED_SPAN);
    assert_eq!(request.trace_id, caller_trace);
    assert_eq!(request.parent_span_id, caller_span);
    assert!(spans.iter().all(|s| s.trace_id == caller_trace));
}

// The collector must keep answering while the test waits for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_buffered_are_sent_when_the_server_stops() {
    let collector = Collector::start().await;
    let site = Site::new();
    let mut server = site
        .sustainbot()
        .otlp(&collector.base)
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .start();
    let reply = server
        .execute(&governance_request("noop"), &trace("otel-flush"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.spans().is_empty(), "exported before the delay");
    assert!(server.terminate().success());
    let spans = collector.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.name == GOVERNED_SPAN && s.attribute("sustainbot.trace_id") == "otel-flush"),
        "{spans:#?}\n{}",
        server.stderr()
    );
}

#[tokio::test]
async fn an_approved_run_is_a_trace_of_its_own_linked_to_the_decision() {
    let collector = Collector::start().await;
    let site = Site::new();
    site.workflow(
        "guarded",
        &json!({"approval": {"required": true, "approver_roles": ["admin"]},
                "steps": [{"id": "say", "command": ["echo", "approved work"]}]}),
    );
    let server = site.sustainbot().otlp(&collector.base).start();
    let requested = server
        .execute(&governance_request("guarded"), &trace("otel-guarded"))
        .await;
    assert_eq!(requested.status, 202, "{}", requested.text);
    let approved = server
        .post_raw(
            "/runs/otel-guarded/approve",
            b"{}".to_vec(),
            &[
                ("content-type", "application/json".to_owned()),
                (
                    "authorization",
                    format!("Bearer {}", server.token(ANA, "admin")),
                ),
                ("x-trace-id", "otel-decision".to_owned()),
            ],
        )
        .await;
    assert_eq!(approved.status, 202, "{}", approved.text);

    let decision = collector
        .trace_of(
            "POST /runs/{trace_id}/approve",
            ("sustainbot.trace_id", "otel-decision"),
            |spans| !spans.is_empty(),
        )
        .await;
    let run = collector
        .trace_of(
            "approved_run",
            ("sustainbot.trace_id", "otel-guarded"),
            |spans| !named(spans, "run.outcome").is_empty(),
        )
        .await;
    let root = one(&run, "approved_run");
    assert_ne!(root.trace_id, decision[0].trace_id);
    assert_eq!(root.parent_span_id, "");
    assert_eq!(root.links, [decision[0].trace_id.clone()]);
    assert_eq!(one(&run, "step say").attribute("process.exit.code"), 0);
}

#[tokio::test]
async fn without_an_endpoint_no_trace_context_is_read_or_sent() {
    let hook = Hook::start().await;
    let site = Site::new();
    site.workflow("deploy", &deploy(&hook));
    let server = site.start();
    let reply = server
        .execute(
            &governance_request("deploy"),
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            )],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(hook.traceparents(), [None]);
}

#[tokio::test]
async fn a_failed_step_marks_its_span_its_run_and_its_request_as_errors() {
    let collector = Collector::start().await;
    let site = Site::new();
    site.workflow(
        "broken",
        &json!({"steps": [{"id": "fails", "command": ["false"]}]}),
    );
    let server = site.sustainbot().otlp(&collector.base).start();
    let reply = server
        .execute(&governance_request("broken"), &trace("otel-failed"))
        .await;
    assert_eq!(reply.status, 500, "{}", reply.text);
    let spans = collector
        .trace_of(
            GOVERNED_SPAN,
            ("sustainbot.trace_id", "otel-failed"),
            run_complete,
        )
        .await;
    const ERROR: i32 = 2;
    let step = one(&spans, "step fails");
    assert_eq!(
        (step.status, step.attribute("process.exit.code")),
        (ERROR, json!(1))
    );
    let run = one(&spans, "run");
    assert_eq!(run.status, ERROR);
    assert_eq!(run.attribute("sustainbot.outcome"), "failure");
    assert_eq!(run.attribute("sustainbot.code"), "WORKFLOW_FAILED");
    let request = one(&spans, GOVERNED_SPAN);
    assert_eq!(request.status, ERROR);
    assert_eq!(request.attribute("sustainbot.outcome"), "failure");
}

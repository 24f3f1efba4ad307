//! The exposition in both formats, the negotiation, and the gate gauges.

use super::*;

fn traffic() -> Metrics {
    let metrics = Metrics::new();
    let success = ByOutcome { outcome: "success" };
    metrics.jwt_validations.inc(&success);
    metrics.jwt_validations.inc(&success);
    let health = HttpRoute {
        method: "GET",
        endpoint: "/health".to_owned(),
    };
    metrics.http_request_duration.observe(&health, 0.003);
    metrics
}

#[test]
fn text_format_names_counters_with_total_as_the_original_did() {
    let metrics = traffic();
    let page = metrics.render(Format::Text);
    assert!(
        page.contains("# TYPE sustainbot_jwt_validations_total counter\n"),
        "{page}"
    );
    assert!(page.contains("sustainbot_jwt_validations_total{outcome=\"success\"} 2\n"));
    assert!(page.contains("sustainbot_http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.005\"} 1\n"), "{page}");
    assert!(page.contains("sustainbot_http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.001\"} 0\n"));
    assert!(page.contains(
        "sustainbot_http_request_duration_seconds_count{method=\"GET\",endpoint=\"/health\"} 1\n"
    ));
    assert!(
        page.contains("# TYPE sustainbot_application_info gauge\n"),
        "{page}"
    );
    assert!(page.contains("sustainbot_active_requests 0\n"));
    assert!(!page.contains("# EOF"));
    assert_eq!(
        metrics
            .jwt_validations
            .get(&ByOutcome { outcome: "success" }),
        2
    );
}

#[test]
fn openmetrics_names_families_without_total_and_ends_with_eof() {
    let page = traffic().render(Format::OpenMetrics);
    assert!(
        page.contains("# TYPE sustainbot_jwt_validations counter\n"),
        "{page}"
    );
    assert!(page.contains("sustainbot_jwt_validations_total{outcome=\"success\"} 2\n"));
    assert!(page.contains("# TYPE sustainbot_application info\n"));
    assert!(page.contains("sustainbot_application_info{version=\""));
    assert!(page.ends_with("# EOF\n"));
}

#[test]
fn a_family_without_samples_is_still_described() {
    let page = Metrics::new().render(Format::Text);
    assert!(page.contains("# HELP sustainbot_slack_events_received_total "));
    assert!(page.contains("# TYPE sustainbot_slack_events_received_total counter\n"));
    assert!(page.contains("# TYPE sustainbot_audit_appends_total counter\n"));
}

#[test]
fn escapes_label_values() {
    let metrics = Metrics::new();
    metrics.prescriptive_language_detections.inc(&Detection {
        drag_mode: "draft",
        phrase_type: "a\"b\\c\nd".to_owned(),
    });
    assert!(metrics
        .render(Format::Text)
        .contains(r#"phrase_type="a\"b\\c\nd""#));
}

#[test]
fn prometheus_gets_openmetrics_and_everyone_else_text() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    assert_eq!(
        Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
        Format::Text
    );
}

#[test]
fn gate_state_sets_its_gauges() {
    let metrics = Metrics::new();
    metrics.set_gate_state(&GateState {
        runs_queued: 3,
        queue_capacity: 256,
        audit_sink_healthy: true,
        ..GateState::default()
    });
    let page = metrics.render(Format::Text);
    assert!(page.contains("sustainbot_run_queue_depth 3\n"), "{page}");
    assert!(page.contains("sustainbot_run_queue_capacity 256\n"));
    assert!(page.contains("sustainbot_audit_sink_healthy 1\n"));
}

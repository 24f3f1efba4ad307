//! Prometheus metrics with the original server's names and labels, rendered as text format 0.0.4.
//!
//! Label values that come from requests are bounded by the callers (route templates, known workflow
//! names, fixed reason codes), so no client can grow the series set without limit.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use crate::governance::{DragMode, Rejection};
use crate::sync::lock;

type Labels = Vec<String>;

/// A counter with labels.
pub struct CounterFamily {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    values: Mutex<Vec<(Labels, u64)>>,
}

impl CounterFamily {
    const fn new(
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
    ) -> Self {
        CounterFamily {
            name,
            help,
            label_names,
            values: Mutex::new(Vec::new()),
        }
    }

    /// Adds one to the series `labels` (given in the order of the family's label names).
    pub fn inc(&self, labels: &[&str]) {
        debug_assert_eq!(labels.len(), self.label_names.len());
        let mut values = lock(&self.values);
        match values.iter_mut().find(|(k, _)| same(k, labels)) {
            Some((_, v)) => *v += 1,
            None => values.push((owned(labels), 1)),
        }
    }

    /// The value of one series (0 when it was never touched).
    pub fn get(&self, labels: &[&str]) -> u64 {
        let values = lock(&self.values);
        values
            .iter()
            .find(|(k, _)| same(k, labels))
            .map_or(0, |(_, v)| *v)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} counter",
            self.name, self.help, self.name
        );
        let mut values = lock(&self.values);
        values.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, value) in values.iter() {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                label_text(self.label_names, labels, None),
                value
            );
        }
    }
}

/// A histogram with labels.
pub struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    label_names: &'static [&'static str],
    buckets: &'static [f64],
    values: Mutex<Vec<(Labels, Series)>>,
}

#[derive(Default)]
struct Series {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl HistogramFamily {
    const fn new(
        name: &'static str,
        help: &'static str,
        label_names: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Self {
        HistogramFamily {
            name,
            help,
            label_names,
            buckets,
            values: Mutex::new(Vec::new()),
        }
    }

    pub fn observe(&self, labels: &[&str], value: f64) {
        let mut values = lock(&self.values);
        let index = match values.iter().position(|(k, _)| same(k, labels)) {
            Some(index) => index,
            None => {
                let series = Series {
                    counts: vec![0; self.buckets.len()],
                    ..Series::default()
                };
                values.push((owned(labels), series));
                values.len() - 1
            }
        };
        let series = &mut values[index].1;
        for (bound, count) in self.buckets.iter().zip(series.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        series.sum += value;
        series.count += 1;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            self.name, self.help, self.name
        );
        let mut values = lock(&self.values);
        values.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, series) in values.iter() {
            for (bound, count) in self.buckets.iter().zip(&series.counts) {
                let le = format!("{bound}");
                let _ = writeln!(
                    out,
                    "{}_bucket{} {}",
                    self.name,
                    label_text(self.label_names, labels, Some(&le)),
                    count
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                label_text(self.label_names, labels, Some("+Inf")),
                series.count
            );
            let plain = label_text(self.label_names, labels, None);
            let _ = writeln!(out, "{}_sum{} {}", self.name, plain, series.sum);
            let _ = writeln!(out, "{}_count{} {}", self.name, plain, series.count);
        }
    }
}

fn same(key: &[String], labels: &[&str]) -> bool {
    key.len() == labels.len() && key.iter().zip(labels).all(|(a, b)| a == b)
}

fn owned(labels: &[&str]) -> Labels {
    labels.iter().map(|s| (*s).to_owned()).collect()
}

fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A body's `drag_mode` as a metric label: a known mode, or `unknown` (never a client's free text).
pub fn drag_mode_label(body: &Value) -> &str {
    body.get("drag_mode")
        .and_then(Value::as_str)
        .filter(|mode| mode.parse::<DragMode>().is_ok())
        .unwrap_or("unknown")
}

const DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The build, as `sustainbot_application_info` shows it: `release` or `debug`.
const BUILD: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// Every metric the server exports.
pub struct Metrics {
    pub aim_requests: CounterFamily,
    pub aim_validation_failures: CounterFamily,
    pub governed_workflow_duration: HistogramFamily,
    pub audit_log_entries: CounterFamily,
    pub audit_intent_records: CounterFamily,
    pub audit_other_records: CounterFamily,
    pub prescriptive_language_detections: CounterFamily,
    pub workflow_executions: CounterFamily,
    pub workflow_execution_errors: CounterFamily,
    pub slack_events_received: CounterFamily,
    pub slack_signature_verifications: CounterFamily,
    pub slack_deliveries: CounterFamily,
    pub jwt_validations: CounterFamily,
    pub authentication_failures: CounterFamily,
    pub http_requests: CounterFamily,
    pub http_request_duration: HistogramFamily,
    pub human_overrides: CounterFamily,
    pub active_requests: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub const fn new() -> Metrics {
        Metrics {
            aim_requests: CounterFamily::new(
                "sustainbot_aim_requests_total",
                "Total AIM-declared governance requests",
                &["drag_mode", "actor_role", "workflow_name"],
            ),
            aim_validation_failures: CounterFamily::new(
                "sustainbot_aim_validation_failures_total",
                "Total AIM validation failures",
                &["failure_reason", "drag_mode"],
            ),
            governed_workflow_duration: HistogramFamily::new(
                "sustainbot_governed_workflow_duration_seconds",
                "Governed workflow execution duration",
                &["workflow_name", "outcome", "drag_mode"],
                DURATION_BUCKETS,
            ),
            audit_intent_records: CounterFamily::new(
                "sustainbot_audit_intent_records_total",
                "Write-ahead `started` records (one per run that started; its outcome is counted in sustainbot_audit_log_entries_total)",
                &["drag_mode"],
            ),
            audit_other_records: CounterFamily::new(
                "sustainbot_audit_other_records_total",
                "Audit records that are not run records (approval decisions, overrides)",
                &["drag_mode"],
            ),
            audit_log_entries: CounterFamily::new(
                "sustainbot_audit_log_entries_total",
                "Total audit log entries written",
                &["outcome", "drag_mode"],
            ),
            prescriptive_language_detections: CounterFamily::new(
                "sustainbot_prescriptive_language_detections_total",
                "Prescriptive language filter detections",
                &["drag_mode", "phrase_type"],
            ),
            workflow_executions: CounterFamily::new(
                "sustainbot_workflow_executions_total",
                "Total workflow executions (governed + ungoverned)",
                &["workflow_name", "outcome"],
            ),
            workflow_execution_errors: CounterFamily::new(
                "sustainbot_workflow_execution_errors_total",
                "Workflow execution errors",
                &["workflow_name", "error_type"],
            ),
            slack_events_received: CounterFamily::new(
                "sustainbot_slack_events_received_total",
                "Slack events received",
                &["event_type"],
            ),
            slack_signature_verifications: CounterFamily::new(
                "sustainbot_slack_signature_verifications_total",
                "Slack signature verifications",
                &["outcome"],
            ),
            slack_deliveries: CounterFamily::new(
                "sustainbot_slack_deliveries_total",
                "Messages and calls to Slack (response_url, Web API methods, webhook) by result: ok, retried, refused, failed, dropped",
                &["target", "result"],
            ),
            jwt_validations: CounterFamily::new(
                "sustainbot_jwt_validations_total",
                "JWT token validations",
                &["outcome"],
            ),
            authentication_failures: CounterFamily::new(
                "sustainbot_authentication_failures_total",
                "Authentication failures",
                &["failure_type"],
            ),
            http_requests: CounterFamily::new(
                "sustainbot_http_requests_total",
                "HTTP requests received",
                &["method", "endpoint", "status_code"],
            ),
            http_request_duration: HistogramFamily::new(
                "sustainbot_http_request_duration_seconds",
                "HTTP request duration",
                &["method", "endpoint"],
                HTTP_BUCKETS,
            ),
            human_overrides: CounterFamily::new(
                "sustainbot_human_overrides_total",
                "Outputs replaced or edited by a person, per workflow",
                &["workflow_name"],
            ),
            active_requests: AtomicI64::new(0),
        }
    }

    /// Counts a refused declaration by kind (shape or business rule) and declared DRAG mode.
    pub fn validation_failure(&self, rejection: &Rejection, body: &Value) {
        let reason = if rejection.is_shape() {
            "shape"
        } else {
            "business_rule"
        };
        self.aim_validation_failures
            .inc(&[reason, drag_mode_label(body)]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let _ = writeln!(
            out,
            "# HELP sustainbot_application_info SustainBot version and build\n# TYPE sustainbot_application_info gauge\nsustainbot_application_info{{version=\"{}\",build=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            BUILD
        );
        for counter in [
            &self.aim_requests,
            &self.aim_validation_failures,
            &self.audit_log_entries,
            &self.audit_intent_records,
            &self.audit_other_records,
            &self.prescriptive_language_detections,
            &self.workflow_executions,
            &self.workflow_execution_errors,
            &self.slack_events_received,
            &self.slack_signature_verifications,
            &self.slack_deliveries,
            &self.jwt_validations,
            &self.authentication_failures,
            &self.http_requests,
            &self.human_overrides,
        ] {
            counter.render(&mut out);
        }
        self.governed_workflow_duration.render(&mut out);
        self.http_request_duration.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP sustainbot_active_requests Currently active HTTP requests\n# TYPE sustainbot_active_requests gauge\nsustainbot_active_requests {}",
            self.active_requests.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_text_format() {
        let metrics = Metrics::new();
        metrics.jwt_validations.inc(&["success"]);
        metrics.jwt_validations.inc(&["success"]);
        metrics
            .http_request_duration
            .observe(&["GET", "/health"], 0.003);
        let text = metrics.render();
        assert!(text.contains("sustainbot_jwt_validations_total{outcome=\"success\"} 2\n"));
        assert!(text.contains("sustainbot_http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.005\"} 1\n"));
        assert!(text.contains("sustainbot_http_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/health\",le=\"0.001\"} 0\n"));
        assert!(text.contains("sustainbot_active_requests 0\n"));
        assert_eq!(metrics.jwt_validations.get(&["success"]), 2);
    }

    #[test]
    fn escapes_label_values() {
        let metrics = Metrics::new();
        metrics.slack_events_received.inc(&["a\"b\\c\nd"]);
        assert!(metrics.render().contains(r#"event_type="a\"b\\c\nd""#));
    }
}

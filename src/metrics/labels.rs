//! Label sets (one type per shape; field names are the label names, as the original server named
//! them) and the labelled family that exports its description before its first sample.
//!
//! Values that come from requests are bounded here or by the callers: DRAG modes and HTTP methods
//! map to a fixed set, endpoints are route templates, workflow names are known workflows.

use std::hash::Hash;

use axum::http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::{MetricType, TypedMetric};
use serde_json::Value;

use super::Histogram;
use crate::governance::DragMode;

/// A family of series by label set `S`. Unlike the crate's `Family`, which leaves a family without
/// samples out of the page, its `HELP` and `TYPE` are always there (as the original's client
/// exported them): dashboards and the compatibility check find every family from the start.
#[derive(Debug)]
pub struct Labeled<S, M, C = fn() -> M>(Family<S, M, C>);

impl<S, M, C: Clone> Clone for Labeled<S, M, C> {
    fn clone(&self) -> Self {
        Labeled(self.0.clone())
    }
}

/// Counters by label set.
pub type CounterFamily<S> = Labeled<S, Counter>;
/// Histograms by label set (every series with the family's buckets).
pub type HistogramFamily<S> = Labeled<S, Histogram>;

impl<S: Clone + Hash + Eq> CounterFamily<S> {
    pub fn new() -> Self {
        Labeled(Family::default())
    }

    /// Adds one to the series `labels`.
    pub fn inc(&self, labels: &S) {
        self.0.get_or_create(labels).inc();
    }

    /// The series `labels`, made now if it is new: a handle that counts without a lookup.
    pub fn series(&self, labels: &S) -> Counter {
        self.0.get_or_create_owned(labels)
    }

    /// The value of one series (0 when it was never touched).
    pub fn get(&self, labels: &S) -> u64 {
        self.0.get(labels).map_or(0, |counter| counter.get())
    }
}

impl<S: Clone + Hash + Eq> Default for CounterFamily<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Hash + Eq> HistogramFamily<S> {
    /// Every series gets the buckets `new_series` makes (a plain function: families are `'static`).
    pub fn with_buckets(new_series: fn() -> Histogram) -> Self {
        Labeled(Family::new_with_constructor(new_series))
    }

    pub fn observe(&self, labels: &S, value: f64) {
        self.0.get_or_create(labels).observe(value);
    }

    /// How many values the series `labels` observed.
    pub fn count(&self, labels: &S) -> u64 {
        self.0.get(labels).map_or(0, |histogram| histogram.count())
    }
}

impl<S, M, C> EncodeMetric for Labeled<S, M, C>
where
    S: Clone + Hash + Eq + EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
    C: MetricConstructor<M>,
{
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// `sustainbot_aim_requests_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AimRequest {
    pub drag_mode: &'static str,
    /// The token's role (never the declaration's free text).
    pub actor_role: String,
    /// A known workflow, or `unknown`.
    pub workflow_name: String,
}

/// `sustainbot_aim_validation_failures_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidationFailure {
    /// `shape` or `business_rule`.
    pub failure_reason: &'static str,
    pub drag_mode: &'static str,
}

/// `sustainbot_governed_workflow_duration_seconds`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunDuration {
    pub workflow_name: String,
    pub outcome: &'static str,
    pub drag_mode: &'static str,
}

/// `sustainbot_audit_log_entries_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditEntry {
    pub outcome: &'static str,
    pub drag_mode: &'static str,
}

/// Families counted by DRAG mode alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByDragMode {
    pub drag_mode: &'static str,
}

/// `sustainbot_prescriptive_language_detections_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Detection {
    pub drag_mode: &'static str,
    /// The phrase of the configured list that matched.
    pub phrase_type: String,
}

/// `sustainbot_workflow_executions_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Execution {
    pub workflow_name: String,
    pub outcome: &'static str,
}

/// `sustainbot_workflow_execution_errors_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutionError {
    pub workflow_name: String,
    pub error_type: &'static str,
}

/// `sustainbot_human_overrides_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByWorkflow {
    pub workflow_name: String,
}

/// `sustainbot_slack_events_received_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlackEvent {
    pub event_type: &'static str,
}

/// `sustainbot_jwt_validations_total`, `sustainbot_slack_signature_verifications_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByOutcome {
    pub outcome: &'static str,
}

/// `sustainbot_slack_deliveries_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlackDelivery {
    pub target: &'static str,
    pub result: &'static str,
}

/// `sustainbot_authentication_failures_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthFailure {
    pub failure_type: &'static str,
}

/// `sustainbot_http_requests_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequest {
    pub method: &'static str,
    /// The route template (`/runs/{trace_id}`), or `unmatched`.
    pub endpoint: String,
    pub status_code: u16,
}

/// `sustainbot_http_request_duration_seconds`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRoute {
    pub method: &'static str,
    pub endpoint: String,
}

/// `sustainbot_audit_appends_total`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppendResult {
    /// `ok` (durable) or `failed`.
    pub result: &'static str,
}

/// `sustainbot_application_info`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Build {
    pub version: &'static str,
    /// `release` or `debug`.
    pub build: &'static str,
}

/// A DRAG mode as a label: one of the four modes, `ungoverned`, or `unknown` (never free text).
pub fn mode_label(mode: &str) -> &'static str {
    match mode.parse::<DragMode>() {
        Ok(mode) => mode.as_str(),
        Err(_) if mode == "ungoverned" => "ungoverned",
        Err(_) => "unknown",
    }
}

/// A body's `drag_mode` as a label: a known mode, or `unknown`.
pub fn drag_mode_label(body: &Value) -> &'static str {
    body.get("drag_mode")
        .and_then(Value::as_str)
        .and_then(|mode| mode.parse::<DragMode>().ok())
        .map_or("unknown", DragMode::as_str)
}

/// An HTTP method as a label: the standard ones by name, any other (a client's invention) `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_requests_stay_a_bounded_set() {
        assert_eq!(mode_label("research"), "research");
        assert_eq!(mode_label("ungoverned"), "ungoverned");
        assert_eq!(mode_label("anything a client wrote"), "unknown");
        assert_eq!(
            drag_mode_label(&serde_json::json!({"drag_mode": "draft"})),
            "draft"
        );
        assert_eq!(
            drag_mode_label(&serde_json::json!({"drag_mode": 7})),
            "unknown"
        );
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"BREW").expect("a valid token");
        assert_eq!(method_label(&invented), "OTHER");
    }
}

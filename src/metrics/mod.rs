//! Prometheus metrics with the original server's names and labels, exported with the Prometheus
//! project's client (`prometheus-client`): OpenMetrics for scrapers that ask for it (Prometheus
//! does), the text format 0.0.4 otherwise (curl, scripts and the original's demo read it as they
//! read the original's page: counters are `..._total` in `# TYPE` lines too).
//!
//! Counters are registered without their `_total` suffix; the encoders add it to the samples (and,
//! in text 0.0.4, to the family name). Counting is atomics plus, for labelled families, a
//! read-locked lookup of the series; histograms are atomics too ([`Histogram`]). Gauges of the
//! gate's state (queue, workers, approvals, audit sink) are set when `/metrics` is read, not on the
//! run path.

mod histogram;
mod labels;

use prometheus_client::encoding::{prometheus_text, text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::governance::Rejection;

pub use histogram::Histogram;
pub use labels::*;

const DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// From a caller's append to its durable receipt: one fdatasync is typically 0.1 to 10 ms.
const APPEND_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Records per group commit (a batch is at most 1024 records; a sync may cover several batches).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The build, as `sustainbot_application_info` shows it: `release` or `debug`.
const BUILD: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// What the audit writer counts: handles it keeps, so that counting needs no lookup.
#[derive(Clone, Debug)]
pub struct AuditMetrics {
    /// Appends made durable.
    pub appended: Counter,
    /// Appends that failed (the caller was told the trail could not record).
    pub failed: Counter,
    /// Seconds from a caller's append to its durable receipt.
    pub append_duration: Histogram,
    /// Records made durable together by one sync (group commit).
    pub batch_records: Histogram,
    appends: CounterFamily<AppendResult>,
}

impl Default for AuditMetrics {
    /// Handles that count but are exported nowhere (a store opened outside the server).
    fn default() -> Self {
        let appends = CounterFamily::new();
        AuditMetrics {
            appended: appends.series(&AppendResult { result: "ok" }),
            failed: appends.series(&AppendResult { result: "failed" }),
            append_duration: Histogram::new(APPEND_BUCKETS),
            batch_records: Histogram::new(BATCH_BUCKETS),
            appends,
        }
    }
}

/// The gate's state at one moment, as the gauges show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateState {
    pub runs_queued: usize,
    pub runs_executing: usize,
    pub queue_capacity: usize,
    pub workers: usize,
    pub approvals_waiting: usize,
    /// When the first of the waiting approval requests expires (Unix seconds); none waiting: 0.
    pub next_approval_expiry: i64,
    pub audit_sink_healthy: bool,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub aim_requests: CounterFamily<AimRequest>,
    pub aim_validation_failures: CounterFamily<ValidationFailure>,
    pub governed_workflow_duration: HistogramFamily<RunDuration>,
    pub audit_log_entries: CounterFamily<AuditEntry>,
    pub audit_intent_records: CounterFamily<ByDragMode>,
    pub audit_other_records: CounterFamily<ByDragMode>,
    pub prescriptive_language_detections: CounterFamily<Detection>,
    pub workflow_executions: CounterFamily<Execution>,
    pub workflow_execution_errors: CounterFamily<ExecutionError>,
    pub slack_events_received: CounterFamily<SlackEvent>,
    pub slack_signature_verifications: CounterFamily<ByOutcome>,
    pub slack_deliveries: CounterFamily<SlackDelivery>,
    pub jwt_validations: CounterFamily<ByOutcome>,
    pub authentication_failures: CounterFamily<AuthFailure>,
    pub http_requests: CounterFamily<HttpRequest>,
    pub http_request_duration: HistogramFamily<HttpRoute>,
    pub human_overrides: CounterFamily<ByWorkflow>,
    pub active_requests: Gauge,
    pub audit: AuditMetrics,
    gate: GateGauges,
}

/// Gauges set from [`GateState`] when the page is read.
struct GateGauges {
    runs_queued: Gauge,
    runs_executing: Gauge,
    queue_capacity: Gauge,
    workers: Gauge,
    approvals_waiting: Gauge,
    next_approval_expiry: Gauge,
    audit_sink_healthy: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Which text format a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (what Prometheus asks for).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (the original's page; anyone who does not ask).
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (with a non-zero quality), else text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| matches!(p.parse::<Q>(), Ok(Q(q)) if q <= 0.0));
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// A `q=` parameter of a media range.
struct Q(f32);

impl std::str::FromStr for Q {
    type Err = ();

    fn from_str(s: &str) -> Result<Q, ()> {
        let value = s.strip_prefix("q=").ok_or(())?;
        value.trim().parse().map(Q).map_err(|_| ())
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let r = &mut registry;
        r.register(
            "sustainbot_application",
            "SustainBot version and build",
            Info::new(Build {
                version: env!("CARGO_PKG_VERSION"),
                build: BUILD,
            }),
        );
        Metrics {
            aim_requests: counter(
                r,
                "sustainbot_aim_requests",
                "Total AIM-declared governance requests",
            ),
            aim_validation_failures: counter(
                r,
                "sustainbot_aim_validation_failures",
                "Total AIM validation failures",
            ),
            audit_log_entries: counter(
                r,
                "sustainbot_audit_log_entries",
                "Total audit log entries written",
            ),
            audit_intent_records: counter(
                r,
                "sustainbot_audit_intent_records",
                "Write-ahead `started` records (one per run that started; its outcome is counted in sustainbot_audit_log_entries_total)",
            ),
            audit_other_records: counter(
                r,
                "sustainbot_audit_other_records",
                "Audit records that are not run records (approval decisions, overrides)",
            ),
            prescriptive_language_detections: counter(
                r,
                "sustainbot_prescriptive_language_detections",
                "Prescriptive language filter detections",
            ),
            workflow_executions: counter(
                r,
                "sustainbot_workflow_executions",
                "Total workflow executions (governed + ungoverned)",
            ),
            workflow_execution_errors: counter(
                r,
                "sustainbot_workflow_execution_errors",
                "Workflow execution errors",
            ),
            slack_events_received: counter(
                r,
                "sustainbot_slack_events_received",
                "Slack events received",
            ),
            slack_signature_verifications: counter(
                r,
                "sustainbot_slack_signature_verifications",
                "Slack signature verifications",
            ),
            slack_deliveries: counter(
                r,
                "sustainbot_slack_deliveries",
                "Messages and calls to Slack (response_url, Web API methods, webhook) by result: ok, retried, refused, failed, dropped",
            ),
            jwt_validations: counter(r, "sustainbot_jwt_validations", "JWT token validations"),
            authentication_failures: counter(
                r,
                "sustainbot_authentication_failures",
                "Authentication failures",
            ),
            http_requests: counter(r, "sustainbot_http_requests", "HTTP requests received"),
            human_overrides: counter(
                r,
                "sustainbot_human_overrides",
                "Outputs replaced or edited by a person, per workflow",
            ),
            governed_workflow_duration: histograms(
                r,
                "sustainbot_governed_workflow_duration_seconds",
                "Governed workflow execution duration",
                || Histogram::new(DURATION_BUCKETS),
            ),
            http_request_duration: histograms(
                r,
                "sustainbot_http_request_duration_seconds",
                "HTTP request duration",
                || Histogram::new(HTTP_BUCKETS),
            ),
            active_requests: gauge(
                r,
                "sustainbot_active_requests",
                "Currently active HTTP requests",
            ),
            gate: GateGauges {
                runs_queued: gauge(r, "sustainbot_run_queue_depth", "Runs waiting for a worker"),
                queue_capacity: gauge(
                    r,
                    "sustainbot_run_queue_capacity",
                    "Runs that may wait for a worker (RUN_QUEUE); beyond it, 429 TOO_MANY_RUNS",
                ),
                runs_executing: gauge(r, "sustainbot_runs_executing", "Runs executing now"),
                workers: gauge(
                    r,
                    "sustainbot_run_workers",
                    "Runs that may execute at once (RUN_WORKERS)",
                ),
                approvals_waiting: gauge(
                    r,
                    "sustainbot_approvals_waiting",
                    "Runs waiting for a second human's approval",
                ),
                next_approval_expiry: gauge(
                    r,
                    "sustainbot_approval_next_expiry_timestamp_seconds",
                    "When the first waiting approval request expires, in Unix seconds (0 when none waits)",
                ),
                audit_sink_healthy: gauge(
                    r,
                    "sustainbot_audit_sink_healthy",
                    "1 when the audit trail accepts records, 0 when it cannot record (runs are refused)",
                ),
            },
            audit: audit_metrics(r),
            registry,
        }
    }

    /// Counts a refused declaration by kind (shape or business rule) and declared DRAG mode.
    pub fn validation_failure(&self, rejection: &Rejection, body: &Value) {
        let failure_reason = if rejection.is_shape() {
            "shape"
        } else {
            "business_rule"
        };
        self.aim_validation_failures.inc(&ValidationFailure {
            failure_reason,
            drag_mode: drag_mode_label(body),
        });
    }

    /// Counts a refused token: `failure_type` is `missing_token`, `invalid_token` or
    /// `unknown_signing_key`.
    pub fn token_refused(&self, failure_type: &'static str) {
        self.authentication_failures
            .inc(&AuthFailure { failure_type });
        self.jwt_validations.inc(&ByOutcome { outcome: "failure" });
    }

    /// Sets the gauges of the gate's state (read when the page is served).
    pub fn set_gate_state(&self, state: &GateState) {
        let gauges = &self.gate;
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauges.runs_queued.set(int(state.runs_queued));
        gauges.runs_executing.set(int(state.runs_executing));
        gauges.queue_capacity.set(int(state.queue_capacity));
        gauges.workers.set(int(state.workers));
        gauges.approvals_waiting.set(int(state.approvals_waiting));
        gauges.next_approval_expiry.set(state.next_approval_expiry);
        gauges
            .audit_sink_healthy
            .set(i64::from(state.audit_sink_healthy));
    }

    /// The exposition of every metric in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let written = match format {
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
            Format::Text => prometheus_text::encode(&mut out, &self.registry),
        };
        if written.is_err() {
            // Writing into a String does not fail; a metric's encoder refused its own value.
            tracing::error!("a metric could not be encoded; the page is incomplete");
        }
        out
    }
}

/// Label sets a registered family can have.
pub trait LabelSet:
    Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static
{
}

impl<S> LabelSet for S where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static
{
}

fn counter<S: LabelSet>(registry: &mut Registry, name: &str, help: &str) -> CounterFamily<S> {
    let family = CounterFamily::new();
    registry.register(name, help, family.clone());
    family
}

fn histograms<S: LabelSet>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    new_series: fn() -> Histogram,
) -> HistogramFamily<S> {
    let family = HistogramFamily::with_buckets(new_series);
    registry.register(name, help, family.clone());
    family
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

fn audit_metrics(registry: &mut Registry) -> AuditMetrics {
    let audit = AuditMetrics::default();
    registry.register(
        "sustainbot_audit_appends",
        "Audit appends by result: ok (durable), failed (the caller was refused)",
        audit.appends.clone(),
    );
    registry.register(
        "sustainbot_audit_append_duration_seconds",
        "From a caller's audit append to its durable receipt (the fdatasync it shares included)",
        audit.append_duration.clone(),
    );
    registry.register(
        "sustainbot_audit_batch_records",
        "Records made durable together by one sync of the audit writer (group commit)",
        audit.batch_records.clone(),
    );
    audit
}

#[cfg(test)]
mod tests;

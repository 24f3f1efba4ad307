//! OpenTelemetry: the server's spans exported over OTLP/HTTP (protobuf) to a collector, a caller's
//! `traceparent` continued, and the run's trace context sent on with `http` and `openclaw` steps.
//!
//! Nothing here runs unless [`Traces::start`] was called (an OTLP endpoint is configured): the
//! spans made only for traces (target [`SPANS`]) are then disabled at their call sites, no header
//! is read or written, and no exporter thread exists.
//!
//! Our `X-Trace-ID` (any visible ASCII, the contract's) and the W3C trace id (16 bytes) are two ids:
//! a request's trace continues the caller's `traceparent` when it sends one and starts a new trace
//! otherwise; our id is the span attribute `sustainbot.trace_id`, and the request span's
//! `w3c_trace_id` field puts the W3C id on its log lines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry::{Key, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::conventions::Conventions;
use crate::config::TracesConfig;

/// The target of spans made for traces only (validation, audit appends, runs, steps, outcomes):
/// log output leaves them out, so a log line's `span` stays the request's.
pub const SPANS: &str = "sustainbot::otel";

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` gives one.
const SERVICE_NAME: &str = "sustainbot";

static STARTED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (and trace context read and propagated).
pub fn enabled() -> bool {
    STARTED.load(Ordering::Relaxed)
}

/// The exporter, running. [`Traces::shutdown`] sends what is still buffered.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces: {0}")]
pub struct TracesError(#[from] opentelemetry_otlp::ExporterBuildError);

impl Traces {
    /// Starts the exporter (a batch processor on a thread of its own; the standard `OTEL_BSP_*`,
    /// `OTEL_TRACES_SAMPLER*`, `OTEL_EXPORTER_OTLP_*HEADERS` and `*TIMEOUT`, `OTEL_SERVICE_NAME`
    /// and `OTEL_RESOURCE_ATTRIBUTES` variables apply) and returns the layer that feeds it: the
    /// spans and events of this crate at `INFO` and above, whatever `RUST_LOG` says of logs.
    pub fn start<S>(
        config: &TracesConfig,
    ) -> Result<(Traces, impl Layer<S> + Send + Sync), TracesError>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.expose())
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Conventions::new(
                BatchSpanProcessor::builder(exporter).build(),
            ))
            .with_resource(resource())
            .build();
        let tracer = provider.tracer("sustainbot");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(|meta| {
                meta.target().starts_with("sustainbot") && *meta.level() <= Level::INFO
            }));
        STARTED.store(true, Ordering::Relaxed);
        Ok((Traces { provider }, layer))
    }

    /// Exports what is buffered and stops, waiting at most `within`.
    pub fn shutdown(self, within: Duration) {
        STARTED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown_with_timeout(within) {
            tracing::warn!(error = %e, "traces still buffered at exit may be lost");
        }
    }
}

/// The resource the SDK detects from the environment, named `sustainbot` unless it was told a name.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let service = Key::from_static_str("service.name");
    match detected.get(&service) {
        Some(Value::String(name)) if !name.as_str().starts_with("unknown_service") => detected,
        _ => Resource::builder().with_service_name(SERVICE_NAME).build(),
    }
}

/// Makes `span` (a request's, not yet entered) continue the caller's trace when its `traceparent`
/// (and `tracestate`) header is valid, and records the W3C trace id in its `w3c_trace_id` field.
pub fn continue_remote(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() {
        return;
    }
    let remote = TraceContextPropagator::new().extract(&Headers(headers));
    if remote.span().span_context().is_valid() {
        let _ = span.set_parent(remote);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("w3c_trace_id", tracing::field::display(trace_id));
}

/// Adds the current span's `traceparent` (and `tracestate`) to an outgoing request's `headers`,
/// unless they already name one (a definition's own header wins).
pub fn inject(headers: &mut Vec<(String, String)>) {
    if !enabled()
        || headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
    {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut Outgoing(headers));
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Outgoing<'a>(&'a mut Vec<(String, String)>);

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

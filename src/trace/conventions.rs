//! The OpenTelemetry view of the spans the logs share. A request's span keeps the field names its
//! log lines have always had (`method`, `route`, `trace_id`...); on export they take the
//! semantic-convention keys (or our `sustainbot.` namespace), the request span is named for its
//! method and route and marked a server span, and a 5xx marks it an error. Spans made for traces
//! only are named right where they are made and pass unchanged.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Context, Key, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

/// Log field -> exported attribute key; `None`: not exported (the span says it already).
const KEYS: &[(&str, Option<&str>)] = &[
    ("trace_id", Some("sustainbot.trace_id")),
    ("method", Some("http.request.method")),
    ("route", Some("http.route")),
    ("status", Some("http.response.status_code")),
    ("actor", Some("sustainbot.actor")),
    ("workflow", Some("sustainbot.workflow")),
    ("drag_mode", Some("sustainbot.drag_mode")),
    ("outcome", Some("sustainbot.outcome")),
    ("duration_ms", None),
    ("w3c_trace_id", None),
];

/// A span processor that renames as above, then hands the span to the next one.
#[derive(Debug)]
pub struct Conventions<P>(P);

impl<P: SpanProcessor> Conventions<P> {
    pub fn new(next: P) -> Conventions<P> {
        Conventions(next)
    }
}

impl<P: SpanProcessor> SpanProcessor for Conventions<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        apply(&mut span);
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

fn apply(span: &mut SpanData) {
    span.attributes.retain_mut(|attribute| {
        match KEYS
            .iter()
            .find(|(from, _)| *from == attribute.key.as_str())
        {
            None => true,
            Some((_, None)) => false,
            Some((_, Some(to))) => {
                attribute.key = Key::from_static_str(to);
                true
            }
        }
    });
    if span.name != "request" {
        return;
    }
    let text = |key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key.as_str() == key)
            .map(|a| a.value.as_str().into_owned())
    };
    let name = match (text("http.request.method"), text("http.route")) {
        (Some(method), Some(route)) => format!("{method} {route}"),
        (Some(method), None) => method,
        _ => "request".to_owned(),
    };
    let status = span
        .attributes
        .iter()
        .find(|a| a.key.as_str() == "http.response.status_code")
        .and_then(|a| match a.value {
            Value::I64(code) => Some(code),
            _ => None,
        });
    span.name = Cow::Owned(name);
    span.span_kind = SpanKind::Server;
    if status.is_some_and(|code| code >= 500) && span.status == Status::Unset {
        span.status = Status::error("");
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use opentelemetry::trace::{SpanContext, SpanId};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    fn span(name: &'static str, attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    fn keys(span: &SpanData) -> Vec<&str> {
        span.attributes.iter().map(|a| a.key.as_str()).collect()
    }

    #[test]
    fn a_request_span_is_named_for_its_route_with_semantic_keys() {
        let mut request = span(
            "request",
            vec![
                KeyValue::new("method", "POST"),
                KeyValue::new("route", "/workflows/governed/execute"),
                KeyValue::new("trace_id", "demo-1"),
                KeyValue::new("status", 503_i64),
                KeyValue::new("duration_ms", 1.5),
                KeyValue::new("outcome", "success"),
            ],
        );
        apply(&mut request);
        assert_eq!(request.name, "POST /workflows/governed/execute");
        assert_eq!(request.span_kind, SpanKind::Server);
        assert!(matches!(request.status, Status::Error { .. }));
        assert_eq!(
            keys(&request),
            [
                "http.request.method",
                "http.route",
                "sustainbot.trace_id",
                "http.response.status_code",
                "sustainbot.outcome"
            ]
        );
    }

    #[test]
    fn spans_made_for_traces_pass_unchanged() {
        let mut step = span(
            "step",
            vec![
                KeyValue::new("sustainbot.step.kind", "command"),
                KeyValue::new("process.exit.code", 0_i64),
            ],
        );
        apply(&mut step);
        assert_eq!(step.name, "step");
        assert_eq!(step.span_kind, SpanKind::Internal);
        assert_eq!(keys(&step), ["sustainbot.step.kind", "process.exit.code"]);
    }
}

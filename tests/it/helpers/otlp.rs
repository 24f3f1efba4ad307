//! A stand-in OpenTelemetry collector on loopback: it takes OTLP/HTTP exports (`POST /v1/traces`,
//! `application/x-protobuf`), decodes them with the OpenTelemetry protocol's own message types, and
//! keeps the spans, the raw bodies and the request headers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::{json, Value};
use sustainbot::sync::lock;

use super::serve;

/// One span as received, with hex ids and attributes as JSON.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The protocol's `SpanKind` number (2: server).
    pub kind: i32,
    pub attributes: BTreeMap<String, Value>,
    /// The protocol's status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    /// The trace ids of its links.
    pub links: Vec<String>,
    /// The resource's `service.name`.
    pub service: Value,
}

impl ReceivedSpan {
    /// The attribute `key`'s value (`null` when it has none).
    pub fn attribute(&self, key: &str) -> Value {
        self.attributes.get(key).cloned().unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    bodies: Vec<u8>,
    headers: Vec<HeaderMap>,
}

/// The stand-in. `base` is `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub struct Collector {
    pub base: String,
    received: Arc<Mutex<Received>>,
}

impl Collector {
    pub async fn start() -> Collector {
        let received = Arc::new(Mutex::new(Received::default()));
        let kept = Arc::clone(&received);
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: Bytes| async move {
                let protobuf = headers
                    .get("content-type")
                    .is_some_and(|v| v == "application/x-protobuf");
                let Ok(export) = ExportTraceServiceRequest::decode(body.as_ref()) else {
                    return (StatusCode::BAD_REQUEST, Vec::new());
                };
                if !protobuf {
                    return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                }
                let mut received = lock(&kept);
                received.bodies.extend_from_slice(&body);
                received.headers.push(headers);
                received.spans.extend(spans(export));
                // An empty ExportTraceServiceResponse: full success.
                (StatusCode::OK, Vec::new())
            }),
        );
        Collector {
            base: format!("http://{}", serve(app).await),
            received,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.received).spans.clone()
    }

    /// Waits up to 20 s for the spans of the trace that a span named `name` with attribute `key` =
    /// `value` belongs to, once `done` says they are all there; panics with what arrived otherwise.
    pub async fn trace_of(
        &self,
        name: &str,
        (key, value): (&str, &str),
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            let trace = spans
                .iter()
                .find(|s| s.name == name && s.attribute(key) == value)
                .map(|s| s.trace_id.clone());
            if let Some(trace) = trace {
                let of_trace: Vec<ReceivedSpan> =
                    spans.into_iter().filter(|s| s.trace_id == trace).collect();
                if done(&of_trace) {
                    return of_trace;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no complete trace of {name} {key}={value} in 20 s: {:#?}",
                    self.spans()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every body received, end to end (to search for what must never be exported).
    pub fn bodies(&self) -> Vec<u8> {
        lock(&self.received).bodies.clone()
    }

    /// The headers of every export request.
    pub fn headers(&self) -> Vec<HeaderMap> {
        lock(&self.received).headers.clone()
    }
}

fn spans(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or(Value::Null);
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(ReceivedSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    status: span.status.map_or(0, |s| s.code),
                    links: span
                        .links
                        .iter()
                        .map(|l| hex::encode(&l.trace_id))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    out
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, Value> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => json!(s),
                Some(AnyValue::BoolValue(b)) => json!(b),
                Some(AnyValue::IntValue(i)) => json!(i),
                Some(AnyValue::DoubleValue(d)) => json!(d),
                other => json!(format!("{other:?}")),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

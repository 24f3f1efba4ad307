//! Criterion benchmarks of the request hot paths: parsing and validating a governance request, the
//! prescriptive-language filter, encoding a chained audit line, and verifying a log.
//!
//!     cargo bench --bench hot_paths

use std::io::Cursor;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Map, Value};
use sustainbot::audit::format::{encode_line, GENESIS_HASH};
use sustainbot::audit::verify::verify_reader;
use sustainbot::governance::filter::{find_prescriptive, PhraseList};
use sustainbot::governance::{summary, GovernanceRequest};

const BODY: &str = r#"{"workflow_name": "deploy-to-staging",
 "aim": {"actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"},
         "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}],
                   "constraints": ["Read-only", "No destructive ops"]},
         "mission": {"objective": "Deploy app to staging with zero downtime",
                     "success_criteria": ["Health checks pass", "Rollback ready"]}},
 "drag_mode": "execute", "parameters": {"environment": "staging", "version": "v1.2.3"}}"#;

fn governance(c: &mut Criterion) {
    c.bench_function("governance/parse_validate_summary", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_str(black_box(BODY)).unwrap();
            let request = GovernanceRequest::parse(&value).unwrap();
            black_box(summary(&request))
        })
    });
    c.bench_function("governance/json_parse_only", |b| {
        b.iter(|| black_box(serde_json::from_str::<Value>(black_box(BODY)).unwrap()))
    });
}

fn filter(c: &mut Criterion) {
    let phrases = PhraseList::default_forbidden();
    let text = "Options include Docker or Podman; trade-offs are image size and rootless support. "
        .repeat(24)
        + "You\u{200B} SHOULD pick one.";
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("find_prescriptive_2KiB", |b| {
        b.iter(|| black_box(find_prescriptive(black_box(&text), &phrases)))
    });
    group.finish();
}

fn record_fields(seq: u64, prev: &str) -> Map<String, Value> {
    let value = json!({
        "kind": "run", "trace_id": "3f0c8f3e-8d4b-4b7e-9d8e-2b1f0b6f9c11", "timestamp": "2026-11-25T20:00:00.000000Z",
        "aim": serde_json::from_str::<Value>(BODY).unwrap()["aim"].clone(),
        "drag_mode": "execute", "workflow_name": "deploy-to-staging",
        "parameters": {"environment": "staging", "version": "v1.2.3"},
        "outcome": "success", "error": null, "code": null, "duration_seconds": 0.0012,
        "principal": {"actor": "jake@example.org", "role": "admin", "user_id": "jake@example.org"},
        "seq": seq, "prev_hash": prev,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn audit(c: &mut Criterion) {
    c.bench_function("audit/encode_line", |b| {
        b.iter_batched(
            || record_fields(1, GENESIS_HASH),
            |fields| black_box(encode_line(fields)),
            criterion::BatchSize::SmallInput,
        )
    });
    let mut log = Vec::new();
    let mut prev = GENESIS_HASH.to_owned();
    for seq in 1..=10_000 {
        let (line, hash) = encode_line(record_fields(seq, &prev));
        log.extend_from_slice(&line);
        prev = hash;
    }
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(20);
    group.bench_function("verify_10k_records", |b| {
        b.iter(|| {
            let report = verify_reader(Cursor::new(&log)).unwrap();
            assert!(report.is_valid());
            black_box(report)
        })
    });
    group.finish();
}

criterion_group!(benches, governance, filter, audit);
criterion_main!(benches);

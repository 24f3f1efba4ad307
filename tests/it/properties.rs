//! Property tests: the contract's request, mutated at random, never makes the server answer 5xx or
//! skip an audit record, and the pre-flight check agrees with the governed endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

use crate::helpers::{governance_request, TestApp};

/// Every place of the request a mutation may touch (JSON pointers).
const PATHS: [&str; 18] = [
    "/workflow_name",
    "/aim",
    "/aim/actor",
    "/aim/actor/name",
    "/aim/actor/email",
    "/aim/actor/role",
    "/aim/input",
    "/aim/input/sources",
    "/aim/input/sources/0",
    "/aim/input/sources/0/type",
    "/aim/input/sources/0/description",
    "/aim/input/sources/0/location",
    "/aim/input/constraints",
    "/aim/mission",
    "/aim/mission/objective",
    "/aim/mission/success_criteria",
    "/drag_mode",
    "/parameters",
];

#[derive(Debug, Clone)]
enum Mutation {
    Set(&'static str, Value),
    Remove(&'static str),
}

/// Values that sit on the rules' edges at `path`: valid and invalid modes, short names, mismatched
/// emails, empty lists.
fn plausible(path: &str) -> Vec<Value> {
    let values = match path {
        "/workflow_name" => json!(["noop", "with-steps", "does-not-exist", "../x", "", "a b"]),
        "/aim/actor/name" => json!(["AB", "  AB  ", "   ", "Jake Smith", "", "A\u{200b}B"]),
        "/aim/actor/email" => json!([
            "mallory@example.org",
            "JAKE@EXAMPLE.ORG",
            "no-at-sign",
            null,
            "jake@example.org"
        ]),
        "/aim/actor/role" => json!(["", "  ", "Ops", null]),
        "/aim/input/sources" => json!([[], [{"type": "a", "description": "b"}], [{"type": "a"}]]),
        "/aim/input/sources/0/location" => json!([null, "here", 5]),
        "/aim/input/constraints" => json!([[], ["x"], [1], null]),
        "/aim/mission/objective" => json!([
            "Too short",
            "Exactly 10",
            "         x",
            "A long enough objective"
        ]),
        "/aim/mission/success_criteria" => json!([[], ["ok"], "ok"]),
        "/drag_mode" => json!(["draft", "research", "grunt", "execute", "analysis", "EXECUTE"]),
        "/parameters" => json!([{}, null, [], {"a": 1}]),
        _ => json!([null, {}, []]),
    };
    match values {
        Value::Array(values) => values,
        _ => unreachable!("a JSON array literal"),
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9 @._/-]{0,24}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let set = prop::sample::select(PATHS.to_vec()).prop_flat_map(|path| {
        prop_oneof![
            3 => prop::sample::select(plausible(path)),
            1 => arb_json(),
        ]
        .prop_map(move |value| Mutation::Set(path, value))
    });
    let one = prop_oneof![
        4 => set,
        1 => prop::sample::select(PATHS.to_vec()).prop_map(Mutation::Remove),
    ];
    prop::collection::vec(one, 1..3)
}

/// The contract's request for `noop` with `mutations` applied (a mutation whose parent no longer
/// exists is skipped).
fn mutated(mutations: &[Mutation]) -> Value {
    let mut request = governance_request("noop");
    for mutation in mutations {
        let (Mutation::Set(path, _) | Mutation::Remove(path)) = mutation;
        let (parent, key) = path.rsplit_once('/').expect("pointer");
        let Some(parent) = request.pointer_mut(parent) else {
            continue;
        };
        match (parent, mutation) {
            (Value::Object(map), Mutation::Set(_, value)) => {
                map.insert(key.to_owned(), value.clone());
            }
            (Value::Object(map), Mutation::Remove(_)) => {
                map.remove(key);
            }
            (Value::Array(items), Mutation::Set(_, value)) if !items.is_empty() => {
                items[0] = value.clone();
            }
            (Value::Array(items), Mutation::Remove(_)) if !items.is_empty() => {
                items.remove(0);
            }
            _ => {}
        }
    }
    request
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn mutated_requests_get_the_same_governance_verdict_from_validate_and_execute() {
    let rt = runtime();
    let app = rt.block_on(TestApp::spawn());
    let result = runner(256).run(&arb_mutations(), |mutations| {
        let request = mutated(&mutations);
        rt.block_on(async {
            let validate = app.post_json("/governance/validate", &request, None).await;
            let execute = app.execute(&request, &[]).await;
            let (v, e) = (validate.json(), execute.json());
            match validate.status.as_u16() {
                200 => {
                    let mut keys: Vec<&String> = v.as_object().expect("object").keys().collect();
                    keys.sort();
                    prop_assert_eq!(keys, ["actor", "drag_mode", "summary", "valid"]);
                    prop_assert!(
                        matches!(
                            (execute.status.as_u16(), e["code"].as_str()),
                            (200, None)
                                | (403, Some("ACTOR_MISMATCH"))
                                | (400, Some("VALIDATION_ERROR"))
                                | (404, Some("WORKFLOW_NOT_FOUND"))
                                | (500, Some("WORKFLOW_FAILED"))
                        ),
                        "valid request, execute answered {} {}",
                        execute.status,
                        e
                    );
                }
                400 => {
                    prop_assert_eq!(&v["valid"], false);
                    prop_assert!(
                        matches!(
                            v["code"].as_str(),
                            Some("GOVERNANCE_ERROR" | "GOVERNANCE_VALIDATION_FAILED")
                        ),
                        "{}",
                        v
                    );
                    prop_assert_eq!(execute.status.as_u16(), 400, "{}", e);
                    prop_assert_eq!(&e["code"], &v["code"]);
                    prop_assert_eq!(&e["error"], &v["error"]);
                }
                other => {
                    return Err(TestCaseError::fail(format!(
                        "validate answered {other}: {v}"
                    )))
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn every_governed_answer_to_a_mutated_request_is_audited_on_a_valid_chain() {
    let rt = runtime();
    let app = rt.block_on(TestApp::spawn());
    let counter = AtomicU64::new(0);
    let result = runner(256).run(&arb_mutations(), |mutations| {
        let request = mutated(&mutations);
        let trace = format!("prop-{}", counter.fetch_add(1, Ordering::Relaxed));
        let reply = rt.block_on(app.execute(&request, &[("x-trace-id", trace.clone())]));
        let body = reply.json();
        prop_assert_eq!(&body["trace_id"], trace.as_str());
        let records = app.audit_for(&trace);
        let outcomes: Vec<&str> = records
            .iter()
            .map(|r| r["outcome"].as_str().unwrap_or("?"))
            .collect();
        match reply.status.as_u16() {
            200 => prop_assert_eq!(outcomes, ["started", "success"]),
            500 => {
                prop_assert_eq!(&body["code"], "WORKFLOW_FAILED");
                prop_assert_eq!(outcomes, ["started", "failure"]);
            }
            400 | 403 | 404 => {
                let code = body["code"].as_str().unwrap_or_default();
                let error = body["error"].as_str().unwrap_or_default();
                let expected = if code == "WORKFLOW_NOT_FOUND"
                    || error.starts_with("Invalid workflow name: ")
                {
                    "failure"
                } else {
                    "rejected"
                };
                prop_assert_eq!(outcomes, [expected], "{}", body);
                prop_assert_eq!(&records[0]["code"], code);
                prop_assert_eq!(&records[0]["error"], error);
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "execute answered {other}: {body}"
                )))
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let report = app.verify_audit();
    assert!(report.is_valid(), "{report:?}");
}

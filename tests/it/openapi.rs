//! The API description: `GET /openapi.json` is `docs/openapi.json` (`OPENAPI_BLESS=1` rewrites
//! the file), it describes exactly the routes the server has, and its schemas are valid JSON
//! Schema that the contract's example request satisfies. (Every answer of the suite is checked
//! against it by the test client; `openapi_statuses.rs` provokes each documented status.)

use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::openapi::description;
use crate::helpers::{demo_invalid_request, governance_request, TestApp};

const COMMITTED: &str = "docs/openapi.json";

#[tokio::test]
async fn the_served_description_is_docs_openapi_json() {
    let app = TestApp::spawn().await;
    let reply = app.get("/openapi.json", None).await;
    let served = reply.expect_ok(200);
    assert_eq!(served["openapi"], "3.1.0");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let pretty = serde_json::to_string_pretty(&served).expect("JSON") + "\n";
    if std::env::var_os("OPENAPI_BLESS").is_some() {
        std::fs::write(&path, &pretty).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "{COMMITTED} differs from what GET /openapi.json serves: the API changed. Review the \
         difference and run `OPENAPI_BLESS=1 cargo test --test it openapi::` to rewrite the file."
    );
}

/// The routes the source declares: `.route("<path>", <method>(` in `src/http/`.
fn routes_in_source() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let pattern = regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*(get|post|put|patch|delete)\("#)
        .expect("regex");
    let mut routes = Vec::new();
    let mut files = vec![dir.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read src/http") {
                files.push(entry.expect("entry").path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            // Unit tests' routers are not the server's.
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for found in pattern.captures_iter(text) {
                routes.push((found[2].to_owned(), found[1].to_owned()));
            }
        }
    }
    routes.sort();
    routes
}

fn described_operations() -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in description().doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                operations.push((method.clone(), path.clone()));
            }
        }
    }
    operations.sort();
    operations
}

#[test]
fn every_route_is_described_and_every_description_is_a_route() {
    assert_eq!(described_operations(), routes_in_source());
}

#[tokio::test]
async fn every_described_operation_is_served() {
    let app = TestApp::spawn().await;
    for (method, path) in described_operations() {
        let concrete = path
            .replace("{trace_id}", "nobody")
            .replace("{name}", "noop");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = app
            .client
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status != 405 && !body.contains("Endpoint not found"),
            "{method} {path} is described but not served: {status} {body}"
        );
    }
}

#[test]
fn every_schema_is_valid_json_schema_2020_12() {
    let description = description();
    let schemas = description.doc["components"]["schemas"]
        .as_object()
        .expect("schemas");
    assert!(schemas.len() > 20, "{:?}", schemas.keys());
    for (name, schema) in schemas {
        if let Err(e) = description.compile(schema) {
            panic!("components.schemas.{name}: {e}");
        }
    }
}

#[test]
fn the_security_schemes_are_the_jwt_the_api_key_and_the_slack_signature() {
    let schemes = &description().doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["slack_signature"]["type"], "apiKey");
    assert_eq!(schemes["slack_signature"]["in"], "header");
    assert_eq!(schemes["slack_signature"]["name"], "X-Slack-Signature");
    let paths = &description().doc["paths"];
    assert_eq!(
        paths["/workflows/governed/execute"]["post"]["security"],
        json!([{"bearer": []}, {"api_key": []}])
    );
    assert_eq!(
        paths["/slack/events"]["post"]["security"],
        json!([{"slack_signature": []}])
    );
    assert!(paths["/governance/validate"]["post"]
        .get("security")
        .is_none());
}

fn request_schema(path: &str) -> Value {
    description().doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        .clone()
}

#[test]
fn the_contract_request_matches_the_governance_request_schema_and_broken_ones_do_not() {
    let description = description();
    let schema = request_schema("/governance/validate");
    assert_eq!(schema, request_schema("/workflows/governed/execute"));
    let validator = description.compile(&schema).expect("schema compiles");
    let example = governance_request("deploy-to-staging");
    let errors: Vec<String> = validator
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut minimal = governance_request("deploy-to-staging");
    minimal
        .as_object_mut()
        .expect("object")
        .remove("parameters");
    minimal["aim"]["input"]
        .as_object_mut()
        .expect("input")
        .remove("constraints");
    minimal["aim"]["actor"]
        .as_object_mut()
        .expect("actor")
        .remove("email");
    assert!(validator.is_valid(&minimal), "optional fields are optional");
    // What the parser refuses as a shape problem (GOVERNANCE_ERROR), the schema refuses too.
    assert!(
        !validator.is_valid(&demo_invalid_request()),
        "a 9-character objective"
    );
    for broken in [
        json!({}),
        json!({"workflow_name": "x", "aim": {}, "drag_mode": "execute"}),
        {
            let mut r = governance_request("x");
            r["drag_mode"] = json!("analysis");
            r
        },
        {
            let mut r = governance_request("x");
            r["aim"]["input"]["sources"] = json!([]);
            r
        },
        {
            let mut r = governance_request("x");
            r["aim"]["mission"]["success_criteria"] = json!([]);
            r
        },
    ] {
        assert!(!validator.is_valid(&broken), "{broken}");
    }
}

#[tokio::test]
async fn an_answer_outside_the_description_is_caught() {
    // The check itself: a status or a field the description does not have fails the test.
    let description = description();
    let answer = |status: u16, body: &'static str| {
        std::panic::catch_unwind(|| {
            description.check(&crate::helpers::openapi::Answer {
                method: "GET",
                path: "/workflows",
                status,
                content_type: Some("application/json"),
                body,
            })
        })
        .is_err()
    };
    assert!(!answer(200, r#"{"count": 1, "workflows": ["noop"]}"#));
    assert!(answer(
        200,
        r#"{"count": 1, "workflows": ["noop"], "extra": true}"#
    ));
    assert!(answer(200, r#"{"count": "one", "workflows": ["noop"]}"#));
    assert!(answer(418, r#"{"error": "teapot", "code": "TEAPOT"}"#));
    assert!(!answer(
        401,
        r#"{"error": "Authorization header required", "code": "AUTH_REQUIRED", "trace_id": "t"}"#
    ));
    assert!(answer(
        401,
        r#"{"error": "x", "code": "ACTOR_MISMATCH", "trace_id": "t"}"#
    ));
}

#[test]
fn every_operation_has_a_unique_id_a_summary_a_tag_and_the_edges_answers() {
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in description().doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "{id} twice");
            assert!(
                operation["summary"].is_string(),
                "{method} {path} has no summary"
            );
            assert!(
                operation["tags"][0].is_string(),
                "{method} {path} has no tag"
            );
            let responses = &operation["responses"];
            for status in ["400", "500"] {
                let codes = &responses[status]["content"]["application/json"]["schema"];
                assert!(
                    codes.to_string().contains(if status == "400" {
                        "VALIDATION_ERROR"
                    } else {
                        "INTERNAL_ERROR"
                    }),
                    "{method} {path} {status}: {codes}"
                );
            }
        }
    }
}

#[test]
fn the_readme_error_table_names_exactly_the_codes_the_description_documents() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let table = readme
        .split("| status | code | when |")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the README's error table");
    let token = regex::Regex::new(r"`([A-Z][A-Z_]+)`").expect("regex");
    // The code column: the second cell of each row.
    let in_readme: std::collections::BTreeSet<&str> = table
        .lines()
        .filter_map(|row| row.split('|').nth(2))
        .flat_map(|cell| token.captures_iter(cell))
        .map(|c| c.get(1).expect("group").as_str())
        .collect();
    let described: std::collections::BTreeSet<&str> = sustainbot::http::openapi::CODES
        .iter()
        .map(|c| c.code)
        .chain(sustainbot::pipeline::RUN_FAILURES)
        .collect();
    assert_eq!(in_readme, described);
}

use serde_json::json;

use super::*;

fn valid_body() -> Value {
    json!({
        "workflow_name": "deploy-to-staging",
        "aim": {
            "actor": {"name": "Jake Smith", "email": "jake@example.org", "role": "DevOps Engineer"},
            "input": {"sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}],
                      "constraints": ["Read-only", "No destructive ops"]},
            "mission": {"objective": "Deploy app to staging with zero downtime",
                        "success_criteria": ["Health checks pass", "Rollback ready"]}
        },
        "drag_mode": "execute",
        "parameters": {"environment": "staging", "version": "v1.2.3"}
    })
}

fn rejection(body: Value) -> Rejection {
    GovernanceRequest::parse(&body).expect_err("request should be refused")
}

#[test]
fn accepts_the_contract_example() {
    let request = GovernanceRequest::parse(&valid_body()).expect("valid");
    assert_eq!(request.workflow_name, "deploy-to-staging");
    assert_eq!(request.drag_mode, DragMode::Execute);
    assert_eq!(request.aim.actor().email(), Some("jake@example.org"));
    assert_eq!(request.parameters["version"], "v1.2.3");
}

#[test]
fn summary_matches_the_original_line_for_line() {
    let request = GovernanceRequest::parse(&valid_body()).expect("valid");
    assert_eq!(
        summary(&request),
        "Governance Context:\n- Actor: Jake Smith (DevOps Engineer)\n- Mission: Deploy app to staging with zero downtime\n- DRAG Mode: EXECUTE\n- Input Sources: 1 (slack_webhook)\n- Success Criteria: 2\n- Constraints: 2"
    );
}

#[test]
fn summary_cuts_long_objectives_at_80_characters_and_lists_three_source_types() {
    let mut body = valid_body();
    body["aim"]["mission"]["objective"] = json!("é".repeat(81));
    body["aim"]["input"]["sources"] = json!([
        {"type": "a", "description": "x"}, {"type": "b", "description": "x"},
        {"type": "c", "description": "x"}, {"type": "d", "description": "x"}
    ]);
    let request = GovernanceRequest::parse(&body).expect("valid");
    let text = summary(&request);
    assert!(text.contains(&format!("- Mission: {}...\n", "é".repeat(80))));
    assert!(text.contains("- Input Sources: 4 (a, b, c)\n"));
}

#[test]
fn short_actor_name_breaks_the_business_rule() {
    let mut body = valid_body();
    body["aim"]["actor"]["name"] = json!("  AB  ");
    let refused = rejection(body);
    assert!(!refused.is_shape());
    assert_eq!(refused.headline(), MSG_ACTOR_NAME);
    assert_eq!(refused.violations[0].field, "aim.actor.name");
}

#[test]
fn the_demo_invalid_request_is_a_shape_error_that_also_lists_the_name_rule() {
    let body = json!({
        "workflow_name": "deploy-to-staging",
        "aim": {"actor": {"name": "AB", "role": "Engineer"},
                "input": {"sources": [{"type": "api", "description": "test"}]},
                "mission": {"objective": "Too short", "success_criteria": ["One"]}},
        "drag_mode": "execute", "parameters": {}
    });
    let refused = rejection(body);
    assert!(refused.is_shape());
    assert_eq!(
        refused.headline(),
        "Invalid governance request: aim.mission.objective: Mission objective too vague (minimum 10 characters)"
    );
    let fields: Vec<&str> = refused
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["aim.actor.name", "aim.mission.objective"]);
}

#[test]
fn lists_every_violation_with_its_path() {
    let body = json!({
        "aim": {"actor": {"name": 5, "email": "nope"},
                "input": {"sources": [], "constraints": [1]},
                "mission": {"objective": "short", "success_criteria": []}},
        "drag_mode": "analysis", "parameters": []
    });
    let refused = rejection(body);
    let fields: Vec<&str> = refused
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "workflow_name",
            "aim.actor.name",
            "aim.actor.email",
            "aim.actor.role",
            "aim.input.sources",
            "aim.input.constraints[0]",
            "aim.mission.objective",
            "aim.mission.success_criteria",
            "drag_mode",
            "parameters"
        ]
    );
    let drag = refused
        .violations
        .iter()
        .find(|v| v.field == "drag_mode")
        .expect("drag_mode listed");
    assert_eq!(drag.message, "Invalid DRAG mode. Analysis is human-only.");
    let sources = refused
        .violations
        .iter()
        .find(|v| v.field == "aim.input.sources")
        .expect("listed");
    assert_eq!(sources.message, MSG_NO_SOURCES);
}

#[test]
fn padded_objective_is_refused_by_the_rule() {
    let mut body = valid_body();
    body["aim"]["mission"]["objective"] = json!("   short    ");
    let refused = rejection(body);
    assert!(!refused.is_shape());
    assert_eq!(refused.headline(), MSG_OBJECTIVE);
}

#[test]
fn empty_success_criteria_uses_the_original_wording() {
    let mut body = valid_body();
    body["aim"]["mission"]["success_criteria"] = json!([]);
    let refused = rejection(body);
    assert!(refused.headline().ends_with(MSG_NO_CRITERIA));
}

#[test]
fn optional_fields_default() {
    let mut body = valid_body();
    body["aim"]["actor"]
        .as_object_mut()
        .unwrap()
        .remove("email");
    body["aim"]["input"]
        .as_object_mut()
        .unwrap()
        .remove("constraints");
    body.as_object_mut().unwrap().remove("parameters");
    let request = GovernanceRequest::parse(&body).expect("valid");
    assert_eq!(request.aim.actor().email(), None);
    assert!(request.aim.input().constraints().is_empty());
    assert!(request.parameters.is_empty());
}

#[test]
fn drag_mode_is_case_sensitive() {
    let mut body = valid_body();
    body["drag_mode"] = json!("Execute");
    assert!(rejection(body).is_shape());
}

#[test]
fn non_object_body_is_a_shape_error() {
    assert!(rejection(json!([1, 2])).is_shape());
}

#[test]
fn identity_binding_fills_missing_email_and_refuses_a_different_one() {
    let mut body = valid_body();
    body["aim"]["actor"]
        .as_object_mut()
        .unwrap()
        .remove("email");
    let mut request = GovernanceRequest::parse(&body).expect("valid");
    request
        .aim
        .bind_identity("jake@example.org")
        .expect("fills in");
    assert_eq!(request.aim.actor().email(), Some("jake@example.org"));
    assert!(request.aim.bind_identity("JAKE@Example.org").is_ok());
    let err = request
        .aim
        .bind_identity("mallory@example.org")
        .expect_err("mismatch");
    assert_eq!(err.declared, "jake@example.org");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_json_shapes(name in ".{0,12}", objective in ".{0,20}", mode in "[a-z]{0,9}") {
            let mut body = valid_body();
            body["aim"]["actor"]["name"] = json!(name);
            body["aim"]["mission"]["objective"] = json!(objective);
            body["drag_mode"] = json!(mode);
            match GovernanceRequest::parse(&body) {
                Ok(request) => {
                    prop_assert!(request.aim.actor().name().trim().chars().count() >= MIN_ACTOR_NAME_CHARS);
                    prop_assert!(request.aim.mission().objective().trim().chars().count() >= MIN_OBJECTIVE_CHARS);
                }
                Err(refused) => prop_assert!(!refused.violations.is_empty()),
            }
        }
    }
}

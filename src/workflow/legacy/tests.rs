//! Which files are in the original's format, what they load as, and what they never are.

use serde_json::json;

use super::*;
use crate::workflow::load::{load_file, Loaded};
use crate::workflow::openclaw::OpenClawBody;
use crate::workflow::step::StepKind;

/// The example of the original's OpenClaw guide.
fn documented() -> Value {
    json!({"name": "example-workflow",
           "steps": [{"type": "task", "name": "step1"}, {"type": "task", "name": "step2"}]})
}

fn broken(value: Value) -> String {
    match shape(&value) {
        Shape::Broken(why) => why,
        other => panic!("expected a broken legacy file, got {other:?} for {value}"),
    }
}

#[test]
fn the_documented_example_is_legacy() {
    assert_eq!(shape(&documented()), Shape::Legacy);
}

#[test]
fn a_top_level_mark_alone_is_legacy() {
    for value in [
        json!({"name": "nightly"}),
        json!({"version": "1.0", "description": "text"}),
        json!({"name": "x", "triggers": [{"cron": "0 3 * * *"}], "steps": []}),
        json!({"name": "x", "description": "kept", "owner": "ops", "steps": [{"type": "shell"}]}),
    ] {
        assert_eq!(shape(&value), Shape::Legacy, "{value}");
    }
}

#[test]
fn steps_with_a_type_mark_a_file_without_a_name() {
    assert_eq!(
        shape(&json!({"steps": [{"type": "task", "name": "a"}]})),
        Shape::Legacy
    );
}

#[test]
fn native_definitions_are_unmarked() {
    for value in [
        json!({}),
        json!({"steps": []}),
        json!({"description": "d", "steps": [{"id": "a", "command": ["true"]}]}),
        json!({"drag_modes": ["grunt"], "steps": [{"openclaw": {"name": "inner"}}]}),
        json!({"drag_mode": ["draft"]}),
        json!([{"name": "x"}]),
        json!("name"),
    ] {
        assert_eq!(shape(&value), Shape::Unmarked, "{value}");
    }
}

#[test]
fn a_native_policy_key_is_never_legacy() {
    for key in NATIVE_ONLY {
        let mut value = documented();
        value[key] = json!(["admin"]);
        let why = broken(value);
        assert!(why.contains(&format!("'{key}'")), "{why}");
    }
}

#[test]
fn a_native_policy_key_given_as_null_counts_as_absent() {
    let mut value = documented();
    value["roles"] = Value::Null;
    assert_eq!(shape(&value), Shape::Legacy);
}

#[test]
fn a_step_must_have_a_type_and_no_native_kind() {
    assert_eq!(
        broken(json!({"name": "x", "steps": [{"type": "task"}, {"name": "b"}]})),
        "steps[1] has no 'type'"
    );
    assert_eq!(
        broken(json!({"name": "x", "steps": [{"type": ""}]})),
        "steps[0] has a 'type' that is not a non-empty string"
    );
    assert!(
        broken(json!({"steps": [{"type": "task", "command": ["rm", "-rf", "/"]}]}))
            .starts_with("steps[0] has the native step kind 'command'")
    );
    assert_eq!(
        broken(json!({"name": "x", "steps": ["task"]})),
        "steps[0] is not an object"
    );
    assert_eq!(
        broken(json!({"name": "x", "steps": {"type": "task"}})),
        "its steps are not an array"
    );
}

#[test]
fn no_file_is_both_native_and_legacy() {
    for value in [
        documented(),
        json!({"name": "nightly"}),
        json!({"version": 2}),
        json!({"triggers": []}),
        json!({"steps": [{"type": "task"}]}),
    ] {
        assert_eq!(shape(&value), Shape::Legacy);
        assert!(Workflow::from_value("w", value.clone()).is_err(), "{value}");
    }
}

#[test]
fn a_legacy_file_is_one_openclaw_step_posting_the_whole_file() {
    let original = json!({"name": "example-workflow", "description": "From the guide",
                          "version": "1.0", "steps": [{"type": "task", "name": "step1"}]});
    let (workflow, definition) = load("example", &original).expect("loads");
    assert_eq!(workflow.name, "example");
    assert_eq!(workflow.description.as_deref(), Some("From the guide"));
    assert!(workflow.drag_modes.is_none() && workflow.roles.is_none());
    assert!(workflow.parameters.is_none() && workflow.approval.is_none());
    assert_eq!(workflow.steps.len(), 1);
    assert_eq!(workflow.steps[0].id, LEGACY_STEP_ID);
    let StepKind::OpenClaw(step) = &workflow.steps[0].kind else {
        panic!("an openclaw step")
    };
    assert_eq!(step.body, OpenClawBody::Original);
    assert_eq!(step.payload, original);
    assert_eq!(
        definition,
        json!({"description": "From the guide",
               "steps": [{"id": "submit", "openclaw_body": "original", "openclaw": original}]})
    );
}

#[test]
fn the_native_definition_loads_as_the_same_workflow() {
    let (legacy, definition) = load("example", &documented()).unwrap();
    let native = Workflow::from_value("example", definition).expect("a valid native definition");
    assert_eq!(native.steps, legacy.steps);
    assert_eq!(native.description, legacy.description);
}

#[test]
fn a_description_that_is_not_text_is_not_kept() {
    let definition = native_definition(&json!({"name": "x", "description": {"en": "hi"}}));
    assert!(definition.get("description").is_none(), "{definition}");
}

fn load_text(file_name: &str, text: &str) -> Result<Loaded, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, text).unwrap();
    let name = file_name.split('.').next().unwrap();
    load_file(name, &path)
}

#[test]
fn a_json_file_in_the_original_format_loads_as_legacy() {
    let loaded = load_text("example.json", &documented().to_string()).expect("loads");
    assert!(matches!(loaded, Loaded::Legacy { .. }), "{loaded:?}");
}

#[test]
fn a_yaml_file_is_never_legacy() {
    let reason = load_text("example.yaml", "name: example\nsteps:\n  - type: task\n").unwrap_err();
    assert!(reason.starts_with("name: unknown key"), "{reason}");
}

#[test]
fn a_broken_legacy_file_gives_both_reasons() {
    let reason = load_text(
        "x.json",
        r#"{"name": "x", "roles": ["admin"], "steps": [{"type": "task"}]}"#,
    )
    .unwrap_err();
    assert!(
        reason.starts_with("not a legacy workflow file: it has 'roles'"),
        "{reason}"
    );
    assert!(
        reason.contains("; not a native definition: name: unknown key"),
        "{reason}"
    );
}

#[test]
fn an_unmarked_invalid_file_keeps_its_native_reason_alone() {
    let reason = load_text("typo.json", r#"{"drag_mode": ["draft"]}"#).unwrap_err();
    assert!(reason.starts_with("drag_mode: unknown key"), "{reason}");
    assert!(!reason.contains("legacy"), "{reason}");
}

#[test]
fn a_legacy_file_with_a_repeated_key_is_refused_like_any_json_definition() {
    let reason = load_text("x.json", r#"{"name": "a", "name": "b"}"#).unwrap_err();
    assert!(reason.contains("duplicate key 'name'"), "{reason}");
}

use serde_json::json;

use super::*;
use crate::workflow::command::CommandStep;
use crate::workflow::step::StepKind;
use crate::workflow::template::Arg;

const DEPLOY: &str = r#"{
  "description": "Deploy a build to staging",
  "drag_modes": ["execute"], "roles": ["admin", "devops"],
  "parameters": {"environment": {"type": "string", "enum": ["staging"], "required": true},
                 "version": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+\\.[0-9]+$", "required": true},
                 "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2}},
  "timeout_seconds": 300,
  "approval": {"required": true, "approver_roles": ["admin"], "expires_seconds": 3600},
  "steps": [
    {"id": "build",  "command": ["./scripts/build.sh", "{{ parameters.version }}"], "timeout_seconds": 120},
    {"id": "ship",   "command": ["./scripts/ship.sh", "{{ steps.build.output }}"], "env": {"TARGET": "{{ parameters.environment }}"}},
    {"id": "health", "http": {"method": "GET", "url": "http://127.0.0.1:8080/health", "expect_status": 200}},
    {"id": "notes",  "llm": {"prompt": "List the risks"}}]
}"#;

fn problems(text: &str) -> Vec<String> {
    Workflow::from_json("w", text).expect_err("invalid")
}

#[test]
fn the_issue_example_loads_with_every_policy() {
    let workflow = Workflow::from_json("deploy-to-staging", DEPLOY).expect("valid");
    assert_eq!(workflow.drag_modes, Some(vec![DragMode::Execute]));
    assert_eq!(
        workflow.roles.as_deref(),
        Some(&["admin".to_owned(), "devops".to_owned()][..])
    );
    assert_eq!(workflow.timeout_seconds, Some(300));
    assert!(workflow
        .approval
        .as_ref()
        .is_some_and(|a| a.required && a.expires_seconds == 3600));
    let kinds: Vec<&str> = workflow.steps.iter().map(|s| s.kind.name()).collect();
    assert_eq!(kinds, ["command", "command", "http", "llm"]);
    let StepKind::Command(CommandStep { argv, env, .. }) = &workflow.steps[1].kind else {
        panic!("command")
    };
    assert_eq!(argv[1], Arg::StepOutput("build".into()));
    assert_eq!(
        env[0],
        ("TARGET".to_owned(), Arg::Parameter("environment".into()))
    );
}

#[test]
fn no_policy_keys_means_no_restriction() {
    let workflow = Workflow::from_json("w", "{}").expect("valid");
    assert!(
        workflow.drag_modes.is_none() && workflow.roles.is_none() && workflow.parameters.is_none()
    );
    let given = json!({"anything": [1, 2]});
    assert_eq!(
        workflow
            .check_parameters(given.as_object().unwrap())
            .unwrap(),
        *given.as_object().unwrap()
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let all = problems(
        r#"{"drag_mode": ["execute"], "drag_modes": ["analysis"], "roles": [],
            "parameters": {"v": {"type": "text"}, "n": {"type": "integer", "pattern": "x"}},
            "timeout_seconds": 0,
            "steps": [{"id": "a", "command": []}, {"id": "a", "http": {}, "llm": {}}, {"command": ["ls", "--x={{ parameters.v }}"]}]}"#,
    );
    for expected in [
        "drag_mode: unknown key",
        "drag_modes[0]: Invalid DRAG mode. Analysis is human-only.",
        "roles: must not be empty",
        "parameters.v.type",
        "parameters.n.pattern",
        "timeout_seconds: must be a positive whole number",
        "steps[0].command: must be a non-empty array",
        "steps[1].id: duplicate step id 'a'",
        "steps[1]: has more than one kind",
        "steps[2].command[1]: a template must be the whole argument",
    ] {
        assert!(
            all.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {all:#?}"
        );
    }
}

#[test]
fn templates_must_name_declared_parameters_and_earlier_steps() {
    let all = problems(
        r#"{"parameters": {"v": {"type": "string"}},
            "steps": [{"id": "a", "command": ["echo", "{{ parameters.w }}", "{{ steps.b.output }}", "{{ env.HOME }}"]},
                      {"id": "b", "command": ["echo"]}]}"#,
    );
    assert!(
        all.iter().any(|p| p.contains("unknown parameter 'w'")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|p| p.contains("'b' is not an earlier step")),
        "{all:?}"
    );
    assert!(all.iter().any(|p| p.contains("templates are")), "{all:?}");
}

#[test]
fn parameters_are_checked_against_the_schema_and_defaults_filled_in() {
    let workflow = Workflow::from_json("d", DEPLOY).expect("valid");
    let ok = json!({"environment": "staging", "version": "v1.2.3"});
    let checked = workflow
        .check_parameters(ok.as_object().unwrap())
        .expect("valid parameters");
    assert_eq!(checked["replicas"], 2);

    let bad = json!({"environment": "production", "version": "1.2", "replicas": 9, "extra": true});
    let problems = workflow
        .check_parameters(bad.as_object().unwrap())
        .expect_err("invalid");
    let fields: Vec<&str> = problems.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "parameters.extra",
            "parameters.environment",
            "parameters.replicas",
            "parameters.version"
        ]
    );
    let missing = workflow
        .check_parameters(&Map::new())
        .expect_err("required");
    assert_eq!(missing.len(), 2);
    let wrong_type = json!({"environment": "staging", "version": "v1.0.0", "replicas": 1.5});
    assert!(workflow
        .check_parameters(wrong_type.as_object().unwrap())
        .is_err());
}

#[test]
fn a_default_that_breaks_its_own_schema_is_refused_at_load() {
    let all = problems(r#"{"parameters": {"n": {"type": "integer", "minimum": 1, "default": 0}}}"#);
    assert!(all[0].starts_with("parameters.n.default"), "{all:?}");
}

#[test]
fn http_templates_must_name_declared_parameters_and_earlier_steps() {
    let all = problems(
        r#"{"parameters": {"v": {"type": "string"}},
            "steps": [{"id": "a", "command": ["echo"]},
                      {"id": "call", "http": {
                          "url": "http://127.0.0.1:8080/{{ parameters.w }}/{{ steps.later.output }}",
                          "headers": {"X-Version": "v={{ parameters.x }}", "X-From": "{{ steps.a.output }}"},
                          "body": {"deep": ["{{ parameters.y }}"], "ok": "{{ parameters.v }}"}}},
                      {"id": "text", "http": {"url": "{{ server.url }}/x", "body": "{{ parameters.z }} {{ env.HOME }}"}},
                      {"id": "later", "command": ["echo"]}]}"#,
    );
    for expected in [
        "steps[1].http.url: unknown parameter 'w'",
        "steps[1].http.url: 'later' is not an earlier step",
        "steps[1].http.headers.X-Version: unknown parameter 'x'",
        "steps[1].http.body: unknown parameter 'y'",
        "steps[2].http.body: unknown parameter 'z'",
        "steps[2].http.body: '{{ env.HOME }}': templates are",
    ] {
        assert!(
            all.iter().any(|p| p.starts_with(expected)),
            "missing {expected:?} in {all:#?}"
        );
    }
    assert_eq!(all.len(), 6, "{all:#?}");
}

#[test]
fn an_http_url_may_not_template_its_scheme_or_host() {
    let all = problems(
        r#"{"parameters": {"host": {"type": "string"}},
            "steps": [{"id": "a", "http": {"url": "http://{{ parameters.host }}/x"}},
                      {"id": "b", "http": {"url": "{{ parameters.host }}/x"}}]}"#,
    );
    assert!(
        all[0].starts_with("steps[0]: http.url: templates may only come after the host"),
        "{all:?}"
    );
    assert!(
        all[1].starts_with("steps[1]: http.url: a URL with templates must start with"),
        "{all:?}"
    );
}

#[test]
fn the_server_url_is_a_template_everywhere() {
    let workflow = Workflow::from_json(
        "w",
        r#"{"steps": [{"id": "say", "command": ["echo", "{{ server.url }}"]},
                      {"id": "health", "http": {"url": "{{ server.url }}/health", "headers": {"X-Back": "{{ server.url }}"}}},
                      {"id": "notes", "llm": {"prompt": "Is {{ server.url }} up? {{ steps.health.output }}"}}]}"#,
    )
    .expect("valid");
    let StepKind::Command(CommandStep { argv, .. }) = &workflow.steps[0].kind else {
        panic!("command")
    };
    assert_eq!(argv[1], Arg::ServerUrl);
    assert_eq!(Arg::ServerUrl.to_string(), "{{ server.url }}");
    let StepKind::Http(spec) = &workflow.steps[1].kind else {
        panic!("http")
    };
    assert_eq!(spec.request.url, "{{ server.url }}/health");
}

/// [`DEPLOY`], written as YAML.
const DEPLOY_YAML: &str = r#"
description: Deploy a build to staging
drag_modes: [execute]
roles: [admin, devops]
parameters:
  environment: {type: string, enum: [staging], required: true}
  version:
    type: string
    pattern: '^v[0-9]+\.[0-9]+\.[0-9]+$'
    required: true
  replicas: {type: integer, minimum: 1, maximum: 5, default: 2}
timeout_seconds: 300
approval: {required: true, approver_roles: [admin], expires_seconds: 3600}
steps:
  - {id: build, command: [./scripts/build.sh, "{{ parameters.version }}"], timeout_seconds: 120}
  - id: ship
    command: [./scripts/ship.sh, "{{ steps.build.output }}"]
    env: {TARGET: "{{ parameters.environment }}"}
  - id: health
    http: {method: GET, url: "http://127.0.0.1:8080/health", expect_status: 200}
  - id: notes
    llm:
      prompt: List the risks
"#;

fn yaml_problems(text: &str) -> Vec<String> {
    Workflow::from_yaml("w", text).expect_err("invalid")
}

#[test]
fn a_yaml_definition_equals_its_json_twin() {
    let from_yaml = crate::workflow::yaml::to_json(DEPLOY_YAML).expect("valid YAML");
    let from_json: Value = serde_json::from_str(DEPLOY).expect("valid JSON");
    assert_eq!(from_yaml, from_json);
    let yaml = Workflow::from_yaml("deploy-to-staging", DEPLOY_YAML).expect("valid");
    let json = Workflow::from_json("deploy-to-staging", DEPLOY).expect("valid");
    assert_eq!(format!("{yaml:?}"), format!("{json:?}"));
}

#[test]
fn the_shipped_disk_report_yaml_is_the_json_it_replaced() {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/disk-report.yaml"),
    )
    .expect("shipped example");
    let former = json!({
        "description": "Grunt work: report disk usage of a directory (read-only).",
        "drag_modes": ["grunt", "execute"],
        "parameters": {"path": {"type": "string", "pattern": "^/[A-Za-z0-9_./-]*$", "default": "/tmp"}},
        "steps": [{"id": "usage", "command": ["df", "-h", "{{ parameters.path }}"], "timeout_seconds": 10}]
    });
    assert_eq!(crate::workflow::yaml::to_json(&shipped), Ok(former));
    assert!(Workflow::from_yaml("disk-report", &shipped).is_ok());
}

#[test]
fn yes_and_no_stay_strings_in_yaml() {
    let workflow = Workflow::from_yaml(
        "w",
        "parameters:\n  confirm: {type: string, enum: [yes, no], default: yes}\n",
    )
    .expect("valid");
    let confirm = &workflow.parameters.as_ref().unwrap()["confirm"];
    assert_eq!(confirm.allowed, Some(vec![json!("yes"), json!("no")]));
    assert_eq!(confirm.default, Some(json!("yes")));
    // Where a boolean is meant, `yes` is refused rather than read as true.
    let all = yaml_problems("parameters:\n  v: {type: string, required: yes}\n");
    assert_eq!(all, ["parameters.v.required: must be true or false"]);
}

#[test]
fn a_yaml_tag_is_refused_with_its_position() {
    let all =
        yaml_problems("description: ok\nroles: [admin]\nsteps:\n  - command: [echo, !env HOME]\n");
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].starts_with("invalid YAML: YAML tags (!env) are not supported")
            && all[0].ends_with("at line 4 column 21"),
        "{all:?}"
    );
}

#[test]
fn a_yaml_syntax_error_names_its_line_and_column() {
    let all =
        yaml_problems("description: ok\nsteps:\n  - id: a\n    command: [echo, hi\n  - id: b\n");
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].starts_with("invalid YAML: "), "{all:?}");
    assert!(all[0].contains(" at line 5 column "), "{all:?}");
}

#[test]
fn yaml_definitions_get_the_same_validation_and_paths_as_json() {
    let all = yaml_problems(
        "drag_mode: [execute]\ntimeout_seconds: 0\nsteps:\n  - id: a\n    command: []\n",
    );
    assert_eq!(
        all,
        [
            "drag_mode: unknown key (expected one of description, max_concurrent_runs, drag_modes, \
             roles, parameters, timeout_seconds, approval, steps)",
            "timeout_seconds: must be a positive whole number",
            "steps[0].command: must be a non-empty array of strings (the program and its arguments; no shell)",
        ]
    );
    assert_eq!(
        yaml_problems("- a list\n"),
        ["a workflow definition must be an object (a mapping of keys)"]
    );
}

#[test]
fn an_approval_policy_is_read_strictly() {
    let all = problems(
        r#"{"approval": {"required": "no", "approver_roles": ["admin"], "expire_seconds": 60}}"#,
    );
    assert!(
        all.iter()
            .any(|p| p.starts_with("approval.required: must be true or false")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|p| p.starts_with("approval.expire_seconds: unknown key")),
        "{all:?}"
    );
}

#[test]
fn a_key_repeated_in_a_json_definition_is_refused_not_last_wins() {
    let all = problems(r#"{"roles": ["admin"], "steps": [], "roles": ["viewer"]}"#);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].starts_with("invalid JSON: duplicate key 'roles' at line 1"),
        "{all:?}"
    );
    // Nested objects too, and the same key in sibling objects is fine.
    let all = problems(r#"{"parameters": {"v": {"type": "string", "type": "integer"}}}"#);
    assert!(all[0].contains("duplicate key 'type'"), "{all:?}");
    Workflow::from_json(
        "w",
        r#"{"parameters": {"a": {"type": "string"}, "b": {"type": "string"}}}"#,
    )
    .expect("valid");
    // Trailing garbage is still an error.
    assert!(problems(r#"{} {}"#)[0].starts_with("invalid JSON"));
}

#[test]
fn secrets_go_only_into_http_header_values_and_bodies() {
    Workflow::from_json(
        "w",
        r#"{"steps": [{"id": "h", "http": {"url": "https://example.org/hook",
            "headers": {"Authorization": "Bearer {{ secrets.HOOK_TOKEN }}"},
            "body": {"token": "{{ secrets.HOOK_TOKEN }}"}}}]}"#,
    )
    .expect("valid");
    for (definition, path) in [
        (
            r#"{"steps": [{"id": "c", "command": ["curl", "{{ secrets.HOOK_TOKEN }}"]}]}"#,
            "steps[0].command[1]",
        ),
        (
            r#"{"steps": [{"id": "h", "http": {"url": "https://example.org/{{ secrets.HOOK_TOKEN }}"}}]}"#,
            "steps[0].http.url",
        ),
        (
            r#"{"steps": [{"id": "l", "llm": {"prompt": "use {{ secrets.HOOK_TOKEN }}"}}]}"#,
            "steps[0].llm.prompt",
        ),
    ] {
        let all = problems(definition);
        assert!(
            all.iter().any(|p| p.starts_with(&format!(
                "{path}: {{{{ secrets.NAME }}}} is only allowed in http header values and bodies"
            ))),
            "{all:?}"
        );
    }
    let all = problems(
        r#"{"steps": [{"id": "h", "http": {"url": "https://example.org/", "headers": {"X": "{{ secrets.not-a-name }}"}}}]}"#,
    );
    assert!(
        all.iter()
            .any(|p| p.contains("'not-a-name' is not an environment variable name")),
        "{all:?}"
    );
}

#[test]
fn no_step_may_read_the_servers_own_secrets() {
    for definition in [
        r#"{"steps": [{"id": "c", "command": ["env"], "secrets": ["DEPLOY_TOKEN", "JWT_SECRET"]}]}"#,
        r#"{"steps": [{"id": "h", "http": {"url": "https://example.org/", "headers": {"X": "{{ secrets.JWT_SECRET }}"}}}]}"#,
    ] {
        let all = problems(definition);
        assert!(
            all.iter()
                .any(|p| p.contains("JWT_SECRET is the server's own secret")),
            "{all:?}"
        );
    }
}

#[test]
fn openclaw_body_belongs_to_openclaw_steps_only() {
    assert_eq!(
        problems(r#"{"steps": [{"id": "a", "command": ["true"], "openclaw_body": "original"}]}"#),
        ["steps[0].openclaw_body: only for an openclaw step"]
    );
    Workflow::from_json(
        "w",
        r#"{"steps": [{"id": "a", "openclaw": {"name": "x"}, "openclaw_body": "original"}]}"#,
    )
    .expect("valid on an openclaw step");
}

use super::*;

/// The issue's example.
pub(crate) const EXAMPLE: &str = r#"default: deny
rules:
  - roles: [devops, admin]
    allow: [run]
    workflows: ["deploy-*", "noop"]
    drag_modes: [execute, grunt]
  - roles: [admin]
    allow: [approve, audit.read, override, reload, apikey.manage]
  - roles: [auditor]
    allow: [audit.read]
"#;

fn problems(text: &str) -> Vec<String> {
    parse(text)
        .expect_err("the file has problems")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_example_reads_into_rules_numbered_from_one_with_their_lines() {
    let file = parse(EXAMPLE).expect("valid");
    assert_eq!(file.default, Effect::Deny);
    assert_eq!(file.rules.len(), 3);
    let first = &file.rules[0];
    assert_eq!((first.number, first.line), (1, 3));
    assert_eq!(first.allow, vec![PolicyAction::Run]);
    assert_eq!(
        first.drag_modes,
        Some(vec![DragMode::Execute, DragMode::Grunt])
    );
    let names: Vec<&str> = first
        .workflows
        .as_ref()
        .unwrap()
        .iter()
        .map(Pattern::as_str)
        .collect();
    assert_eq!(names, ["deploy-*", "noop"]);
    assert_eq!((file.rules[1].number, file.rules[1].line), (2, 7));
    assert_eq!(file.rules[1].allow.len(), 5);
    assert!(file.groups.is_empty());
    assert!(file.sha256.starts_with("sha256:"));
}

#[test]
fn default_is_deny_when_absent_and_allow_when_written() {
    let absent = parse("rules: []\n").unwrap();
    assert_eq!(absent.default, Effect::Deny);
    let allow =
        parse("default: allow\nrules:\n  - roles: [intern]\n    deny: [approve]\n").unwrap();
    assert_eq!(allow.default, Effect::Allow);
    assert_eq!(allow.rules[0].deny, vec![PolicyAction::Approve]);
}

#[test]
fn each_problem_names_its_line_and_column() {
    let text = "\
default: deny
rules:
  - roles: [devops]
    allow: [run, deploy]
    workflows: [\"deploy-[ab]\"]
    drag_modes: [execute, analysis, yolo]
  - roles: [admin]
    alow: [reload]
colour: blue
";
    assert_eq!(
        problems(text),
        [
            "4:18: unknown action 'deploy' (expected one of run, approve, cancel, override, \
             audit.read, reload, apikey.manage)",
            "5:17: bad pattern 'deploy-[ab]': '[' is not supported (only * and ? are wildcards)",
            "6:27: bad drag mode 'analysis': Invalid DRAG mode. Analysis is human-only.",
            "6:37: bad drag mode 'yolo': unknown DRAG mode 'yolo' (expected one of draft, \
             research, grunt, execute)",
            "7:5: a rule needs allow or deny (a list of actions)",
            "8:5: unknown key 'alow' in a rule (expected one of roles, allow, deny, workflows, \
             drag_modes, description)",
            "9:1: unknown key 'colour' in the policy (expected one of default, rules, groups)",
        ]
    );
}

#[test]
fn yaml_syntax_errors_and_strictness_keep_their_position() {
    let syntax = problems("rules:\n  - roles: [admin\n");
    assert_eq!(syntax.len(), 1);
    assert!(syntax[0].starts_with("3:"), "{syntax:?}");
    assert_eq!(
        problems("rules: []\nrules: []\n"),
        ["2:1: duplicate key 'rules'"]
    );
    assert_eq!(
        problems("default: &d deny\nrules: []\n"),
        ["1:10: anchors (&name) and aliases are not supported; write the value out"]
    );
}

#[test]
fn shapes_that_are_not_a_policy_are_refused() {
    for (text, expected) in [
        ("", "1:1: the policy file is empty"),
        ("# nothing\n", "1:1: the policy file is empty"),
        ("- run\n", "1:1: a policy is a mapping"),
        ("default: deny\n", "1:1: missing key 'rules'"),
        ("rules: {}\n", "1:8: rules must be a list of rules"),
        ("rules: [run]\n", "1:9: a rule is a mapping"),
        ("rules:\n  - allow: [run]\n", "2:5: a rule needs roles"),
        (
            "rules:\n  - roles: admin\n    allow: [run]\n",
            "2:12: roles must be a list",
        ),
        (
            "rules:\n  - roles: []\n    allow: [run]\n",
            "2:12: roles is an empty list",
        ),
        (
            "rules:\n  - roles: [1]\n    allow: [run]\n",
            "2:13: expected text, not 1",
        ),
        (
            "rules:\n  - roles: [\" x\"]\n    allow: [run]\n",
            "2:13: bad role pattern ' x'",
        ),
        (
            "rules:\n  - roles: [a]\n    allow: [run]\n    workflows: [\"\"]\n",
            "4:17: an empty pattern",
        ),
        (
            "rules:\n  - roles: [a]\n    allow: [run]\n    workflows: [a.b]\n",
            "4:17: bad workflow pattern 'a.b'",
        ),
        (
            "rules:\n  - roles: [a]\n    allow: [run]\n    description: [x]\n",
            "4:18: description must be text",
        ),
        (
            "default: yes\nrules: []\n",
            "1:10: default must be allow or deny, not \"yes\"",
        ),
        (
            "rules: []\ngroups: [sre]\n",
            "2:9: groups must be a mapping",
        ),
        (
            "rules: []\ngroups:\n  sre: devops\n",
            "3:8: sre must be a list",
        ),
        (
            "rules: []\ngroups:\n  sre: [\"\"]\n",
            "3:9: bad role name ''",
        ),
    ] {
        let found = problems(text);
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{text:?}: {found:?}"
        );
    }
}

#[test]
fn workflows_and_drag_modes_narrow_only_actions_about_a_run() {
    let text = "rules:\n  - roles: [admin]\n    allow: [run, audit.read]\n    workflows: [noop]\n";
    assert_eq!(
        problems(text),
        [
            "3:18: 'audit.read' is not about a run: a rule with workflows or drag_modes can only \
          allow or deny run, approve, cancel and override"
        ]
    );
    let both = "rules:\n  - roles: [admin]\n    allow: [run]\n    deny: [run]\n";
    assert_eq!(
        problems(both),
        ["3:13: 'run' is both allowed and denied by this rule"]
    );
}

#[test]
fn groups_map_a_providers_groups_to_roles() {
    let file = parse("rules: []\ngroups:\n  sre: [devops, oncall]\n  \"auditors/eu\": [auditor]\n")
        .unwrap();
    assert_eq!(
        file.roles_of_group("sre"),
        [Role::from("devops"), Role::from("oncall")]
    );
    assert_eq!(file.roles_of_group("auditors/eu"), [Role::Auditor]);
    assert!(file.roles_of_group("nobody").is_empty());
}

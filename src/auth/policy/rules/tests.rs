use super::*;
use crate::auth::policy::file::parse;

const EXAMPLE: &str = r#"default: deny
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

fn run(workflow: &str, mode: Option<DragMode>) -> Question<'_> {
    Question {
        action: PolicyAction::Run,
        workflow: Some(workflow),
        drag_mode: mode,
    }
}

fn server_wide(action: PolicyAction) -> Question<'static> {
    Question {
        action,
        workflow: None,
        drag_mode: None,
    }
}

fn allowed_by(decision: Decision) -> Option<Decider> {
    decision.allowed().then_some(decision.by)
}

#[test]
fn a_run_is_allowed_by_the_first_rule_matching_role_workflow_glob_and_mode() {
    let file = parse(EXAMPLE).unwrap();
    let execute = Some(DragMode::Execute);
    for (roles, question, expected) in [
        (
            &["devops"][..],
            run("deploy-prod", execute),
            Some(Decider::Rule(1)),
        ),
        (
            &["devops"],
            run("noop", Some(DragMode::Grunt)),
            Some(Decider::Rule(1)),
        ),
        (&["admin"], run("deploy-", execute), Some(Decider::Rule(1))),
        (&["devops"], run("deploy-prod", Some(DragMode::Draft)), None),
        (&["devops"], run("deploy-prod", None), None),
        (&["devops"], run("backup", execute), None),
        (&["devops"], run("noop2", execute), None),
        (&["auditor"], run("noop", execute), None),
        (
            &["user", "devops"],
            run("noop", execute),
            Some(Decider::Rule(1)),
        ),
    ] {
        assert_eq!(
            allowed_by(file.decide(roles, &question)),
            expected,
            "{roles:?} {question:?}"
        );
    }
    let refused = file.decide(&["devops"], &run("backup", execute));
    assert_eq!(
        refused,
        Decision {
            effect: Effect::Deny,
            by: Decider::Default
        }
    );
}

#[test]
fn server_wide_actions_follow_their_rules_and_nothing_else_is_allowed() {
    let file = parse(EXAMPLE).unwrap();
    for (role, action, expected) in [
        ("admin", PolicyAction::Reload, Some(Decider::Rule(2))),
        ("admin", PolicyAction::ApiKeyManage, Some(Decider::Rule(2))),
        ("admin", PolicyAction::AuditRead, Some(Decider::Rule(2))),
        ("auditor", PolicyAction::AuditRead, Some(Decider::Rule(3))),
        ("auditor", PolicyAction::Reload, None),
        ("devops", PolicyAction::AuditRead, None),
        ("admin", PolicyAction::Cancel, None),
    ] {
        assert_eq!(
            allowed_by(file.decide(&[role], &server_wide(action))),
            expected,
            "{role} {action}"
        );
    }
}

#[test]
fn a_deny_wins_over_an_allow_wherever_it_is_and_default_allow_allows_the_rest() {
    let file = parse(
        "default: allow\nrules:\n  - roles: [\"*\"]\n    allow: [approve]\n  \
         - roles: [intern]\n    deny: [approve, run]\n    workflows: [\"prod-*\"]\n",
    )
    .unwrap();
    let approve = |workflow| Question {
        action: PolicyAction::Approve,
        workflow: Some(workflow),
        drag_mode: Some(DragMode::Execute),
    };
    assert_eq!(
        file.decide(&["intern"], &approve("prod-db")),
        Decision {
            effect: Effect::Deny,
            by: Decider::Rule(2)
        }
    );
    assert_eq!(
        allowed_by(file.decide(&["intern"], &approve("staging"))),
        Some(Decider::Rule(1))
    );
    assert_eq!(
        allowed_by(file.decide(&["intern"], &run("staging", None))),
        Some(Decider::Default),
        "default: allow allows what no rule names"
    );
    assert_eq!(
        allowed_by(file.decide(&["intern"], &server_wide(PolicyAction::Reload))),
        Some(Decider::Default)
    );
    assert!(!file.decide(&["intern"], &run("prod-web", None)).allowed());
}

#[test]
fn a_fallback_other_than_the_default_decides_when_no_rule_matches() {
    let file = parse(EXAMPLE).unwrap();
    let cancel = Question {
        action: PolicyAction::Cancel,
        workflow: Some("noop"),
        drag_mode: None,
    };
    assert!(!file.decide(&["devops"], &cancel).allowed());
    assert_eq!(
        file.decide_with(&["devops"], &cancel, Effect::Allow),
        Decision {
            effect: Effect::Allow,
            by: Decider::Default
        }
    );
}

#[test]
fn role_patterns_match_any_of_the_callers_roles() {
    let file = parse("rules:\n  - roles: [\"team-*\", \"?a\"]\n    allow: [audit.read]\n").unwrap();
    let read = server_wide(PolicyAction::AuditRead);
    assert!(file.decide(&["team-sre"], &read).allowed());
    assert!(file.decide(&["xa"], &read).allowed());
    assert!(file.decide(&["user", "team-x"], &read).allowed());
    assert!(!file.decide(&["team"], &read).allowed());
    assert!(!file.decide(&["xya"], &read).allowed());
}

#[test]
fn a_rule_says_why_it_does_not_apply() {
    let file = parse(EXAMPLE).unwrap();
    let rule = &file.rules[0];
    let execute = Some(DragMode::Execute);
    let miss = |roles: &[&str], question: Question<'_>| {
        rule.miss(roles.iter().copied(), &question, Effect::Allow)
    };
    assert_eq!(miss(&["auditor"], run("noop", execute)), Some(Miss::Role));
    assert_eq!(
        miss(&["devops"], server_wide(PolicyAction::Reload)),
        Some(Miss::Action)
    );
    assert_eq!(
        miss(&["devops"], run("backup", execute)),
        Some(Miss::Workflow)
    );
    assert_eq!(miss(&["devops"], run("noop", None)), Some(Miss::DragMode));
    assert_eq!(miss(&["devops"], run("noop", execute)), None);
}

#[test]
fn the_record_numbers_rules_from_one_and_the_default_zero() {
    assert_eq!(Decider::Rule(1).number(), 1);
    assert_eq!(Decider::Rule(12).number(), 12);
    assert_eq!(Decider::Default.number(), 0);
    let file = parse(EXAMPLE).unwrap();
    assert_eq!(file.rule(1).map(|r| r.line), Some(3));
    assert!(file.rule(0).is_none());
    assert!(file.rule(4).is_none());
}

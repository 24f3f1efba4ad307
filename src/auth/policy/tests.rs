//! `may` under a policy file: the file decides, the checks that always hold still hold.

use super::*;

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
  - roles: [lead]
    allow: [cancel]
    workflows: ["deploy-*"]
  - roles: [intern]
    deny: [cancel, override]
groups:
  sre: [devops]
  platform: [devops, lead]
"#;

fn policy() -> Policy {
    Policy::File(Arc::new(parse(EXAMPLE).expect("valid")))
}

fn person(role: &str) -> Principal {
    Principal::new(Some("a@example.org".to_owned()), Role::from(role), None)
}

fn target(workflow: &str, mode: Option<DragMode>) -> Target<'_> {
    Target {
        workflow,
        drag_mode: mode,
    }
}

const DEPLOY: Target<'static> = Target {
    workflow: "deploy-prod",
    drag_mode: Some(DragMode::Execute),
};

fn rule_of(result: Result<Granted, Forbidden>) -> Option<u32> {
    result.expect("allowed").policy_rule()
}

#[test]
fn without_a_file_the_built_in_rules_decide_and_name_no_rule() {
    let admin = person("admin");
    let granted = may(&Policy::BuiltIn, &admin, Action::ReloadWorkflows).unwrap();
    assert_eq!(granted.policy_rule(), None);
    let refused = may(&Policy::BuiltIn, &person("user"), Action::ManageApiKeys).unwrap_err();
    assert_eq!(refused.policy_rule(), None);
    assert!(!refused.by_policy);
}

#[test]
fn each_server_wide_action_is_allowed_by_its_rule_and_refused_by_default() {
    let policy = policy();
    for (role, action, expected) in [
        ("admin", Action::ReloadWorkflows, Some(2)),
        ("admin", Action::ReadAudit, Some(2)),
        ("admin", Action::SeeAllRuns, Some(2)),
        ("admin", Action::ManageApiKeys, Some(2)),
        ("auditor", Action::ReadAudit, Some(3)),
        ("auditor", Action::SeeRun { own: false }, Some(3)),
        ("auditor", Action::ReloadWorkflows, None),
        ("auditor", Action::ManageApiKeys, None),
        ("devops", Action::ReadAudit, None),
        ("devops", Action::SeeAllRuns, None),
    ] {
        let result = may(&policy, &person(role), action);
        match expected {
            Some(rule) => assert_eq!(rule_of(result), Some(rule), "{role} {action:?}"),
            None => {
                let refused = result.expect_err("refused");
                assert!(refused.by_policy);
                assert_eq!(refused.policy_rule(), Some(0), "the default refused");
            }
        }
    }
}

#[test]
fn a_refusal_names_the_action_the_run_the_roles_and_what_refused() {
    let policy = policy();
    let refused = may(&policy, &person("auditor"), Action::ReloadWorkflows).unwrap_err();
    assert_eq!(
        refused.message,
        "Action 'reload' is not allowed for role 'auditor': no rule of the policy allows it \
         (default: deny)"
    );
    let run = Action::Run {
        target: target("deploy-prod", Some(DragMode::Draft)),
        allowed_roles: None,
    };
    let refused = may(&policy, &person("devops"), run).unwrap_err();
    assert_eq!(
        refused.message,
        "Action 'run' of workflow 'deploy-prod' in DRAG mode draft is not allowed for role \
         'devops': no rule of the policy allows it (default: deny)"
    );
    let cancel = Action::CancelRun {
        own: true,
        target: DEPLOY,
    };
    let refused = may(&policy, &person("intern"), cancel).unwrap_err();
    assert!(
        refused
            .message
            .ends_with("denied by rule 5 of the policy (line 14)"),
        "{refused}"
    );
    assert_eq!(refused.policy_rule(), Some(5));
}

#[test]
fn a_run_needs_the_policy_and_the_workflows_own_roles() {
    let policy = policy();
    let run = |allowed_roles| Action::Run {
        target: DEPLOY,
        allowed_roles,
    };
    assert_eq!(rule_of(may(&policy, &person("devops"), run(None))), Some(1));
    let admins_only = ["admin".to_owned()];
    let refused = may(&policy, &person("devops"), run(Some(&admins_only))).unwrap_err();
    assert!(!refused.by_policy, "the workflow's roles refused");
    assert_eq!(refused.policy_rule(), Some(1), "the policy allowed");
    assert!(
        refused.message.contains("may not run this workflow"),
        "{refused}"
    );
    let devops_only = ["devops".to_owned()];
    let refused = may(&policy, &person("user"), run(Some(&devops_only))).unwrap_err();
    assert!(
        refused.by_policy,
        "a role the workflow names still needs a rule"
    );
}

#[test]
fn an_approval_needs_the_policy_the_approver_roles_and_a_named_human() {
    let policy = policy();
    let approvers = ["admin".to_owned(), "devops".to_owned()];
    let decide = Action::Decide {
        target: DEPLOY,
        approver_roles: &approvers,
    };
    assert_eq!(rule_of(may(&policy, &person("admin"), decide)), Some(2));
    let refused = may(&policy, &person("devops"), decide).unwrap_err();
    assert!(refused.by_policy, "an approver role without a rule");
    let not_approver = Action::Decide {
        target: DEPLOY,
        approver_roles: &["lead".to_owned()],
    };
    let refused = may(&policy, &person("admin"), not_approver).unwrap_err();
    assert!(!refused.by_policy);
    assert!(refused.message.contains("approvers: lead"), "{refused}");
    let mut nameless = person("admin");
    nameless.actor = None;
    assert!(may(&policy, &nameless, decide).is_err());
}

#[test]
fn ones_own_run_is_cancelled_and_overridden_without_a_rule_unless_one_denies_it() {
    let policy = policy();
    let cancel = |own, target| Action::CancelRun { own, target };
    let user = person("user");
    assert_eq!(rule_of(may(&policy, &user, cancel(true, DEPLOY))), None);
    assert!(may(&policy, &user, cancel(false, DEPLOY)).is_err());
    assert_eq!(
        rule_of(may(&policy, &person("lead"), cancel(false, DEPLOY))),
        Some(4)
    );
    let other = target("backup", None);
    assert!(may(&policy, &person("lead"), cancel(false, other)).is_err());
    assert!(
        may(&policy, &person("admin"), cancel(false, DEPLOY)).is_err(),
        "no rule for admin"
    );
    let own_override = Action::Override {
        own: true,
        target: DEPLOY,
    };
    assert_eq!(rule_of(may(&policy, &user, own_override)), None);
    assert!(may(&policy, &person("intern"), own_override).is_err());
    let other_override = Action::Override {
        own: false,
        target: DEPLOY,
    };
    assert_eq!(
        rule_of(may(&policy, &person("admin"), other_override)),
        Some(2)
    );
    assert!(may(&policy, &user, other_override).is_err());
    assert!(may(&policy, &user, Action::SeeRun { own: true }).is_ok());
}

#[test]
fn default_allow_allows_what_no_rule_denies_and_names_the_default() {
    let file = parse("default: allow\nrules:\n  - roles: [intern]\n    deny: [reload]\n").unwrap();
    let policy = Policy::File(Arc::new(file));
    let granted = may(&policy, &person("user"), Action::ReloadWorkflows).unwrap();
    assert_eq!(granted.policy_rule(), Some(0));
    let refused = may(&policy, &person("intern"), Action::ReloadWorkflows).unwrap_err();
    assert_eq!(refused.policy_rule(), Some(1));
}

#[test]
fn groups_give_roles_only_under_a_policy_file() {
    let policy = policy();
    assert_eq!(
        policy.roles_for_groups(["platform", "sre", "unknown"]),
        [Role::from("devops"), Role::from("lead")]
    );
    assert!(Policy::BuiltIn.roles_for_groups(["sre"]).is_empty());
}

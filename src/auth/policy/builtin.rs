//! The built-in rules, in force when no policy file is configured (`POLICY_PATH` unset): `admin`
//! reloads and cancels anything, `admin` and `auditor` read the trail and see every run, anyone
//! sees and cancels their own runs, and a workflow's own `roles` and `approval.approver_roles`
//! say who runs and who decides it.

use super::{Action, Forbidden};
use crate::auth::{Principal, Role};

/// Whether `principal` may do `action` by the built-in rules.
pub(super) fn may(principal: &Principal, action: Action<'_>) -> Result<(), Forbidden> {
    let role = principal.roles_text();
    let admin = principal.has(&Role::Admin);
    let reader = admin || principal.has(&Role::Auditor);
    let refused = |message: &str| Err(Forbidden::built_in(message));
    match action {
        Action::Run { allowed_roles, .. } => workflow_roles(principal, allowed_roles),
        Action::Decide { approver_roles, .. } => {
            approvers(principal, approver_roles)?;
            named_human(principal, "A decision")
        }
        Action::ReloadWorkflows if admin => Ok(()),
        Action::ReloadWorkflows => refused("Reloading workflows needs role admin"),
        Action::ReadAudit if reader => Ok(()),
        Action::ReadAudit => refused("Reading the audit trail requires the auditor or admin role"),
        Action::ManageApiKeys if admin => Ok(()),
        Action::ManageApiKeys => refused("Managing API keys needs role admin"),
        Action::SeeAllRuns if reader => Ok(()),
        Action::SeeRun { own, .. } if reader || own => Ok(()),
        Action::SeeAllRuns | Action::SeeRun { .. } => {
            refused(&format!("Role '{role}' may not do this"))
        }
        Action::CancelRun { own, .. } if admin || own => Ok(()),
        Action::CancelRun { .. } => {
            refused("Only the run's accountable human or an admin may cancel it")
        }
        Action::Override { own, .. } => {
            named_human(principal, "An override")?;
            if admin || own {
                Ok(())
            } else {
                refused("Only the run's accountable human or an admin may record an override")
            }
        }
    }
}

/// A workflow's `roles`: who may run it (`None`: anyone). Holds with a policy file too.
pub(super) fn workflow_roles(
    principal: &Principal,
    allowed_roles: Option<&[String]>,
) -> Result<(), Forbidden> {
    match allowed_roles {
        Some(roles) if !principal.has_any_of(roles) => Err(Forbidden::built_in(&format!(
            "Role '{}' may not run this workflow (allowed: {})",
            principal.roles_text(),
            roles.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// A workflow's `approval.approver_roles`: who may decide its runs. Holds with a policy file too.
pub(super) fn approvers(principal: &Principal, approver_roles: &[String]) -> Result<(), Forbidden> {
    if principal.has_any_of(approver_roles) {
        Ok(())
    } else {
        Err(Forbidden::built_in(&format!(
            "Role '{}' may not decide this run (approvers: {})",
            principal.roles_text(),
            approver_roles.join(", ")
        )))
    }
}

/// Decisions and overrides are a named human's: a token without an actor cannot make them.
pub(super) fn named_human(principal: &Principal, what: &str) -> Result<(), Forbidden> {
    if principal.actor.is_none() {
        return Err(Forbidden::built_in(&format!(
            "{what} needs a named human: the token has no actor"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::Target;

    fn person(role: &str) -> Principal {
        Principal::new(Some("a@example.org".to_owned()), Role::from(role), None)
    }

    const NOOP: Target<'static> = Target {
        workflow: "noop",
        drag_mode: None,
    };

    #[test]
    fn only_admins_reload_and_manage_keys_and_admins_or_auditors_read_the_trail() {
        for (role, admin, read) in [
            ("admin", true, true),
            ("auditor", false, true),
            ("user", false, false),
            ("deployer", false, false),
        ] {
            let who = person(role);
            assert_eq!(may(&who, Action::ReloadWorkflows).is_ok(), admin, "{role}");
            assert_eq!(may(&who, Action::ManageApiKeys).is_ok(), admin, "{role}");
            assert_eq!(may(&who, Action::ReadAudit).is_ok(), read, "{role}");
            assert_eq!(may(&who, Action::SeeAllRuns).is_ok(), read, "{role}");
        }
    }

    #[test]
    fn a_workflow_limits_who_runs_it_and_who_decides_it() {
        let roles = ["deployer".to_owned()];
        let run = Action::Run {
            target: NOOP,
            allowed_roles: Some(&roles),
        };
        assert!(may(&person("deployer"), run).is_ok());
        let refused = may(&person("admin"), run).unwrap_err();
        assert!(refused.message.contains("'admin'"), "{refused}");
        assert!(!refused.by_policy);
        let anyone = Action::Run {
            target: NOOP,
            allowed_roles: None,
        };
        assert!(may(&person("user"), anyone).is_ok());
        let decide = Action::Decide {
            target: NOOP,
            approver_roles: &roles,
        };
        assert!(may(&person("deployer"), decide).is_ok());
        let mut nameless = person("deployer");
        nameless.actor = None;
        assert!(
            may(&nameless, decide).is_err(),
            "a decision needs a named human"
        );
    }

    #[test]
    fn runs_are_seen_and_cancelled_by_their_human_or_an_admin() {
        let user = person("user");
        let cancel = |own| Action::CancelRun { own, target: NOOP };
        assert!(may(&user, Action::SeeRun { own: true }).is_ok());
        assert!(may(&user, Action::SeeRun { own: false }).is_err());
        assert!(may(&user, cancel(true)).is_ok());
        assert!(may(&user, cancel(false)).is_err());
        assert!(may(&person("auditor"), Action::SeeRun { own: false }).is_ok());
        assert!(may(&person("auditor"), cancel(false)).is_err());
        assert!(may(&person("admin"), cancel(false)).is_ok());
    }
}

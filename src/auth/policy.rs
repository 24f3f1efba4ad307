//! Who may do what: one function, [`may`], that every endpoint and the gate ask.

use super::{Principal, Role};

/// Something a caller wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Run a workflow whose definition limits the roles that may run it (`None`: anyone).
    Run { allowed_roles: Option<&'a [String]> },
    /// Decide (approve or deny) a run waiting for one of `approver_roles`.
    Decide { approver_roles: &'a [String] },
    /// Read `WORKFLOWS_DIR` again.
    ReloadWorkflows,
    /// Read and verify the audit trail.
    ReadAudit,
    /// See every run, not only one's own.
    SeeAllRuns,
    /// See a run; `own` when the caller is its accountable human.
    SeeRun { own: bool },
    /// Cancel a run; `own` when the caller is its accountable human.
    CancelRun { own: bool },
    /// Record that a step's output was replaced or edited; `own` when the caller is the run's
    /// accountable human.
    Override { own: bool },
    /// Create, list and revoke API keys.
    ManageApiKeys,
}

/// Why an action is not allowed, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

/// Whether `principal` may do `action`.
pub fn may(principal: &Principal, action: Action<'_>) -> Result<(), Forbidden> {
    let role = principal.roles_text();
    let admin = principal.has(&Role::Admin);
    let reader = admin || principal.has(&Role::Auditor);
    let allowed = match action {
        Action::Run { allowed_roles } => match allowed_roles {
            Some(roles) if !principal.has_any_of(roles) => {
                return Err(Forbidden(format!(
                    "Role '{role}' may not run this workflow (allowed: {})",
                    roles.join(", ")
                )))
            }
            _ => true,
        },
        Action::Decide { approver_roles } => {
            if !principal.has_any_of(approver_roles) {
                return Err(Forbidden(format!(
                    "Role '{role}' may not decide this run (approvers: {})",
                    approver_roles.join(", ")
                )));
            }
            if principal.actor.is_none() {
                return Err(Forbidden(
                    "A decision needs a named human: the token has no actor".to_owned(),
                ));
            }
            true
        }
        Action::ReloadWorkflows => {
            return admin
                .then_some(())
                .ok_or_else(|| Forbidden("Reloading workflows needs role admin".to_owned()))
        }
        Action::ReadAudit => {
            return reader.then_some(()).ok_or_else(|| {
                Forbidden("Reading the audit trail requires the auditor or admin role".to_owned())
            })
        }
        Action::SeeAllRuns => reader,
        Action::ManageApiKeys => admin,
        Action::SeeRun { own } => reader || own,
        Action::CancelRun { own } => {
            return (admin || own).then_some(()).ok_or_else(|| {
                Forbidden("Only the run's accountable human or an admin may cancel it".to_owned())
            })
        }
        Action::Override { own } => {
            if principal.actor.is_none() {
                return Err(Forbidden(
                    "An override needs a named human: the token has no actor".to_owned(),
                ));
            }
            return (admin || own).then_some(()).ok_or_else(|| {
                Forbidden(
                    "Only the run's accountable human or an admin may record an override"
                        .to_owned(),
                )
            });
        }
    };
    allowed
        .then_some(())
        .ok_or_else(|| Forbidden(format!("Role '{role}' may not do this")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(role: &str) -> Principal {
        Principal::new(Some("a@example.org".to_owned()), Role::from(role), None)
    }

    #[test]
    fn only_admins_reload_and_admins_or_auditors_read_the_trail() {
        for (role, reload, read) in [
            ("admin", true, true),
            ("auditor", false, true),
            ("user", false, false),
            ("deployer", false, false),
        ] {
            let who = person(role);
            assert_eq!(may(&who, Action::ReloadWorkflows).is_ok(), reload, "{role}");
            assert_eq!(may(&who, Action::ReadAudit).is_ok(), read, "{role}");
            assert_eq!(may(&who, Action::SeeAllRuns).is_ok(), read, "{role}");
        }
    }

    #[test]
    fn a_workflow_limits_who_runs_it_and_who_decides_it() {
        let roles = ["deployer".to_owned()];
        let run = Action::Run {
            allowed_roles: Some(&roles),
        };
        assert!(may(&person("deployer"), run).is_ok());
        let refused = may(&person("admin"), run).unwrap_err();
        assert!(refused.0.contains("'admin'"), "{refused}");
        let anyone = Action::Run {
            allowed_roles: None,
        };
        assert!(may(&person("user"), anyone).is_ok());
        let decide = Action::Decide {
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
        assert!(may(&user, Action::SeeRun { own: true }).is_ok());
        assert!(may(&user, Action::SeeRun { own: false }).is_err());
        assert!(may(&user, Action::CancelRun { own: true }).is_ok());
        assert!(may(&user, Action::CancelRun { own: false }).is_err());
        assert!(may(&person("auditor"), Action::SeeRun { own: false }).is_ok());
        assert!(may(&person("auditor"), Action::CancelRun { own: false }).is_err());
        assert!(may(&person("admin"), Action::CancelRun { own: false }).is_ok());
    }
}

//! Who may do what: one function, [`may`], that every endpoint and the gate ask, under the
//! [`Policy`] in force: the built-in rules (`builtin.rs`), or a policy file's (`POLICY_PATH`:
//! `file.rs` reads it, `rules.rs` decides, `store.rs` loads and reloads it, `explain.rs` says
//! why). See `docs/identity.md`, "Roles policy".

mod builtin;
mod explain;
mod file;
mod glob;
mod rules;
mod store;

use std::fmt;
use std::sync::Arc;

pub use explain::Explanation;
pub use file::{parse, Problem, Problems, MAX_POLICY_BYTES};
pub use glob::Pattern;
pub use rules::{Decider, Decision, Effect, Miss, PolicyAction, PolicyFile, Question, Rule};
pub use store::{read_text, PolicyStatus, PolicyStore};

use super::{Principal, Role};
use crate::governance::DragMode;

/// The run an action is about: its workflow and DRAG mode (`None`: an ungoverned run).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub workflow: &'a str,
    pub drag_mode: Option<DragMode>,
}

/// Something a caller wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Run a workflow whose definition limits the roles that may run it (`None`: anyone).
    Run {
        target: Target<'a>,
        allowed_roles: Option<&'a [String]>,
    },
    /// Decide (approve or deny) a run waiting for one of `approver_roles`.
    Decide {
        target: Target<'a>,
        approver_roles: &'a [String],
    },
    /// Read `WORKFLOWS_DIR` (and the policy file) again.
    ReloadWorkflows,
    /// Read and verify the audit trail.
    ReadAudit,
    /// See every run, not only one's own.
    SeeAllRuns,
    /// See a run; `own` when the caller is its accountable human.
    SeeRun { own: bool },
    /// Cancel a run; `own` when the caller is its accountable human.
    CancelRun { own: bool, target: Target<'a> },
    /// Record that a step's output was replaced or edited; `own` when the caller is the run's
    /// accountable human.
    Override { own: bool, target: Target<'a> },
    /// Create, list and revoke API keys.
    ManageApiKeys,
}

/// The rules in force. Cheap to clone (a shared snapshot of the file).
#[derive(Debug, Clone, Default)]
pub enum Policy {
    /// No policy file: the built-in rules.
    #[default]
    BuiltIn,
    /// A policy file's rules (default deny unless it says otherwise), with the built-in checks
    /// that always hold: a workflow's own `roles` and `approval.approver_roles`, a named human
    /// for decisions and overrides.
    File(Arc<PolicyFile>),
}

impl Policy {
    /// The policy file in force, if any.
    pub fn file(&self) -> Option<&PolicyFile> {
        match self {
            Policy::BuiltIn => None,
            Policy::File(file) => Some(file),
        }
    }

    /// The roles a policy file's `groups` give a member of `groups` (an identity provider's
    /// group claim), each once, in the order the groups come; none without a policy file.
    pub fn roles_for_groups<'g>(&self, groups: impl IntoIterator<Item = &'g str>) -> Vec<Role> {
        let mut roles: Vec<Role> = Vec::new();
        if let Some(file) = self.file() {
            for group in groups {
                for role in file.roles_of_group(group) {
                    if !roles.contains(role) {
                        roles.push(role.clone());
                    }
                }
            }
        }
        roles
    }
}

/// An allowed action, and which rule of the policy file allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// `None`: no policy file, or one's own run and no rule decided.
    pub decided_by: Option<Decider>,
}

impl Granted {
    /// The audit trail's `policy_rule`: the rule's number, 0 for the default; `None` when no
    /// policy rule decided.
    pub fn policy_rule(&self) -> Option<u32> {
        self.decided_by.map(Decider::number)
    }
}

/// Why an action is not allowed, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub message: String,
    /// The policy file's verdict on the action (`None`: no policy file, or it was not asked):
    /// the refusing rule (or the default), or, when something else refused, the allowing one.
    pub decided_by: Option<Decider>,
    /// Whether the policy file itself refused (`false`: a built-in rule or the workflow's own
    /// lists did).
    pub by_policy: bool,
}

impl Forbidden {
    /// A refusal by a rule of the server's own, not the policy file's.
    pub fn built_in(message: &str) -> Forbidden {
        Forbidden {
            message: message.to_owned(),
            decided_by: None,
            by_policy: false,
        }
    }

    /// The audit trail's `policy_rule` for the refusal (see [`Forbidden::decided_by`]).
    pub fn policy_rule(&self) -> Option<u32> {
        self.decided_by.map(Decider::number)
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Forbidden {}

/// Whether `principal` may do `action` under `policy`.
pub fn may(
    policy: &Policy,
    principal: &Principal,
    action: Action<'_>,
) -> Result<Granted, Forbidden> {
    match policy {
        Policy::BuiltIn => builtin::may(principal, action).map(|()| Granted { decided_by: None }),
        Policy::File(file) => by_file(file, principal, action),
    }
}

/// `action` under a policy file: the file decides, and the checks that hold whatever the policy
/// (a workflow's own lists, a named human) must pass too.
fn by_file(
    file: &PolicyFile,
    principal: &Principal,
    action: Action<'_>,
) -> Result<Granted, Forbidden> {
    let (question, own) = match action {
        Action::Run { target, .. } => (asked(PolicyAction::Run, Some(target)), false),
        Action::Decide { target, .. } => {
            builtin::named_human(principal, "A decision")?;
            (asked(PolicyAction::Approve, Some(target)), false)
        }
        Action::CancelRun { own, target } => (asked(PolicyAction::Cancel, Some(target)), own),
        Action::Override { own, target } => {
            builtin::named_human(principal, "An override")?;
            (asked(PolicyAction::Override, Some(target)), own)
        }
        Action::SeeRun { own: true } => return Ok(Granted { decided_by: None }),
        Action::ReadAudit | Action::SeeAllRuns | Action::SeeRun { own: false } => {
            (asked(PolicyAction::AuditRead, None), false)
        }
        Action::ReloadWorkflows => (asked(PolicyAction::Reload, None), false),
        Action::ManageApiKeys => (asked(PolicyAction::ApiKeyManage, None), false),
    };
    let roles: Vec<&str> = principal.all_roles().map(Role::as_str).collect();
    // One's own run: cancelling it or recording an override on it needs no rule (only a rule
    // that denies it refuses).
    let fallback = if own { Effect::Allow } else { file.default };
    let decision = file.decide_with(&roles, &question, fallback);
    if !decision.allowed() {
        return Err(Forbidden {
            message: refusal(file, principal, &question, decision.by),
            decided_by: Some(decision.by),
            by_policy: true,
        });
    }
    let decided_by = match decision.by {
        Decider::Default if own => None,
        by => Some(by),
    };
    // The workflow's own lists narrow what the policy allows, never widen it.
    let own_lists = match action {
        Action::Run { allowed_roles, .. } => builtin::workflow_roles(principal, allowed_roles),
        Action::Decide { approver_roles, .. } => builtin::approvers(principal, approver_roles),
        _ => Ok(()),
    };
    own_lists.map_err(|forbidden| Forbidden {
        decided_by,
        ..forbidden
    })?;
    Ok(Granted { decided_by })
}

fn asked(action: PolicyAction, target: Option<Target<'_>>) -> Question<'_> {
    Question {
        action,
        workflow: target.map(|t| t.workflow),
        drag_mode: target.and_then(|t| t.drag_mode),
    }
}

/// The refusal's message: the action, the run it is about, the caller's roles, and what refused.
fn refusal(
    file: &PolicyFile,
    principal: &Principal,
    question: &Question<'_>,
    by: Decider,
) -> String {
    let mut what = format!("'{}'", question.action);
    if let Some(workflow) = question.workflow {
        what.push_str(&format!(" of workflow '{workflow}'"));
        if let Some(mode) = question.drag_mode {
            what.push_str(&format!(" in DRAG mode {mode}"));
        }
    }
    let why = match by {
        Decider::Rule(number) => {
            let line = file.rule(number).map_or(0, |r| r.line);
            format!("denied by rule {number} of the policy (line {line})")
        }
        Decider::Default => "no rule of the policy allows it (default: deny)".to_owned(),
    };
    format!(
        "Action {what} is not allowed for role '{}': {why}",
        principal.roles_text()
    )
}

#[cfg(test)]
mod tests;

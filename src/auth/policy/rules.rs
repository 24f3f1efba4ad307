//! A policy file's rules and how they decide: the first matching `deny` refuses, else the first
//! matching `allow` allows, else the file's `default`. Pure: no I/O, no HTTP.

use std::collections::BTreeMap;
use std::fmt;

use super::glob::Pattern;
use crate::auth::Role;
use crate::governance::DragMode;

/// What a policy rule can allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyAction {
    /// Run a workflow (any entry point: HTTP, Slack, `--run`).
    Run,
    /// Approve or deny a run waiting for a second human.
    Approve,
    /// Cancel someone else's run (one's own run needs no rule).
    Cancel,
    /// Record an override of a step's output on someone else's run (one's own run needs no rule).
    Override,
    /// Read and verify the audit trail; see every run.
    AuditRead,
    /// Reload the workflows and the policy (`POST /workflows/reload`).
    Reload,
    /// Create, list and revoke API keys (`/apikeys`).
    ApiKeyManage,
}

impl PolicyAction {
    pub const ALL: [PolicyAction; 7] = [
        PolicyAction::Run,
        PolicyAction::Approve,
        PolicyAction::Cancel,
        PolicyAction::Override,
        PolicyAction::AuditRead,
        PolicyAction::Reload,
        PolicyAction::ApiKeyManage,
    ];

    /// The name a policy file writes.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Run => "run",
            PolicyAction::Approve => "approve",
            PolicyAction::Cancel => "cancel",
            PolicyAction::Override => "override",
            PolicyAction::AuditRead => "audit.read",
            PolicyAction::Reload => "reload",
            PolicyAction::ApiKeyManage => "apikey.manage",
        }
    }

    pub fn parse(name: &str) -> Option<PolicyAction> {
        PolicyAction::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether the action is about one run of one workflow (so `workflows` and `drag_modes` can
    /// narrow it); the others are about the whole server.
    pub fn is_about_a_run(self) -> bool {
        matches!(
            self,
            PolicyAction::Run
                | PolicyAction::Approve
                | PolicyAction::Cancel
                | PolicyAction::Override
        )
    }

    /// Every name, for messages.
    pub fn names() -> String {
        PolicyAction::ALL.map(PolicyAction::as_str).join(", ")
    }
}

impl fmt::Display for PolicyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule, or the default, does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// One rule of a policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its place in the file, from 1: what refusals, `policy explain` and the audit trail's
    /// `policy_rule` call it.
    pub number: usize,
    /// The line it starts on.
    pub line: usize,
    pub description: Option<String>,
    /// Any of the caller's roles matching any of these.
    pub roles: Vec<Pattern>,
    pub allow: Vec<PolicyAction>,
    pub deny: Vec<PolicyAction>,
    /// Only runs of these workflows (`None`: any, and the server-wide actions).
    pub workflows: Option<Vec<Pattern>>,
    /// Only runs in these DRAG modes (`None`: any mode, and runs without one).
    pub drag_modes: Option<Vec<DragMode>>,
}

/// A policy file that parsed and validated: every rule is well-formed.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyFile {
    pub default: Effect,
    pub rules: Vec<Rule>,
    /// An identity provider's group -> the roles its members get (for provider tokens).
    pub groups: BTreeMap<String, Vec<Role>>,
    /// `sha256:` + hex of the file's bytes: which version of the file is in force.
    pub sha256: String,
}

/// What is being asked, in the policy's words.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub action: PolicyAction,
    /// The workflow the run is of (actions about a run).
    pub workflow: Option<&'a str>,
    /// The run's DRAG mode (`None`: an ungoverned run, or not known).
    pub drag_mode: Option<DragMode>,
}

/// Which part of the file decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider {
    /// Rule number (from 1).
    Rule(usize),
    /// No rule matched: the file's `default`.
    Default,
}

impl Decider {
    /// The audit trail's `policy_rule`: the rule's number, 0 for the default.
    pub fn number(self) -> u32 {
        match self {
            Decider::Rule(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Decider::Default => 0,
        }
    }
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decider::Rule(n) => write!(f, "rule {n}"),
            Decider::Default => f.write_str("the default"),
        }
    }
}

/// The policy's answer to a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    pub by: Decider,
}

impl Decision {
    pub fn allowed(self) -> bool {
        self.effect == Effect::Allow
    }
}

/// Why a rule does not apply to a question (for `policy explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    Role,
    Action,
    Workflow,
    DragMode,
}

impl Rule {
    fn has_role<'r>(&self, roles: impl IntoIterator<Item = &'r str>) -> bool {
        roles
            .into_iter()
            .any(|role| self.roles.iter().any(|p| p.matches(role)))
    }

    /// Why this rule does not apply to `question` asked by `roles` for `effect`, or `None` when
    /// it does.
    pub fn miss<'r>(
        &self,
        roles: impl IntoIterator<Item = &'r str>,
        question: &Question<'_>,
        effect: Effect,
    ) -> Option<Miss> {
        let actions = match effect {
            Effect::Allow => &self.allow,
            Effect::Deny => &self.deny,
        };
        if !self.has_role(roles) {
            return Some(Miss::Role);
        }
        if !actions.contains(&question.action) {
            return Some(Miss::Action);
        }
        if let Some(patterns) = &self.workflows {
            let matched = question
                .workflow
                .is_some_and(|name| patterns.iter().any(|p| p.matches(name)));
            if !matched {
                return Some(Miss::Workflow);
            }
        }
        if let Some(modes) = &self.drag_modes {
            if !question.drag_mode.is_some_and(|mode| modes.contains(&mode)) {
                return Some(Miss::DragMode);
            }
        }
        None
    }
}

impl PolicyFile {
    /// Decides `question` for a caller with `roles`: a matching `deny` first (deny wins, whatever
    /// the order), then the first matching `allow`, then `fallback` (the file's `default`, unless
    /// the caller says otherwise: one's own run).
    pub fn decide_with(
        &self,
        roles: &[&str],
        question: &Question<'_>,
        fallback: Effect,
    ) -> Decision {
        for effect in [Effect::Deny, Effect::Allow] {
            let first = self
                .rules
                .iter()
                .find(|rule| rule.miss(roles.iter().copied(), question, effect).is_none());
            if let Some(rule) = first {
                return Decision {
                    effect,
                    by: Decider::Rule(rule.number),
                };
            }
        }
        Decision {
            effect: fallback,
            by: Decider::Default,
        }
    }

    /// [`PolicyFile::decide_with`] the file's own default.
    pub fn decide(&self, roles: &[&str], question: &Question<'_>) -> Decision {
        self.decide_with(roles, question, self.default)
    }

    /// The roles the members of `group` get (none for a group the file does not name).
    pub fn roles_of_group(&self, group: &str) -> &[Role] {
        self.groups.get(group).map_or(&[], Vec::as_slice)
    }

    /// Rules that deny anything.
    pub fn has_deny_rules(&self) -> bool {
        self.rules.iter().any(|r| !r.deny.is_empty())
    }

    pub fn rule(&self, number: usize) -> Option<&Rule> {
        number.checked_sub(1).and_then(|i| self.rules.get(i))
    }
}

#[cfg(test)]
mod tests;

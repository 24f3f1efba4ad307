//! `sustainbot policy explain`: which rule of a policy file decides a question, and why each
//! rule does or does not apply. Words only; the decision itself is [`PolicyFile::decide`]'s.

use super::glob::Pattern;
use super::rules::{Decider, Decision, Effect, Miss, PolicyFile, Question, Rule};

/// The decision, and one line per rule saying what it makes of the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    /// The decision in a sentence.
    pub verdict: String,
    /// `rule N (line L): ...` for every rule, in the file's order.
    pub rules: Vec<String>,
    /// What else holds beyond the file (a workflow's own lists, one's own run).
    pub notes: Vec<String>,
}

impl PolicyFile {
    /// Explains the decision on `question` for a caller with `roles`.
    pub fn explain(&self, roles: &[&str], question: &Question<'_>) -> Explanation {
        let decision = self.decide(roles, question);
        let asked = asked(roles, question);
        let verdict = match decision.by {
            Decider::Rule(number) => {
                let rule = self.rule(number);
                format!(
                    "{} by rule {number} (line {}): {asked}",
                    past(decision.effect),
                    rule.map_or(0, |r| r.line),
                )
            }
            Decider::Default => format!(
                "{} by the default (default: {}): no rule matches {asked}",
                past(decision.effect),
                self.default.as_str()
            ),
        };
        let rules = self
            .rules
            .iter()
            .map(|rule| {
                format!(
                    "rule {} (line {}): {}",
                    rule.number,
                    rule.line,
                    what_it_makes(rule, roles, question)
                )
            })
            .collect();
        let mut notes = Vec::new();
        match question.action.as_str() {
            "run" => notes.push(
                "the workflow's own `roles`, when it has them, must allow the run too".to_owned(),
            ),
            "approve" => notes.push(
                "the workflow's `approval.approver_roles` must name the role too, and the \
                 approver must be a named human other than the requester"
                    .to_owned(),
            ),
            "cancel" | "override" => notes.push(
                "on one's own run no rule is needed: only a rule that denies it refuses".to_owned(),
            ),
            _ => {}
        }
        Explanation {
            decision,
            verdict,
            rules,
            notes,
        }
    }
}

fn past(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "allowed",
        Effect::Deny => "refused",
    }
}

/// `'run' of workflow 'x' in DRAG mode execute for role 'devops'`.
fn asked(roles: &[&str], question: &Question<'_>) -> String {
    let mut text = format!("'{}'", question.action);
    if let Some(workflow) = question.workflow {
        text.push_str(&format!(" of workflow '{workflow}'"));
    }
    if let Some(mode) = question.drag_mode {
        text.push_str(&format!(" in DRAG mode {mode}"));
    }
    text.push_str(&format!(" for role '{}'", roles.join(", ")));
    text
}

fn listed(patterns: &[Pattern]) -> String {
    patterns
        .iter()
        .map(Pattern::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `rule` makes of the question: it denies it, allows it, or why it does not apply.
fn what_it_makes(rule: &Rule, roles: &[&str], question: &Question<'_>) -> String {
    let deny = rule.miss(roles.iter().copied(), question, Effect::Deny);
    let allow = rule.miss(roles.iter().copied(), question, Effect::Allow);
    let miss = match (deny, allow) {
        (None, _) => return "applies: denies it".to_owned(),
        (_, None) => return "applies: allows it".to_owned(),
        // The list that names the action says most about why the rule does not apply.
        (Some(deny), Some(_)) if rule.deny.contains(&question.action) => deny,
        (_, Some(allow)) => allow,
    };
    let why = match miss {
        Miss::Role => format!(
            "role '{}' matches none of {}",
            roles.join(", "),
            listed(&rule.roles)
        ),
        Miss::Action => format!("does not name '{}'", question.action),
        Miss::Workflow => {
            let patterns = listed(rule.workflows.as_deref().unwrap_or_default());
            match question.workflow {
                Some(name) => format!("workflow '{name}' matches none of {patterns}"),
                None => format!("only for workflows {patterns} (no workflow given)"),
            }
        }
        Miss::DragMode => {
            let modes: Vec<&str> = rule
                .drag_modes
                .iter()
                .flatten()
                .map(|m| m.as_str())
                .collect();
            match question.drag_mode {
                Some(mode) => format!("DRAG mode {mode} is not one of {}", modes.join(", ")),
                None => format!("only in DRAG modes {} (no mode given)", modes.join(", ")),
            }
        }
    };
    format!("does not apply: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::{parse, PolicyAction};
    use crate::governance::DragMode;

    const EXAMPLE: &str = r#"default: deny
rules:
  - roles: [devops, admin]
    allow: [run]
    workflows: ["deploy-*", "noop"]
    drag_modes: [execute, grunt]
  - roles: [admin]
    allow: [approve, audit.read, override, reload, apikey.manage]
  - roles: [intern]
    deny: [run]
"#;

    fn run(workflow: &str, mode: Option<DragMode>) -> Question<'_> {
        Question {
            action: PolicyAction::Run,
            workflow: Some(workflow),
            drag_mode: mode,
        }
    }

    #[test]
    fn names_the_allowing_rule_and_what_each_rule_makes_of_the_question() {
        let file = parse(EXAMPLE).unwrap();
        let explained = file.explain(&["devops"], &run("deploy-web", Some(DragMode::Execute)));
        assert!(explained.decision.allowed());
        assert_eq!(
            explained.verdict,
            "allowed by rule 1 (line 3): 'run' of workflow 'deploy-web' in DRAG mode execute for \
             role 'devops'"
        );
        assert_eq!(
            explained.rules,
            [
                "rule 1 (line 3): applies: allows it",
                "rule 2 (line 7): does not apply: role 'devops' matches none of admin",
                "rule 3 (line 9): does not apply: role 'devops' matches none of intern",
            ]
        );
        assert_eq!(explained.notes.len(), 1);
    }

    #[test]
    fn names_the_default_and_the_reason_each_rule_missed() {
        let file = parse(EXAMPLE).unwrap();
        let explained = file.explain(&["devops"], &run("backup", Some(DragMode::Draft)));
        assert!(!explained.decision.allowed());
        assert_eq!(
            explained.verdict,
            "refused by the default (default: deny): no rule matches 'run' of workflow 'backup' \
             in DRAG mode draft for role 'devops'"
        );
        assert_eq!(
            explained.rules[0],
            "rule 1 (line 3): does not apply: workflow 'backup' matches none of deploy-*, noop"
        );
        let no_mode = file.explain(&["admin"], &run("noop", None));
        assert_eq!(
            no_mode.rules[0],
            "rule 1 (line 3): does not apply: only in DRAG modes execute, grunt (no mode given)"
        );
        let reload = Question {
            action: PolicyAction::Reload,
            workflow: None,
            drag_mode: None,
        };
        let explained = file.explain(&["devops"], &reload);
        assert_eq!(
            explained.rules[0],
            "rule 1 (line 3): does not apply: does not name 'reload'"
        );
        assert!(explained.notes.is_empty());
    }

    #[test]
    fn names_a_denying_rule() {
        let file = parse(EXAMPLE).unwrap();
        let explained = file.explain(&["intern", "devops"], &run("noop", Some(DragMode::Execute)));
        assert!(!explained.decision.allowed());
        assert!(
            explained.verdict.starts_with("refused by rule 3 (line 9)"),
            "{explained:?}"
        );
        assert_eq!(explained.rules[2], "rule 3 (line 9): applies: denies it");
        assert_eq!(explained.rules[0], "rule 1 (line 3): applies: allows it");
    }
}

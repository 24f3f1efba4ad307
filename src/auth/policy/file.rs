//! Reading a policy file (`POLICY_PATH`, YAML): every problem found, each with its line and
//! column, or a [`PolicyFile`] whose rules are all well-formed.
//!
//! ```yaml
//! default: deny            # or allow; deny when absent
//! rules:
//!   - roles: [devops, admin]
//!     allow: [run]
//!     workflows: ["deploy-*", noop]
//!     drag_modes: [execute, grunt]
//!   - roles: [intern]
//!     deny: [approve]
//! groups:                  # an identity provider's groups -> roles
//!   sre: [devops]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::glob::Pattern;
use super::rules::{Effect, PolicyAction, PolicyFile, Rule};
use crate::auth::Role;
use crate::governance::DragMode;
use crate::workflow::yaml::{self, Positions};

/// The largest policy file read, in bytes.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

const TOP_KEYS: [&str; 3] = ["default", "rules", "groups"];
const RULE_KEYS: [&str; 6] = [
    "roles",
    "allow",
    "deny",
    "workflows",
    "drag_modes",
    "description",
];

/// One thing wrong with a policy file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem of a file that does not parse, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl std::error::Error for Problems {}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&shown.join("; "))
    }
}

/// Parses and checks a policy file's text.
pub fn parse(text: &str) -> Result<PolicyFile, Problems> {
    let value = yaml::to_json(text).map_err(|message| {
        let problem = match yaml::split_position(&message) {
            Some((text, line, column)) => Problem {
                line,
                column,
                message: text.to_owned(),
            },
            None => Problem {
                line: 1,
                column: 1,
                message,
            },
        };
        Problems(vec![problem])
    })?;
    let mut checker = Checker {
        positions: Positions::of(text),
        problems: Vec::new(),
    };
    let read = checker.file(&value);
    let mut problems = checker.problems;
    problems.sort_by_key(|p| (p.line, p.column));
    match read {
        Some((default, rules, groups)) if problems.is_empty() => Ok(PolicyFile {
            default,
            rules,
            groups,
            sha256: crate::audit::format::sha256_tagged(text.as_bytes()),
        }),
        _ => Err(Problems(problems)),
    }
}

/// Walks the document, gathering every problem rather than stopping at the first.
struct Checker {
    positions: Positions,
    problems: Vec<Problem>,
}

type Parts = (Effect, Vec<Rule>, BTreeMap<String, Vec<Role>>);

impl Checker {
    /// A problem with the node at `pointer` (or, for want of it, its nearest ancestor).
    fn at(&mut self, pointer: &str, message: impl Into<String>) {
        let mut place = pointer;
        let (line, column) = loop {
            if let Some(found) = self.positions.node(place) {
                break found;
            }
            match place.rsplit_once('/') {
                Some((parent, _)) => place = parent,
                None => break (1, 1),
            }
        };
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    /// A problem with the key of the member at `pointer`.
    fn at_key(&mut self, pointer: &str, message: impl Into<String>) {
        match self.positions.key(pointer) {
            Some((line, column)) => self.problems.push(Problem {
                line,
                column,
                message: message.into(),
            }),
            None => self.at(pointer, message),
        }
    }

    fn line_of(&self, pointer: &str) -> usize {
        self.positions.node(pointer).map_or(1, |(line, _)| line)
    }

    /// Refuses the keys of `map` (at `pointer`) that are not `known`.
    fn known_keys(&mut self, map: &Map<String, Value>, pointer: &str, known: &[&str], of: &str) {
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.at_key(
                &member(pointer, key),
                format!(
                    "unknown key '{key}' in {of} (expected one of {})",
                    known.join(", ")
                ),
            );
        }
    }

    fn file(&mut self, value: &Value) -> Option<Parts> {
        let map = match value {
            Value::Object(map) => map,
            Value::Null => {
                self.at("", "the policy file is empty; it needs at least `rules` (`rules: []` allows nothing)");
                return None;
            }
            _ => {
                self.at(
                    "",
                    "a policy is a mapping with `default`, `rules` and `groups`",
                );
                return None;
            }
        };
        self.known_keys(map, "", &TOP_KEYS, "the policy");
        let default = match map.get("default") {
            None => Some(Effect::Deny),
            Some(Value::String(text)) if text == "deny" => Some(Effect::Deny),
            Some(Value::String(text)) if text == "allow" => Some(Effect::Allow),
            Some(other) => {
                self.at(
                    "/default",
                    format!("default must be allow or deny, not {other}"),
                );
                None
            }
        };
        let rules = match map.get("rules") {
            None => {
                self.at(
                    "",
                    "missing key 'rules' (write `rules: []` to allow nothing)",
                );
                None
            }
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(index, item)| self.rule(index, item))
                    .collect::<Vec<_>>(),
            ),
            Some(_) => {
                self.at("/rules", "rules must be a list of rules");
                None
            }
        };
        let groups = match map.get("groups") {
            None => Some(BTreeMap::new()),
            Some(value) => self.groups(value),
        };
        Some((default?, rules?, groups?))
    }

    fn rule(&mut self, index: usize, value: &Value) -> Option<Rule> {
        let pointer = format!("/rules/{index}");
        let Value::Object(map) = value else {
            self.at(&pointer, "a rule is a mapping with roles and allow or deny");
            return None;
        };
        self.known_keys(map, &pointer, &RULE_KEYS, "a rule");
        let roles = match map.get("roles") {
            None => {
                self.at(&pointer, "a rule needs roles (a list of role names)");
                None
            }
            Some(value) => self.patterns(value, &member(&pointer, "roles"), Pattern::role),
        };
        let allow = self.actions(map, &pointer, "allow");
        let deny = self.actions(map, &pointer, "deny");
        let workflows = map
            .get("workflows")
            .map(|value| self.patterns(value, &member(&pointer, "workflows"), Pattern::workflow));
        let drag_modes = map
            .get("drag_modes")
            .map(|value| self.drag_modes(value, &member(&pointer, "drag_modes")));
        let description = match map.get("description") {
            None => Some(None),
            Some(Value::String(text)) => Some(Some(text.clone())),
            Some(_) => {
                self.at(&member(&pointer, "description"), "description must be text");
                None
            }
        };
        let (allow, deny) = (allow?, deny?);
        if allow.is_empty() && deny.is_empty() {
            self.at(&pointer, "a rule needs allow or deny (a list of actions)");
            return None;
        }
        for (at, action) in allow
            .iter()
            .filter(|(_, a)| deny.iter().any(|(_, d)| d == a))
        {
            self.at(
                at,
                format!("'{action}' is both allowed and denied by this rule"),
            );
        }
        if workflows.is_some() || drag_modes.is_some() {
            for (at, action) in allow.iter().chain(&deny) {
                if !action.is_about_a_run() {
                    self.at(
                        at,
                        format!(
                            "'{action}' is not about a run: a rule with workflows or drag_modes \
                             can only allow or deny run, approve, cancel and override"
                        ),
                    );
                }
            }
        }
        Some(Rule {
            number: index + 1,
            line: self.line_of(&pointer),
            description: description?,
            roles: roles?,
            allow: allow.into_iter().map(|(_, a)| a).collect(),
            deny: deny.into_iter().map(|(_, a)| a).collect(),
            // Absent: no narrowing; present, it must have been valid.
            workflows: match workflows {
                None => None,
                Some(patterns) => Some(patterns?),
            },
            drag_modes: match drag_modes {
                None => None,
                Some(modes) => Some(modes?),
            },
        })
    }

    /// A non-empty list of text at `pointer`: each item with its pointer.
    fn texts<'v>(&mut self, value: &'v Value, pointer: &str) -> Option<Vec<(String, &'v str)>> {
        let Value::Array(items) = value else {
            self.at(
                pointer,
                format!("{} must be a list, e.g. [a, b]", last(pointer)),
            );
            return None;
        };
        if items.is_empty() {
            self.at(
                pointer,
                format!(
                    "{} is an empty list; leave the key out or name something",
                    last(pointer)
                ),
            );
            return None;
        }
        let mut texts = Vec::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            let at = format!("{pointer}/{index}");
            match item {
                Value::String(text) => texts.push((at, text.as_str())),
                other => {
                    self.at(&at, format!("expected text, not {other} (quote it)"));
                    ok = false;
                }
            }
        }
        ok.then_some(texts)
    }

    fn patterns(
        &mut self,
        value: &Value,
        pointer: &str,
        parse: fn(&str) -> Result<Pattern, String>,
    ) -> Option<Vec<Pattern>> {
        let texts = self.texts(value, pointer)?;
        let mut patterns = Vec::new();
        let mut ok = true;
        for (at, text) in texts {
            match parse(text) {
                Ok(pattern) => patterns.push(pattern),
                Err(message) => {
                    self.at(&at, message);
                    ok = false;
                }
            }
        }
        ok.then_some(patterns)
    }

    /// `allow` or `deny` of the rule at `pointer`: each action with its pointer (none when absent).
    fn actions(
        &mut self,
        map: &Map<String, Value>,
        pointer: &str,
        key: &str,
    ) -> Option<Vec<(String, PolicyAction)>> {
        let Some(value) = map.get(key) else {
            return Some(Vec::new());
        };
        let texts = self.texts(value, &member(pointer, key))?;
        let mut actions = Vec::new();
        let mut ok = true;
        for (at, text) in texts {
            match PolicyAction::parse(text) {
                Some(action) => actions.push((at, action)),
                None => {
                    self.at(
                        &at,
                        format!(
                            "unknown action '{text}' (expected one of {})",
                            PolicyAction::names()
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(actions)
    }

    fn drag_modes(&mut self, value: &Value, pointer: &str) -> Option<Vec<DragMode>> {
        let texts = self.texts(value, pointer)?;
        let mut modes = Vec::new();
        let mut ok = true;
        for (at, text) in texts {
            match text.parse::<DragMode>() {
                Ok(mode) => modes.push(mode),
                Err(e) => {
                    self.at(&at, format!("bad drag mode '{text}': {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(modes)
    }

    fn groups(&mut self, value: &Value) -> Option<BTreeMap<String, Vec<Role>>> {
        let Value::Object(map) = value else {
            self.at(
                "/groups",
                "groups must be a mapping: a provider's group -> a list of roles",
            );
            return None;
        };
        let mut groups = BTreeMap::new();
        let mut ok = true;
        for (group, roles) in map {
            let at = member("/groups", group);
            let Some(texts) = self.texts(roles, &at) else {
                ok = false;
                continue;
            };
            let mut named = Vec::new();
            for (at, text) in texts {
                if text.trim().is_empty() || text.trim() != text {
                    self.at(&at, format!("bad role name '{text}'"));
                    ok = false;
                } else {
                    named.push(Role::from(text));
                }
            }
            groups.insert(group.clone(), named);
        }
        ok.then_some(groups)
    }
}

/// The pointer of `key` in the mapping at `pointer` (RFC 6901 escaping).
fn member(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// The last step of a pointer, for messages: `roles`, `allow`.
fn last(pointer: &str) -> String {
    let step = pointer.rsplit('/').next().unwrap_or_default();
    step.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests;

//! Workflow definitions: parsed and validated whole at load, so a definition that exists is valid
//! (every problem is reported with its field path; none is half-loaded).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fields::{positive, strict_json, string_list, Problems};
use super::params::{check_parameters, parse_parameters, ParamSpec};
use super::step::{parse_steps, Step};
use crate::governance::{DragMode, Violation};

/// Human approval before a run (enforced by the gate).
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub required: bool,
    pub approver_roles: Vec<String>,
    pub expires_seconds: u64,
}

/// A valid workflow definition. Absent policy keys mean no restriction, as in the original.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub drag_modes: Option<Vec<DragMode>>,
    pub roles: Option<Vec<String>>,
    /// `None`: any parameters are accepted as given.
    pub parameters: Option<BTreeMap<String, ParamSpec>>,
    pub timeout_seconds: Option<u64>,
    /// Runs of this workflow that may execute at once (others wait in the queue).
    pub max_concurrent_runs: Option<u64>,
    pub approval: Option<Approval>,
    pub steps: Vec<Step>,
}

/// The keys a definition may have; anything else is a mistake worth reporting.
const KEYS: [&str; 9] = [
    "description",
    "max_concurrent_runs",
    "drag_modes",
    "roles",
    "parameters",
    "timeout_seconds",
    "approval",
    "steps",
    "$schema",
];

impl Workflow {
    /// Parses and validates a JSON definition; on failure, every problem as `path: message`.
    pub fn from_json(name: &str, text: &str) -> Result<Workflow, Vec<String>> {
        let value = strict_json(text).map_err(|e| vec![format!("invalid JSON: {e}")])?;
        Workflow::from_value(name, value)
    }

    /// Parses and validates a YAML definition (read strictly, see [`super::yaml`]); on failure,
    /// every problem as `path: message`.
    pub fn from_yaml(name: &str, text: &str) -> Result<Workflow, Vec<String>> {
        let value = super::yaml::to_json(text).map_err(|e| vec![format!("invalid YAML: {e}")])?;
        Workflow::from_value(name, value)
    }

    /// Validates a definition already read from its format: the one validation path of every
    /// format. On failure, every problem as `path: message`.
    pub fn from_value(name: &str, value: Value) -> Result<Workflow, Vec<String>> {
        let Value::Object(root) = value else {
            return Err(vec![
                "a workflow definition must be an object (a mapping of keys)".to_owned(),
            ]);
        };
        let mut p = Problems::default();
        for key in root.keys() {
            if !KEYS.contains(&key.as_str()) {
                p.add(
                    key,
                    format!("unknown key (expected one of {})", KEYS[..8].join(", ")),
                );
            }
        }
        let description = match root.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                p.add("description", "must be a string");
                None
            }
        };
        let drag_modes = root.get("drag_modes").and_then(|v| {
            let names = string_list(v, "drag_modes", &mut p)?;
            let modes: Vec<DragMode> = names
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    m.parse()
                        .map_err(|e| p.add(&format!("drag_modes[{i}]"), e))
                        .ok()
                })
                .collect();
            (modes.len() == names.len()).then_some(modes)
        });
        let roles = root
            .get("roles")
            .and_then(|v| string_list(v, "roles", &mut p));
        let parameters = root
            .get("parameters")
            .and_then(|v| parse_parameters(v, &mut p));
        let timeout_seconds = positive(root.get("timeout_seconds"), "timeout_seconds", &mut p);
        let max_concurrent_runs = positive(
            root.get("max_concurrent_runs"),
            "max_concurrent_runs",
            &mut p,
        );
        let approval = root.get("approval").and_then(|v| parse_approval(v, &mut p));
        let steps = parse_steps(root.get("steps"), parameters.as_ref(), &mut p);
        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(Workflow {
            name: name.to_owned(),
            description,
            drag_modes,
            roles,
            parameters,
            timeout_seconds,
            max_concurrent_runs,
            approval,
            steps,
        })
    }

    /// Checks run parameters against the schema; returns them with defaults filled in, or every
    /// problem (field `parameters.<name>`).
    pub fn check_parameters(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<Violation>> {
        check_parameters(self.parameters.as_ref(), given)
    }
}

fn parse_approval(value: &Value, p: &mut Problems) -> Option<Approval> {
    let Value::Object(spec) = value else {
        p.add("approval", "must be an object");
        return None;
    };
    for key in spec.keys() {
        if !["required", "approver_roles", "expires_seconds"].contains(&key.as_str()) {
            p.add(
                &format!("approval.{key}"),
                "unknown key (expected one of required, approver_roles, expires_seconds)",
            );
        }
    }
    let required = match spec.get("required") {
        None => true,
        Some(Value::Bool(required)) => *required,
        Some(_) => {
            p.add("approval.required", "must be true or false");
            true
        }
    };
    let approver_roles = spec
        .get("approver_roles")
        .and_then(|v| string_list(v, "approval.approver_roles", p))
        .unwrap_or_default();
    if required && approver_roles.is_empty() && spec.get("approver_roles").is_none() {
        p.add(
            "approval.approver_roles",
            "required when approval is required",
        );
    }
    let expires_seconds =
        positive(spec.get("expires_seconds"), "approval.expires_seconds", p).unwrap_or(3600);
    Some(Approval {
        required,
        approver_roles,
        expires_seconds,
    })
}

#[cfg(test)]
mod tests;

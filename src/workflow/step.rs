//! The steps of a definition: each one's id, time limit and kind, read in order.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::command::CommandStep;
use super::fields::{name_like, positive, Problems};
use super::http_step::HttpStep;
use super::llm::LlmStep;
use super::openclaw::OpenClawStep;
use super::params::ParamSpec;
use super::template::Names;

/// What a step does: one kind, each with its own definition.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Command(CommandStep),
    Http(HttpStep),
    Llm(LlmStep),
    OpenClaw(OpenClawStep),
}

impl StepKind {
    /// The kind's key in a definition, and its name in a step's report.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Command(_) => "command",
            StepKind::Http(_) => "http",
            StepKind::Llm(_) => "llm",
            StepKind::OpenClaw(_) => "openclaw",
        }
    }
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Letters, digits, `-` and `_`; unique in its workflow (its 1-based position when not given).
    pub id: String,
    /// The step's own time limit; the workflow's remaining time bounds it too.
    pub timeout_seconds: Option<u64>,
    pub kind: StepKind,
}

/// Reads the `steps` array in order: each step's id (its position when absent, never repeated),
/// its time limit and its one kind, whose templates may name only steps before it.
pub(super) fn parse_steps(
    value: Option<&Value>,
    params: Option<&BTreeMap<String, ParamSpec>>,
    p: &mut Problems,
) -> Vec<Step> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            p.add("steps", "must be an array");
            return Vec::new();
        }
    };
    let mut steps = Vec::new();
    let mut earlier = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("steps[{i}]");
        let Value::Object(step) = item else {
            p.add(&path, "must be an object");
            continue;
        };
        let id = match step.get("id").and_then(Value::as_str) {
            Some(id) if name_like(id) => id.to_owned(),
            Some(_) => {
                p.add(&format!("{path}.id"), "letters, digits, - and _ only");
                continue;
            }
            None => format!("{}", i + 1),
        };
        if earlier.contains(&id) {
            p.add(&format!("{path}.id"), format!("duplicate step id '{id}'"));
        }
        let kinds: Vec<&str> = ["command", "http", "llm", "openclaw"]
            .into_iter()
            .filter(|k| step.contains_key(*k))
            .collect();
        for key in step.keys() {
            if ![
                "id",
                "timeout_seconds",
                "env",
                "secrets",
                "command",
                "http",
                "llm",
                "openclaw",
                "openclaw_body",
                "option_arguments",
            ]
            .contains(&key.as_str())
            {
                p.add(&format!("{path}.{key}"), "unknown key");
            }
        }
        let timeout_seconds = positive(
            step.get("timeout_seconds"),
            &format!("{path}.timeout_seconds"),
            p,
        );
        let names = Names {
            params,
            earlier: &earlier,
        };
        if step.contains_key("option_arguments") && kinds != ["command"] {
            p.add(
                &format!("{path}.option_arguments"),
                "only for a command step",
            );
        }
        if step.contains_key("openclaw_body") && kinds != ["openclaw"] {
            p.add(
                &format!("{path}.openclaw_body"),
                "only for an openclaw step",
            );
        }
        let kind = match kinds.as_slice() {
            ["command"] => CommandStep::parse(step, &path, &names, p).map(StepKind::Command),
            ["http"] => HttpStep::parse(&step["http"], &path, &names, p).map(StepKind::Http),
            ["llm"] => LlmStep::parse(&step["llm"], &path, &names, p).map(StepKind::Llm),
            [_] => Some(StepKind::OpenClaw(OpenClawStep::parse(step, &path, p))),
            [] => {
                p.add(&path, "needs one of command, http, llm, openclaw");
                None
            }
            _ => {
                p.add(
                    &path,
                    "has more than one kind; one of command, http, llm, openclaw",
                );
                None
            }
        };
        if let Some(kind) = kind {
            steps.push(Step {
                id: id.clone(),
                timeout_seconds,
                kind,
            });
        }
        earlier.insert(id);
    }
    steps
}

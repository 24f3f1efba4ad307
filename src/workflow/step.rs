//! The steps of a definition: each one's id, time limit and kind, read in order.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use super::fields::{name_like, positive, string_list, Problems};
use super::http_step::HttpSpec;
use super::llm::LlmSpec;
use super::params::ParamSpec;
use super::secrets::server_secret;
use super::template::{check_embedded_templates, parse_arg, Arg};

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// A program and its arguments; no shell. `env` sets variables (literal or template), `secrets`
    /// names server environment variables passed through and redacted from outputs.
    Command {
        argv: Vec<Arg>,
        env: Vec<(String, Arg)>,
        secrets: Vec<String>,
    },
    /// An HTTP request. The URL (after its host), header values and the body may embed templates;
    /// [`HttpSpec::render`] fills them in at run time.
    Http(HttpSpec),
    /// A model completion. The prompt may embed templates anywhere (it is text for a model, never a
    /// command).
    Llm(LlmSpec),
    /// Submission to the OpenClaw orchestrator (`OPENCLAW_URL`), as the original server did; the
    /// object is sent as the workflow's payload.
    Openclaw(Value),
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Command { .. } => "command",
            StepKind::Http(_) => "http",
            StepKind::Llm(_) => "llm",
            StepKind::Openclaw(_) => "openclaw",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub timeout_seconds: Option<u64>,
    pub kind: StepKind,
}

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
        let kind = match kinds.as_slice() {
            ["command"] => parse_command(step, &path, params, &earlier, p),
            ["http"] => match HttpSpec::parse(&step["http"]) {
                Ok(spec) => {
                    for (key, text) in spec.templated_texts() {
                        let text_path = format!("{path}.http.{key}");
                        let secrets_allowed = key != "url";
                        check_embedded_templates(
                            text,
                            &text_path,
                            params,
                            &earlier,
                            secrets_allowed,
                            p,
                        );
                    }
                    Some(StepKind::Http(spec))
                }
                Err(problems) => {
                    for problem in problems {
                        p.add(&path, problem);
                    }
                    None
                }
            },
            ["llm"] => match LlmSpec::parse(&step["llm"]) {
                Ok(spec) => {
                    check_embedded_templates(
                        &spec.prompt,
                        &format!("{path}.llm.prompt"),
                        params,
                        &earlier,
                        false,
                        p,
                    );
                    Some(StepKind::Llm(spec))
                }
                Err(problems) => {
                    for problem in problems {
                        p.add(&path, problem);
                    }
                    None
                }
            },
            [_] => {
                let spec = step.get("openclaw").cloned().unwrap_or(Value::Null);
                if !spec.is_object() {
                    p.add(&format!("{path}.openclaw"), "must be an object");
                }
                Some(StepKind::Openclaw(spec))
            }
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

fn parse_command(
    step: &Map<String, Value>,
    path: &str,
    params: Option<&BTreeMap<String, ParamSpec>>,
    earlier: &HashSet<String>,
    p: &mut Problems,
) -> Option<StepKind> {
    let argv = match step.get("command") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let arg_path = format!("{path}.command[{i}]");
                match item.as_str() {
                    Some(text) => parse_arg(text, &arg_path, params, earlier, p),
                    None => {
                        p.add(&arg_path, "must be a string");
                        Arg::Literal(String::new())
                    }
                }
            })
            .collect::<Vec<Arg>>(),
        _ => {
            p.add(
                &format!("{path}.command"),
                "must be a non-empty array of strings (the program and its arguments; no shell)",
            );
            return None;
        }
    };
    if !matches!(argv.first(), Some(Arg::Literal(program)) if !program.is_empty()) {
        p.add(
            &format!("{path}.command[0]"),
            "the program must be a literal name or path",
        );
    }
    let mut env = Vec::new();
    match step.get("env") {
        None => {}
        Some(Value::Object(vars)) => {
            for (name, value) in vars {
                let var_path = format!("{path}.env.{name}");
                match value.as_str() {
                    Some(text) if name_like(name) => {
                        env.push((name.clone(), parse_arg(text, &var_path, params, earlier, p)))
                    }
                    _ => p.add(
                        &var_path,
                        "a variable name (letters, digits, _) with a string value",
                    ),
                }
            }
        }
        Some(_) => p.add(&format!("{path}.env"), "must be an object of strings"),
    }
    let secrets = match step.get("secrets") {
        None => Vec::new(),
        Some(v) => string_list(v, &format!("{path}.secrets"), p).unwrap_or_default(),
    };
    for (i, name) in secrets.iter().enumerate() {
        if let Some(why) = server_secret(name) {
            p.add(&format!("{path}.secrets[{i}]"), why);
        }
    }
    Some(StepKind::Command { argv, env, secrets })
}

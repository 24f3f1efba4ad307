//! Workflow files of the original (Python) server: a JSON object it handed whole to OpenClaw
//! (its documented shape is `{"name", "steps": [{"type": "task", "name"}]}`).
//!
//! Such a file loads as a workflow of one `openclaw` step that posts the original's body,
//! `{"workflow": <the file>, "parameters", "execution_id"}`. It is exactly the native definition
//! [`native_definition`] writes (what `sustainbot workflows migrate` saves), so a file runs the same
//! before and after migration. Like the original, it has no policy: any DRAG mode, any role, any
//! parameters.
//!
//! Detection is deliberately narrow. A file is in the original's format when it is a JSON object
//! that
//! - has a mark of that format: a top-level `name`, `version` or `triggers` (keys a native
//!   definition does not have), or a step with a `type`;
//! - has none of the keys only a native definition has (`drag_modes`, `roles`, `parameters`,
//!   `timeout_seconds`, `max_concurrent_runs`, `approval`, `$schema`): such a file was written for
//!   this server, and a mistake in it must be reported, never turn it into an unrestricted
//!   submission;
//! - has, when it has `steps`, an array of objects that each have a non-empty string `type` and
//!   none of the native step kinds (`command`, `http`, `llm`, `openclaw`).
//!
//! A native definition never has a mark (each is an unknown key there), so no file is both.

use serde_json::{json, Map, Value};

use super::definition::Workflow;

/// Top-level keys of the original's format that a native definition does not have.
const MARKS: [&str; 3] = ["name", "version", "triggers"];

/// Top-level keys only a native definition has.
const NATIVE_ONLY: [&str; 7] = [
    "drag_modes",
    "roles",
    "parameters",
    "timeout_seconds",
    "max_concurrent_runs",
    "approval",
    "$schema",
];

/// The keys that make a step native (its kind).
const STEP_KINDS: [&str; 4] = ["command", "http", "llm", "openclaw"];

/// The id of a legacy workflow's one step.
pub const LEGACY_STEP_ID: &str = "submit";

/// Whether a definition is in the original's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// In the original's format.
    Legacy,
    /// Nothing about it is the original's format.
    Unmarked,
    /// It has a mark of the original's format, but breaks a rule of it (the reason).
    Broken(String),
}

/// Whether `value` (a JSON definition as read) is in the original's format; see the module
/// documentation for the rules.
pub fn shape(value: &Value) -> Shape {
    let Value::Object(root) = value else {
        return Shape::Unmarked;
    };
    let present = |key: &str| root.get(key).is_some_and(|v| !v.is_null());
    let steps = root.get("steps").filter(|v| !v.is_null());
    let typed_step = steps
        .and_then(Value::as_array)
        .is_some_and(|items| items.iter().any(|s| s.get("type").is_some()));
    if !MARKS.iter().any(|key| present(key)) && !typed_step {
        return Shape::Unmarked;
    }
    if let Some(key) = NATIVE_ONLY.iter().find(|key| present(key)) {
        return Shape::Broken(format!(
            "it has '{key}', a key of native definitions only (a file with a native policy key is \
             never run as an unrestricted OpenClaw workflow)"
        ));
    }
    match steps {
        None => Shape::Legacy,
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| step_problem(item).map(|why| format!("steps[{i}] {why}")))
            .map_or(Shape::Legacy, Shape::Broken),
        Some(_) => Shape::Broken("its steps are not an array".to_owned()),
    }
}

/// Why one item of `steps` is not a step of the original's format.
fn step_problem(item: &Value) -> Option<String> {
    let Value::Object(step) = item else {
        return Some("is not an object".to_owned());
    };
    if let Some(kind) = STEP_KINDS.iter().find(|k| step.contains_key(**k)) {
        return Some(format!(
            "has the native step kind '{kind}' (a step is either native or the original's \
             {{\"type\", \"name\"}})"
        ));
    }
    match step.get("type") {
        Some(Value::String(t)) if !t.trim().is_empty() => None,
        Some(_) => Some("has a 'type' that is not a non-empty string".to_owned()),
        None => Some("has no 'type'".to_owned()),
    }
}

/// The native definition that runs a legacy file as the original did: its `description` (when it
/// is text) and one `openclaw` step that posts the whole file with `openclaw_body: "original"`.
pub fn native_definition(original: &Value) -> Value {
    let mut definition = Map::new();
    if let Some(description) = original.get("description").filter(|d| d.is_string()) {
        definition.insert("description".to_owned(), description.clone());
    }
    definition.insert(
        "steps".to_owned(),
        json!([{"id": LEGACY_STEP_ID, "openclaw_body": "original", "openclaw": original}]),
    );
    Value::Object(definition)
}

/// A legacy file as a workflow, with the native definition it stands for; `original` must have
/// [`Shape::Legacy`].
pub fn load(name: &str, original: &Value) -> Result<(Workflow, Value), Vec<String>> {
    let definition = native_definition(original);
    let workflow = Workflow::from_value(name, definition.clone())?;
    Ok((workflow, definition))
}

#[cfg(test)]
mod tests;

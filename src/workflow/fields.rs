//! Readers for the fields of a definition: each reports its problems with the field's path and
//! never half-accepts a value.

use serde_json::{Map, Value};

pub(super) fn name_like(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Collects problems while reading a definition.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, path: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }

    /// Adds each of a step kind's own problems (`KIND.KEY: message`) under the step's `path`.
    pub(super) fn add_each(&mut self, path: &str, problems: Vec<String>) {
        for problem in problems {
            self.add(path, problem);
        }
    }
}

pub(super) fn string_list(value: &Value, path: &str, p: &mut Problems) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        p.add(path, "must be an array of strings");
        return None;
    };
    if items.is_empty() {
        p.add(
            path,
            "must not be empty (leave the key out for no restriction)",
        );
        return None;
    }
    let strings: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(
            |(i, item)| match item.as_str().filter(|s| !s.trim().is_empty()) {
                Some(s) => Some(s.to_owned()),
                None => {
                    p.add(&format!("{path}[{i}]"), "must be a non-empty string");
                    None
                }
            },
        )
        .collect();
    (strings.len() == items.len()).then_some(strings)
}

/// A JSON document as a [`Value`], refusing a key repeated in one object: a policy file that says
/// `"roles"` twice must not mean whichever came last (YAML definitions refuse it too).
pub(super) fn strict_json(text: &str) -> Result<Value, serde_json::Error> {
    crate::strict_json::from_slice(text.as_bytes())
}

pub(super) fn positive(value: Option<&Value>, path: &str, p: &mut Problems) -> Option<u64> {
    match value {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|n| *n > 0) {
            Some(n) => Some(n),
            None => {
                p.add(path, "must be a positive whole number");
                None
            }
        },
    }
}

/// A step kind's `timeout_seconds`: a positive whole number of seconds, `default` when absent.
pub(super) fn timeout_seconds(
    map: &Map<String, Value>,
    default: std::time::Duration,
) -> Result<std::time::Duration, String> {
    match map.get("timeout_seconds") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| "must be a positive whole number".to_owned()),
    }
}

/// A step kind's object and the problems found so far.
pub(super) type StepObject<'a> = (&'a Map<String, Value>, Vec<String>);

/// A step kind's object, with a problem (`KIND.KEY: unknown key ...`) for every key not in `keys`;
/// `Err` when it is not an object at all.
pub(super) fn step_object<'a>(
    value: &'a Value,
    kind: &str,
    keys: &[&str],
) -> Result<StepObject<'a>, Vec<String>> {
    let Value::Object(map) = value else {
        return Err(vec![format!("{kind}: must be an object")]);
    };
    let problems = map
        .keys()
        .filter(|key| !keys.contains(&key.as_str()))
        .map(|key| {
            format!(
                "{kind}.{key}: unknown key (expected one of {})",
                keys.join(", ")
            )
        })
        .collect();
    Ok((map, problems))
}

//! The parameter schema of a workflow: each parameter's type and rules, read at load, and the check
//! of a run's parameters against it.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

use super::fields::Problems;
use crate::governance::{Violation, ViolationKind};

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Number,
    Integer,
    Boolean,
}

impl ParamType {
    fn parse(name: &str) -> Option<ParamType> {
        match name {
            "string" => Some(ParamType::String),
            "number" => Some(ParamType::Number),
            "integer" => Some(ParamType::Integer),
            "boolean" => Some(ParamType::Boolean),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Number => value.is_number(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Boolean => value.is_boolean(),
        }
    }
}

/// The schema of one parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub kind: ParamType,
    pub allowed: Option<Vec<Value>>,
    pub pattern: Option<Regex>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub required: bool,
    pub default: Option<Value>,
}

impl ParamSpec {
    /// The problems of `value` against this schema (empty when it fits).
    pub(super) fn problems(&self, value: &Value) -> Vec<String> {
        if !self.kind.accepts(value) {
            return vec![format!("must be a {}", self.kind.name())];
        }
        let mut problems = Vec::new();
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(value) {
                let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
                problems.push(format!("must be one of {}", list.join(", ")));
            }
        }
        if let (Some(pattern), Some(text)) = (&self.pattern, value.as_str()) {
            if !pattern.is_match(text) {
                problems.push(format!("must match {}", pattern.as_str()));
            }
        }
        if let Some(number) = value.as_f64() {
            if self.minimum.is_some_and(|min| number < min) {
                problems.push(format!(
                    "must be at least {}",
                    self.minimum.unwrap_or_default()
                ));
            }
            if self.maximum.is_some_and(|max| number > max) {
                problems.push(format!(
                    "must be at most {}",
                    self.maximum.unwrap_or_default()
                ));
            }
        }
        problems
    }
}

pub(super) fn parse_parameters(
    value: &Value,
    p: &mut Problems,
) -> Option<BTreeMap<String, ParamSpec>> {
    let Value::Object(specs) = value else {
        p.add("parameters", "must be an object of parameter schemas");
        return None;
    };
    let before = p.0.len();
    let mut out = BTreeMap::new();
    for (name, spec) in specs {
        let path = format!("parameters.{name}");
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || name.is_empty() {
            p.add(&path, "parameter names are letters, digits and _");
        }
        if let Some(spec) = parse_param(spec, &path, p) {
            out.insert(name.clone(), spec);
        }
    }
    (p.0.len() == before).then_some(out)
}

fn parse_param(value: &Value, path: &str, p: &mut Problems) -> Option<ParamSpec> {
    let Value::Object(spec) = value else {
        p.add(path, "must be an object");
        return None;
    };
    const PARAM_KEYS: [&str; 8] = [
        "type",
        "enum",
        "pattern",
        "minimum",
        "maximum",
        "required",
        "default",
        "description",
    ];
    for key in spec.keys() {
        if !PARAM_KEYS.contains(&key.as_str()) {
            p.add(&format!("{path}.{key}"), "unknown key");
        }
    }
    let before = p.0.len();
    let kind = match spec
        .get("type")
        .and_then(Value::as_str)
        .and_then(ParamType::parse)
    {
        Some(kind) => kind,
        None => {
            p.add(
                &format!("{path}.type"),
                "required: string, number, integer or boolean",
            );
            return None;
        }
    };
    let allowed = match spec.get("enum") {
        None => None,
        Some(Value::Array(values)) if !values.is_empty() => {
            for (i, v) in values.iter().enumerate() {
                if !kind.accepts(v) {
                    p.add(
                        &format!("{path}.enum[{i}]"),
                        format!("must be a {}", kind.name()),
                    );
                }
            }
            Some(values.clone())
        }
        Some(_) => {
            p.add(&format!("{path}.enum"), "must be a non-empty array");
            None
        }
    };
    let pattern = match spec.get("pattern") {
        None => None,
        Some(Value::String(text)) if kind == ParamType::String => match Regex::new(text) {
            Ok(re) => Some(re),
            Err(e) => {
                p.add(&format!("{path}.pattern"), format!("invalid pattern: {e}"));
                None
            }
        },
        Some(_) => {
            p.add(
                &format!("{path}.pattern"),
                "a string pattern, for string parameters only",
            );
            None
        }
    };
    let mut bound = |key: &str| match spec.get(key) {
        None => None,
        Some(v) if matches!(kind, ParamType::Number | ParamType::Integer) && v.is_number() => {
            v.as_f64()
        }
        Some(_) => {
            p.add(
                &format!("{path}.{key}"),
                "a number, for number and integer parameters only",
            );
            None
        }
    };
    let (minimum, maximum) = (bound("minimum"), bound("maximum"));
    let required = match spec.get("required") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.add(&format!("{path}.required"), "must be true or false");
            false
        }
    };
    let mut param = ParamSpec {
        kind,
        allowed,
        pattern,
        minimum,
        maximum,
        required,
        default: None,
    };
    if let Some(default) = spec.get("default").filter(|v| !v.is_null()) {
        for problem in param.problems(default) {
            p.add(&format!("{path}.default"), problem);
        }
        param.default = Some(default.clone());
    }
    (p.0.len() == before).then_some(param)
}

/// Checks run parameters against `schema`; returns them with defaults filled in, or every problem
/// (field `parameters.<name>`). No schema: any parameters are accepted as given.
pub(super) fn check_parameters(
    schema: Option<&BTreeMap<String, ParamSpec>>,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<Violation>> {
    let Some(schema) = schema else {
        return Ok(given.clone());
    };
    let mut problems = Vec::new();
    let mut out = Map::new();
    let mut violation = |name: &str, message: String| {
        problems.push(Violation {
            field: format!("parameters.{name}"),
            message,
            kind: ViolationKind::Rule,
        })
    };
    for name in given.keys() {
        if !schema.contains_key(name) {
            violation(name, "unknown parameter".to_owned());
        }
    }
    for (name, spec) in schema {
        match given
            .get(name)
            .filter(|v| !v.is_null())
            .or(spec.default.as_ref())
        {
            Some(value) => {
                for message in spec.problems(value) {
                    violation(name, message);
                }
                out.insert(name.clone(), value.clone());
            }
            None if spec.required => violation(name, "required".to_owned()),
            None => {}
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

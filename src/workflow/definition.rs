//! Workflow definitions: parsed and validated whole at load, so a definition that exists is valid
//! (every problem is reported with its field path; none is half-loaded).

use std::collections::{BTreeMap, HashSet};

use regex::Regex;
use serde_json::{Map, Value};

use super::http_step::HttpSpec;
use super::llm::LlmSpec;
use crate::governance::{DragMode, Violation, ViolationKind};

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
    fn problems(&self, value: &Value) -> Vec<String> {
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

/// Human approval before a run (enforced by the gate).
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub required: bool,
    pub approver_roles: Vec<String>,
    pub expires_seconds: u64,
}

/// One argument of a command: literal text, or a whole-argument template. The template variants
/// are also what an embedded `{{ ... }}` names (see [`Arg::from_template`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Literal(String),
    /// `{{ parameters.NAME }}`
    Parameter(String),
    /// `{{ steps.ID.output }}`: an earlier step's output.
    StepOutput(String),
    /// `{{ server.url }}`: this server's own base URL (`http://host:port`, no trailing slash).
    ServerUrl,
    /// `{{ secrets.NAME }}`: the server's environment variable NAME, for `http` header values and
    /// bodies only; redacted from everything the step returns.
    Secret(String),
}

impl Arg {
    /// What the inside of a `{{ ... }}` (trimmed) names; `None` for anything else.
    pub fn from_template(inner: &str) -> Option<Arg> {
        if let Some(name) = inner.strip_prefix("parameters.") {
            return Some(Arg::Parameter(name.to_owned()));
        }
        if let Some(id) = inner
            .strip_prefix("steps.")
            .and_then(|rest| rest.strip_suffix(".output"))
        {
            return Some(Arg::StepOutput(id.to_owned()));
        }
        if let Some(name) = inner.strip_prefix("secrets.") {
            return Some(Arg::Secret(name.to_owned()));
        }
        (inner == "server.url").then_some(Arg::ServerUrl)
    }
}

/// The template itself (`{{ parameters.x }}`), or a literal's text.
impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Literal(text) => f.write_str(text),
            Arg::Parameter(name) => write!(f, "{{{{ parameters.{name} }}}}"),
            Arg::StepOutput(id) => write!(f, "{{{{ steps.{id}.output }}}}"),
            Arg::ServerUrl => f.write_str("{{ server.url }}"),
            Arg::Secret(name) => write!(f, "{{{{ secrets.{name} }}}}"),
        }
    }
}

/// How a load error names the template forms.
const TEMPLATE_FORMS: &str =
    "templates are {{ parameters.NAME }}, {{ steps.ID.output }}, {{ server.url }} or (in http header values and bodies) {{ secrets.NAME }}";

/// Where a `{{ secrets.NAME }}` may not go, and why.
const SECRET_ELSEWHERE: &str = "{{ secrets.NAME }} is only allowed in http header values and bodies (a command gets secrets through its `secrets` list, as environment variables; URLs are logged and prompts go to a model)";

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

fn name_like(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Collects problems while reading a definition.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }
}

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
        let Some(schema) = &self.parameters else {
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
}

fn string_list(value: &Value, path: &str, p: &mut Problems) -> Option<Vec<String>> {
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
fn strict_json(text: &str) -> Result<Value, serde_json::Error> {
    use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Strict(Value);

    impl<'de> serde::Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
            deserializer.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(Strict(item)) = seq.next_element()? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
            let mut map = Map::new();
            while let Some(key) = access.next_key::<String>()? {
                if map.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key '{key}'")));
                }
                let Strict(value) = access.next_value()?;
                map.insert(key, value);
            }
            Ok(Value::Object(map))
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(text);
    let Strict(value) = serde::Deserialize::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

fn positive(value: Option<&Value>, path: &str, p: &mut Problems) -> Option<u64> {
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

fn parse_parameters(value: &Value, p: &mut Problems) -> Option<BTreeMap<String, ParamSpec>> {
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

/// A step kind's `timeout_seconds`: a positive whole number of seconds, `default` when absent.
pub(crate) fn timeout_seconds(
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
pub(crate) type StepObject<'a> = (&'a Map<String, Value>, Vec<String>);

/// A step kind's object, with a problem (`KIND.KEY: unknown key ...`) for every key not in `keys`;
/// `Err` when it is not an object at all.
pub(crate) fn step_object<'a>(
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

/// The `{{ ... }}` templates embedded in a text: each one's byte range and its trimmed inside.
pub fn embedded_templates(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, &str)> {
    let mut rest = 0;
    std::iter::from_fn(move || {
        let open = text[rest..].find("{{")? + rest;
        let close = text[open..].find("}}")? + open + 2;
        rest = close;
        Some((open..close, text[open + 2..close - 2].trim()))
    })
}

/// `text` with each embedded template replaced by `value` of what it names; the first error of
/// `value` (or a template naming nothing, which a loaded definition never has) is returned.
pub fn fill_templates(
    text: &str,
    mut value: impl FnMut(&Arg) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (range, inner) in embedded_templates(text) {
        out.push_str(&text[last..range.start]);
        match Arg::from_template(inner) {
            Some(arg) => out.push_str(&value(&arg)?),
            None => return Err(format!("'{{{{ {inner} }}}}': {TEMPLATE_FORMS}")),
        }
        last = range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// A template must name a declared parameter (when the workflow declares them) or an earlier step;
/// a secret must be allowed where it is and named like an environment variable.
fn check_source(
    arg: &Arg,
    path: &str,
    params: Option<&BTreeMap<String, ParamSpec>>,
    earlier: &HashSet<String>,
    secrets_allowed: bool,
    p: &mut Problems,
) {
    match arg {
        Arg::Secret(_) if !secrets_allowed => p.add(path, SECRET_ELSEWHERE),
        Arg::Secret(name) if !env_name_like(name) => p.add(
            path,
            format!("'{name}' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
        ),
        Arg::Secret(name) if server_secret(name).is_some() => {
            p.add(path, server_secret(name).unwrap_or_default());
        }
        Arg::Parameter(name) if params.is_some_and(|params| !params.contains_key(name)) => {
            p.add(path, format!("unknown parameter '{name}'"));
        }
        Arg::StepOutput(id) if !earlier.contains(id) => {
            p.add(path, format!("'{id}' is not an earlier step"));
        }
        _ => {}
    }
}

/// The server's own secrets: no step may read them (a workflow could otherwise send the JWT
/// secret anywhere).
const SERVER_SECRETS: [&str; 4] = [
    "JWT_SECRET",
    "SLACK_SIGNING_SECRET",
    "LLM_API_KEY",
    "AUDIT_SIGNING_KEY",
];

/// Why a step may not read the environment variable `name`, if it may not.
fn server_secret(name: &str) -> Option<String> {
    SERVER_SECRETS
        .contains(&name)
        .then(|| format!("{name} is the server's own secret; no step may read it"))
}

fn env_name_like(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_embedded_templates(
    text: &str,
    path: &str,
    params: Option<&BTreeMap<String, ParamSpec>>,
    earlier: &HashSet<String>,
    secrets_allowed: bool,
    p: &mut Problems,
) {
    for (_, inner) in embedded_templates(text) {
        match Arg::from_template(inner) {
            Some(arg) => check_source(&arg, path, params, earlier, secrets_allowed, p),
            None => p.add(path, format!("'{{{{ {inner} }}}}': {TEMPLATE_FORMS}")),
        }
    }
}

/// A template is a whole argument: `{{ parameters.NAME }}`, `{{ steps.ID.output }}` or
/// `{{ server.url }}`.
fn parse_arg(
    text: &str,
    path: &str,
    params: Option<&BTreeMap<String, ParamSpec>>,
    earlier: &HashSet<String>,
    p: &mut Problems,
) -> Arg {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .map(str::trim);
    let Some(inner) = inner else {
        if text.contains("{{") {
            p.add(
                path,
                "a template must be the whole argument (\"{{ parameters.x }}\"), never part of one",
            );
        }
        return Arg::Literal(text.to_owned());
    };
    match Arg::from_template(inner) {
        Some(arg) => {
            check_source(&arg, path, params, earlier, false, p);
            arg
        }
        None => {
            p.add(path, TEMPLATE_FORMS);
            Arg::Literal(text.to_owned())
        }
    }
}

fn parse_steps(
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

#[cfg(test)]
mod tests;

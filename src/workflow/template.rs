//! The template language of definitions: `{{ parameters.NAME }}`, `{{ steps.ID.output }}`,
//! `{{ server.url }}` and `{{ secrets.NAME }}`; where each may stand, what it may name, and filling
//! them in.

use std::collections::{BTreeMap, HashSet};

use super::fields::Problems;
use super::params::ParamSpec;
use super::secrets::server_secret;

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

/// What a template may name at one place of a definition: a declared parameter (any parameter when
/// the workflow declares none) or a step before this one.
pub(super) struct Names<'a> {
    pub(super) params: Option<&'a BTreeMap<String, ParamSpec>>,
    pub(super) earlier: &'a HashSet<String>,
}

impl Names<'_> {
    /// A template must name a declared parameter (when the workflow declares them) or an earlier
    /// step; a secret must be allowed where it is and named like an environment variable.
    fn check(&self, arg: &Arg, path: &str, secrets_allowed: bool, p: &mut Problems) {
        match arg {
            Arg::Secret(_) if !secrets_allowed => p.add(path, SECRET_ELSEWHERE),
            Arg::Secret(name) if !env_name_like(name) => p.add(
                path,
                format!("'{name}' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            ),
            Arg::Secret(name) if server_secret(name).is_some() => {
                p.add(path, server_secret(name).unwrap_or_default());
            }
            Arg::Parameter(name)
                if self.params.is_some_and(|params| !params.contains_key(name)) =>
            {
                p.add(path, format!("unknown parameter '{name}'"));
            }
            Arg::StepOutput(id) if !self.earlier.contains(id) => {
                p.add(path, format!("'{id}' is not an earlier step"));
            }
            _ => {}
        }
    }

    /// Checks every template embedded in `text` (see [`Names::check`]).
    pub(super) fn check_embedded(
        &self,
        text: &str,
        path: &str,
        secrets_allowed: bool,
        p: &mut Problems,
    ) {
        for (_, inner) in embedded_templates(text) {
            match Arg::from_template(inner) {
                Some(arg) => self.check(&arg, path, secrets_allowed, p),
                None => p.add(path, format!("'{{{{ {inner} }}}}': {TEMPLATE_FORMS}")),
            }
        }
    }

    /// A command argument: literal text, or a template that is the whole argument
    /// (`{{ parameters.NAME }}`, `{{ steps.ID.output }}` or `{{ server.url }}`).
    pub(super) fn parse_arg(&self, text: &str, path: &str, p: &mut Problems) -> Arg {
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
                self.check(&arg, path, false, p);
                arg
            }
            None => {
                p.add(path, TEMPLATE_FORMS);
                Arg::Literal(text.to_owned())
            }
        }
    }
}

fn env_name_like(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_templates_replaces_each_template_once() {
        let filled = fill_templates(
            "a {{parameters.x}} b {{ server.url }}{{ steps.s.output }}",
            |arg| {
                Ok(match arg {
                    Arg::Parameter(name) => format!("<{name} {{{{ parameters.x }}}}>"),
                    Arg::ServerUrl => "http://h:1".to_owned(),
                    other => format!("[{other}]"),
                })
            },
        );
        assert_eq!(
            filled.as_deref(),
            Ok("a <x {{ parameters.x }}> b http://h:1[{{ steps.s.output }}]"),
            "values are never read as templates"
        );
        assert_eq!(
            fill_templates("no {{ templates", |_| Err("unused".into())).as_deref(),
            Ok("no {{ templates")
        );
        assert!(fill_templates("{{ nope }}", |_| Ok(String::new())).is_err());
    }
}

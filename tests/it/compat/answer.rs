//! An answer as both sides are compared: the status, the body's kind and content after the same
//! normalisation the recorder applies (stand-in addresses named, volatile values masked, lists
//! sorted), and the headers a case compares.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// What stands in for a volatile value on both sides.
pub const MASK: &str = "<masked>";

/// The recorded (or our) answer to one case.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Answer {
    pub status: u16,
    /// `json`, `text` or `empty`; none for a `metric_names` case.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub json: Option<Value>,
    #[serde(default)]
    pub text: Option<String>,
    /// The `# TYPE` names of a Prometheus page, without the Python client's `*_created` series.
    #[serde(default)]
    pub metric_names: Option<Vec<String>>,
    /// Lower-case header name -> value (`allow`: the sorted methods).
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
}

/// How one case is normalised and compared (from its entry in `cases.json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CaseOptions {
    pub name: String,
    /// `json` (the default) or `metric_names`.
    #[serde(default)]
    pub compare: Option<String>,
    /// JSON pointers masked on both sides (when present).
    #[serde(default)]
    pub mask: Vec<String>,
    /// JSON pointers of lists compared as sets (sorted on both sides).
    #[serde(default)]
    pub sort: Vec<String>,
    /// Pointer -> prefix: two strings that both start with the prefix count as equal.
    #[serde(default)]
    pub compare_prefix: BTreeMap<String, String>,
    #[serde(default)]
    pub headers_compared: Vec<String>,
    /// Whether the bodies posted to OpenClaw are compared.
    #[serde(default)]
    pub compare_openclaw: bool,
}

/// The rules every case shares.
pub struct Normaliser<'a> {
    /// Keys masked wherever they occur (`timestamp`, `duration_seconds`, ...).
    pub mask_keys: &'a [String],
    /// `127.0.0.1:<port>` -> the label the recording uses for that stand-in.
    pub addresses: Vec<(String, String)>,
}

impl Normaliser<'_> {
    /// Our answer, read the way the recorder read the original's.
    pub fn answer(
        &self,
        case: &CaseOptions,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) -> Answer {
        let mut answer = Answer {
            status,
            ..Answer::default()
        };
        if case.compare.as_deref() == Some("metric_names") {
            answer.metric_names = Some(metric_names(body));
        } else if body.is_empty() {
            answer.content = Some("empty".into());
        } else if let Ok(json) = serde_json::from_str::<Value>(body) {
            answer.content = Some("json".into());
            answer.json = Some(self.json(case, json));
        } else {
            answer.content = Some("text".into());
            answer.text = Some(self.substitute(body));
        }
        for name in &case.headers_compared {
            let name = name.to_ascii_lowercase();
            let value = headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .map_or(Value::Null, |v| {
                    if name == "allow" {
                        allow_methods(v)
                    } else {
                        Value::String(v.to_owned())
                    }
                });
            answer.headers.insert(name, value);
        }
        answer
    }

    /// A JSON value as the recorder leaves it: addresses named, keys and pointers masked, lists
    /// at the case's `sort` pointers sorted.
    pub fn json(&self, case: &CaseOptions, value: Value) -> Value {
        let mut value = self.mask_keys(self.substitute_json(value));
        for pointer in &case.mask {
            if let Some(target) = value.pointer_mut(pointer) {
                *target = Value::String(MASK.into());
            }
        }
        for pointer in &case.sort {
            if let Some(Value::Array(items)) = value.pointer_mut(pointer) {
                items.sort_by_key(|item| item.to_string());
            }
        }
        value
    }

    fn substitute(&self, text: &str) -> String {
        self.addresses
            .iter()
            .fold(text.to_owned(), |text, (address, label)| {
                text.replace(address.as_str(), label)
            })
    }

    fn substitute_json(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.substitute(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.substitute_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, self.substitute_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    fn mask_keys(&self, value: Value) -> Value {
        match value {
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.mask_keys(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        if self.mask_keys.contains(&k) {
                            (k, Value::String(MASK.into()))
                        } else {
                            (k, self.mask_keys(v))
                        }
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

/// The names on a Prometheus page's `# TYPE` lines, sorted, without `*_created`.
pub fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("#"), Some("TYPE"), Some(name)) if !name.ends_with("_created") => {
                    Some(name.to_owned())
                }
                _ => None,
            }
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// An `Allow` header as the sorted set of its methods.
fn allow_methods(value: &str) -> Value {
    let mut methods: Vec<String> = value
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .filter(|m| !m.is_empty())
        .collect();
    methods.sort();
    methods.dedup();
    Value::from(methods)
}

#[test]
fn metric_names_come_from_type_lines_without_created_series() {
    let page = "# HELP a_total A\n# TYPE a_total counter\na_total 1\n\
                # TYPE a_created gauge\n# TYPE b gauge\nb 2\n";
    assert_eq!(metric_names(page), ["a_total", "b"]);
}

#[test]
fn normalising_names_stand_ins_masks_and_sorts() {
    let keys = vec!["timestamp".to_owned()];
    let normaliser = Normaliser {
        mask_keys: &keys,
        addresses: vec![("127.0.0.1:4242".into(), "standin".into())],
    };
    let case = CaseOptions {
        mask: vec!["/trace_id".into(), "/absent".into()],
        sort: vec!["/workflows".into()],
        ..CaseOptions::default()
    };
    let value = serde_json::json!({
        "endpoint": "http://127.0.0.1:4242",
        "nested": [{"timestamp": "2026-01-01"}],
        "trace_id": "x",
        "workflows": ["b", "a"],
    });
    assert_eq!(
        normaliser.json(&case, value),
        serde_json::json!({
            "endpoint": "http://standin",
            "nested": [{"timestamp": MASK}],
            "trace_id": MASK,
            "workflows": ["a", "b"],
        })
    );
}

//! Where our answer differs from the original's. Ours may extend: a field the original did not
//! send is never a difference; every field it sent must be there with the same value. When one
//! side succeeded (2xx) and the other did not, only the status is a difference, not the bodies.

use serde_json::Value;

use super::answer::{Answer, CaseOptions};

/// One observed difference: in `case`, at `field`, the original had `original` and we have
/// `ours` (`None`: the field is absent on that side).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub case: String,
    pub field: String,
    pub original: Option<Value>,
    pub ours: Option<Value>,
}

/// Every difference between the original's answer (and the bodies it posted to OpenClaw) and ours.
pub fn differences(
    case: &CaseOptions,
    original: &Answer,
    original_calls: &[Value],
    ours: &Answer,
    our_calls: &[Value],
) -> Vec<Difference> {
    let mut out = Found {
        case: case.name.clone(),
        prefixes: &case.compare_prefix,
        list: Vec::new(),
    };
    if original.status != ours.status {
        out.push(
            "status",
            Some(original.status.into()),
            Some(ours.status.into()),
        );
    }
    // A success answered with a refusal (or the reverse): the bodies answer different questions,
    // and the status says it all.
    let one_succeeded = (original.status / 100 == 2) != (ours.status / 100 == 2);
    if one_succeeded {
    } else if let Some(names) = &original.metric_names {
        let ours = ours.metric_names.as_deref().unwrap_or_default();
        for name in names.iter().filter(|n| !ours.contains(n)) {
            out.push(&format!("metric {name}"), Some("present".into()), None);
        }
    } else if original.content != ours.content {
        out.push(
            "content",
            original.content.clone().map(Value::from),
            ours.content.clone().map(Value::from),
        );
    } else {
        match (&original.json, &ours.json) {
            (Some(theirs), Some(mine)) => out.json("", theirs, mine),
            _ if original.text != ours.text => {
                out.push(
                    "text",
                    original.text.clone().map(Value::from),
                    ours.text.clone().map(Value::from),
                );
            }
            _ => {}
        }
    }
    for (name, value) in &original.headers {
        let mine = ours.headers.get(name);
        if mine != Some(value) {
            out.push(
                &format!("header {name}"),
                Some(value.clone()),
                mine.cloned(),
            );
        }
    }
    if case.compare_openclaw {
        if original_calls.len() == our_calls.len() {
            for (i, (theirs, mine)) in original_calls.iter().zip(our_calls).enumerate() {
                out.json(&format!("openclaw/{i}"), theirs, mine);
            }
        } else {
            out.push(
                "openclaw calls",
                Some(original_calls.len().into()),
                Some(our_calls.len().into()),
            );
        }
    }
    out.list
}

struct Found<'a> {
    case: String,
    prefixes: &'a std::collections::BTreeMap<String, String>,
    list: Vec<Difference>,
}

impl Found<'_> {
    fn push(&mut self, field: &str, original: Option<Value>, ours: Option<Value>) {
        self.list.push(Difference {
            case: self.case.clone(),
            field: field.to_owned(),
            original,
            ours,
        });
    }

    /// Compares `theirs` with `mine` at `pointer` (a JSON pointer; `openclaw/N` for a call body).
    fn json(&mut self, pointer: &str, theirs: &Value, mine: &Value) {
        match (theirs, mine) {
            (Value::Object(theirs), Value::Object(mine)) => {
                for (key, value) in theirs {
                    let child = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                    match mine.get(key) {
                        Some(ours) => self.json(&child, value, ours),
                        None => self.push(&child, Some(value.clone()), None),
                    }
                }
            }
            (Value::Array(theirs), Value::Array(mine)) if theirs.len() == mine.len() => {
                for (i, (value, ours)) in theirs.iter().zip(mine).enumerate() {
                    self.json(&format!("{pointer}/{i}"), value, ours);
                }
            }
            _ if same(theirs, mine) || self.same_prefix(pointer, theirs, mine) => {}
            _ => {
                let field = if pointer.is_empty() { "body" } else { pointer };
                self.push(field, Some(theirs.clone()), Some(mine.clone()));
            }
        }
    }

    fn same_prefix(&self, pointer: &str, theirs: &Value, mine: &Value) -> bool {
        match (self.prefixes.get(pointer), theirs, mine) {
            (Some(prefix), Value::String(a), Value::String(b)) => {
                a.starts_with(prefix.as_str()) && b.starts_with(prefix.as_str())
            }
            _ => false,
        }
    }
}

/// JSON equality with numbers compared by value (`1` and `1.0` are the same number).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// [`same`] for values that may be absent.
pub fn same_option(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn json_answer(status: u16, body: Value) -> Answer {
        Answer {
            status,
            content: Some("json".into()),
            json: Some(body),
            ..Answer::default()
        }
    }

    fn case() -> CaseOptions {
        CaseOptions {
            name: "c".into(),
            ..CaseOptions::default()
        }
    }

    fn fields(found: &[Difference]) -> Vec<&str> {
        found.iter().map(|d| d.field.as_str()).collect()
    }

    #[test]
    fn extra_fields_of_ours_are_not_differences() {
        let theirs = json_answer(400, json!({"error": "x", "code": "C"}));
        let ours = json_answer(
            400,
            json!({"error": "x", "code": "C", "trace_id": "t", "errors": []}),
        );
        assert!(differences(&case(), &theirs, &[], &ours, &[]).is_empty());
    }

    #[test]
    fn a_missing_or_changed_field_and_the_status_are_differences() {
        let theirs = json_answer(
            500,
            json!({"success": false, "nested": {"a": 1, "b": [1, 2]}}),
        );
        let ours = json_answer(404, json!({"nested": {"a": 1.0, "b": [1, 3]}}));
        let found = differences(&case(), &theirs, &[], &ours, &[]);
        assert_eq!(fields(&found), ["status", "/nested/b/1", "/success"]);
        assert_eq!(found[2].original, Some(json!(false)));
        assert_eq!(found[2].ours, None);
    }

    #[test]
    fn a_declared_prefix_makes_two_messages_equal() {
        let mut case = case();
        case.compare_prefix
            .insert("/error".into(), "Invalid governance request: ".into());
        let theirs = json_answer(
            400,
            json!({"error": "Invalid governance request: pydantic says"}),
        );
        let ours = json_answer(400, json!({"error": "Invalid governance request: we say"}));
        assert!(differences(&case, &theirs, &[], &ours, &[]).is_empty());
        let other = json_answer(400, json!({"error": "Something else"}));
        assert_eq!(
            fields(&differences(&case, &theirs, &[], &other, &[])),
            ["/error"]
        );
    }

    #[test]
    fn a_success_against_a_refusal_is_only_a_status_difference() {
        let theirs = json_answer(200, json!({"success": true, "outcome": "done"}));
        let ours = json_answer(401, json!({"code": "INVALID_TOKEN"}));
        assert_eq!(
            fields(&differences(&case(), &theirs, &[], &ours, &[])),
            ["status"]
        );
    }

    #[test]
    fn a_body_of_another_kind_is_one_difference() {
        let theirs = Answer {
            status: 405,
            content: Some("text".into()),
            text: Some("<html>".into()),
            ..Answer::default()
        };
        let ours = json_answer(405, json!({"code": "METHOD_NOT_ALLOWED"}));
        let found = differences(&case(), &theirs, &[], &ours, &[]);
        assert_eq!(fields(&found), ["content"]);
        assert_eq!(found[0].ours, Some(json!("json")));
    }

    #[test]
    fn metric_names_the_original_had_must_be_ours_too() {
        let theirs = Answer {
            status: 200,
            metric_names: Some(vec!["a".into(), "b".into()]),
            ..Answer::default()
        };
        let ours = Answer {
            status: 200,
            metric_names: Some(vec!["b".into(), "c".into()]),
            ..Answer::default()
        };
        assert_eq!(
            fields(&differences(&case(), &theirs, &[], &ours, &[])),
            ["metric a"]
        );
    }

    #[test]
    fn openclaw_calls_are_compared_only_when_the_case_asks() {
        let answer = json_answer(200, json!({}));
        let call = json!({"workflow": {"name": "w"}, "parameters": {}});
        assert!(
            differences(&case(), &answer, std::slice::from_ref(&call), &answer, &[]).is_empty()
        );
        let mut asks = case();
        asks.compare_openclaw = true;
        assert_eq!(
            fields(&differences(
                &asks,
                &answer,
                std::slice::from_ref(&call),
                &answer,
                &[]
            )),
            ["openclaw calls"]
        );
        let other = json!({"workflow": {"name": "v"}, "parameters": {}, "extra": 1});
        assert_eq!(
            fields(&differences(&asks, &answer, &[call], &answer, &[other])),
            ["openclaw/0/workflow/name"]
        );
    }
}

//! The API description (`sustainbot::http::openapi::document()`, what `GET /openapi.json`
//! serves) as a check of every answer the suite receives: the operation is found by method and
//! path template, the status must be one it documents, and a JSON body must match the schema of
//! that status and name no property the schema does not (the published description leaves
//! objects open, as the contract lets the server add fields; the suite holds it to what it says).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

/// The description and the validators compiled from it so far.
pub struct Description {
    pub doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The description the server serves, built once per test binary.
pub fn description() -> &'static Description {
    static DESCRIPTION: OnceLock<Description> = OnceLock::new();
    DESCRIPTION.get_or_init(|| Description {
        doc: serde_json::to_value(sustainbot::http::openapi::document())
            .expect("the description is JSON"),
        validators: Mutex::new(HashMap::new()),
    })
}

/// What one answer was, for [`Description::check`].
pub struct Answer<'a> {
    pub method: &'a str,
    /// The request's path, without the query.
    pub path: &'a str,
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a str,
}

impl Description {
    /// The documented path template `path` falls under: literal segments win over parameters, as
    /// in the router (`/workflows/governed/execute` before `/workflows/{name}/execute`).
    pub fn template(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()?
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && part.ends_with('}') {
                        if segment.is_empty() {
                            return None;
                        }
                    } else if part == segment {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template.as_str()))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, template)| template)
    }

    /// The schema (a `components.responses` entry's, or an operation's) the answer must match,
    /// and a name for it. Panics on an answer the description does not allow.
    fn expected(&self, answer: &Answer) -> Option<(String, Value)> {
        let method = answer.method.to_ascii_lowercase();
        let generic = |name: &str| {
            let schema = self.doc["components"]["responses"][name]["content"]["application/json"]
                ["schema"]
                .clone();
            Some((format!("components.responses.{name}"), schema))
        };
        let Some(template) = self.template(answer.path) else {
            assert_eq!(
                answer.status, 404,
                "{} {}: an undocumented path must answer 404: {}",
                answer.method, answer.path, answer.body
            );
            return generic("NotFound");
        };
        let Some(operation) = self.doc["paths"][template].get(&method) else {
            if method == "options" {
                assert_eq!(
                    answer.status, 200,
                    "OPTIONS {}: {}",
                    answer.path, answer.body
                );
                return None;
            }
            assert_eq!(
                answer.status, 405,
                "{} {template}: an undocumented method must answer 405: {}",
                answer.method, answer.body
            );
            return generic("MethodNotAllowed");
        };
        let status = answer.status.to_string();
        let Some(response) = operation["responses"].get(&status) else {
            panic!(
                "{} {template} answered {status}, which its description does not document \
                 (documented: {:?}): {}",
                answer.method,
                operation["responses"]
                    .as_object()
                    .map(|r| r.keys().collect::<Vec<_>>()),
                answer.body
            );
        };
        let Some(content) = response["content"].as_object() else {
            assert!(
                answer.body.is_empty(),
                "{} {template} {status} documents no body but has one: {}",
                answer.method,
                answer.body
            );
            return None;
        };
        let Some(media) = answer
            .content_type
            .map(|t| t.split(';').next().unwrap_or(t).trim())
        else {
            // An answer with nothing in it (Slack's acknowledgements, `ssl_check`).
            assert!(
                answer.body.is_empty(),
                "{} {template} {status}: a body without a Content-Type: {}",
                answer.method,
                answer.body
            );
            return None;
        };
        let Some(documented) = content.get(media) else {
            panic!(
                "{} {template} {status} answered {media}, which is not documented (documented: \
                 {:?})",
                answer.method,
                content.keys().collect::<Vec<_>>()
            );
        };
        if media != "application/json" {
            return None;
        }
        let name = format!("{} {template} {status}", answer.method);
        Some((name, documented["schema"].clone()))
    }

    /// Panics, saying what differs, when `answer` is not as the description documents it.
    pub fn check(&self, answer: &Answer) {
        let Some((name, schema)) = self.expected(answer) else {
            return;
        };
        let body: Value = serde_json::from_str(answer.body)
            .unwrap_or_else(|e| panic!("{name}: the body is not JSON ({e}): {}", answer.body));
        let validator = self.validator(&name, &schema);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("at '{}': {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: the body does not match its schema:\n  {}\nbody: {body}",
            errors.join("\n  ")
        );
        let mut undocumented = Vec::new();
        self.undocumented(&schema, &body, "", &mut undocumented);
        assert!(
            undocumented.is_empty(),
            "{name}: properties the description does not name: {undocumented:?}\nbody: {body}"
        );
    }

    /// A validator for `schema` (whose `$ref`s point into the description's components).
    fn validator(&self, name: &str, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut validators = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        let validator = validators.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(
                self.compile(schema)
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            )
        });
        Arc::clone(validator)
    }

    /// `schema` as a JSON Schema 2020-12 validator, the description's components beside it.
    pub fn compile(&self, schema: &Value) -> Result<jsonschema::Validator, String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::draft202012::options()
            .build(&root)
            .map_err(|e| format!("not a valid JSON Schema: {e}"))
    }

    /// The schema `$ref` points to (local references only).
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                let target = self
                    .doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling reference {reference}"));
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// Every schema `schema` is made of: itself, and its `allOf`, `oneOf` and `anyOf` members
    /// (references followed), flattened.
    fn parts<'a>(&'a self, schema: &'a Value, into: &mut Vec<&'a Value>) {
        let schema = self.resolve(schema);
        into.push(schema);
        for key in ["allOf", "oneOf", "anyOf"] {
            for member in schema[key].as_array().into_iter().flatten() {
                self.parts(member, into);
            }
        }
    }

    /// Collects the paths of the object properties in `value` that no part of `schema` names.
    /// An object with no named properties, or with `additionalProperties`, is free-form.
    fn undocumented(&self, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
        let mut parts = Vec::new();
        self.parts(schema, &mut parts);
        match value {
            Value::Object(object) => {
                let open = parts
                    .iter()
                    .any(|p| p.get("additionalProperties").is_some_and(|a| a != false));
                let named: BTreeSet<&str> = parts
                    .iter()
                    .filter_map(|p| p["properties"].as_object())
                    .flat_map(|p| p.keys().map(String::as_str))
                    .collect();
                for (key, item) in object {
                    let path = format!("{at}/{key}");
                    if named.is_empty() || open {
                        continue;
                    }
                    if !named.contains(key.as_str()) {
                        found.push(path);
                        continue;
                    }
                    for part in &parts {
                        if let Some(property) = part["properties"].get(key) {
                            self.undocumented(property, item, &path, found);
                        }
                    }
                }
            }
            Value::Array(items) => {
                for part in &parts {
                    if let Some(schema) = part.get("items") {
                        for (i, item) in items.iter().enumerate() {
                            self.undocumented(schema, item, &format!("{at}/{i}"), found);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

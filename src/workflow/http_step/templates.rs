//! The templates of an `http` step: where they stand in the request, and filling them in.

use reqwest::header::HeaderValue;
use serde_json::Value;

use super::spec::{Body, HttpSpec};
use super::url::render_url;
use crate::workflow::template::{embedded_templates, fill_templates, Arg};

impl HttpSpec {
    /// The texts that may embed templates, each with its key (`url`, `headers.NAME`, `body`; every
    /// string value of a JSON body is a `body` text).
    pub fn templated_texts(&self) -> Vec<(String, &str)> {
        let mut texts = vec![("url".to_owned(), self.url.as_str())];
        for (name, value) in &self.headers {
            texts.push((format!("headers.{name}"), value.as_str()));
        }
        match &self.body {
            Some(Body::Text(text)) => texts.push(("body".to_owned(), text.as_str())),
            Some(Body::Json(json)) => {
                let mut leaves = Vec::new();
                string_leaves(json, &mut leaves);
                texts.extend(leaves.into_iter().map(|leaf| ("body".to_owned(), leaf)));
            }
            None => {}
        }
        texts
    }

    /// The names of the secrets (`{{ secrets.NAME }}`) its header values and body use.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (_, text) in self.templated_texts() {
            for (_, inner) in embedded_templates(text) {
                if let Some(Arg::Secret(name)) = Arg::from_template(inner) {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
    }

    /// The request with its templates filled in by `value` (the runner's resolution of what a
    /// template names):
    ///
    /// - URL: a leading `{{ server.url }}` is inserted as is (the server's own, trusted base URL);
    ///   every other value is percent-encoded (all but `A-Z a-z 0-9 - . _ ~`), so it cannot add a
    ///   `/`, `?`, `#` or `@`; a path segment that ends up `.` or `..` (which a URL parser would
    ///   resolve away) is refused. The result is checked again as a whole.
    /// - Header values: values are inserted as is, but one with a line break (header injection) or
    ///   another character a header cannot hold is refused.
    /// - Body: values are inserted as is in a text body, and in each string value of a JSON body
    ///   (never in its keys), so JSON escaping is the serializer's business.
    ///
    /// Errors name the key (`http.url: ...`); nothing is sent then.
    pub fn render(
        &self,
        value: impl Fn(&Arg) -> Result<String, String>,
    ) -> Result<HttpSpec, String> {
        let mut spec = self.clone();
        spec.url = render_url(&self.url, &value).map_err(|e| format!("http.url: {e}"))?;
        for (name, header) in &mut spec.headers {
            *header =
                render_header(header, &value).map_err(|e| format!("http.headers.{name}: {e}"))?;
        }
        let fill = |text: &str| fill_templates(text, &value);
        spec.body = match spec.body.take() {
            None => None,
            Some(Body::Text(text)) => Some(Body::Text(
                fill(&text).map_err(|e| format!("http.body: {e}"))?,
            )),
            Some(Body::Json(mut json)) => {
                fill_string_leaves(&mut json, &fill).map_err(|e| format!("http.body: {e}"))?;
                Some(Body::Json(json))
            }
        };
        Ok(spec)
    }
}

/// A header value with its templates filled in (see [`HttpSpec::render`]).
fn render_header(
    text: &str,
    value: &impl Fn(&Arg) -> Result<String, String>,
) -> Result<String, String> {
    let filled = fill_templates(text, |arg| {
        let filled = value(arg)?;
        if filled.contains(['\r', '\n']) {
            return Err(format!(
                "the value of {arg} contains a line break (refused: header injection)"
            ));
        }
        Ok(filled)
    })?;
    HeaderValue::from_str(&filled).map_err(|_| {
        "not a valid header value once filled in (no control characters)".to_owned()
    })?;
    Ok(filled)
}

/// Every string in a JSON value (object values, array items), keys excluded.
pub(super) fn string_leaves<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| string_leaves(item, out)),
        Value::Object(map) => map.values().for_each(|item| string_leaves(item, out)),
        _ => {}
    }
}

/// Replaces every string in a JSON value (keys excluded) by `fill` of it.
fn fill_string_leaves(
    value: &mut Value,
    fill: &impl Fn(&str) -> Result<String, String>,
) -> Result<(), String> {
    match value {
        Value::String(text) => *text = fill(text)?,
        Value::Array(items) => {
            for item in items {
                fill_string_leaves(item, fill)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                fill_string_leaves(item, fill)?;
            }
        }
        _ => {}
    }
    Ok(())
}

//! The template resolver: finding `{{ ... }}` in a text, reading what each names, and filling
//! them in; and, through the loader, the checks a definition's templates get at load time.

use serde_json::json;

use crate::workflow::template::{embedded_templates, fill_templates, Arg};
use crate::workflow::Workflow;

/// Templates are found on char boundaries, in order, without overlap; what a template names
/// prints back as a template naming the same thing; filling never panics and leaves a text
/// without templates as it was; a definition holding the text anywhere templates may stand loads
/// or is refused without a panic.
#[test]
fn template_resolver_finds_fills_and_checks_any_text() {
    super::fuzz("template", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let mut after = 0;
        for (range, inner) in embedded_templates(&text) {
            assert!(
                range.start >= after,
                "{range:?} overlaps the previous template"
            );
            let found = text
                .get(range.clone())
                .expect("a template is a range of the text");
            assert!(
                found.starts_with("{{") && found.ends_with("}}"),
                "{found:?}"
            );
            after = range.end;
            if let Some(arg) = Arg::from_template(inner) {
                let printed = arg.to_string();
                let inner = printed
                    .strip_prefix("{{")
                    .and_then(|t| t.strip_suffix("}}"))
                    .map(str::trim);
                assert_eq!(inner.and_then(Arg::from_template), Some(arg));
            }
        }
        let filled = fill_templates(&text, |arg| Ok(format!("<{arg}>")));
        if !text.contains("{{") {
            assert_eq!(filled.as_deref(), Ok(&*text));
        }
        let _ = fill_templates(&text, |_| Err("no value".to_owned()));

        let definition = json!({
            "description": "templates under test",
            "parameters": {"x": {"type": "string"}},
            "steps": [
                {"id": "first", "command": ["echo", &*text, "{{ parameters.x }}"]},
                {"id": "second", "http": {"method": "POST", "url": &*text,
                    "headers": {"Authorization": &*text}, "body": {"note": &*text}}},
                {"id": "third", "llm": {"prompt": &*text}}
            ]
        });
        let _ = Workflow::from_value("templates", definition);
    });
}

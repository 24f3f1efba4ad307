//! Workflow definitions as the loader reads files: JSON (strict, also the original server's files
//! as legacy workflows) and YAML (strict: no anchors, tags or repeated keys), then one validation.

use crate::workflow::{yaml, Workflow};

/// Any file text loads or is refused with problems, in either format; a definition that loads
/// from YAML loads the same from YAML's JSON reading.
#[test]
fn definition_loader_answers_any_file() {
    super::fuzz("workflow_definition", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let _ = Workflow::from_json("fuzzed", &text);
        let from_yaml = Workflow::from_yaml("fuzzed", &text);
        if let Ok(value) = yaml::to_json(&text) {
            let from_value = Workflow::from_value("fuzzed", value);
            assert_eq!(from_yaml.is_ok(), from_value.is_ok());
        }
    });
}

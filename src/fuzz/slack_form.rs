//! Slack's forms as `/slack/commands` and `/slack/actions` read them (after the signature):
//! `application/x-www-form-urlencoded` through serde_urlencoded, then the command parser or the
//! action's JSON payload.

use std::collections::HashMap;

use serde_json::Value;

use crate::slack::command::parse;

/// The slash commands Slack may send (each parses its text differently).
const COMMANDS: [&str; 4] = [
    "/sustainbot",
    "/sustainbot-workflows",
    "/sustainbot-status",
    "/sustainbot-logs",
];

/// Any body answers a form or an error, and any command text a command or a usage message.
#[test]
fn slack_forms_and_command_texts_never_panic() {
    super::fuzz("slack_form", |bytes| {
        let Ok(form) = serde_urlencoded::from_bytes::<HashMap<String, String>>(bytes) else {
            return;
        };
        let text = form.get("text").map(String::as_str).unwrap_or_default();
        if let Some(command) = form.get("command") {
            let _ = parse(command, text);
        }
        for command in COMMANDS {
            let _ = parse(command, text);
        }
        if let Some(payload) = form.get("payload") {
            let _ = serde_json::from_str::<Value>(payload);
        }
    });
}

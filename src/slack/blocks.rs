//! What Slack shows: replies and messages in Block Kit (with a plain `text` fallback for
//! notifications and screen readers). Anything a user or a step wrote is escaped for mrkdwn.

use serde_json::{json, Value};

use crate::pipeline::{ApprovalRequested, GateError, RunReport};
use crate::runs::RunView;

/// The action ids of the approval buttons (their value is the trace id).
pub const APPROVE: &str = "sustainbot_approve";
pub const DENY: &str = "sustainbot_deny";
/// The callback id of the deny modal (its private metadata carries the trace id and message).
pub const DENY_MODAL: &str = "sustainbot_deny_reason";

/// Slack's limit on a section's text, with room to spare.
const SECTION_MAX: usize = 2900;

/// `&`, `<` and `>` escaped, as Slack asks of text that is not markup.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max).collect();
    short.push('…');
    short
}

fn section(markdown: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(markdown, SECTION_MAX)}})
}

fn context(markdown: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(markdown, SECTION_MAX)}]})
}

/// A reply to a slash command or an action: `ephemeral` (only the user sees it) or `in_channel`.
pub fn reply(response_type: &str, text: &str) -> Value {
    json!({
        "response_type": response_type,
        "text": cut(text, SECTION_MAX),
        "blocks": [section(text)],
    })
}

/// A mistake, with the usage.
pub fn usage(problem: &str, usage: &str) -> Value {
    let text = format!("{}\n\n*Usage*\n{usage}", escape(problem));
    reply("ephemeral", &text)
}

/// A refusal by the gate (or a refused decision), in words with its code.
pub fn refusal(error: &GateError) -> Value {
    let text = format!(
        ":no_entry: {} (`{}`)",
        escape(&error.to_string()),
        error.code()
    );
    reply("ephemeral", &text)
}

/// A run's result: outcome, trace id, duration, each step's status, the governance summary.
pub fn run_result(report: &RunReport, response_type: &str) -> Value {
    let (icon, word) = if report.success {
        (":white_check_mark:", "succeeded")
    } else if report.cancelled {
        (":octagonal_sign:", "was cancelled")
    } else {
        (":x:", "failed")
    };
    let headline = format!(
        "{icon} *{}* {word} in {:.2} s",
        escape(&report.workflow_name),
        report.duration_seconds
    );
    let mut blocks = vec![section(&headline)];
    let detail = match (&report.outcome, &report.error) {
        (_, Some(error)) => format!(
            "*Error* ({}): {}",
            report.code.unwrap_or("WORKFLOW_FAILED"),
            escape(error)
        ),
        (Some(outcome), None) => escape(outcome),
        (None, None) => String::new(),
    };
    if !detail.is_empty() {
        blocks.push(section(&detail));
    }
    if !report.steps.is_empty() {
        let lines: Vec<String> = report
            .steps
            .iter()
            .map(|step| {
                let mark = if step.success {
                    ":white_check_mark:"
                } else {
                    ":x:"
                };
                let mut line = format!(
                    "{mark} `{}` ({}) {:.2} s",
                    escape(&step.id),
                    step.kind,
                    step.duration_seconds
                );
                if let Some(code) = step.exit_code {
                    line.push_str(&format!(", exit {code}"));
                }
                if let Some(error) = &step.error {
                    line.push_str(&format!(": {}", escape(&cut(error, 200))));
                }
                line
            })
            .collect();
        blocks.push(section(&format!("*Steps*\n{}", lines.join("\n"))));
    }
    blocks.push(context(&format!(
        "Trace `{}` · {}",
        escape(&report.trace_id),
        escape(&report.governance_summary)
    )));
    json!({
        "response_type": response_type,
        "replace_original": false,
        "text": format!("{} {word} (trace {})", report.workflow_name, report.trace_id),
        "blocks": blocks,
    })
}

/// A run that was admitted but refused before it ran (queue full, audit unavailable).
pub fn run_refused(workflow: &str, trace_id: &str, error: &GateError) -> Value {
    let text = format!(
        ":x: *{}* did not run: {} (`{}`)\nTrace `{}`",
        escape(workflow),
        escape(&error.to_string()),
        error.code(),
        escape(trace_id)
    );
    reply("ephemeral", &text)
}

/// The message a second human decides from: the request, and Approve / Deny buttons carrying
/// the trace id.
pub fn approval_request(request: &ApprovalRequested) -> Value {
    let aim = &request.request["aim"];
    let requester = aim["actor"]["name"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| request.requested_by.clone())
        .unwrap_or_else(|| "someone".to_owned());
    let mut text = format!(
        ":raising_hand: *{}* asks to run *{}* in {} mode.",
        escape(&requester),
        escape(&request.workflow_name),
        request.request["drag_mode"].as_str().unwrap_or("?")
    );
    if let Some(objective) = aim["mission"]["objective"].as_str() {
        text.push_str(&format!("\n*Mission:* {}", escape(objective)));
    }
    if let Some(params) = request.request["parameters"]
        .as_object()
        .filter(|p| !p.is_empty())
    {
        let shown: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("`{}`={}", escape(k), escape(&cut(&v.to_string(), 100))))
            .collect();
        text.push_str(&format!("\n*Parameters:* {}", shown.join(", ")));
    }
    let expires = request
        .expires_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let footer = format!(
        "Trace `{}` · approvers: {} · expires {expires} · the requester cannot approve their own run",
        escape(&request.trace_id),
        escape(&request.approver_roles.join(", "))
    );
    json!({
        "response_type": "in_channel",
        "text": format!("Approval needed: {} (trace {})", request.workflow_name, request.trace_id),
        "blocks": [
            section(&text),
            {"type": "actions", "block_id": "sustainbot_decision", "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary",
                 "text": {"type": "plain_text", "text": "Approve"}, "value": request.trace_id},
                {"type": "button", "action_id": DENY, "style": "danger",
                 "text": {"type": "plain_text", "text": "Deny"}, "value": request.trace_id},
            ]},
            context(&footer),
        ],
    })
}

/// The approval message once decided: who decided, no buttons left.
pub fn decided(
    trace_id: &str,
    workflow: Option<&str>,
    decision: &str,
    by: &str,
    reason: Option<&str>,
) -> Value {
    let icon = if decision == "approved" {
        ":white_check_mark:"
    } else {
        ":no_entry_sign:"
    };
    let what = workflow.map_or_else(
        || format!("Run `{}`", escape(trace_id)),
        |w| format!("*{}*", escape(w)),
    );
    let mut text = format!("{icon} {what} was {decision} by {}", escape(by));
    if let Some(reason) = reason {
        text.push_str(&format!(": {}", escape(reason)));
    }
    json!({
        "replace_original": true,
        "text": format!("{decision} by {} (trace {})", escape(by), escape(trace_id)),
        "blocks": [section(&text), context(&format!("Trace `{}`", escape(trace_id)))],
    })
}

/// The modal that asks a denier for a reason.
pub fn deny_modal(trace_id: &str, channel: &str, ts: &str, response_url: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": DENY_MODAL,
        "private_metadata": json!({"trace_id": trace_id, "channel": channel, "ts": ts, "response_url": response_url}).to_string(),
        "title": {"type": "plain_text", "text": "Deny the run"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(&format!("Trace `{}`", escape(trace_id))),
            {"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Why?"},
             "element": {"type": "plain_text_input", "action_id": "reason", "multiline": true, "min_length": 3}},
        ],
    })
}

/// A completion notification for the webhook.
pub fn notification(report: &RunReport, actor: Option<&str>, mode: &str) -> Value {
    let mut message = run_result(report, "in_channel");
    let who = actor.map_or_else(|| "nobody named".to_owned(), escape);
    if let Some(blocks) = message["blocks"].as_array_mut() {
        blocks.insert(1, context(&format!("Requested by {who} · mode {mode}")));
    }
    if let Some(object) = message.as_object_mut() {
        object.remove("response_type");
        object.remove("replace_original");
    }
    message
}

/// A list of runs, one line each.
pub fn runs(views: &[RunView]) -> Value {
    if views.is_empty() {
        return reply("ephemeral", "No runs here yet.");
    }
    let lines: Vec<String> = views
        .iter()
        .map(|run| {
            format!(
                "`{}` *{}* {} ({}){}",
                escape(&run.trace_id),
                escape(&run.workflow_name),
                run.status.as_str(),
                escape(&run.drag_mode),
                run.actor
                    .as_deref()
                    .map(|a| format!(" · {}", escape(a)))
                    .unwrap_or_default()
            )
        })
        .collect();
    reply(
        "ephemeral",
        &format!("*Runs* (newest first)\n{}", lines.join("\n")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_users_cannot_make_mentions_or_links() {
        assert_eq!(
            escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }

    #[test]
    fn the_approval_message_carries_the_trace_id_on_both_buttons() {
        let request = ApprovalRequested {
            trace_id: "t-1".into(),
            workflow_name: "deploy".into(),
            requested_by: Some("a@x.org".into()),
            approver_roles: vec!["admin".into()],
            expires_at: chrono::Utc::now(),
            request: json!({"drag_mode": "execute", "aim": {"actor": {"name": "Ann <!here>"}, "mission": {"objective": "Ship it now please"}}, "parameters": {"v": "1"}}),
        };
        let message = approval_request(&request);
        let buttons = &message["blocks"][1]["elements"];
        assert_eq!(buttons[0]["action_id"], APPROVE);
        assert_eq!(buttons[0]["value"], "t-1");
        assert_eq!(buttons[1]["action_id"], DENY);
        assert_eq!(buttons[1]["value"], "t-1");
        let text = message["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(text.contains("Ann &lt;!here&gt;"), "{text}");
    }
}

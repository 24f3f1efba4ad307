//! Interactions: the Approve and Deny buttons of approval requests and the deny modal. The
//! clicking Slack user is mapped like any caller; the decision is the gate's (self-approval and
//! approver roles are its checks); the message then says who decided.

use serde_json::{json, Value};

use super::{blocks, Command, Invocation, Reply, Slack, SlackUser};
use crate::auth::Principal;

/// What an interaction comes to.
#[derive(Debug, Default)]
pub struct Acted {
    /// The HTTP answer's body, when Slack reads one (a modal's validation errors).
    pub answer: Option<Value>,
}

/// The approval message an interaction is about.
#[derive(Debug, Clone, Default)]
struct Place {
    channel: String,
    ts: String,
    /// The interaction's `response_url`: replaces the clicked message wherever it was posted.
    response_url: String,
}

impl Place {
    fn of_click(payload: &Value) -> Place {
        let text = |a: &Value, b: &Value| {
            a.as_str()
                .or_else(|| b.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Place {
            channel: text(
                &payload["container"]["channel_id"],
                &payload["channel"]["id"],
            ),
            ts: text(
                &payload["container"]["message_ts"],
                &payload["message"]["ts"],
            ),
            response_url: text(&payload["response_url"], &Value::Null),
        }
    }
}

impl Slack {
    /// An interactive payload: Approve / Deny buttons (`block_actions`) and the deny modal's
    /// submission (`view_submission`).
    pub async fn act(&self, payload: &Value) -> Acted {
        match payload["type"].as_str() {
            Some("block_actions") => {
                for action in payload["actions"].as_array().into_iter().flatten() {
                    let trace_id = action["value"].as_str().unwrap_or_default();
                    match action["action_id"].as_str() {
                        Some(blocks::APPROVE) => self.approve_clicked(payload, trace_id).await,
                        Some(blocks::DENY) => self.deny_clicked(payload, trace_id).await,
                        _ => {}
                    }
                }
                Acted::default()
            }
            Some("view_submission") if payload["view"]["callback_id"] == blocks::DENY_MODAL => {
                self.deny_submitted(payload).await
            }
            _ => Acted::default(),
        }
    }

    /// The clicking human, or their refusal (on the record) posted back to them.
    async fn clicker(&self, payload: &Value, trace_id: &str) -> Option<(SlackUser, Principal)> {
        let user_id = payload["user"]["id"].as_str().unwrap_or_default();
        let team_id = payload["team"]["id"]
            .as_str()
            .or_else(|| payload["user"]["team_id"].as_str())
            .unwrap_or_default();
        if let Some(user) = self.identify(team_id, user_id).await {
            let principal = user.principal(team_id, user_id);
            // The request's log lines name who called.
            tracing::Span::current().record("actor", principal.actor.as_deref());
            return Some((user, principal));
        }
        let invocation = Invocation {
            team_id: team_id.to_owned(),
            user_id: user_id.to_owned(),
            user_name: payload["user"]["username"]
                .as_str()
                .or_else(|| payload["user"]["name"].as_str())
                .unwrap_or_default()
                .to_owned(),
            command: "[button]".to_owned(),
            text: format!("decide {trace_id}"),
            ..Invocation::default()
        };
        let refusal = self.refuse_unknown(&invocation, &Command::Runs).await;
        self.tell_clicker(payload, refusal);
        None
    }

    /// An ephemeral reply to whoever clicked (the message stays as it is).
    fn tell_clicker(&self, payload: &Value, mut message: Value) {
        if let Some(url) = payload["response_url"].as_str() {
            message["replace_original"] = Value::Bool(false);
            message["response_type"] = Value::String("ephemeral".to_owned());
            self.notifier
                .reply(&Reply::ResponseUrl(url.to_owned()), message);
        }
    }

    async fn approve_clicked(&self, payload: &Value, trace_id: &str) {
        let Some((user, principal)) = self.clicker(payload, trace_id).await else {
            return;
        };
        match self.gate.decide(trace_id, &principal, true, None).await {
            Ok(()) => self.update_decided(
                trace_id,
                "approved",
                &user.name,
                None,
                &Place::of_click(payload),
            ),
            Err(refusal) => self.tell_clicker(payload, blocks::refusal(&refusal)),
        }
    }

    /// Deny asks for a reason in a modal when Slack can show one (with the bot token). The modal
    /// opens first: its `trigger_id` lives 3 seconds, and who the clicker is matters only when the
    /// reason is submitted. Without a bot token the reason is a default one.
    async fn deny_clicked(&self, payload: &Value, trace_id: &str) {
        let place = Place::of_click(payload);
        if self.client.has_bot_token() {
            let trigger = payload["trigger_id"].as_str().unwrap_or_default();
            let view = blocks::deny_modal(trace_id, &place.channel, &place.ts, &place.response_url);
            let opened = self
                .client
                .open_view(&json!({"trigger_id": trigger, "view": view}))
                .await;
            if opened.is_err() {
                let text = format!(
                    "The reason dialog could not open; deny with `/sustainbot deny {} <reason>`.",
                    blocks::escape(trace_id)
                );
                self.tell_clicker(payload, blocks::reply("ephemeral", &text));
            }
            return;
        }
        let Some((user, principal)) = self.clicker(payload, trace_id).await else {
            return;
        };
        let reason = format!("Denied in Slack by {}", user.name);
        match self
            .gate
            .decide(trace_id, &principal, false, Some(reason.clone()))
            .await
        {
            Ok(()) => self.update_decided(trace_id, "denied", &user.name, Some(&reason), &place),
            Err(refusal) => self.tell_clicker(payload, blocks::refusal(&refusal)),
        }
    }

    /// The deny modal's submission: the reason, then the decision; a refusal shows in the modal.
    async fn deny_submitted(&self, payload: &Value) -> Acted {
        let metadata: Value = payload["view"]["private_metadata"]
            .as_str()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null);
        let text = |key: &str| metadata[key].as_str().unwrap_or_default().to_owned();
        let trace_id = text("trace_id");
        let place = Place {
            channel: text("channel"),
            ts: text("ts"),
            response_url: text("response_url"),
        };
        let reason = payload["view"]["state"]["values"]["reason"]["reason"]["value"]
            .as_str()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        let errors = |message: String| Acted {
            answer: Some(json!({"response_action": "errors", "errors": {"reason": message}})),
        };
        let Some((user, principal)) = self.clicker(payload, &trace_id).await else {
            return errors(
                "You are not mapped to an accountable human in SustainBot (UNKNOWN_USER)."
                    .to_owned(),
            );
        };
        let reason = reason.unwrap_or_else(|| format!("Denied in Slack by {}", user.name));
        match self
            .gate
            .decide(&trace_id, &principal, false, Some(reason.clone()))
            .await
        {
            Ok(()) => {
                self.update_decided(&trace_id, "denied", &user.name, Some(&reason), &place);
                Acted::default()
            }
            Err(refusal) => errors(format!("{refusal} ({})", refusal.code())),
        }
    }

    /// The approval message, updated with who decided: through the interaction's `response_url`
    /// (which replaces the clicked message wherever it was posted), else with `chat.update`.
    fn update_decided(
        &self,
        trace_id: &str,
        decision: &str,
        by: &str,
        reason: Option<&str>,
        place: &Place,
    ) {
        let workflow = self
            .gate
            .runs()
            .get(trace_id)
            .map(|run| run.workflow.clone());
        let message = blocks::decided(trace_id, workflow.as_deref(), decision, by, reason);
        let client = self.client.clone();
        let place = place.clone();
        self.notifier.deliver("chat.update", async move {
            if !place.response_url.is_empty()
                && client.respond(&place.response_url, &message).await.is_ok()
            {
                return;
            }
            if client.has_bot_token() && !place.channel.is_empty() && !place.ts.is_empty() {
                let mut update = message;
                if let Some(object) = update.as_object_mut() {
                    object.remove("replace_original");
                }
                update["channel"] = Value::String(place.channel);
                update["ts"] = Value::String(place.ts);
                let _ = client.update(&update).await;
            }
        });
    }
}

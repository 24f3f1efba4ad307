//! Slack: slash commands, mentions and approval buttons, answered through the one governance
//! gate. A Slack user acts only as the human `SLACK_USERS_FILE` (or `users.info` with
//! `SLACK_DEFAULT_ROLE`) maps them to; anyone else is refused, on the record.
//!
//! The HTTP edge (`http/slack.rs`) checks signatures and reads the wire formats; [`Slack::handle`]
//! turns one [`Invocation`] into a reply; the [`Notifier`] posts what comes later (results,
//! approval requests, notifications).

mod actions;
pub mod blocks;
pub mod client;
pub mod command;
pub mod notify;
pub mod signature;
pub mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use actions::Acted;
pub use client::SlackClient;
pub use command::{Command, RunCommand, Usage, USAGE};
pub use notify::{Notifier, Reply};
pub use signature::{check, sign, verify, ReplayGuard, SignatureError, MAX_SKEW_SECONDS};
pub use users::{SlackUser, UsersFile};

use crate::audit::query::Filter;
use crate::audit::verify::{VerifyOptions, VERIFYING};
use crate::auth::{may, Action, Principal, Role, Target};
use crate::config::{Secret, SlackConfig};
use crate::governance::DragMode;
use crate::metrics::Metrics;
use crate::pipeline::{Gate, GateError, RequestBody, RunRequest, Submitted, Wait};
use crate::runs::RunFilter;
use crate::sync::lock;
use crate::trace::TraceId;
use users::LookupCache;

/// One request from a Slack user: a slash command, or a mention of the app with a command.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub team_id: String,
    pub team_domain: String,
    pub channel_id: String,
    pub channel_name: String,
    pub user_id: String,
    pub user_name: String,
    /// `/sustainbot`, `/sustainbot-workflows`, ...
    pub command: String,
    pub text: String,
    /// Where later messages go: the command's `response_url`, or a mention's thread.
    pub reply: Option<Reply>,
    /// How the request came, for the AIM input source (`slack_slash_command`, `slack_app_mention`).
    pub source: &'static str,
}

/// Event ids remembered against Slack's retries of the same event.
const EVENTS_KEPT: Duration = Duration::from_secs(600);

/// The Slack side of the server.
pub struct Slack {
    gate: Gate,
    pub notifier: Arc<Notifier>,
    pub client: SlackClient,
    pub replay: ReplayGuard,
    signing_secret: Option<Secret>,
    users: UsersFile,
    default_role: Option<String>,
    lookups: Mutex<LookupCache>,
    events_seen: Mutex<HashMap<String, Instant>>,
    metrics: Arc<Metrics>,
}

impl Slack {
    /// Reads `SLACK_USERS_FILE` (a bad file is a start-up error) and prepares the client.
    pub fn new(config: &SlackConfig, gate: Gate, metrics: Arc<Metrics>) -> Result<Slack, String> {
        let users = match &config.users_file {
            Some(path) => UsersFile::load(path)?,
            None => UsersFile::default(),
        };
        if config.signing_secret.is_some() && users.is_empty() && config.default_role.is_none() {
            tracing::warn!("Slack is configured but SLACK_USERS_FILE maps nobody: every Slack user will be refused");
        }
        let client = SlackClient::new(
            &config.api_url,
            config.bot_token.clone(),
            config.webhook_url.clone(),
            Arc::clone(&metrics),
        );
        let notifier = Arc::new(Notifier::new(
            client.clone(),
            Arc::clone(&metrics),
            config.notify,
            config.approvals_channel.clone(),
            config.in_channel,
        ));
        Ok(Slack {
            gate,
            notifier,
            client,
            replay: ReplayGuard::default(),
            signing_secret: config.signing_secret.clone(),
            users,
            default_role: config.default_role.clone(),
            lookups: Mutex::new(LookupCache::default()),
            events_seen: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    pub fn signing_secret(&self) -> Option<&Secret> {
        self.signing_secret.as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether an Events API event is seen for the first time (Slack retries unanswered events).
    pub fn first_event(&self, event_id: &str) -> bool {
        let mut seen = lock(&self.events_seen);
        if seen.len() > 10_000 {
            seen.retain(|_, at| at.elapsed() < EVENTS_KEPT);
        }
        match seen.get(event_id) {
            Some(at) if at.elapsed() < EVENTS_KEPT => false,
            _ => {
                seen.insert(event_id.to_owned(), Instant::now());
                true
            }
        }
    }

    /// The human behind a Slack user: the users file, else (with a bot token and a default role) a
    /// `users.info` lookup, cached.
    pub async fn identify(&self, team_id: &str, user_id: &str) -> Option<SlackUser> {
        if let Some(user) = self.users.get(user_id) {
            return Some(user.clone());
        }
        let role = self.default_role.as_deref()?;
        if !self.client.has_bot_token() {
            return None;
        }
        if let Some(cached) = lock(&self.lookups).get(user_id) {
            return cached;
        }
        // A failed lookup is not cached: Slack may answer next time.
        let answer = self.client.users_info(user_id).await.ok()?;
        let user = users::from_users_info(&answer, role, team_id);
        lock(&self.lookups).put(user_id, user.clone());
        user
    }

    /// The reply to one invocation (a Block Kit message). Mistakes are explained with the usage;
    /// refusals carry their code. A run goes on after the reply; its result is posted later.
    pub async fn handle(&self, invocation: &Invocation) -> Value {
        let command = match command::parse(&invocation.command, &invocation.text) {
            Ok(command) => command,
            Err(Usage(problem)) => return blocks::usage(&problem, USAGE),
        };
        if command == Command::Help {
            return blocks::reply("ephemeral", &format!("*SustainBot commands*\n{USAGE}"));
        }
        let Some(user) = self
            .identify(&invocation.team_id, &invocation.user_id)
            .await
        else {
            return self.refuse_unknown(invocation, &command).await;
        };
        let principal = user.principal(&invocation.team_id, &invocation.user_id);
        // The request's log lines name who called.
        tracing::Span::current().record("actor", principal.actor.as_deref());
        let result = match command {
            Command::Help => unreachable!("answered above"),
            Command::Status => Ok(self.status()),
            Command::List => Ok(self.list(&principal)),
            Command::Runs => Ok(self.runs(&principal)),
            Command::Logs { trace_id } => self.logs(&principal, &trace_id).await,
            Command::Verify => self.verify(&principal).await,
            Command::Run(run) => return self.run(invocation, &user, principal, run).await,
            Command::Approve { trace_id } => self
                .gate
                .decide(&trace_id, &principal, true, None)
                .await
                .map(|()| {
                    blocks::reply(
                        "ephemeral",
                        &format!(
                            "Approved run `{}`: it is queued and runs now.",
                            blocks::escape(&trace_id)
                        ),
                    )
                }),
            Command::Deny { trace_id, reason } => self
                .gate
                .decide(&trace_id, &principal, false, Some(reason))
                .await
                .map(|()| {
                    blocks::reply(
                        "ephemeral",
                        &format!("Denied run `{}`.", blocks::escape(&trace_id)),
                    )
                }),
            Command::Cancel { trace_id } => {
                self.gate.cancel(&principal, &trace_id).await.map(|_| {
                    blocks::reply(
                        "ephemeral",
                        &format!(
                            "Cancelling run `{}`; its outcome is recorded as cancelled.",
                            blocks::escape(&trace_id)
                        ),
                    )
                })
            }
        };
        result.unwrap_or_else(|refusal| blocks::refusal(&refusal))
    }

    /// A Slack user nobody maps to a human: refused, and the refusal is on the record.
    async fn refuse_unknown(&self, invocation: &Invocation, command: &Command) -> Value {
        let principal = Principal::new(
            None,
            Role::Named("slack".to_owned()),
            Some(json!({
                "slack_team": invocation.team_id,
                "slack_user": invocation.user_id,
                "slack_name": invocation.user_name,
            })),
        );
        let mut body = json!({"slack_command": format!("{} {}", invocation.command, invocation.text).chars().take(256).collect::<String>()});
        if let Command::Run(run) = command {
            body["workflow_name"] = Value::String(run.workflow.clone());
            body["drag_mode"] = Value::String(run.mode.as_str().to_owned());
            body["parameters"] = Value::Object(run.parameters.clone());
        }
        let why = format!(
            "Slack user {} ({}) is not mapped to an accountable human: ask an admin to add them to SLACK_USERS_FILE",
            invocation.user_id, invocation.user_name
        );
        let refusal = self
            .gate
            .refuse_unknown(&TraceId::random(), &principal, &body, why)
            .await;
        blocks::refusal(&refusal)
    }

    /// `run`: the declaration built from the command and the mapped human, through the gate.
    async fn run(
        &self,
        invocation: &Invocation,
        user: &SlackUser,
        principal: Principal,
        run: RunCommand,
    ) -> Value {
        let trace_id = TraceId::random();
        let definition = self.gate.workflows().get(&run.workflow);
        let mut parameters = run.parameters;
        if let Some(specs) = definition.as_ref().and_then(|d| d.parameters.as_ref()) {
            for (name, value) in parameters.iter_mut() {
                if let (Some(spec), Value::String(text)) = (specs.get(name), &*value) {
                    *value = typed(text, spec.kind);
                }
            }
        }
        let objective = run.mission.unwrap_or_else(|| {
            format!(
                "Run {} from Slack in {} mode",
                run.workflow,
                run.mode.as_str()
            )
        });
        let criteria = if run.criteria.is_empty() {
            vec!["Every step of the workflow succeeds".to_owned()]
        } else {
            run.criteria
        };
        let body = json!({
            "workflow_name": run.workflow,
            "aim": {
                "actor": user.actor(),
                "input": {
                    "sources": [{
                        "type": invocation.source,
                        "description": format!("{}/{} {}", invocation.team_domain, invocation.channel_name, invocation.command),
                        "location": format!("slack://channel?team={}&id={}", invocation.team_id, invocation.channel_id),
                    }],
                    "constraints": [],
                },
                "mission": {"objective": objective, "success_criteria": criteria},
            },
            "drag_mode": run.mode.as_str(),
            "parameters": parameters,
        });
        if let Some(reply) = &invocation.reply {
            self.notifier.expect(trace_id.as_str(), reply.clone());
        }
        let id = trace_id.as_str().to_owned();
        let request = RunRequest {
            trace_id,
            principal,
            body: RequestBody::Governed(Ok(Some(body))),
            approvable: true,
        };
        match self.gate.submit(request, Wait::Acceptance).await {
            Ok(Submitted::Queued { trace_id }) => blocks::reply(
                self.notifier.response_type(),
                &format!(
                    ":hourglass_flowing_sand: *{}* accepted for {}; running as trace `{trace_id}`. The result follows here.",
                    blocks::escape(&run.workflow),
                    blocks::escape(&user.name)
                ),
            ),
            Ok(Submitted::AwaitingApproval { trace_id, expires_at }) => blocks::reply(
                "ephemeral",
                &format!(
                    ":raising_hand: *{}* needs a second human's approval before it runs (trace `{trace_id}`, expires {}). The request with Approve and Deny buttons is posted for the approvers.",
                    blocks::escape(&run.workflow),
                    expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ),
            Ok(Submitted::Finished(report)) => {
                self.notifier.forget(&id);
                blocks::run_result(&report, self.notifier.response_type())
            }
            Err(refusal) => {
                self.notifier.forget(&id);
                let mut reply = blocks::refusal(&refusal);
                if matches!(refusal, GateError::WorkflowNotFound(_) | GateError::InvalidName(_)) {
                    reply = blocks::usage(
                        &format!("{refusal} (`/sustainbot list` shows the workflows)."),
                        USAGE,
                    );
                }
                reply
            }
        }
    }

    fn status(&self) -> Value {
        let audit = self.gate.audit().status();
        let runs = self.gate.runs().active();
        let text = format!(
            "*SustainBot {}*: {}\n• Audit trail: {} (head seq {}{})\n• Workflows: {}\n• Runs in progress or waiting: {}",
            env!("CARGO_PKG_VERSION"),
            if audit.healthy { ":large_green_circle: healthy" } else { ":red_circle: degraded" },
            if audit.healthy { "recording" } else { "NOT recording: runs are refused" },
            audit.head_seq,
            if audit.signing { ", signed checkpoints" } else { "" },
            self.gate.workflows().len(),
            runs.len(),
        );
        blocks::reply("ephemeral", &text)
    }

    fn list(&self, principal: &Principal) -> Value {
        let registry = self.gate.workflows();
        let lines: Vec<String> = registry
            .names()
            .iter()
            .filter_map(|name| registry.get(name))
            .map(|workflow| {
                // Allowed in some DRAG mode: the caller picks the mode when they run it.
                let policy = self.gate.policy();
                let offered = |mode: &DragMode| {
                    workflow
                        .drag_modes
                        .as_ref()
                        .is_none_or(|modes| modes.contains(mode))
                };
                let allowed = DragMode::ALL.into_iter().filter(offered).any(|mode| {
                    let run = Action::Run {
                        target: Target {
                            workflow: &workflow.name,
                            drag_mode: Some(mode),
                        },
                        allowed_roles: workflow.roles.as_deref(),
                    };
                    may(&policy, principal, run).is_ok()
                });
                let mut line = format!("• `{}`", blocks::escape(&workflow.name));
                if let Some(description) = &workflow.description {
                    line.push_str(&format!(": {}", blocks::escape(description)));
                }
                if workflow.approval.as_ref().is_some_and(|a| a.required) {
                    line.push_str(" _(needs approval)_");
                }
                if !allowed {
                    line.push_str(" _(not for your role)_");
                }
                line
            })
            .collect();
        if lines.is_empty() {
            return blocks::reply("ephemeral", "No workflows are loaded.");
        }
        blocks::reply(
            "ephemeral",
            &format!("*Workflows* ({})\n{}", lines.len(), lines.join("\n")),
        )
    }

    fn runs(&self, principal: &Principal) -> Value {
        let actor = if may(&self.gate.policy(), principal, Action::SeeAllRuns).is_ok() {
            None
        } else {
            Some(principal.actor.clone().unwrap_or_default())
        };
        let filter = RunFilter {
            actor,
            ..RunFilter::default()
        };
        blocks::runs(&self.gate.runs().list(&filter, 20))
    }

    /// A run's steps (for whoever may see the run) and its audit records (for readers of the trail).
    async fn logs(&self, principal: &Principal, trace_id: &str) -> Result<Value, GateError> {
        let mut parts = Vec::new();
        if let Ok(run) = self.gate.visible_run(principal, trace_id) {
            let view = run.view(true);
            let mut text = format!(
                "*Run* `{}`: *{}* {} ({})",
                blocks::escape(trace_id),
                blocks::escape(&view.workflow_name),
                view.status.as_str(),
                view.drag_mode
            );
            for step in view.steps.unwrap_or_default() {
                text.push_str(&format!(
                    "\n{} `{}` ({}) {:.2} s{}",
                    if step.success {
                        ":white_check_mark:"
                    } else {
                        ":x:"
                    },
                    blocks::escape(&step.id),
                    step.kind,
                    step.duration_seconds,
                    step.error
                        .map(|e| format!(": {}", blocks::escape(&e)))
                        .unwrap_or_default()
                ));
            }
            parts.push(text);
        }
        if may(&self.gate.policy(), principal, Action::ReadAudit).is_ok() {
            let store = Arc::clone(self.gate.audit());
            let filter = Filter {
                trace_id: Some(trace_id.to_owned()),
                ..Filter::default()
            };
            let page = tokio::task::spawn_blocking(move || store.query(&filter, 50))
                .await
                .map_err(|e| GateError::Internal(e.to_string()))?
                .map_err(|e| {
                    GateError::AuditUnavailable(format!("cannot read the audit log: {e}"))
                })?;
            if !page.entries.is_empty() {
                let lines: Vec<String> = page.entries.iter().map(record_line).collect();
                parts.push(format!("*Audit records*\n{}", lines.join("\n")));
            }
        } else if !parts.is_empty() {
            parts.push("_The audit records are for auditors and admins._".to_owned());
        }
        if parts.is_empty() {
            return Err(GateError::RunNotFound(trace_id.to_owned()));
        }
        Ok(blocks::reply("ephemeral", &parts.join("\n\n")))
    }

    /// `verify`: the hash chain of the whole log, as `GET /audit/verify` checks it.
    async fn verify(&self, principal: &Principal) -> Result<Value, GateError> {
        may(&self.gate.policy(), principal, Action::ReadAudit)?;
        let _slot = VERIFYING
            .acquire()
            .await
            .map_err(|e| GateError::Internal(e.to_string()))?;
        let store = Arc::clone(self.gate.audit());
        let options = VerifyOptions {
            public_key: None,
            live: true,
        };
        let report = tokio::task::spawn_blocking(move || store.verify(&options))
            .await
            .map_err(|e| GateError::Internal(e.to_string()))?
            .map_err(|e| GateError::AuditUnavailable(format!("cannot read the audit log: {e}")))?;
        let text = match &report.problem {
            None => format!(
                ":white_check_mark: The audit trail verifies: {} records in {} file(s), seq {}..{}, {} checkpoint(s); head `{}`.",
                report.records, report.files, report.first_seq, report.head_seq, report.checkpoints, report.head_hash
            ),
            Some(problem) => format!(
                ":rotating_light: The audit trail does *not* verify: line {}: {} ({} records verified before it).",
                problem.line,
                blocks::escape(&problem.message),
                report.records
            ),
        };
        Ok(blocks::reply("ephemeral", &text))
    }
}

/// A parameter typed as its workflow declares it (`count=3` is a number when `count` is an
/// integer); left as text when it does not read as that type (the gate's check explains).
fn typed(text: &str, kind: crate::workflow::ParamType) -> Value {
    use crate::workflow::ParamType;
    let parsed = match kind {
        ParamType::String => None,
        ParamType::Integer => text.parse::<i64>().ok().map(Value::from),
        ParamType::Number => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        ParamType::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

/// One audit record, in a line.
fn record_line(record: &Value) -> String {
    let text = |key: &str| record[key].as_str().unwrap_or("");
    let what = match text("kind") {
        "" | "run" => format!("run {}", text("outcome")),
        "approval" => format!("approval {}", text("decision")),
        other => other.to_owned(),
    };
    let who = record["principal"]["actor"]
        .as_str()
        .or_else(|| record["actor"]["actor"].as_str())
        .unwrap_or("");
    format!(
        "`#{}` {} {}{}{}",
        record["seq"],
        text("timestamp"),
        what,
        if who.is_empty() {
            String::new()
        } else {
            format!(" · {}", blocks::escape(who))
        },
        record["error"]
            .as_str()
            .map(|e| format!(" · {}", blocks::escape(e)))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_registers_every_command_at_our_urls() {
        let manifest =
            crate::workflow::yaml::to_json(include_str!("../../slack/manifest.yaml")).unwrap();
        let commands: Vec<(&str, &str)> = manifest["features"]["slash_commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["command"].as_str().unwrap(), c["url"].as_str().unwrap()))
            .collect();
        for name in [
            "/sustainbot",
            "/sustainbot-workflows",
            "/sustainbot-status",
            "/sustainbot-logs",
        ] {
            let (_, url) = commands.iter().find(|(c, _)| *c == name).expect(name);
            assert!(url.ends_with("/slack/commands"), "{name}: {url}");
            // Each command of the manifest is one the parser knows.
            assert!(command::parse(name, "").is_ok() || name == "/sustainbot-logs");
        }
        let settings = &manifest["settings"];
        assert!(settings["event_subscriptions"]["request_url"]
            .as_str()
            .unwrap()
            .ends_with("/slack/events"));
        assert!(settings["interactivity"]["request_url"]
            .as_str()
            .unwrap()
            .ends_with("/slack/actions"));
    }

    #[test]
    fn parameters_take_the_declared_type_or_stay_text() {
        use crate::workflow::ParamType;
        assert_eq!(typed("7", ParamType::Integer), json!(7));
        assert_eq!(typed("7.5", ParamType::Number), json!(7.5));
        assert_eq!(typed("true", ParamType::Boolean), json!(true));
        assert_eq!(typed("seven", ParamType::Integer), json!("seven"));
        assert_eq!(typed("7", ParamType::String), json!("7"));
    }
}

//! Schemas of bodies that no Rust type of ours has the shape of: the error bodies
//! ([`ApiError::render`](crate::http::ApiError::render) builds them as JSON), the requests the
//! handlers read by hand (to report every problem with its field path), and Slack's payloads.
//! Documentation only: nothing builds these types. The live answers are checked against them by
//! the integration suite, and the contract's example request against [`GovernanceRequest`].

// Never constructed: they exist for their `ToSchema`.
#![allow(dead_code)]

use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::governance::{DragMode, Violation};

/// The body of every error answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people (clients of the original read it).
    error: String,
    /// The stable machine code; each response lists the codes it may carry.
    code: String,
    /// The request's trace id, as in the `X-Trace-ID` header. Absent only on the 400 for an
    /// unusable `X-Trace-ID` header.
    #[schema(nullable = false)]
    trace_id: Option<String>,
    /// Every violation with its field path, on validation failures.
    #[schema(nullable = false)]
    errors: Option<Vec<Violation>>,
}

/// An error of `POST /governance/validate`.
#[derive(ToSchema)]
pub struct ValidateError {
    #[serde(flatten)]
    error: ErrorBody,
    /// `false` when the body was read as a governance request and refused
    /// (`GOVERNANCE_ERROR`, `GOVERNANCE_VALIDATION_FAILED`), as the original answered.
    #[schema(nullable = false)]
    valid: Option<bool>,
}

/// An error of the run endpoints: `success: false` as the original answered, and for the gate's
/// refusals whether they are on the audit trail.
#[derive(ToSchema)]
pub struct RunError {
    #[serde(flatten)]
    error: ErrorBody,
    /// Always `false` (absent only on the edge's own answers: an unusable `X-Trace-ID`, a panic).
    #[schema(nullable = false)]
    success: Option<bool>,
    /// Whether the refusal is on the audit trail (every refusal of an identified caller is,
    /// unless the trail could not record).
    #[schema(nullable = false)]
    audit_logged: Option<bool>,
    /// Seconds from arrival to the refusal, to the hundredth (governed endpoint).
    #[schema(nullable = false)]
    duration_seconds: Option<f64>,
    /// The declaration's summary, when a readable declaration named an unknown workflow.
    #[schema(nullable = false)]
    governance_summary: Option<String>,
}

/// A governance request: an AIM declaration (Actor, Input, Mission) and a DRAG mode. The server
/// reads it by hand (`GovernanceRequest::parse`) to report every problem with its field path:
/// a body without this shape is 400 `GOVERNANCE_ERROR`; a business rule (an actor name under 3
/// characters after trimming, an objective under 10) is 400 `GOVERNANCE_VALIDATION_FAILED`.
#[derive(ToSchema)]
#[schema(as = GovernanceRequest)]
pub struct GovernanceRequestBody {
    /// `[A-Za-z0-9_-]+` (else 400 `VALIDATION_ERROR`).
    #[schema(example = "deploy-to-staging")]
    workflow_name: String,
    aim: Aim,
    drag_mode: DragMode,
    /// The workflow's parameters, checked against its parameter schema.
    #[schema(value_type = Option<Object>, nullable = false)]
    parameters: Option<Map<String, Value>>,
    /// `POST /workflows/governed/execute` only: answer 202 as soon as the run is accepted (as
    /// `Prefer: respond-async` does).
    #[schema(rename = "async", nullable = false)]
    respond_async: Option<bool>,
}

/// The AIM declaration.
#[derive(ToSchema)]
pub struct Aim {
    actor: Actor,
    input: Input,
    mission: Mission,
}

/// The named human accountable for the run.
#[derive(ToSchema)]
pub struct Actor {
    /// At least 3 characters after trimming (a business rule).
    #[schema(min_length = 1, example = "Jake Smith")]
    name: String,
    /// When given (and not empty), an address; it must be the token's `actor` (filled in from
    /// the token when absent).
    #[schema(example = "jake@example.org")]
    email: Option<String>,
    #[schema(min_length = 1, example = "DevOps Engineer")]
    role: String,
}

/// The real-world sources that constrain what the AI may use, and its rules.
#[derive(ToSchema)]
pub struct Input {
    #[schema(min_items = 1)]
    sources: Vec<InputSource>,
    #[schema(nullable = false)]
    constraints: Option<Vec<String>>,
}

/// One input source.
#[derive(ToSchema)]
pub struct InputSource {
    #[schema(rename = "type", example = "slack_webhook")]
    kind: String,
    description: String,
    location: Option<String>,
}

/// What must improve, and how success is recognised.
#[derive(ToSchema)]
pub struct Mission {
    #[schema(min_length = 10, example = "Deploy app to staging with zero downtime")]
    objective: String,
    #[schema(min_items = 1)]
    success_criteria: Vec<String>,
}

/// `POST /governance/filter`: AI output to check in a DRAG mode.
#[derive(ToSchema)]
pub struct FilterRequest {
    text: String,
    drag_mode: DragMode,
}

/// The optional body of `POST /runs/{trace_id}/approve` (and the required one of `/deny`).
#[derive(ToSchema)]
pub struct Decision {
    /// Why; required to deny.
    #[schema(min_length = 1, nullable = false)]
    reason: Option<String>,
}

/// A slash command as Slack posts it (form-encoded). `ssl_check=1` alone is Slack checking
/// the certificate (answered with an empty 200).
#[derive(ToSchema)]
pub struct SlashCommand {
    #[schema(example = "/sustainbot")]
    command: String,
    #[schema(example = "run deploy-to-staging environment=staging")]
    text: Option<String>,
    user_id: String,
    user_name: Option<String>,
    team_id: Option<String>,
    team_domain: Option<String>,
    channel_id: Option<String>,
    channel_name: Option<String>,
    /// Where results that take longer than Slack's 3 s are posted.
    response_url: Option<String>,
    ssl_check: Option<String>,
}

/// An Events API callback (JSON): `url_verification` (answered with the challenge as text) or
/// `event_callback` with an `app_mention` whose text is a command (answered in its thread).
#[derive(ToSchema)]
pub struct SlackEvent {
    #[schema(rename = "type", example = "event_callback")]
    kind: String,
    challenge: Option<String>,
    event_id: Option<String>,
    team_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    event: Option<Value>,
}

/// An interaction (form-encoded): a button click or a modal submission.
#[derive(ToSchema)]
pub struct SlackAction {
    /// The interaction payload, a JSON object as text.
    payload: String,
}

/// A Slack message: `response_type` (`ephemeral` or `in_channel`), `text`, Block Kit `blocks`.
#[derive(ToSchema)]
pub struct SlackMessage {
    #[schema(example = "ephemeral")]
    response_type: String,
    text: String,
    #[schema(value_type = Vec<Object>)]
    blocks: Vec<Value>,
}

/// The answer to a modal submission Slack shows in the modal (such as the reason's validation
/// error).
#[derive(ToSchema)]
pub struct SlackModalAnswer {
    #[schema(example = "errors")]
    response_action: String,
    #[schema(value_type = Option<Object>, nullable = false)]
    errors: Option<Value>,
}

/// The JSON answer of `POST /slack/events`: an acknowledgement of an event callback, or the
/// message answering a slash command.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum SlackEventAnswer {
    Ack(SlackAck),
    Message(SlackMessage),
}

/// The acknowledgement of an Events API callback.
#[derive(ToSchema)]
pub struct SlackAck {
    /// Always `true`.
    ok: bool,
}

//! Everything before a run may queue: read the request, validate it, bind the identity, check the
//! workflow and its policy. Every refusal is on the record.

use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::field::Empty;
use tracing::Instrument;

use super::records::{record_view, ungoverned_view};
use super::run::Prepared;
use super::{lock, Gate, GateError, RequestBody, RunRequest, Unreadable};
use crate::auth::{may, Action, Principal, Target};
use crate::governance::{summary, DragMode, GovernanceRequest};
use crate::metrics::AimRequest;
use crate::trace::otel::SPANS;
use crate::workflow::{Workflow, WorkflowName};

/// What the ungoverned path tells in place of a governance summary.
const UNGOVERNED_SUMMARY: &str =
    "Ungoverned run (GOVERNANCE_ENABLED=false): no AIM declaration, no DRAG mode";

/// A result with the policy's verdict on the run it is about (`policy_rule`, see
/// `Prepared::policy_rule`).
type Ruled<T> = (T, Option<u32>);

/// A request that passed the checks of its kind, before the workflow's policy.
struct Checked {
    definition: Arc<Workflow>,
    /// The record's view of the request (the declaration as bound, or the ungoverned run's name).
    readable: Value,
    parameters: Option<Map<String, Value>>,
    drag_mode: Option<DragMode>,
    requester: Option<String>,
    governance_summary: String,
}

impl Gate {
    /// Checks a request and registers the accepted run as `queued`. Entry points use
    /// [`Gate::submit`]; this step alone is public for tests that must act between the checks and
    /// the parking ([`Prepared::hold_for_approval`]).
    pub async fn prepare(&self, request: RunRequest) -> Result<Prepared, GateError> {
        self.prepare_counted(request, true).await
    }

    /// [`Gate::prepare`] in the trace's `governance.validate` span, which says whether the request
    /// passed and, if not, with which code.
    pub(super) async fn validate(&self, request: RunRequest) -> Result<Prepared, GateError> {
        let span = tracing::info_span!(
            target: SPANS,
            "governance.validate",
            sustainbot.outcome = Empty,
            sustainbot.code = Empty,
        );
        let checked = self.prepare(request).instrument(span.clone()).await;
        match &checked {
            Ok(_) => span.record("sustainbot.outcome", "accepted"),
            Err(refusal) => span
                .record("sustainbot.outcome", refusal.outcome().as_str())
                .record("sustainbot.code", refusal.code()),
        };
        checked
    }

    /// [`Gate::prepare`]; `count` says whether the request counts in `aim_requests_total` (not
    /// when a restart re-checks a request counted when it came).
    pub(super) async fn prepare_counted(
        &self,
        request: RunRequest,
        count: bool,
    ) -> Result<Prepared, GateError> {
        let RunRequest {
            trace_id,
            principal,
            body,
            approvable: _,
        } = request;
        let trace_id = trace_id.into_string();
        let checked = match body {
            RequestBody::Governed(body) => {
                self.check_governed(&trace_id, &principal, body, count)
                    .await?
            }
            RequestBody::Ungoverned {
                workflow_name,
                parameters,
            } => {
                self.check_ungoverned(&trace_id, &principal, workflow_name, parameters)
                    .await?
            }
        };
        self.check_policy(trace_id, principal, checked).await
    }

    /// A governance request: parsed, validated, the actor bound to the token, the workflow known.
    async fn check_governed(
        &self,
        trace_id: &str,
        principal: &Principal,
        body: Result<Option<Value>, Unreadable>,
        count: bool,
    ) -> Result<Checked, GateError> {
        let body = match body {
            Ok(Some(body)) if !super::is_empty_body(&body) => body,
            Err(Unreadable { code, message }) => {
                let unreadable = GateError::Unreadable { code, message };
                return Err(self
                    .refuse(true, trace_id, principal, &Value::Null, unreadable)
                    .await);
            }
            Ok(_) => {
                return Err(self
                    .refuse(
                        true,
                        trace_id,
                        principal,
                        &Value::Null,
                        GateError::BodyRequired,
                    )
                    .await)
            }
        };
        let mut governed = match GovernanceRequest::parse(&body) {
            Ok(governed) => governed,
            Err(rejection) => {
                self.metrics.validation_failure(&rejection, &body);
                let invalid = GateError::Invalid(rejection);
                return Err(self.refuse(true, trace_id, principal, &body, invalid).await);
            }
        };
        if count {
            let known_name = self
                .workflows
                .get(&governed.workflow_name)
                .map_or_else(|| "unknown".to_owned(), |w| w.name.clone());
            self.metrics.aim_requests.inc(&AimRequest {
                drag_mode: governed.drag_mode.as_str(),
                // The token's role, not the declaration's free text: labels must stay a bounded set.
                actor_role: principal.role.as_str().to_owned(),
                workflow_name: known_name,
            });
        }
        if let Some(identity) = &principal.actor {
            if let Err(mismatch) = governed.aim.bind_identity(identity) {
                let refusal = GateError::ActorMismatch(mismatch);
                return Err(self.refuse(true, trace_id, principal, &body, refusal).await);
            }
        }
        // From here on the record carries the declaration as bound (email filled in from the token).
        let readable = record_view(&governed);
        let name = self
            .valid_name(
                true,
                trace_id,
                principal,
                &readable,
                &governed.workflow_name,
            )
            .await?;
        let definition = self
            .known_workflow(true, trace_id, principal, &readable, name)
            .await?;
        Ok(Checked {
            definition,
            readable,
            parameters: Some(std::mem::take(&mut governed.parameters)),
            drag_mode: Some(governed.drag_mode),
            // The accountable human as the token names them: the bound email, or the display
            // name of a token whose identity is a name.
            requester: match &principal.actor {
                Some(identity) if !crate::governance::is_email(identity) => Some(identity.clone()),
                _ => governed.aim.actor().email().map(str::to_owned),
            },
            governance_summary: summary(&governed),
        })
    }

    /// The ungoverned path: open only while governance is disabled; the body is the parameters.
    async fn check_ungoverned(
        &self,
        trace_id: &str,
        principal: &Principal,
        workflow_name: String,
        parameters: Result<Option<Value>, Unreadable>,
    ) -> Result<Checked, GateError> {
        if !self.ungoverned_allowed {
            let readable = serde_json::json!({ "workflow_name": workflow_name });
            let refusal = GateError::GovernanceRequired;
            return Err(self
                .refuse(false, trace_id, principal, &readable, refusal)
                .await);
        }
        let readable = ungoverned_view(&workflow_name, Map::new());
        // The name before the body, as the original checked them.
        let name = self
            .valid_name(false, trace_id, principal, &readable, &workflow_name)
            .await?;
        let parameters = match parameters {
            Ok(None) => Map::new(),
            Ok(Some(Value::Object(map))) => map,
            Err(Unreadable { code, message }) => {
                let refusal = GateError::Unreadable { code, message };
                return Err(self
                    .refuse(false, trace_id, principal, &readable, refusal)
                    .await);
            }
            Ok(Some(_)) => {
                let refusal = GateError::Unreadable {
                    code: "VALIDATION_ERROR",
                    message: "Request body must be a JSON object".to_owned(),
                };
                return Err(self
                    .refuse(false, trace_id, principal, &readable, refusal)
                    .await);
            }
        };
        let definition = self
            .known_workflow(false, trace_id, principal, &readable, name)
            .await?;
        Ok(Checked {
            definition,
            readable: ungoverned_view(&workflow_name, parameters.clone()),
            parameters: Some(parameters),
            drag_mode: None,
            requester: principal.actor.clone(),
            governance_summary: UNGOVERNED_SUMMARY.to_owned(),
        })
    }

    /// The workflow name, parsed once; an invalid one is refused on the record.
    async fn valid_name(
        &self,
        governed: bool,
        trace_id: &str,
        principal: &Principal,
        readable: &Value,
        name: &str,
    ) -> Result<WorkflowName, GateError> {
        match WorkflowName::parse(name) {
            Ok(name) => Ok(name),
            Err(invalid) => {
                let refusal = GateError::InvalidName(invalid);
                Err(self
                    .refuse(governed, trace_id, principal, readable, refusal)
                    .await)
            }
        }
    }

    /// The named workflow, when it is loaded; an unknown one is refused on the record.
    async fn known_workflow(
        &self,
        governed: bool,
        trace_id: &str,
        principal: &Principal,
        readable: &Value,
        name: WorkflowName,
    ) -> Result<Arc<Workflow>, GateError> {
        match self.workflows.get(name.as_str()) {
            Some(definition) => Ok(definition),
            None => {
                let missing = GateError::WorkflowNotFound(name.into_string());
                Err(self
                    .refuse(governed, trace_id, principal, readable, missing)
                    .await)
            }
        }
    }

    /// Checks the run against its workflow's policy (refusals on the record), then registers it.
    async fn check_policy(
        &self,
        trace_id: String,
        principal: Principal,
        checked: Checked,
    ) -> Result<Prepared, GateError> {
        let Checked {
            definition,
            mut readable,
            parameters,
            drag_mode,
            requester,
            governance_summary,
        } = checked;
        let checked =
            self.workflow_checks(&trace_id, &principal, &definition, drag_mode, parameters);
        let (parameters, policy_rule) = match checked {
            Ok(checked) => checked,
            Err((refusal, policy_rule)) => {
                let governed = drag_mode.is_some();
                return Err(self
                    .refuse_ruled(
                        governed,
                        &trace_id,
                        &principal,
                        &readable,
                        refusal,
                        policy_rule,
                        None,
                    )
                    .await);
            }
        };
        // The record shows the parameters the run really uses (defaults filled in).
        readable["parameters"] = Value::Object(parameters.clone());
        let live = self.runs.register(
            &trace_id,
            &definition.name,
            drag_mode.map_or("ungoverned", DragMode::as_str),
            requester.clone(),
        );
        Ok(Prepared {
            gate: self.clone(),
            trace_id,
            principal,
            drag_mode,
            requester,
            definition,
            parameters,
            readable,
            governance_summary,
            live,
            approved: false,
            ticket: None,
            policy_rule,
            shared_row: false,
        })
    }

    /// The workflow's own policy: its DRAG modes (an ungoverned run declares none), who may run it
    /// (the policy in force and the workflow's `roles`), its parameters (returned with defaults
    /// filled in); and one live run per trace id (the id names the run in /runs, in approvals and
    /// on the record). With the parameters, or with the refusal, the policy's verdict on the run
    /// (`policy_rule`, for its records; `None` before the policy is asked or without a file).
    fn workflow_checks(
        &self,
        trace_id: &str,
        principal: &Principal,
        definition: &Workflow,
        drag_mode: Option<DragMode>,
        parameters: Option<Map<String, Value>>,
    ) -> Result<Ruled<Map<String, Value>>, Ruled<GateError>> {
        if let (Some(allowed), Some(mode)) = (&definition.drag_modes, drag_mode) {
            if !allowed.contains(&mode) {
                return Err((
                    GateError::DragModeNotAllowed {
                        mode: mode.to_string(),
                        allowed: allowed
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                    None,
                ));
            }
        }
        let run = Action::Run {
            target: Target {
                workflow: &definition.name,
                drag_mode,
            },
            allowed_roles: definition.roles.as_deref(),
        };
        let policy_rule = match may(&self.policy(), principal, run) {
            Ok(granted) => granted.policy_rule(),
            Err(forbidden) => {
                let policy_rule = forbidden.policy_rule();
                return Err((forbidden.into(), policy_rule));
            }
        };
        let refused = |refusal: GateError| Err((refusal, policy_rule));
        if let Err(forbidden) = crate::auth::apikey::check_scope(principal, &definition.name) {
            return refused(forbidden.into());
        }
        // Parameters are values for a run, not file transfers: bounded, so that one caller cannot
        // fill the audit disk (both records of a run carry them).
        let size = parameters
            .as_ref()
            .map_or(2, |p| serde_json::to_vec(p).map_or(usize::MAX, |b| b.len()));
        if size > self.max_parameter_bytes {
            return refused(GateError::ParametersTooLarge {
                bytes: size,
                max: self.max_parameter_bytes,
            });
        }
        let parameters = match definition.check_parameters(&parameters.unwrap_or_default()) {
            Ok(parameters) => parameters,
            Err(problems) => return refused(GateError::InvalidParameters(problems)),
        };
        let live_already = self
            .runs
            .get(trace_id)
            .is_some_and(|run| run.status().is_active())
            || lock(&self.approvals)
                .get(trace_id)
                .is_some_and(|p| !p.expiry_recorded);
        if live_already {
            return refused(GateError::TraceInUse(trace_id.to_owned()));
        }
        // A finished run's id stays its principal's: another may not mix its records in.
        let owner = principal
            .actor
            .as_deref()
            .map(crate::identity::canonical)
            .unwrap_or_default();
        if self.trace_owners.claim(trace_id, &owner).is_err() {
            return refused(GateError::TraceInUse(trace_id.to_owned()));
        }
        Ok((parameters, policy_rule))
    }
}

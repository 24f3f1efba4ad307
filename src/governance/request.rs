//! The governance request: an AIM declaration plus DRAG mode, parsed from untrusted JSON.
//!
//! Parsing walks the JSON by hand so that every problem is reported with its field path, not only the
//! first. Two kinds of problem exist, as in the original server: *shape* problems (a missing field, a
//! wrong type, a value outside the field's limits) and *business rules* (checked on a well-formed
//! request, with the original's wording). A [`GovernanceRequest`] that exists passed both.

use serde::Serialize;
use serde_json::{Map, Value};

use super::DragMode;

/// Minimum length of a mission objective, in characters.
pub const MIN_OBJECTIVE_CHARS: usize = 10;
/// Minimum length of an actor's trimmed name, in characters.
pub const MIN_ACTOR_NAME_CHARS: usize = 3;

pub const MSG_ACTOR_NAME: &str = "Actor name must be at least 3 characters (real person required)";
pub const MSG_NO_SOURCES: &str = "At least one input source required to constrain AI behavior";
pub const MSG_OBJECTIVE: &str = "Mission objective too vague (minimum 10 characters)";
pub const MSG_NO_CRITERIA: &str = "Mission must have at least one success criterion";

/// The named human accountable for the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actor {
    name: String,
    email: Option<String>,
    role: String,
}

impl Actor {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }
    pub fn role(&self) -> &str {
        &self.role
    }
}

/// A real-world data source that constrains what the AI may use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputSource {
    #[serde(rename = "type")]
    kind: String,
    description: String,
    location: Option<String>,
}

impl InputSource {
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

/// The inputs of a run: at least one source, plus the rules the AI must follow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Input {
    sources: Vec<InputSource>,
    constraints: Vec<String>,
}

impl Input {
    pub fn sources(&self) -> &[InputSource] {
        &self.sources
    }
    pub fn constraints(&self) -> &[String] {
        &self.constraints
    }
}

/// What must improve, and how success is recognised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mission {
    objective: String,
    success_criteria: Vec<String>,
}

impl Mission {
    pub fn objective(&self) -> &str {
        &self.objective
    }
    pub fn success_criteria(&self) -> &[String] {
        &self.success_criteria
    }
}

/// The AIM declaration (Actor, Input, Mission). Invariant: satisfies every rule of this module.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aim {
    actor: Actor,
    input: Input,
    mission: Mission,
}

impl Aim {
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    pub fn input(&self) -> &Input {
        &self.input
    }
    pub fn mission(&self) -> &Mission {
        &self.mission
    }

    /// Binds the declaration to an authenticated identity. An identity that is an email binds to
    /// the actor's email: a missing one is filled in, a different one is refused (compared
    /// case-insensitively). Any other identity (a display name, as the original's demos mint
    /// tokens) binds to the actor's name, compared case- and white-space-insensitively, and is
    /// never written into the email.
    pub fn bind_identity(&mut self, identity: &str) -> Result<(), IdentityMismatch> {
        if !is_email(identity) {
            return if same_name(&self.actor.name, identity) {
                Ok(())
            } else {
                Err(IdentityMismatch {
                    field: "name",
                    declared: self.actor.name.clone(),
                    authenticated: identity.to_owned(),
                })
            };
        }
        match &self.actor.email {
            None => {
                self.actor.email = Some(identity.trim().to_owned());
                Ok(())
            }
            Some(email) if crate::identity::same(email, identity) => Ok(()),
            Some(email) => Err(IdentityMismatch {
                field: "email",
                declared: email.clone(),
                authenticated: identity.to_owned(),
            }),
        }
    }
}

/// Whether a token's identity is an email address (else it names the person).
pub fn is_email(identity: &str) -> bool {
    validator::ValidateEmail::validate_email(&identity.trim())
}

/// Names compared as people read them: case, width and runs of white space do not count.
fn same_name(a: &str, b: &str) -> bool {
    crate::identity::same(a, b)
}

/// The AIM actor's email (or, for a display-name identity, name) differs from the authenticated
/// identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMismatch {
    /// `email` or `name`: what of the actor the identity was compared with.
    pub field: &'static str,
    pub declared: String,
    pub authenticated: String,
}

/// A complete, valid governance request.
#[derive(Debug, Clone, PartialEq)]
pub struct GovernanceRequest {
    pub workflow_name: String,
    pub aim: Aim,
    pub drag_mode: DragMode,
    pub parameters: Map<String, Value>,
}

/// How serious a [`Violation`] is: a shape problem makes the request unreadable as a governance
/// request; a rule problem makes a readable request unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ViolationKind {
    Shape,
    Rule,
}

/// One problem with a request, located by its dotted field path (`aim.mission.objective`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Violation {
    pub field: String,
    pub message: String,
    pub kind: ViolationKind,
}

/// Why a request was refused. Invariant: `violations` is not empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub violations: Vec<Violation>,
}

impl Rejection {
    /// Whether any problem is a shape problem (the request is not a governance request at all).
    pub fn is_shape(&self) -> bool {
        self.violations
            .iter()
            .any(|v| v.kind == ViolationKind::Shape)
    }

    /// The stable code: `GOVERNANCE_ERROR` for a body that is not a governance request,
    /// `GOVERNANCE_VALIDATION_FAILED` for a business rule.
    pub fn code(&self) -> &'static str {
        if self.is_shape() {
            "GOVERNANCE_ERROR"
        } else {
            "GOVERNANCE_VALIDATION_FAILED"
        }
    }

    /// The single message clients of the original read from `error`.
    pub fn headline(&self) -> String {
        match self
            .violations
            .iter()
            .find(|v| v.kind == ViolationKind::Shape)
        {
            Some(v) => format!("Invalid governance request: {}: {}", v.field, v.message),
            None => self.violations[0].message.clone(),
        }
    }
}

/// Collects violations while walking the JSON.
#[derive(Default)]
struct Walk {
    violations: Vec<Violation>,
}

impl Walk {
    fn shape(&mut self, field: &str, message: impl Into<String>) {
        self.push(field, message, ViolationKind::Shape);
    }

    fn rule(&mut self, field: &str, message: impl Into<String>) {
        self.push(field, message, ViolationKind::Rule);
    }

    fn push(&mut self, field: &str, message: impl Into<String>, kind: ViolationKind) {
        self.violations.push(Violation {
            field: field.to_owned(),
            message: message.into(),
            kind,
        });
    }

    fn object<'v>(
        &mut self,
        parent: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<&'v Map<String, Value>> {
        match parent.get(key) {
            Some(Value::Object(map)) => Some(map),
            None | Some(Value::Null) => {
                self.shape(path, "field required");
                None
            }
            Some(_) => {
                self.shape(path, "must be an object");
                None
            }
        }
    }

    fn string(&mut self, parent: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        match parent.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            None | Some(Value::Null) => {
                self.shape(path, "field required");
                None
            }
            Some(_) => {
                self.shape(path, "must be a string");
                None
            }
        }
    }

    fn optional_string(
        &mut self,
        parent: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<Option<String>> {
        match parent.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => {
                self.shape(path, "must be a string or null");
                None
            }
        }
    }

    fn strings(
        &mut self,
        parent: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<Vec<String>> {
        let items = match parent.get(key) {
            Some(Value::Array(items)) => items,
            None if !required => return Some(Vec::new()),
            None | Some(Value::Null) => {
                self.shape(
                    path,
                    if required {
                        "field required"
                    } else {
                        "must be an array of strings"
                    },
                );
                return None;
            }
            Some(_) => {
                self.shape(path, "must be an array of strings");
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                _ => {
                    self.shape(&format!("{path}[{i}]"), "must be a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

impl GovernanceRequest {
    /// Parses and validates a request body. `body` must be a JSON object; anything else is a shape
    /// problem at the root.
    pub fn parse(body: &Value) -> Result<GovernanceRequest, Rejection> {
        let mut walk = Walk::default();
        let parsed = match body {
            Value::Object(root) => parse_root(&mut walk, root),
            _ => {
                walk.shape("body", "must be a JSON object");
                None
            }
        };
        match parsed {
            Some(request) if walk.violations.is_empty() => Ok(request),
            _ => Err(Rejection {
                violations: walk.violations,
            }),
        }
    }
}

fn parse_root(walk: &mut Walk, root: &Map<String, Value>) -> Option<GovernanceRequest> {
    let workflow_name = walk.string(root, "workflow_name", "workflow_name");
    let aim = walk
        .object(root, "aim", "aim")
        .and_then(|aim| parse_aim(walk, aim));
    let drag_mode = walk
        .string(root, "drag_mode", "drag_mode")
        .and_then(|mode| match mode.parse::<DragMode>() {
            Ok(mode) => Some(mode),
            Err(e) => {
                walk.shape("drag_mode", e.to_string());
                None
            }
        });
    let parameters = match root.get("parameters") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => {
            walk.shape("parameters", "must be an object");
            None
        }
    };
    Some(GovernanceRequest {
        workflow_name: workflow_name?,
        aim: aim?,
        drag_mode: drag_mode?,
        parameters: parameters?,
    })
}

fn parse_aim(walk: &mut Walk, aim: &Map<String, Value>) -> Option<Aim> {
    let actor = walk
        .object(aim, "actor", "aim.actor")
        .and_then(|a| parse_actor(walk, a));
    let input = walk
        .object(aim, "input", "aim.input")
        .and_then(|i| parse_input(walk, i));
    let mission = walk
        .object(aim, "mission", "aim.mission")
        .and_then(|m| parse_mission(walk, m));
    Some(Aim {
        actor: actor?,
        input: input?,
        mission: mission?,
    })
}

fn parse_actor(walk: &mut Walk, actor: &Map<String, Value>) -> Option<Actor> {
    let name = walk.string(actor, "name", "aim.actor.name");
    if let Some(name) = &name {
        if name.is_empty() {
            walk.shape("aim.actor.name", "must not be empty");
        } else if name.trim().chars().count() < MIN_ACTOR_NAME_CHARS {
            walk.rule("aim.actor.name", MSG_ACTOR_NAME);
        }
    }
    // An empty email is no email (the original accepted `""`); a present one must be an address.
    let email = walk
        .optional_string(actor, "email", "aim.actor.email")
        .map(|email| email.filter(|e| !e.trim().is_empty()));
    if let Some(Some(email)) = &email {
        if !validator::ValidateEmail::validate_email(email) {
            walk.shape("aim.actor.email", "Invalid email format");
        }
    }
    // As the original (a minimum length of 1, not stripped): only an empty role is refused.
    let role = walk.string(actor, "role", "aim.actor.role");
    if role.as_deref().is_some_and(str::is_empty) {
        walk.shape("aim.actor.role", "must not be empty");
    }
    Some(Actor {
        name: name?,
        email: email?,
        role: role?,
    })
}

fn parse_input(walk: &mut Walk, input: &Map<String, Value>) -> Option<Input> {
    let sources = match input.get("sources") {
        Some(Value::Array(items)) if items.is_empty() => {
            walk.shape("aim.input.sources", MSG_NO_SOURCES);
            None
        }
        Some(Value::Array(items)) => {
            let mut sources = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let path = format!("aim.input.sources[{i}]");
                match item {
                    Value::Object(source) => {
                        let kind = walk.string(source, "type", &format!("{path}.type"));
                        let description =
                            walk.string(source, "description", &format!("{path}.description"));
                        let location =
                            walk.optional_string(source, "location", &format!("{path}.location"));
                        match (kind, description, location) {
                            (Some(kind), Some(description), Some(location)) => {
                                sources.push(InputSource {
                                    kind,
                                    description,
                                    location,
                                })
                            }
                            _ => ok = false,
                        }
                    }
                    _ => {
                        walk.shape(&path, "must be an object");
                        ok = false;
                    }
                }
            }
            ok.then_some(sources)
        }
        None | Some(Value::Null) => {
            walk.shape("aim.input.sources", MSG_NO_SOURCES);
            None
        }
        Some(_) => {
            walk.shape("aim.input.sources", "must be an array of objects");
            None
        }
    };
    let constraints = walk.strings(input, "constraints", "aim.input.constraints", false);
    Some(Input {
        sources: sources?,
        constraints: constraints?,
    })
}

fn parse_mission(walk: &mut Walk, mission: &Map<String, Value>) -> Option<Mission> {
    let objective = walk.string(mission, "objective", "aim.mission.objective");
    if let Some(objective) = &objective {
        // The original's schema counted raw characters; its rule could never fire after that. We also
        // refuse an objective that only reaches the minimum through padding.
        if objective.chars().count() < MIN_OBJECTIVE_CHARS {
            walk.shape("aim.mission.objective", MSG_OBJECTIVE);
        } else if objective.trim().chars().count() < MIN_OBJECTIVE_CHARS {
            walk.rule("aim.mission.objective", MSG_OBJECTIVE);
        }
    }
    let success_criteria = walk.strings(
        mission,
        "success_criteria",
        "aim.mission.success_criteria",
        true,
    );
    if success_criteria.as_ref().is_some_and(Vec::is_empty) {
        walk.shape("aim.mission.success_criteria", MSG_NO_CRITERIA);
    }
    Some(Mission {
        objective: objective?,
        success_criteria: success_criteria?,
    })
}

/// The human-readable summary of a request, line for line as the original produced it.
pub fn summary(request: &GovernanceRequest) -> String {
    let aim = &request.aim;
    let objective = aim.mission.objective();
    let cut: String = objective.chars().take(80).collect();
    let ellipsis = if objective.chars().count() > 80 {
        "..."
    } else {
        ""
    };
    let source_types: Vec<&str> = aim
        .input
        .sources
        .iter()
        .take(3)
        .map(InputSource::kind)
        .collect();
    format!(
        "Governance Context:\n- Actor: {} ({})\n- Mission: {}{}\n- DRAG Mode: {}\n- Input Sources: {} ({})\n- Success Criteria: {}\n- Constraints: {}",
        aim.actor.name,
        aim.actor.role,
        cut,
        ellipsis,
        request.drag_mode.as_str().to_uppercase(),
        aim.input.sources.len(),
        source_types.join(", "),
        aim.mission.success_criteria.len(),
        aim.input.constraints.len(),
    )
}

#[cfg(test)]
mod tests;

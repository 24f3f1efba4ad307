//! Runs a workflow's steps. This is the seam the workflow engine grows behind: the governance
//! pipeline calls [`Runner::run`] after the intent is durable and records whatever it returns.

use serde_json::{Map, Value};

use super::Workflow;

/// A run that finished.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// A one-line description of what happened (the contract's `outcome`).
    pub outcome: String,
}

/// A run that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure {
    pub error: String,
}

/// The step kinds definitions may name.
const STEP_KINDS: [&str; 4] = ["command", "http", "llm", "openclaw"];

/// Executes workflows.
#[derive(Debug, Default, Clone)]
pub struct Runner;

impl Runner {
    pub fn new() -> Runner {
        Runner
    }

    /// Runs `workflow` with `parameters`. A workflow without steps succeeds with nothing to do. No step
    /// kind is executable yet, so a workflow with steps fails naming the first step it cannot run,
    /// rather than claiming work it did not do.
    pub async fn run(
        &self,
        workflow: &Workflow,
        _parameters: &Map<String, Value>,
    ) -> Result<RunOutput, RunFailure> {
        let Some(first) = workflow.steps.first() else {
            return Ok(RunOutput {
                outcome: format!("Workflow '{}' has no steps: nothing to do", workflow.name),
            });
        };
        let id = first.get("id").and_then(Value::as_str).unwrap_or("1");
        let kind = STEP_KINDS
            .iter()
            .find(|kind| first.get(**kind).is_some())
            .copied()
            .unwrap_or("unknown");
        Err(RunFailure {
            error: format!("Step '{id}' of kind '{kind}' cannot run: this server does not execute {kind} steps yet"),
        })
    }
}

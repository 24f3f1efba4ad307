//! `sustainbot policy ...`: check a roles policy file, and explain which of its rules decides a
//! question. These read only `POLICY_PATH` (no `JWT_SECRET`), or the file named.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sustainbot::auth::policy::{parse, read_text, PolicyAction, PolicyFile, Question};
use sustainbot::config::RunsConfig;
use sustainbot::governance::DragMode;

use super::Env;

/// Exit code of a file that cannot be read or a question that cannot be asked (1 is "problems
/// found" for `check`, "refused" for `explain`).
const UNUSABLE: u8 = 2;

/// The file named, or `POLICY_PATH`.
fn policy_path(env: &Env, file: Option<PathBuf>, command: &str) -> Result<PathBuf, ExitCode> {
    if let Some(file) = file {
        return Ok(file);
    }
    match env.section(RunsConfig::read_policy_path) {
        Ok(Some(path)) => Ok(path),
        Ok(None) => {
            eprintln!("sustainbot policy {command}: name the file, or set POLICY_PATH");
            Err(ExitCode::from(UNUSABLE))
        }
        Err(e) => {
            eprintln!("sustainbot policy {command}: {e}");
            Err(ExitCode::from(UNUSABLE))
        }
    }
}

fn read(path: &Path, command: &str) -> Result<String, ExitCode> {
    read_text(path).map_err(|why| {
        eprintln!("sustainbot policy {command}: cannot read {why}");
        ExitCode::from(UNUSABLE)
    })
}

/// Parses the file, or prints each problem as `FILE:LINE:COLUMN: message`.
fn parsed(path: &Path, text: &str) -> Result<PolicyFile, usize> {
    parse(text).map_err(|problems| {
        for problem in &problems.0 {
            println!("{}:{problem}", path.display());
        }
        problems.0.len()
    })
}

/// `policy check [FILE]`: exits 0 when the file is a valid policy, 1 with its problems.
pub fn check(env: &Env, file: Option<PathBuf>) -> ExitCode {
    let path = match policy_path(env, file, "check") {
        Ok(path) => path,
        Err(code) => return code,
    };
    let text = match read(&path, "check") {
        Ok(text) => text,
        Err(code) => return code,
    };
    let shown = path.display();
    let policy = match parsed(&path, &text) {
        Ok(policy) => policy,
        Err(count) => {
            let s = if count == 1 { "" } else { "s" };
            eprintln!("{shown}: {count} problem{s}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{shown}: valid: {} rule{}, default {}, {} group{}",
        policy.rules.len(),
        if policy.rules.len() == 1 { "" } else { "s" },
        policy.default.as_str(),
        policy.groups.len(),
        if policy.groups.len() == 1 { "" } else { "s" },
    );
    if policy.default.as_str() == "allow" && !policy.has_deny_rules() {
        println!(
            "{shown}: warning: default allow and no rule denies anything: every role may do \
             every action (a workflow's own roles still hold)"
        );
    }
    ExitCode::SUCCESS
}

/// What `policy explain` is asked.
pub struct Asked {
    pub policy: Option<PathBuf>,
    pub roles: Vec<String>,
    pub action: String,
    pub workflow: Option<String>,
    pub mode: Option<String>,
}

/// `policy explain`: prints the decision, what each rule makes of the question, and what else
/// holds; exits 0 when allowed, 1 when refused.
pub fn explain(env: &Env, asked: Asked) -> ExitCode {
    let unusable = |why: String| {
        eprintln!("sustainbot policy explain: {why}");
        ExitCode::from(UNUSABLE)
    };
    let Some(action) = PolicyAction::parse(&asked.action) else {
        return unusable(format!(
            "unknown action '{}' (expected one of {})",
            asked.action,
            PolicyAction::names()
        ));
    };
    let drag_mode = match asked.mode.as_deref().map(str::parse::<DragMode>) {
        None => None,
        Some(Ok(mode)) => Some(mode),
        Some(Err(e)) => return unusable(format!("--mode: {e}")),
    };
    if !action.is_about_a_run() && (asked.workflow.is_some() || drag_mode.is_some()) {
        return unusable(format!(
            "'{action}' is not about a run: --workflow and --mode do not apply"
        ));
    }
    let path = match policy_path(env, asked.policy, "explain") {
        Ok(path) => path,
        Err(code) => return code,
    };
    let text = match read(&path, "explain") {
        Ok(text) => text,
        Err(code) => return code,
    };
    let Ok(policy) = parsed(&path, &text) else {
        return unusable(format!(
            "{} is not a valid policy (see above)",
            path.display()
        ));
    };
    let roles: Vec<&str> = asked.roles.iter().map(String::as_str).collect();
    let question = Question {
        action,
        workflow: asked.workflow.as_deref(),
        drag_mode,
    };
    let explained = policy.explain(&roles, &question);
    println!("{}", explained.verdict);
    for line in &explained.rules {
        println!("  {line}");
    }
    for note in &explained.notes {
        println!("note: {note}");
    }
    if explained.decision.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

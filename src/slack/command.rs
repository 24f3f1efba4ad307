//! What a Slack user asked for: the text of `/sustainbot ...` (or of a mention) read into a
//! [`Command`], or a [`Usage`] mistake explained with the command's usage.

use serde_json::{Map, Value};

use crate::governance::DragMode;

/// One request from Slack.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Status,
    List,
    Runs,
    Logs { trace_id: String },
    Verify,
    Run(RunCommand),
    Approve { trace_id: String },
    Deny { trace_id: String, reason: String },
    Cancel { trace_id: String },
}

/// `run <workflow> [key=value ...] [mode=<drag_mode>] [mission="..."] [criteria="a; b"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCommand {
    pub workflow: String,
    pub parameters: Map<String, Value>,
    pub mode: DragMode,
    pub mission: Option<String>,
    pub criteria: Vec<String>,
}

/// A mistake in what was typed, in words for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The mode a run takes when `mode=` is not given.
pub const DEFAULT_MODE: DragMode = DragMode::Execute;

/// Every command with its arguments, one per line (shown by `help` and with every mistake).
pub const USAGE: &str = "\
`/sustainbot help`: this list
`/sustainbot status`: the server's health
`/sustainbot list`: the workflows you can run
`/sustainbot runs`: runs in progress and recent ones (yours, or all for auditors and admins)
`/sustainbot logs <trace_id>`: a run's steps and its audit records
`/sustainbot verify`: check the audit trail's hash chain (auditors and admins)
`/sustainbot run <workflow> [key=value ...] [mode=draft|research|grunt|execute] [mission=\"...\"] [criteria=\"first; second\"]`: run a workflow (mode execute by default, which needs a mission)
`/sustainbot approve <trace_id>` / `/sustainbot deny <trace_id> <reason>`: decide a run waiting for a second human
`/sustainbot cancel <trace_id>`: stop a run (yours, or any for admins)
`/sustainbot-workflows` = list, `/sustainbot-status` = status, `/sustainbot-logs <trace_id>` = logs";

/// Reads the text after a slash command. `command` is the slash command itself
/// (`/sustainbot-logs` takes the trace id directly).
pub fn parse(command: &str, text: &str) -> Result<Command, Usage> {
    let words = split(text)?;
    let verb = match command {
        "/sustainbot-workflows" => return no_arguments(Command::List, &words, "list"),
        "/sustainbot-status" => return no_arguments(Command::Status, &words, "status"),
        "/sustainbot-logs" => return logs(&words),
        _ => words.first().map(|w| w.to_ascii_lowercase()),
    };
    let rest = words.get(1..).unwrap_or_default();
    match verb.as_deref() {
        None | Some("help") => Ok(Command::Help),
        Some("status") => no_arguments(Command::Status, rest, "status"),
        Some("list" | "workflows") => no_arguments(Command::List, rest, "list"),
        Some("runs") => no_arguments(Command::Runs, rest, "runs"),
        Some("verify") => no_arguments(Command::Verify, rest, "verify"),
        Some("logs") => logs(rest),
        Some("run") => run(rest).map(Command::Run),
        Some("approve") => {
            one_trace_id(rest, "approve").map(|trace_id| Command::Approve { trace_id })
        }
        Some("cancel") => one_trace_id(rest, "cancel").map(|trace_id| Command::Cancel { trace_id }),
        Some("deny") => match rest {
            [trace_id, reason @ ..] if !reason.is_empty() => Ok(Command::Deny {
                trace_id: trace_id.clone(),
                reason: reason.join(" "),
            }),
            _ => Err(Usage(
                "`deny` needs a trace id and a reason: `/sustainbot deny <trace_id> <reason>`"
                    .into(),
            )),
        },
        Some(other) => Err(Usage(format!("Unknown command `{}`.", shorten(other)))),
    }
}

fn no_arguments(command: Command, rest: &[String], name: &str) -> Result<Command, Usage> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(Usage(format!("`{name}` takes no arguments.")))
    }
}

fn logs(rest: &[String]) -> Result<Command, Usage> {
    one_trace_id(rest, "logs").map(|trace_id| Command::Logs { trace_id })
}

fn one_trace_id(rest: &[String], name: &str) -> Result<String, Usage> {
    match rest {
        [trace_id] => Ok(trace_id.clone()),
        _ => Err(Usage(format!(
            "`{name}` needs one trace id: `/sustainbot {name} <trace_id>`"
        ))),
    }
}

fn run(rest: &[String]) -> Result<RunCommand, Usage> {
    let Some((workflow, arguments)) = rest.split_first() else {
        return Err(Usage(
            "`run` needs a workflow: `/sustainbot run <workflow> [key=value ...]` (`/sustainbot list` shows them)".into(),
        ));
    };
    if workflow.contains('=') {
        return Err(Usage(format!(
            "`run` needs the workflow's name first, before `{}`.",
            shorten(workflow)
        )));
    }
    let mut parameters = Map::new();
    let (mut mode, mut mission, mut criteria) = (None, None, Vec::new());
    for argument in arguments {
        let Some((key, value)) = argument.split_once('=') else {
            return Err(Usage(format!(
                "`{}` is not a `key=value` pair (quote values with spaces: `key=\"two words\"`).",
                shorten(argument)
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(Usage(format!(
                "`{}` has no key before `=`.",
                shorten(argument)
            )));
        }
        match key {
            "mode" => {
                let parsed = value.parse::<DragMode>().map_err(|e| {
                    Usage(format!(
                        "{e}: `mode` is one of draft, research, grunt, execute."
                    ))
                })?;
                mode = Some(parsed);
            }
            "mission" => mission = Some(value.trim().to_owned()).filter(|m| !m.is_empty()),
            "criteria" => {
                criteria = value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            _ if parameters.contains_key(key) => {
                return Err(Usage(format!("`{key}` is given twice.")));
            }
            _ => {
                parameters.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    let mode = mode.unwrap_or(DEFAULT_MODE);
    if mode == DragMode::Execute && mission.is_none() {
        return Err(Usage(
            "A run in execute mode needs a mission, the outcome you are accountable for: add `mission=\"...\"` (at least 10 characters), or choose another `mode=`.".into(),
        ));
    }
    Ok(RunCommand {
        workflow: workflow.clone(),
        parameters,
        mode,
        mission,
        criteria,
    })
}

/// Words separated by white space; a double-quoted part (`mission="two words"`, `"a b"`) keeps its
/// spaces, `\"` and `\\` inside quotes stand for themselves. Slack's "smart" quotes count as quotes.
fn split(text: &str) -> Result<Vec<String>, Usage> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\u{201c}' | '\u{201d}' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => {
                            return Err(Usage("A double quote is not closed.".into()));
                        }
                        Some('"' | '\u{201c}' | '\u{201d}') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped @ ('"' | '\\')) => word.push(escaped),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err(Usage("A double quote is not closed.".into())),
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// At most 40 characters of something the user typed, for a message.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(text: &str) -> RunCommand {
        match parse("/sustainbot", text) {
            Ok(Command::Run(run)) => run,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn reads_every_command_and_the_shortcut_commands() {
        assert_eq!(parse("/sustainbot", ""), Ok(Command::Help));
        assert_eq!(parse("/sustainbot", "  HELP "), Ok(Command::Help));
        assert_eq!(parse("/sustainbot", "status"), Ok(Command::Status));
        assert_eq!(parse("/sustainbot", "list"), Ok(Command::List));
        assert_eq!(parse("/sustainbot", "runs"), Ok(Command::Runs));
        assert_eq!(parse("/sustainbot", "verify"), Ok(Command::Verify));
        assert_eq!(
            parse("/sustainbot", "logs abc-1"),
            Ok(Command::Logs {
                trace_id: "abc-1".into()
            })
        );
        assert_eq!(
            parse("/sustainbot", "approve t1"),
            Ok(Command::Approve {
                trace_id: "t1".into()
            })
        );
        assert_eq!(
            parse("/sustainbot", "deny t1 not during the freeze"),
            Ok(Command::Deny {
                trace_id: "t1".into(),
                reason: "not during the freeze".into()
            })
        );
        assert_eq!(
            parse("/sustainbot", "cancel t1"),
            Ok(Command::Cancel {
                trace_id: "t1".into()
            })
        );
        assert_eq!(parse("/sustainbot-workflows", ""), Ok(Command::List));
        assert_eq!(parse("/sustainbot-status", ""), Ok(Command::Status));
        assert_eq!(
            parse("/sustainbot-logs", "t2"),
            Ok(Command::Logs {
                trace_id: "t2".into()
            })
        );
    }

    #[test]
    fn a_run_takes_parameters_mode_mission_and_criteria_with_quotes() {
        let run = run_of(
            r#"run deploy-to-staging version=v1.2.3 note="two words" mode=execute mission="Ship the fix to staging" criteria="health checks pass; rollback ready""#,
        );
        assert_eq!(run.workflow, "deploy-to-staging");
        assert_eq!(run.parameters["version"], "v1.2.3");
        assert_eq!(run.parameters["note"], "two words");
        assert_eq!(run.parameters.len(), 2);
        assert_eq!(run.mode, DragMode::Execute);
        assert_eq!(run.mission.as_deref(), Some("Ship the fix to staging"));
        assert_eq!(run.criteria, ["health checks pass", "rollback ready"]);

        let draft = run_of("run report mode=draft");
        assert_eq!(draft.mode, DragMode::Draft);
        assert_eq!(draft.mission, None);
        let smart = run_of("run report mode=research q=\u{201c}a b\u{201d}");
        assert_eq!(smart.parameters["q"], "a b");
        let escaped = run_of(r#"run report mode=draft q="say \"hi\"""#);
        assert_eq!(escaped.parameters["q"], "say \"hi\"");
    }

    #[test]
    fn mistakes_are_explained() {
        for (text, expected) in [
            ("frobnicate", "Unknown command `frobnicate`"),
            ("run", "needs a workflow"),
            ("run x=1", "workflow's name first"),
            (
                "run deploy oops mission=\"long enough mission\"",
                "not a `key=value`",
            ),
            ("run deploy =1 mission=\"long enough mission\"", "no key"),
            ("run deploy a=1 a=2 mode=draft", "given twice"),
            ("run deploy", "needs a mission"),
            ("run deploy mode=analysis", "mode"),
            ("run deploy mode=fast", "mode"),
            ("run deploy q=\"open", "not closed"),
            ("logs", "needs one trace id"),
            ("deny t1", "needs a trace id and a reason"),
            ("status now", "takes no arguments"),
        ] {
            let Err(Usage(message)) = parse("/sustainbot", text) else {
                panic!("{text} was accepted");
            };
            assert!(message.contains(expected), "{text}: {message}");
        }
    }
}

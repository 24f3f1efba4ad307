//! The differential test against the original Python server. `scripts/compat-record.sh` recorded
//! the original's answers to `tests/compat/cases.json` in `tests/compat/recorded.json`; this replays
//! every request against our server (same workflow files, same secret, the same stand-in Ollama and
//! OpenClaw) and compares status, body and the bodies posted to OpenClaw. Ours may extend (extra
//! fields are fine); every other difference must be an observation of
//! `tests/compat/differences.json`, and every observation there must still be seen, so the table
//! (and `docs/migrating.md`, rendered from it) stays true. Needs neither Python nor the original.
//!
//! `COMPAT_BLESS=1 cargo test --test it compat` drops observations that no longer differ and
//! rewrites the table's section of `docs/migrating.md`; new or changed differences always need a
//! person to classify them.

mod answer;
mod diff;
mod replay;
mod standin;
mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use answer::{CaseOptions, Normaliser};
use diff::{differences, Difference};
use replay::{path, Cases, Recording};
use standin::StandIn;
use table::{Observation, Table, Verdict};

use crate::helpers::{Settings, TestApp};

const DOC: &str = "docs/migrating.md";
const BEGIN: &str = "<!-- compat-differences:begin (generated from tests/compat/differences.json by `COMPAT_BLESS=1 cargo test --test it compat`; edit the table, not this section) -->";
const END: &str = "<!-- compat-differences:end -->";

fn read_json<T: serde::de::DeserializeOwned>(relative: &str) -> T {
    let file = path(relative);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Cases whose recording is missing or was made from another version of the case.
fn unrecorded(cases: &Cases, recording: &Recording) -> Vec<String> {
    let mut problems = Vec::new();
    for case in &cases.cases {
        let name = case["name"].as_str().expect("every case has a name");
        match recording.cases.iter().find(|r| r.name == name) {
            None => problems.push(format!("{name}: not recorded")),
            Some(r) if r.case != *case => {
                problems.push(format!("{name}: changed since it was recorded"));
            }
            Some(_) => {}
        }
    }
    for recorded in &recording.cases {
        if !cases.cases.iter().any(|c| c["name"] == recorded.name) {
            problems.push(format!("{}: recorded, but no longer a case", recorded.name));
        }
    }
    problems
}

/// Our server for one profile: the recording's workflow files, secret and stand-ins.
async fn our_server(cases: &Cases, profile: &str, standin: &StandIn) -> TestApp {
    let profile = &cases.profiles[profile];
    let openclaw = match profile.openclaw.as_str() {
        "up" => format!("http://127.0.0.1:{}", standin.port),
        "down" => "http://127.0.0.1:9".to_owned(),
        other => panic!("unknown openclaw setting {other:?}"),
    };
    let mut builder = TestApp::builder()
        .without_default_workflows()
        .jwt_secret(&cases.jwt_secret)
        .governance(profile.governance_enabled)
        .llm_port(standin.port)
        .env("LLM_MODEL", "llama2")
        .env("OPENCLAW_URL", &openclaw);
    let dir = path("tests/compat/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("workflow entry").path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().expect("file name").to_string_lossy();
        let text = std::fs::read_to_string(&file).expect("workflow file");
        builder = builder.workflow_file(&name, &text);
    }
    builder.spawn().await
}

/// Every difference between the recording and our answers, profile by profile.
async fn replay(cases: &Cases, recording: &Recording) -> Vec<Difference> {
    let standin = StandIn::start().await;
    let labels = &recording.standin_labels;
    let normaliser = Normaliser {
        mask_keys: &cases.mask_keys,
        addresses: vec![
            (
                format!("127.0.0.1:{}", standin.port),
                labels.standin.clone(),
            ),
            (
                format!("127.0.0.1:{}", labels.down_port),
                labels.nothing_listening.clone(),
            ),
        ],
    };
    let mut by_profile: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for recorded in &recording.cases {
        by_profile
            .entry(recorded.profile.as_str())
            .or_default()
            .push(recorded);
    }
    let mut found = Vec::new();
    for (profile, recorded_cases) in by_profile {
        let server = our_server(cases, profile, &standin).await;
        for recorded in recorded_cases {
            let options: CaseOptions =
                serde_json::from_value(recorded.case.clone()).expect("case options");
            standin.clear();
            let reply = recorded.request.send(&server, cases).await;
            let our_calls: Vec<_> = standin
                .calls()
                .into_iter()
                .map(|call| normaliser.json(&options, call))
                .collect();
            let ours =
                normaliser.answer(&options, reply.status.as_u16(), &reply.headers, &reply.text);
            found.extend(differences(
                &options,
                &recorded.response,
                &recorded.openclaw,
                &ours,
                &our_calls,
            ));
        }
    }
    found
}

/// `docs/migrating.md` with the table's section replaced (or added at the end).
fn with_rendered_table(doc: Option<&str>, table: &Table) -> String {
    let section = format!("{BEGIN}\n{}\n{END}", table.render().trim());
    match doc {
        None => format!(
            "# Migrating from the Python SustainBot\n\n\
             Every observed difference from the original server, with what a client changes.\n\n\
             {section}\n"
        ),
        Some(doc) => match (doc.find(BEGIN), doc.find(END)) {
            (Some(start), Some(end)) if start < end => {
                format!("{}{section}{}", &doc[..start], &doc[end + END.len()..])
            }
            _ => format!("{}\n\n{section}\n", doc.trim_end()),
        },
    }
}

fn json_line(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("serialisable")
}

fn report(table: &Table, verdict: &Verdict, unrecorded: &[String], doc_stale: bool) -> String {
    let mut out = String::from(
        "our answers and the original's recording disagree beyond tests/compat/differences.json\n",
    );
    if !unrecorded.is_empty() {
        let _ = writeln!(
            out,
            "\nRE-RECORD (scripts/compat-record.sh ORIGINAL_CHECKOUT): the recording does not match cases.json:"
        );
        for problem in unrecorded {
            let _ = writeln!(out, "  {problem}");
        }
    }
    if !verdict.new.is_empty() {
        let _ = writeln!(out, "\nNEW: differences the table does not list. Fix ours, or add each observation to an entry of tests/compat/differences.json (category, why, what a client changes):");
        for d in &verdict.new {
            let _ = writeln!(out, "  {}", json_line(&Observation::from(d)));
        }
    }
    if !verdict.changed.is_empty() {
        let _ = writeln!(out, "\nCHANGED: the table pins other values (ours changed, or the original's after a re-recording). If the entry still holds, update the values; else move the observation to the entry that explains it:");
        for (id, observation, now) in &verdict.changed {
            let _ = writeln!(
                out,
                "  entry {id:?}: table {}\n  {:width$}     now {}",
                json_line(observation),
                "",
                json_line(&Observation::from(now)),
                width = id.len() + 8
            );
        }
    }
    if !verdict.stale.is_empty() {
        let _ = writeln!(out, "\nSTALE: listed, but no longer a difference (a fix landed?). Delete these observations (and an entry left with none), or run COMPAT_BLESS=1 cargo test --test it compat, which does exactly that and regenerates {DOC}:");
        for (id, observation) in &verdict.stale {
            let category = table
                .differences
                .iter()
                .find(|e| e.id == *id)
                .map_or("", |e| e.category.as_str());
            let _ = writeln!(
                out,
                "  entry {id:?} ({category}): case {} field {}",
                observation.case, observation.field
            );
        }
    }
    for problem in &verdict.malformed {
        let _ = writeln!(out, "\nTABLE: {problem}");
    }
    if doc_stale {
        let _ = writeln!(out, "\nDOC: {DOC} does not carry the table as it is; run COMPAT_BLESS=1 cargo test --test it compat");
    }
    out
}

#[tokio::test]
async fn ours_answers_as_the_original_recorded_except_for_the_listed_differences() {
    let cases: Cases = read_json("tests/compat/cases.json");
    let recording: Recording = read_json("tests/compat/recorded.json");
    let table: Table = read_json("tests/compat/differences.json");
    let unrecorded = unrecorded(&cases, &recording);

    let found = replay(&cases, &recording).await;
    let mut verdict = table.check(&found);
    let mut table = table;
    let doc_path = path(DOC);
    let doc = std::fs::read_to_string(&doc_path).ok();

    if std::env::var_os("COMPAT_BLESS").is_some_and(|v| v == "1") {
        table = table.without_stale(&verdict);
        let mut text = serde_json::to_string_pretty(&table).expect("table json");
        text.push('\n');
        std::fs::write(path("tests/compat/differences.json"), text).expect("write the table");
        std::fs::write(&doc_path, with_rendered_table(doc.as_deref(), &table))
            .expect("write the doc");
        verdict = table.check(&found);
    }
    let doc = std::fs::read_to_string(&doc_path).ok();
    let doc_stale = doc.as_deref() != Some(with_rendered_table(doc.as_deref(), &table).as_str());

    assert!(
        unrecorded.is_empty() && verdict.is_clean() && !doc_stale,
        "{}\n(the original: {} {}, recorded {} with {})",
        report(&table, &verdict, &unrecorded, doc_stale),
        recording.original["repository"],
        recording.original["revision"],
        recording.recorded_at,
        recording.versions
    );
}

#[test]
fn the_rendered_section_replaces_the_old_one_and_keeps_the_rest() {
    let table: Table = serde_json::from_value(serde_json::json!({"about": "", "differences": []}))
        .expect("empty table");
    let doc = format!("# Title\n\nprose\n\n{BEGIN}\nold\n{END}\n\nafter\n");
    let new = with_rendered_table(Some(&doc), &table);
    assert_eq!(
        new,
        format!("# Title\n\nprose\n\n{BEGIN}\n\n{END}\n\nafter\n")
    );
    assert_eq!(with_rendered_table(Some(&new), &table), new);
    assert!(with_rendered_table(None, &table).contains(BEGIN));
}

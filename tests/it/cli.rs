//! The `sustainbot` binary itself: start-up refusals, token minting, `audit verify`, `--run`, and the
//! demo script against a real server process.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    json_lines, sigterm, step, sustainbot, Finished, Settings, Site, BIN, JAKE, TEST_SECRET,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn refuses_to_start_without_a_secret_outside_dev_mode() {
    let site = Site::new();
    sustainbot()
        .current_dir(site.path())
        .run(&["--port", "0"])
        .expect_exit(2)
        .expect_stderr("JWT_SECRET is not set");
}

#[test]
fn refuses_to_start_with_a_placeholder_or_short_secret() {
    let site = Site::new();
    for secret in [
        "dev-secret-key-change-in-production",
        "your-256-bit-secret-key-here-change-in-production",
        "short-secret",
    ] {
        let output = sustainbot()
            .current_dir(site.path())
            .jwt_secret(secret)
            .run(&["--port", "0"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{secret}: {}",
            output.describe()
        );
        output.expect_stderr("JWT_SECRET");
    }
}

#[test]
fn reads_the_secret_from_a_dot_env_file_but_the_environment_wins() {
    let site = Site::new();
    site.write(".env", "JWT_SECRET=dev-secret-key-change-in-production\n");
    sustainbot()
        .current_dir(site.path())
        .run(&["--port", "0"])
        .expect_stderr("placeholder");
    sustainbot()
        .current_dir(site.path())
        .jwt_secret("x")
        .run(&["token", "--actor", "a@b.c"])
        .expect_stderr("1 bytes");
}

#[test]
fn token_command_mints_with_the_configured_secret() {
    let site = Site::new();
    let output = site
        .sustainbot()
        .run(&["token", "--actor", JAKE, "--role", "admin", "--ttl", "60"]);
    assert!(output.status.success(), "{}", output.describe());
    let token = output.stdout_text().trim().to_owned();
    let keys =
        sustainbot::auth::JwtKeys::new(TEST_SECRET.as_bytes(), jsonwebtoken::Algorithm::HS256);
    let claims = keys
        .verify(&token)
        .expect("the token verifies with the same secret");
    assert_eq!(claims.actor, Some(serde_json::json!(JAKE)));
    assert_eq!(claims.role, Some(serde_json::json!("admin")));
    assert!(claims.exp.is_some());
}

#[test]
fn run_flag_goes_through_the_gate_and_audits() {
    let site = Site::new();
    site.run_workflow("noop").expect_exit(0);
    let log = std::fs::read_to_string(site.audit()).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains(r#""outcome":"started""#) && log.contains(r#""outcome":"success""#));
    assert!(log.contains(r#""role":"cli""#), "{log}");

    site.run_workflow("nope")
        .expect_exit(1)
        .expect_stdout("WORKFLOW_NOT_FOUND");

    site.sustainbot()
        .run(&["--run", "noop"])
        .expect_exit(1)
        .expect_stdout("GOVERNANCE_REQUIRED");
}

fn verify(site: &Site, path: &str) -> Output {
    site.sustainbot().run(&["audit", "verify", path])
}

#[test]
fn audit_verify_names_the_first_bad_line_of_an_edited_deleted_or_reordered_log() {
    let site = Site::new();
    for _ in 0..2 {
        site.run_workflow("noop").expect_exit(0);
    }
    let good = verify(&site, "logs/audit.jsonl").expect_exit(0);
    assert!(good.stdout_text().starts_with("OK"), "{}", good.describe());

    let original: Vec<String> = std::fs::read_to_string(site.audit())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(original.len(), 4);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "edited",
            {
                let mut l = original.clone();
                l[2] = l[2].replace("Jake Smith", "Jane Smith");
                l
            },
            "line 3",
        ),
        (
            "deleted",
            {
                let mut l = original.clone();
                l.remove(1);
                l
            },
            "line 2",
        ),
        (
            "reordered",
            {
                let mut l = original.clone();
                l.swap(2, 3);
                l
            },
            "line 3",
        ),
    ];
    for (name, lines, expected) in cases {
        let file = format!("{name}.jsonl");
        site.write(
            &file,
            &lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        );
        let output = verify(&site, &file);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: {}",
            output.describe()
        );
        let stdout = output.stdout_text();
        assert!(
            stdout.contains("FAILED") && stdout.contains(expected),
            "{name}: {}",
            output.describe()
        );
    }
}

/// `scripts/demo-governance.sh` against the server at `url`, signing its token with `secret`.
fn demo_script(site: &Site, url: &str, secret: &str) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/demo-governance.sh"))
        .current_dir(site.path())
        .env("SUSTAINBOT_URL", url)
        .env("JWT_SECRET", secret)
        .env("SUSTAINBOT_BIN", BIN)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_demo_script_passes_against_a_real_server() {
    let site = Site::new();
    let server = site
        .sustainbot()
        .workflows_dir(&repo().join("workflows"))
        .start();
    let started = Instant::now();
    let output = demo_script(&site, &server.address, TEST_SECRET);
    assert!(
        output.status.success(),
        "demo failed after {:?}: {}",
        started.elapsed(),
        output.describe()
    );
    let stdout = output.stdout_text();
    assert!(
        stdout.contains("demo complete") && stdout.contains("hash chain verifies"),
        "{stdout}"
    );
    let report = sustainbot::audit::verify::verify_path(&site.audit()).unwrap();
    assert!(report.is_valid());
    assert_eq!(report.records, 2, "started + success");
}

#[test]
fn the_demo_script_fails_when_the_server_refuses() {
    let site = Site::new();
    let server = site.start();
    // A token signed with another secret: step 4 gets 401 and the script must exit non-zero.
    let output = demo_script(
        &site,
        &server.address,
        "another-secret-0123456789abcdef0123456789",
    );
    assert!(!output.status.success(), "{}", output.describe());
    output.expect_stderr("expected 200, got 401");
}

#[test]
fn run_flag_without_governance_runs_the_ungoverned_path_on_the_record() {
    let site = Site::new();
    let output = site
        .sustainbot()
        .governance(false)
        .run(&["--run", "noop"])
        .expect_exit(0);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["success"], true, "{report}");
    let records = json_lines(&site.audit());
    assert_eq!(records.len(), 2, "{records:#?}");
    assert!(
        records.iter().all(|r| r["governed"] == false),
        "{records:#?}"
    );
    assert_eq!(records[1]["outcome"], "success");
}

#[test]
fn run_flag_is_cancelled_on_the_record_by_sigterm() {
    let site = Site::new();
    site.workflow(
        "slow",
        &json!({"steps": [{"id": "wait", "command": ["sleep", "30"]}]}),
    );
    let mut child = site.sustainbot().spawn_workflow("slow");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(site.audit())
        .unwrap_or_default()
        .contains(r#""outcome":"started""#)
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run never started");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Instant::now();
    sigterm(&child);
    let output = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the 30 s step was killed, not waited for"
    );
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["code"], "CANCELLED", "{report}");
    let records = json_lines(&site.audit());
    let outcomes: Vec<String> = records.iter().map(step).collect();
    assert_eq!(outcomes, ["started", "cancelled"], "{records:#?}");
}

#[test]
fn token_and_audit_commands_need_only_their_own_settings() {
    let site = Site::new();
    site.run_workflow("noop").expect_exit(0);
    // A bad setting that only serving uses does not stop reading a log or minting a token.
    sustainbot()
        .current_dir(site.path())
        .env("AUDIT_FSYNC", "sometimes")
        .env("JSON_LOGGING_ENABLED", "maybe")
        .run(&["audit", "verify"])
        .expect_exit(0)
        .expect_stdout("OK");
    sustainbot()
        .current_dir(site.path())
        .jwt_secret(TEST_SECRET)
        .env("LLM_PORT", "http")
        .env("JSON_LOGGING_ENABLED", "maybe")
        .run(&["token", "--actor", JAKE])
        .expect_exit(0);
    // Serving reads everything, and names every problem.
    sustainbot()
        .current_dir(site.path())
        .jwt_secret(TEST_SECRET)
        .env("LLM_PORT", "http")
        .env("JSON_LOGGING_ENABLED", "maybe")
        .run(&["--port", "0"])
        .expect_exit(2)
        .expect_stderr("LLM_PORT")
        .expect_stderr("JSON_LOGGING_ENABLED");
}

//! The `sustainbot` binary itself: start-up refusals, token minting, `audit verify`, `--run`, and the
//! demo script against a real server process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sustainbot");
const SECRET: &str = "cli-test-secret-0123456789abcdef0123456789";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command with a clean environment: no inherited `JWT_SECRET` or `.env` surprises.
fn sustainbot(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn refuses_to_start_without_a_secret_outside_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let output = sustainbot(dir.path())
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("JWT_SECRET is not set"),
        "{}",
        text(&output)
    );
}

#[test]
fn refuses_to_start_with_a_placeholder_or_short_secret() {
    let dir = tempfile::tempdir().unwrap();
    for secret in [
        "dev-secret-key-change-in-production",
        "your-256-bit-secret-key-here-change-in-production",
        "short-secret",
    ] {
        let output = sustainbot(dir.path())
            .env("JWT_SECRET", secret)
            .args(["--port", "0"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{secret}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("JWT_SECRET"),
            "{}",
            text(&output)
        );
    }
}

#[test]
fn reads_the_secret_from_a_dot_env_file_but_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "JWT_SECRET=dev-secret-key-change-in-production\n",
    )
    .unwrap();
    let output = sustainbot(dir.path())
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("placeholder"),
        "{}",
        text(&output)
    );
    let output = sustainbot(dir.path())
        .env("JWT_SECRET", "x")
        .args(["token", "--actor", "a@b.c"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("1 bytes"),
        "{}",
        text(&output)
    );
}

#[test]
fn token_command_mints_with_the_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let output = sustainbot(dir.path())
        .env("JWT_SECRET", SECRET)
        .args([
            "token",
            "--actor",
            "jake@example.org",
            "--role",
            "admin",
            "--ttl",
            "60",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let keys = sustainbot::auth::JwtKeys::new(SECRET.as_bytes(), jsonwebtoken::Algorithm::HS256);
    let claims = keys
        .verify(&token)
        .expect("the token verifies with the same secret");
    assert_eq!(claims.actor.as_deref(), Some("jake@example.org"));
    assert_eq!(claims.role.as_deref(), Some("admin"));
    assert!(claims.exp.is_some());
}

fn governance_request(workflow: &str) -> serde_json::Value {
    serde_json::json!({
        "workflow_name": workflow,
        "aim": {"actor": {"name": "Jake Smith", "role": "DevOps Engineer"},
                "input": {"sources": [{"type": "cli", "description": "operator at a terminal"}]},
                "mission": {"objective": "Run the no-op workflow from the command line",
                            "success_criteria": ["exit code 0"]}},
        "drag_mode": "grunt"
    })
}

#[test]
fn run_flag_goes_through_the_gate_and_audits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows/noop.json"), r#"{"steps": []}"#).unwrap();
    std::fs::write(
        dir.path().join("request.json"),
        governance_request("ignored").to_string(),
    )
    .unwrap();
    let output = sustainbot(dir.path())
        .env("JWT_SECRET", SECRET)
        .args(["--run", "noop", "--request", "request.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let log = std::fs::read_to_string(dir.path().join("logs/audit.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains(r#""outcome":"started""#) && log.contains(r#""outcome":"success""#));
    assert!(log.contains(r#""role":"cli""#), "{log}");

    let missing = sustainbot(dir.path())
        .env("JWT_SECRET", SECRET)
        .args(["--run", "nope", "--request", "request.json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(String::from_utf8_lossy(&missing.stdout).contains("WORKFLOW_NOT_FOUND"));

    let without_aim = sustainbot(dir.path())
        .env("JWT_SECRET", SECRET)
        .args(["--run", "noop"])
        .output()
        .unwrap();
    assert_eq!(without_aim.status.code(), Some(1), "{}", text(&without_aim));
    assert!(String::from_utf8_lossy(&without_aim.stdout).contains("GOVERNANCE_REQUIRED"));
}

fn verify(dir: &Path, path: &str) -> Output {
    sustainbot(dir)
        .args(["audit", "verify", path])
        .output()
        .unwrap()
}

#[test]
fn audit_verify_names_the_first_bad_line_of_an_edited_deleted_or_reordered_log() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows/noop.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("request.json"),
        governance_request("noop").to_string(),
    )
    .unwrap();
    for _ in 0..2 {
        let run = sustainbot(dir.path())
            .env("JWT_SECRET", SECRET)
            .args(["--run", "noop", "--request", "request.json"])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run));
    }
    let good = verify(dir.path(), "logs/audit.jsonl");
    assert!(good.status.success(), "{}", text(&good));
    assert!(
        String::from_utf8_lossy(&good.stdout).starts_with("OK"),
        "{}",
        text(&good)
    );

    let original: Vec<String> = std::fs::read_to_string(dir.path().join("logs/audit.jsonl"))
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
        let path = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(
            &path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        let output = verify(dir.path(), path.to_str().unwrap());
        assert_eq!(output.status.code(), Some(1), "{name}: {}", text(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("FAILED") && stdout.contains(expected),
            "{name}: {}",
            text(&output)
        );
    }
}

/// A server process on a free port, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &Path, envs: &[(&str, &str)]) -> Server {
    let mut command = sustainbot(dir);
    command
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.split("address=").nth(1) {
                let _ = tx.send(address.trim().to_owned());
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server printed its address");
    Server {
        child,
        url: format!("http://{address}"),
    }
}

#[test]
fn the_demo_script_passes_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let workflows = repo().join("workflows");
    let server = start_server(
        dir.path(),
        &[
            ("JWT_SECRET", SECRET),
            ("WORKFLOWS_DIR", workflows.to_str().unwrap()),
        ],
    );
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(repo().join("scripts/demo-governance.sh"))
        .current_dir(dir.path())
        .env("SUSTAINBOT_URL", &server.url)
        .env("JWT_SECRET", SECRET)
        .env("SUSTAINBOT_BIN", BIN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "demo failed after {:?}: {}",
        started.elapsed(),
        text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("demo complete") && stdout.contains("hash chain verifies"),
        "{stdout}"
    );
    let report =
        sustainbot::audit::verify::verify_path(&dir.path().join("logs/audit.jsonl")).unwrap();
    assert!(report.is_valid());
    assert_eq!(report.records, 2, "started + success");
}

#[test]
fn the_demo_script_fails_when_the_server_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), &[("JWT_SECRET", SECRET)]);
    // A token signed with another secret: step 4 gets 401 and the script must exit non-zero.
    let output = Command::new("bash")
        .arg(repo().join("scripts/demo-governance.sh"))
        .current_dir(dir.path())
        .env("SUSTAINBOT_URL", &server.url)
        .env("JWT_SECRET", "another-secret-0123456789abcdef0123456789")
        .env("SUSTAINBOT_BIN", BIN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected 200, got 401"),
        "{}",
        text(&output)
    );
}

#[test]
fn run_flag_without_governance_runs_the_ungoverned_path_on_the_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows/noop.json"), r#"{"steps": []}"#).unwrap();
    let output = sustainbot(dir.path())
        .env("JWT_SECRET", SECRET)
        .env("GOVERNANCE_ENABLED", "false")
        .args(["--run", "noop"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["success"], true, "{report}");
    let log = std::fs::read_to_string(dir.path().join("logs/audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{log}");
    assert!(records.iter().all(|r| r["governed"] == false), "{log}");
    assert_eq!(records[1]["outcome"], "success");
}

#[test]
fn run_flag_is_cancelled_on_the_record_by_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/slow.json"),
        r#"{"steps": [{"id": "wait", "command": ["sleep", "30"]}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("request.json"),
        governance_request("ignored").to_string(),
    )
    .unwrap();
    let mut child = sustainbot(dir.path())
        .env("JWT_SECRET", SECRET)
        .args(["--run", "slow", "--request", "request.json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log = dir.path().join("logs/audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
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
    // SAFETY: sends a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the 30 s step was killed, not waited for"
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["code"], "CANCELLED", "{report}");
    let text = std::fs::read_to_string(&log).unwrap();
    let outcomes: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["outcome"].to_string())
        .collect();
    assert_eq!(outcomes, [r#""started""#, r#""cancelled""#], "{text}");
}

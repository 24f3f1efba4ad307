//! The audit sink failing for real: a tiny filesystem that fills up, and the log file removed under
//! the server. Runs are refused with 503 `AUDIT_UNAVAILABLE`, `/health` says degraded, nothing
//! acknowledged is lost, and service resumes by itself once the cause is fixed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::helpers::{governance_request, trace, Settings, TestApp};

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop. `None` when this process may
/// not mount (not root): the caller then skips loudly. CI runs as root.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(size: &str) -> Option<TinyFs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(TinyFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        // Lazy: the server may still hold the log open when the test ends.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn run(app: &TestApp, id: &str) -> (u16, Value) {
    let reply = app.execute(&governance_request("noop"), &trace(id)).await;
    (
        reply.status.as_u16(),
        serde_json::from_str(&reply.text).unwrap_or(Value::Null),
    )
}

async fn health(app: &TestApp) -> (u16, Value) {
    let reply = app.get("/health", None).await;
    (
        reply.status.as_u16(),
        serde_json::from_str(&reply.text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_full_disk_refuses_runs_then_service_resumes_when_space_is_freed() {
    let Some(fs) = TinyFs::mount("256k") else {
        eprintln!("SKIPPING a_full_disk_refuses_runs...: cannot mount a tmpfs here (needs root; CI has it)");
        return;
    };
    let log = fs.path().join("audit.jsonl");
    let app = TestApp::builder().audit_log(&log).spawn().await;
    // Leave room for a few dozen records only.
    let filler = fs.path().join("filler");
    let free = nix_free_bytes(fs.path());
    std::fs::write(&filler, vec![0u8; free.saturating_sub(48 * 1024) as usize])
        .expect("fill the disk");

    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..500 {
        let trace = format!("full-{i}");
        match run(&app, &trace).await {
            (200, _) => acknowledged.push(trace),
            (503, body) => {
                assert_eq!(body["code"], "AUDIT_UNAVAILABLE", "{body}");
                refused = Some(trace);
                break;
            }
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    let refused = refused.expect("the disk filled up within 500 runs");
    assert!(!acknowledged.is_empty());
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["components"]["audit"]["healthy"], false);
    assert!(
        body["components"]["audit"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("space"),
        "{body}"
    );

    std::fs::remove_file(&filler).expect("free the disk");
    let (status, body) = run(&app, "after-free").await;
    assert_eq!(status, 200, "service resumes by itself: {body}");
    let (status, body) = health(&app).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );

    let report = app.verify_audit();
    assert!(report.is_valid(), "{report:?}");
    let lines = app.audit_lines();
    for trace in acknowledged
        .iter()
        .chain(std::iter::once(&"after-free".to_owned()))
    {
        let outcomes: Vec<&str> = lines
            .iter()
            .filter(|l| l["trace_id"] == trace.as_str())
            .filter_map(|l| l["outcome"].as_str())
            .collect();
        assert_eq!(
            outcomes,
            ["started", "success"],
            "acknowledged run {trace} is on the record"
        );
    }
    // The refused run may have its `started` record (durable before the outcome failed) but never
    // an outcome it did not have.
    assert!(lines
        .iter()
        .filter(|l| l["trace_id"] == refused.as_str())
        .all(|l| l["outcome"] != "success"));
}

/// Free bytes of the filesystem holding `path` (via `df`, to avoid a libc dependency in tests).
fn nix_free_bytes(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

#[tokio::test]
async fn a_log_removed_under_the_server_refuses_runs_until_it_is_restored() {
    let app = TestApp::spawn().await;
    assert_eq!(run(&app, "before").await.0, 200);
    let aside: PathBuf = app.audit_path.with_extension("aside");
    std::fs::rename(&app.audit_path, &aside).unwrap();

    let (status, body) = run(&app, "while-gone").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "AUDIT_UNAVAILABLE");
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["components"]["audit"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("gone"),
        "{body}"
    );
    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.contains("sustainbot_audit_sink_healthy 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("sustainbot_audit_appends_total{result=\"failed\"} 1\n"));

    std::fs::rename(&aside, &app.audit_path).unwrap();
    assert_eq!(run(&app, "restored").await.0, 200);
    assert_eq!(health(&app).await.0, 200);
    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.contains("sustainbot_audit_sink_healthy 1\n"),
        "{metrics}"
    );
    let report = app.verify_audit();
    assert!(report.is_valid(), "{report:?}");
    assert!(
        app.audit_for("while-gone").is_empty(),
        "nothing was written where no one could read it"
    );
    assert_eq!(app.audit_for("restored").len(), 2);
}

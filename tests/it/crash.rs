//! Crash safety of the audit log, against the real binary: SIGKILL under load loses no acknowledged
//! run, one writer per log (directory and lock-file `flock`), and a torn tail is cut and recorded at start-up.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sustainbot::audit::verify::verify_path;

use crate::helpers::{
    governance_request, json_lines as records, step, trace, ServerProcess, Settings, Site,
    TestClient, ANA,
};

const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Clients hammering one server: each task loops (unique trace id, POST, remember the id on 200).
struct Load {
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<String>, usize)>>,
}

impl Load {
    fn start(server: &TestClient, cycle: usize, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let token = server.jake();
        let body = serde_json::to_vec(&governance_request("noop")).expect("request json");
        let tasks = (0..clients)
            .map(|task| {
                let (stop, in_flight) = (Arc::clone(&stop), Arc::clone(&in_flight));
                let (server, token, body) = (server.clone(), token.clone(), body.clone());
                tokio::spawn(async move {
                    let (mut acknowledged, mut failed) = (Vec::new(), 0);
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("kill{cycle}-t{task}-r{n}");
                        n += 1;
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        // The status only: the server may die before the body is read.
                        let status = server
                            .governed_request(&token, body.clone(), &trace(&id))
                            .send()
                            .await
                            .map(|response| response.status().as_u16());
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        match status {
                            Ok(200) => acknowledged.push(id),
                            Ok(other) => panic!("{id}: unexpected status {other}"),
                            Err(_) => {
                                // The server is gone (or going): refused or reset connections.
                                failed += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                    (acknowledged, failed)
                })
            })
            .collect();
        Load {
            stop,
            in_flight,
            tasks,
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Stops the clients; the acknowledged trace ids and how many requests failed.
    async fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut acknowledged, mut failed) = (Vec::new(), 0);
        for task in self.tasks {
            let (ids, errors) = task.await.expect("client task");
            acknowledged.extend(ids);
            failed += errors;
        }
        (acknowledged, failed)
    }
}

/// Checks what a restart did to the log left by a killed server (`before`, read after the kill and
/// before the restart): the complete lines are kept byte for byte, and a torn tail (bytes after the
/// last newline) is cut and recorded by a `recovery` record right after them. Returns whether one was.
fn check_restart(before: &[u8], after: &[u8]) -> bool {
    let complete = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    let torn = &before[complete..];
    assert!(
        after.starts_with(&before[..complete]),
        "the restart changed complete, possibly acknowledged, records"
    );
    let added = &after[complete..];
    if torn.is_empty() {
        assert!(
            added.is_empty(),
            "nothing to recover, yet start-up wrote: {}",
            String::from_utf8_lossy(added)
        );
        return false;
    }
    let lines: Vec<&[u8]> = added.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one recovery record: {}",
        String::from_utf8_lossy(added)
    );
    let recovery: Value = serde_json::from_slice(lines[0]).expect("recovery record is JSON");
    assert_eq!(recovery["kind"], "recovery", "{recovery}");
    assert_eq!(recovery["cut_offset"], complete as u64, "{recovery}");
    assert_eq!(recovery["cut_length"], torn.len() as u64, "{recovery}");
    assert_eq!(recovery["cut_hash"], sha256_tagged(torn), "{recovery}");
    true
}

/// Every acknowledged run has its `started` and `success` records, and no run in the log has an
/// outcome without a `started` record before it (write-ahead).
fn check_acknowledged(path: &Path, acknowledged: &[String]) {
    let mut seen: HashMap<String, (bool, bool)> = HashMap::new();
    for record in records(path) {
        if record["kind"] != "run" {
            continue;
        }
        let id = record["trace_id"].as_str().expect("trace_id").to_owned();
        let entry = seen.entry(id.clone()).or_default();
        match record["outcome"].as_str() {
            Some("started") => {
                assert!(!entry.0, "{id}: two started records");
                entry.0 = true;
            }
            Some("success") => {
                assert!(entry.0, "{id}: success without an earlier started record");
                assert!(!entry.1, "{id}: two success records");
                entry.1 = true;
            }
            other => panic!("{id}: unexpected outcome {other:?}: {record}"),
        }
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| seen.get(*id) != Some(&(true, true)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged runs lack a started or success record, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_acknowledged_run() {
    let site = Site::new();
    let audit = site.audit();
    let mut server = site.start();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut recoveries = 0;
    // Kill at different moments of the load (its ramp-up, its steady state).
    for (cycle, kill_after) in [1500u64, 400, 1100].into_iter().enumerate() {
        let load = Load::start(&server.api, cycle, 32);
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        let in_flight = load.in_flight();
        let status = server.kill();
        assert!(!status.success(), "cycle {cycle}: killed, yet {status}");
        let (ids, failed) = load.finish().await;
        assert!(
            in_flight > 0 && failed > 0,
            "cycle {cycle}: the kill must hit requests in flight ({in_flight} in flight, {failed} failed)"
        );
        assert!(
            !ids.is_empty(),
            "cycle {cycle}: no run was acknowledged in {kill_after} ms"
        );
        acknowledged.extend(ids);

        let before = std::fs::read(&audit).expect("read the log after the kill");
        server = site.start();
        let after = std::fs::read(&audit).expect("read the log after the restart");
        if check_restart(&before, &after) {
            recoveries += 1;
        }
        check_acknowledged(&audit, &acknowledged);
        let report = verify_path(&audit).expect("verify");
        assert!(report.is_valid(), "cycle {cycle}: {report:?}");

        // The restarted server extends the same chain.
        let head = report.head_seq;
        acknowledged.extend(server.governed_runs(&format!("after{cycle}"), 3).await);
        let report = verify_path(&audit).expect("verify");
        assert!(report.is_valid(), "cycle {cycle}: {report:?}");
        assert_eq!(report.head_seq, head + 6, "3 runs after the restart");
    }
    check_acknowledged(&audit, &acknowledged);
    let lines = records(&audit);
    assert_eq!(lines.len() as u64, verify_path(&audit).unwrap().records);
    assert!(lines
        .iter()
        .all(|r| r["kind"] == "run" || r["kind"] == "recovery"));
    assert_eq!(
        lines.iter().filter(|r| r["kind"] == "recovery").count(),
        recoveries
    );
    eprintln!(
        "{} acknowledged runs over 3 kills, {} records, {recoveries} torn tails recovered",
        acknowledged.len(),
        lines.len()
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_audit_log_refuses_to_start() {
    let site = Site::new();
    let mut first = site.start();
    first.governed_runs("first", 1).await;
    let before = std::fs::read(site.audit()).expect("read the log");

    let (status, stderr) = site
        .sustainbot()
        .start_expecting_exit(Duration::from_secs(10));
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("locked") && stderr.contains("another process"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(site.audit()).expect("read the log"),
        before,
        "the refused server changed the log"
    );

    // The first one is unharmed and still writes.
    first.governed_runs("first-again", 1).await;
    first.kill();
    let third = site.start();
    third.governed_runs("third", 1).await;
    let report = verify_path(&site.audit()).expect("verify");
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, 6);
}

#[tokio::test]
async fn torn_tail_is_cut_and_recorded_at_start_up() {
    let site = Site::new();
    let audit = site.audit();
    let mut server = site.start();
    server.governed_runs("before", 2).await;
    server.kill();
    let complete = std::fs::read(&audit).expect("read the log");
    assert!(complete.ends_with(b"\n"));
    let first_line = complete.split(|&b| b == b'\n').next().unwrap();
    let torn = &first_line[..first_line.len() / 2];
    std::fs::OpenOptions::new()
        .append(true)
        .open(&audit)
        .and_then(|mut file| file.write_all(torn))
        .expect("append half a line");

    let mut server = site.start();
    let report = verify_path(&audit).expect("verify");
    assert!(report.is_valid(), "{report:?}");
    let after = std::fs::read(&audit).expect("read the log");
    assert!(after.starts_with(&complete), "the complete lines were kept");
    let lines = records(&audit);
    assert_eq!(lines.len(), 5, "4 run records and the recovery");
    let recovery = &lines[4];
    assert_eq!(recovery["kind"], "recovery", "{recovery}");
    assert_eq!(recovery["cut_offset"], complete.len() as u64);
    assert_eq!(recovery["cut_length"], torn.len() as u64);
    assert_eq!(recovery["cut_hash"], sha256_tagged(torn));
    assert_eq!(recovery["seq"], 5);
    assert_eq!(recovery["prev_hash"], lines[3]["integrity_hash"]);
    assert!(recovery["reason"].as_str().is_some_and(|r| !r.is_empty()));

    // The chain goes on after the recovery record, and a clean restart recovers nothing.
    server.governed_runs("after", 1).await;
    let lines = records(&audit);
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[lines.len() - 3]["kind"], "recovery");
    assert_eq!(lines[5]["prev_hash"], lines[4]["integrity_hash"]);
    server.kill();
    let _server = site.start();
    assert_eq!(
        records(&audit).len(),
        7,
        "nothing to recover the second time"
    );
    assert!(verify_path(&audit).expect("verify").is_valid());
}

#[tokio::test]
async fn a_torn_tail_longer_than_the_scan_chunk_or_without_any_complete_line_is_cut() {
    // 100 KiB without a newline: more than the 64 KiB chunks the tail is searched backwards in.
    let torn: Vec<u8> = br#"{"aim":{"actor":"#
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'x', 100 * 1024))
        .collect();

    // The whole file is one torn line: the chain restarts from genesis.
    let site = Site::new();
    std::fs::create_dir_all(site.audit().parent().unwrap()).unwrap();
    std::fs::write(site.audit(), &torn).unwrap();
    let server = site.start();
    let lines = records(&site.audit());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "recovery");
    assert_eq!(lines[0]["cut_offset"], 0);
    assert_eq!(lines[0]["cut_length"], torn.len() as u64);
    assert_eq!(lines[0]["cut_hash"], sha256_tagged(&torn));
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["prev_hash"], GENESIS);
    server.governed_runs("run", 1).await;
    assert!(verify_path(&site.audit()).unwrap().is_valid());
    drop(server);

    // Complete records, then the long torn line.
    let site = Site::new();
    let mut server = site.start();
    server.governed_runs("before", 1).await;
    server.kill();
    let before = std::fs::read(site.audit()).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(site.audit())
        .and_then(|mut file| file.write_all(&torn))
        .unwrap();
    let _server = site.start();
    let after = std::fs::read(site.audit()).unwrap();
    let mut left = before.clone();
    left.extend_from_slice(&torn);
    assert!(check_restart(&left, &after));
    assert!(verify_path(&site.audit()).unwrap().is_valid());
}

#[tokio::test]
async fn graceful_shutdown_signs_a_final_checkpoint() {
    let site = Site::new();
    let (private, public) = site.keygen();
    // No checkpoint by count or by timer during the test: only shutdown can sign.
    let mut server = site
        .sustainbot()
        .signing_key(&private)
        .checkpoint_every(0)
        .checkpoint_seconds(3600)
        .start();
    server.governed_runs("graceful", 3).await;
    assert!(records(&site.audit())
        .iter()
        .all(|r| r["kind"] != "checkpoint"));

    let exit = server.terminate();
    assert!(
        exit.success(),
        "graceful shutdown exits 0: {exit}\n{}",
        server.stderr()
    );

    let all = records(&site.audit());
    let last = all.last().expect("records");
    assert_eq!(last["kind"], "checkpoint", "{last}");
    assert_eq!(last["covered_seq"], all.len() as u64 - 1);
    let key = sustainbot::audit::checkpoint::PublicKey::from_file(&public).unwrap();
    let options = sustainbot::audit::verify::VerifyOptions {
        public_key: Some(key),
        live: false,
    };
    let report = sustainbot::audit::verify::verify_log(&site.audit(), &options).unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.last_checkpoint_seq, Some(all.len() as u64 - 1));
}

#[tokio::test]
async fn shutdown_cancels_runs_still_going_after_the_grace_period_and_records_it() {
    let site = Site::new();
    site.workflow(
        "slow",
        &json!({"steps": [{"id": "wait", "command": ["sleep", "60"]}]}),
    );
    let mut server = site.sustainbot().grace_seconds(1).start();
    let mut body = governance_request("slow");
    body["async"] = true.into();
    server.execute(&body, &trace("slow-1")).await.expect_ok(202);
    // Let it start, then ask the server to stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let exit = server.terminate();
    assert!(exit.success(), "{exit}\n{}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 60 s step did not hold up shutdown"
    );
    let all = records(&site.audit());
    let outcomes: Vec<String> = all
        .iter()
        .filter(|r| r["trace_id"] == "slow-1")
        .filter_map(|r| r["outcome"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(outcomes, ["started", "cancelled"]);
    assert!(verify_path(&site.audit()).unwrap().is_valid());
}

/// Writes `workflows/guarded.json` (approval by an admin, expiring after `expires_seconds`).
fn guarded_workflow(site: &Site, expires_seconds: u64) {
    site.workflow(
        "guarded",
        &json!({
            "approval": {"required": true, "approver_roles": ["admin"], "expires_seconds": expires_seconds},
            "steps": [{"id": "x", "command": ["true"]}],
        }),
    );
}

/// Asks for a run of `guarded` as `trace_id`, which waits for approval (202); returns the request.
async fn request_guarded(server: &ServerProcess, trace_id: &str) -> Value {
    let body = governance_request("guarded");
    let reply = server.execute(&body, &trace(trace_id)).await;
    assert_eq!(reply.status.as_u16(), 202, "{}", server.stderr());
    body
}

#[tokio::test]
async fn a_run_waiting_for_approval_does_not_hold_up_shutdown_and_waits_again_after_restart() {
    let site = Site::new();
    guarded_workflow(&site, 3600);
    let mut server = site.sustainbot().grace_seconds(20).start();
    let body = request_guarded(&server, "wait-1").await;
    let started = Instant::now();
    assert!(server.terminate().success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a parked run is not work to wait for"
    );
    assert!(verify_path(&site.audit()).unwrap().is_valid());
    // The request is on the record, whole.
    let requested = records(&site.audit())
        .into_iter()
        .find(|r| r["kind"] == "approval" && r["decision"] == "requested")
        .expect("requested record");
    assert_eq!(requested["request"]["workflow_name"], "guarded");
    assert_eq!(requested["request"]["drag_mode"], body["drag_mode"]);

    // After a restart the run waits again, and a second human can approve it.
    let server = site.start();
    let run = server
        .get("/runs/wait-1", Some(&server.jake()))
        .await
        .json();
    assert_eq!(
        run["status"],
        "pending_approval",
        "{run}\n{}",
        server.stderr()
    );
    // Restoring it is not a new request.
    let metrics = server.get("/metrics", None).await.text;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("sustainbot_aim_requests_total{")),
        "{metrics}"
    );
    let ana = server.token(ANA, "admin");
    let reply = server
        .post_json(
            "/runs/wait-1/approve",
            &json!({"reason": "checked after the restart"}),
            Some(&ana),
        )
        .await
        .expect_ok(202);
    assert_eq!(reply["status"], "queued", "{reply}");
    server
        .wait_for_run("wait-1", "succeeded", Duration::from_secs(20))
        .await;
    let all = records(&site.audit());
    let trail: Vec<String> = all
        .iter()
        .filter(|r| r["trace_id"] == "wait-1")
        .map(|r| format!("{}:{}", r["kind"].as_str().unwrap(), step(r)))
        .collect();
    assert_eq!(
        trail,
        [
            "approval:requested",
            "approval:approved",
            "run:started",
            "run:success"
        ]
    );
    assert!(verify_path(&site.audit()).unwrap().is_valid());
}

#[tokio::test]
async fn an_approval_request_that_expired_while_the_server_was_down_is_recorded_as_expired() {
    let site = Site::new();
    guarded_workflow(&site, 1);
    let mut server = site.start();
    request_guarded(&server, "late-1").await;
    // Killed at once: no sweep ran before it died.
    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = site.start();
    let expired = records(&site.audit())
        .into_iter()
        .find(|r| r["trace_id"] == "late-1" && r["decision"] == "expired")
        .unwrap_or_else(|| panic!("no expired record\n{}", server.stderr()));
    assert_eq!(expired["actor"]["role"], "system");
    assert!(verify_path(&site.audit()).unwrap().is_valid());
}

#[tokio::test]
async fn a_waiting_request_whose_workflow_dropped_approval_is_withdrawn_at_restart_not_run() {
    let site = Site::new();
    guarded_workflow(&site, 3600);
    let mut server = site.start();
    request_guarded(&server, "stale-1").await;
    server.kill();
    // The policy changed while the server was down: no approval any more.
    site.workflow(
        "guarded",
        &json!({"steps": [{"id": "x", "command": ["true"]}]}),
    );
    let server = site.start();
    let trail: Vec<(String, String)> = records(&site.audit())
        .iter()
        .filter(|r| r["trace_id"] == "stale-1")
        .map(|r| {
            (
                step(r),
                r["actor"]["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("requested".to_owned(), "admin".to_owned()),
            ("withdrawn".to_owned(), "system".to_owned())
        ],
        "{}",
        server.stderr()
    );
    // Nothing runs, and a second restart writes nothing more.
    drop(server);
    let before = records(&site.audit()).len();
    let server = site.start();
    assert_eq!(records(&site.audit()).len(), before, "{}", server.stderr());
}

/// The grace period runs from the signal, also for a run a request is waiting on (the ungoverned
/// route is synchronous): past it the run is cancelled on the record and the server stops.
#[tokio::test]
async fn sigterm_cancels_a_synchronous_ungoverned_run_after_the_grace_period() {
    let site = Site::new();
    site.workflow(
        "slow",
        &json!({"steps": [{"id": "wait", "command": ["sleep", "30"]}]}),
    );
    let mut server = site.sustainbot().governance(false).grace_seconds(1).start();
    let api = server.api.clone();
    let token = server.jake();
    let running = tokio::spawn(async move {
        reqwest::Client::new()
            .post(api.url("/workflows/slow/execute"))
            .bearer_auth(token)
            .header("x-trace-id", "ungov-sync-1")
            .json(&json!({}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !records(&site.audit())
        .iter()
        .any(|r| r["trace_id"] == "ungov-sync-1" && r["outcome"] == "started")
    {
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let exit = server.terminate();
    let took = started.elapsed();
    assert_eq!(
        running.await.unwrap().unwrap(),
        500,
        "the request is answered"
    );
    let outcomes: Vec<String> = records(&site.audit())
        .iter()
        .filter(|r| r["trace_id"] == "ungov-sync-1")
        .filter_map(|r| r["outcome"].as_str().map(str::to_owned))
        .collect();
    assert!(exit.success());
    assert!(
        took < Duration::from_secs(15),
        "shutdown waited {took:?} for a 30 s synchronous run (grace 1 s); outcomes {outcomes:?}"
    );
    assert_eq!(outcomes, ["started", "cancelled"]);
}

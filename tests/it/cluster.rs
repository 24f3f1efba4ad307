//! Several instances on one PostgreSQL database (`DATABASE_URL`): one audit chain, one run queue,
//! one approval state; instances killed with SIGKILL lose nothing acknowledged and run nothing
//! twice; the database stopped under load fails closed and recovers.
//!
//! Each test has its own database (dropped after it) on the machine's PostgreSQL, or, for the
//! outage, a PostgreSQL server of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    governance_request, json_lines, Finished, PrivatePostgres, ServerProcess, Settings, Site,
    TestDb, ANA,
};

/// How long an instance's lease lasts here (the server's default is 15 s).
const LEASE: &str = "2";

fn instance(site: &Site, database: &str, id: &str, extra: &[(&str, &str)]) -> ServerProcess {
    let mut process = site
        .sustainbot()
        .env("DATABASE_URL", database)
        .env("SUSTAINBOT_INSTANCE_ID", id)
        .env("RUN_LEASE_SECONDS", LEASE)
        .env("DB_POOL_TIMEOUT", "2");
    for (key, value) in extra {
        process = process.env(key, value);
    }
    process.start()
}

/// `sustainbot audit export` of the database into the site, checked by both verifiers; its records.
fn export_and_verify(site: &Site, database: &str) -> Vec<Value> {
    let out = site.path().join("export.jsonl");
    site.sustainbot()
        .run(&[
            "audit",
            "export",
            "--database-url",
            database,
            "--out",
            out.to_str().unwrap(),
        ])
        .expect_exit(0);
    site.sustainbot()
        .run(&["audit", "verify", out.to_str().unwrap()])
        .expect_exit(0);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_audit.py");
    let python = std::process::Command::new("python3")
        .arg(&script)
        .arg(&out)
        .output()
        .expect("run the independent verifier");
    python.expect_exit(0);
    json_lines(&out)
}

/// Per trace id, the outcomes of its run records in chain order.
fn outcomes(records: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by_trace: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records.iter().filter(|r| r["kind"] == "run") {
        if let (Some(trace), Some(outcome)) =
            (record["trace_id"].as_str(), record["outcome"].as_str())
        {
            by_trace
                .entry(trace.to_owned())
                .or_default()
                .push(outcome.to_owned());
        }
    }
    by_trace
}

async fn post_run(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: &Value,
    trace: &str,
) -> Option<(u16, Value)> {
    let response = client
        .post(format!("{base}/workflows/governed/execute"))
        .bearer_auth(token)
        .header("x-trace-id", trace)
        .json(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_keep_one_chain_and_a_killed_one_loses_nothing_acknowledged() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    let mut servers: Vec<ServerProcess> = (1..=3)
        .map(|i| instance(&site, db.url(), &format!("node-{i}"), &[]))
        .collect();
    let bases: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
    let token = servers[0].jake();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let mut load = Vec::new();
    for worker in 0..12 {
        let (bases, token, client) = (bases.clone(), token.clone(), client.clone());
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let trace = format!("load-{worker}-{n}");
                let base = &bases[(worker + n) % bases.len()];
                let body = governance_request("noop");
                if let Some((200, answer)) = post_run(&client, base, &token, &body, &trace).await {
                    assert_eq!(answer["success"], true, "{answer}");
                    acknowledged.lock().unwrap().push(trace);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    servers[1].kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    servers[0].terminate();
    servers[2].terminate();

    let records = export_and_verify(&site, db.url());
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 30,
        "the load ran: {} runs",
        acknowledged.len()
    );
    let by_trace = outcomes(&records);
    for trace in &acknowledged {
        assert_eq!(
            by_trace.get(trace).map(Vec::as_slice),
            Some(&["started".to_owned(), "success".to_owned()][..]),
            "run {trace} was acknowledged"
        );
    }
    for (trace, outcomes) in &by_trace {
        let started = outcomes.iter().filter(|o| *o == "started").count();
        assert!(
            started <= 1,
            "{trace} started {started} times: {outcomes:?}"
        );
    }
    let instances: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["instance"].as_str())
        .collect();
    assert_eq!(instances, BTreeSet::from(["node-1", "node-2", "node-3"]));
}

/// A workflow that takes a while (so runs queue behind one worker).
fn slow() -> Value {
    json!({"steps": [{"id": "wait", "command": ["sleep", "0.3"]}]})
}

async fn status_on(server: &ServerProcess, trace: &str) -> Value {
    server
        .get(&format!("/runs/{trace}"), Some(&server.jake()))
        .await
        .expect_ok(200)
}

async fn wait_until(
    server: &ServerProcess,
    trace: &str,
    done: impl Fn(&str) -> bool,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let run = status_on(server, trace).await;
        if run["status"].as_str().is_some_and(&done) {
            return run;
        }
        assert!(Instant::now() < deadline, "run {trace} never ended: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ended(status: &str) -> bool {
    !matches!(status, "queued" | "running" | "pending_approval")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_runs_of_a_killed_instance_end_on_the_survivor_and_none_runs_twice() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    site.workflow("slow", &slow());
    let mut a = instance(&site, db.url(), "node-a", &[("RUN_WORKERS", "1")]);
    let b = instance(&site, db.url(), "node-b", &[]);
    let mut body = governance_request("slow");
    body["async"] = json!(true);
    let client = reqwest::Client::new();
    let mut traces = Vec::new();
    for i in 0..30 {
        let (server, trace) = if i % 2 == 0 {
            (&a, format!("a-{i}"))
        } else {
            (&b, format!("b-{i}"))
        };
        let (status, answer) = post_run(&client, &server.address, &server.jake(), &body, &trace)
            .await
            .expect("an answer");
        assert_eq!(status, 202, "{answer}");
        traces.push(trace);
    }
    a.kill();

    for trace in &traces {
        wait_until(&b, trace, ended, Duration::from_secs(60)).await;
    }
    drop(b);
    let records = export_and_verify(&site, db.url());
    let by_trace = outcomes(&records);
    let mut lost = 0;
    for trace in &traces {
        let outcomes = by_trace.get(trace).cloned().unwrap_or_default();
        let started = outcomes.iter().filter(|o| *o == "started").count();
        let finals: Vec<&String> = outcomes.iter().filter(|o| *o != "started").collect();
        assert!(
            started <= 1,
            "{trace} started {started} times: {outcomes:?}"
        );
        assert_eq!(finals.len(), 1, "{trace} has one outcome: {outcomes:?}");
        if started == 1 && finals[0] == "failure" {
            lost += 1;
            let record = records
                .iter()
                .rev()
                .find(|r| r["trace_id"] == trace.as_str() && r["outcome"] == "failure")
                .unwrap();
            assert_eq!(record["code"], "INSTANCE_LOST", "{record}");
            assert_eq!(record["instance"], "node-b", "the survivor closed it");
        } else {
            assert_eq!(finals[0], "success", "{trace}: {outcomes:?}");
        }
    }
    assert!(lost <= 1, "node-a ran one run at a time: {lost} lost");
    let taken_over = records
        .iter()
        .filter(|r| r["outcome"] == "started" && r["instance"] == "node-b")
        .filter(|r| r["trace_id"].as_str().is_some_and(|t| t.starts_with("a-")))
        .count();
    assert!(
        taken_over >= 10,
        "the survivor ran node-a's queued runs: {taken_over}"
    );
}

/// `guarded` needs an admin's approval.
fn guarded() -> Value {
    json!({"approval": {"required": true, "approver_roles": ["admin"]},
           "steps": [{"id": "say", "command": ["echo", "approved work"]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_cancels_and_events_cross_instances() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    site.workflow("guarded", &guarded());
    site.workflow(
        "slow",
        &json!({"steps": [{"id": "wait", "command": ["sleep", "30"]}]}),
    );
    let a = instance(&site, db.url(), "node-a", &[]);
    let b = instance(&site, db.url(), "node-b", &[]);
    let client = reqwest::Client::new();

    // Requested on A, seen and decided on B, run on B, seen finished from A.
    let (status, answer) = post_run(
        &client,
        &a.address,
        &a.jake(),
        &governance_request("guarded"),
        "appr-x",
    )
    .await
    .unwrap();
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("pending_approval")),
        "{answer}"
    );
    assert_eq!(status_on(&b, "appr-x").await["status"], "pending_approval");
    // Jake asked: he may not approve it, on any instance.
    b.post_json("/runs/appr-x/approve", &json!({}), Some(&b.jake()))
        .await
        .expect(403, "APPROVAL_REFUSED");
    b.post_json(
        "/runs/appr-x/approve",
        &json!({"reason": "ok"}),
        Some(&b.token(ANA, "admin")),
    )
    .await
    .expect_ok(202);
    // A second decision elsewhere finds nothing waiting.
    a.post_json(
        "/runs/appr-x/deny",
        &json!({"reason": "late"}),
        Some(&a.token(ANA, "admin")),
    )
    .await
    .expect(409, "RUN_NOT_PENDING");
    let run = wait_until(&a, "appr-x", ended, Duration::from_secs(20)).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    // Denied on A after a request on B.
    post_run(
        &client,
        &b.address,
        &b.jake(),
        &governance_request("guarded"),
        "appr-y",
    )
    .await
    .unwrap();
    a.post_json(
        "/runs/appr-y/deny",
        &json!({"reason": "no"}),
        Some(&a.token(ANA, "admin")),
    )
    .await
    .expect_ok(200);
    assert_eq!(status_on(&b, "appr-y").await["status"], "rejected");

    // A run on A cancelled from B, while B follows its events.
    let mut slow = governance_request("slow");
    slow["async"] = json!(true);
    let (status, _) = post_run(&client, &a.address, &a.jake(), &slow, "slow-1")
        .await
        .unwrap();
    assert_eq!(status, 202);
    wait_until(&a, "slow-1", |s| s == "running", Duration::from_secs(10)).await;
    let events = client
        .get(b.url("/runs/slow-1/events"))
        .bearer_auth(b.jake())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let follow = tokio::spawn(async move { events.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.post_json("/runs/slow-1/cancel", &json!({}), Some(&b.jake()))
        .await
        .expect_ok(200);
    let run = wait_until(&b, "slow-1", ended, Duration::from_secs(20)).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    let stream = tokio::time::timeout(Duration::from_secs(10), follow)
        .await
        .expect("the event stream ends with the run")
        .unwrap();
    assert!(stream.contains("event: run"), "{stream}");
    assert!(stream.contains("\"cancelled\""), "{stream}");

    drop((a, b));
    let records = export_and_verify(&site, db.url());
    let decisions: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["kind"] == "approval" && r["trace_id"] == "appr-x")
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_owned(),
                r["instance"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("requested".to_owned(), "node-a".to_owned()),
            ("refused".to_owned(), "node-b".to_owned()),
            ("approved".to_owned(), "node-b".to_owned())
        ]
    );
    assert_eq!(outcomes(&records)["appr-x"], ["started", "success"]);
    assert_eq!(outcomes(&records)["slow-1"], ["started", "cancelled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_stopped_under_load_fails_closed_and_recovers() {
    let Some(postgres) = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap()
    else {
        return;
    };
    let site = Site::new();
    let server = instance(&site, &postgres.url(), "node-1", &[]);
    let (base, token) = (server.address.clone(), server.jake());
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let mut load = Vec::new();
    for worker in 0..4 {
        let (base, token, client) = (base.clone(), token.clone(), client.clone());
        let (acknowledged, refused, stop) = (
            Arc::clone(&acknowledged),
            Arc::clone(&refused),
            Arc::clone(&stop),
        );
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let trace = format!("outage-{worker}-{n}");
                match post_run(&client, &base, &token, &governance_request("noop"), &trace).await {
                    Some((200, _)) => acknowledged.lock().unwrap().push(trace),
                    Some((status, answer)) => {
                        let code = format!("{status} {}", answer["code"].as_str().unwrap_or("?"));
                        *refused.lock().unwrap().entry(code).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = acknowledged.lock().unwrap().len();
    tokio::task::block_in_place(|| postgres.stop());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = server.get("/health", None).await;
    assert_eq!(health.json()["status"], "degraded", "{}", health.json());
    let during = acknowledged.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        acknowledged.lock().unwrap().len(),
        during,
        "nothing is acknowledged while the database is down"
    );
    tokio::task::block_in_place(|| postgres.resume());
    // Service resumes by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() <= during + 10 {
        assert!(
            Instant::now() < deadline,
            "runs never succeeded again; refused: {:?}",
            refused.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(before > 5, "the load ran before the outage");
    let refusals = refused.lock().unwrap().clone();
    assert!(
        refusals.keys().any(|code| code.starts_with("503")),
        "503s while down: {refusals:?}"
    );
    assert!(
        refusals.keys().all(|code| code.starts_with("503")),
        "only 503s: {refusals:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = server.get("/health", None).await.json();
        if health["status"] == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never recovered: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
    let records = export_and_verify(&site, &postgres.url());
    let by_trace = outcomes(&records);
    for trace in acknowledged.lock().unwrap().iter() {
        assert_eq!(
            by_trace[trace],
            ["started", "success"],
            "{trace} was acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_approvers_at_once_on_one_instance_record_one_decision() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    site.workflow("guarded", &guarded());
    let a = instance(&site, db.url(), "node-a", &[]);
    let b = instance(&site, db.url(), "node-b", &[]);
    let client = reqwest::Client::new();
    for round in 0..3 {
        let trace = format!("both-{round}");
        let (status, _) = post_run(
            &client,
            &a.address,
            &a.jake(),
            &governance_request("guarded"),
            &trace,
        )
        .await
        .unwrap();
        assert_eq!(status, 202);
        let ana = b.token(ANA, "admin");
        let bob = b.token("bob@example.org", "admin");
        let path = format!("/runs/{trace}/approve");
        let (for_ana, for_bob) = (json!({"reason": "ana"}), json!({"reason": "bob"}));
        let (first, second) = tokio::join!(
            b.post_json(&path, &for_ana, Some(&ana)),
            b.post_json(&path, &for_bob, Some(&bob)),
        );
        let statuses = [first.status.as_u16(), second.status.as_u16()];
        assert!(
            statuses.contains(&202),
            "one approval went through: {statuses:?}"
        );
        let run = wait_until(&a, &trace, ended, Duration::from_secs(20)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    drop((a, b));
    let records = export_and_verify(&site, db.url());
    for round in 0..3 {
        let trace = format!("both-{round}");
        let decisions: Vec<&str> = records
            .iter()
            .filter(|r| r["kind"] == "approval" && r["trace_id"] == trace.as_str())
            .filter_map(|r| r["decision"].as_str())
            .filter(|d| *d != "refused")
            .collect();
        assert_eq!(decisions, ["requested", "approved"], "{trace}");
        assert_eq!(
            outcomes(&records)[&trace],
            ["started", "success"],
            "{trace}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronous_run_never_takes_over_a_row_it_did_not_make() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    site.workflow("guarded", &guarded());
    let a = instance(&site, db.url(), "node-a", &[]);
    let client = reqwest::Client::new();
    // A request waits for approval on the database's row...
    let (status, _) = post_run(
        &client,
        &a.address,
        &a.jake(),
        &governance_request("guarded"),
        "same-id",
    )
    .await
    .unwrap();
    assert_eq!(status, 202);
    // ... and a synchronous run with the same trace id on another instance is refused.
    let b = instance(&site, db.url(), "node-b", &[]);
    let (status, answer) = post_run(
        &client,
        &b.address,
        &b.jake(),
        &governance_request("noop"),
        "same-id",
    )
    .await
    .unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("TRACE_ID_IN_USE")),
        "{answer}"
    );
    assert_eq!(status_on(&a, "same-id").await["status"], "pending_approval");
}

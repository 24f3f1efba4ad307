//! API keys for machines: made, listed and revoked on the command line while a server runs, or
//! through `/apikeys`; presented as `Authorization: Bearer sbk_...` or `X-API-Key`; speaking for
//! their owner (the AIM actor must be the owner); refused when wrong, expired or revoked; every
//! creation, revocation and use on the audit trail; never the key itself in a file or a list.

mod postgres;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    governance_request, json_lines, run_request, sustainbot, trace, Finished, Reply, Settings,
    Site, TestApp, TestClient, ANA, JAKE,
};

/// `sustainbot apikey ARGS` with the audit log (and so the key file beside it) at `audit`.
fn apikey(audit: &Path, args: &[&str]) -> Output {
    sustainbot()
        .audit_log(audit)
        .run(&[&["apikey"], args].concat())
}

/// The key file beside the audit log `audit`.
fn key_file(audit: &Path) -> PathBuf {
    audit.with_file_name("api_keys.json")
}

/// A key made on the command line; `(key, id)`. The key is standard output's last line.
fn create(audit: &Path, owner: &str, role: &str, extra: &[&str]) -> (String, String) {
    let args = [&["create", "--owner", owner, "--role", role], extra].concat();
    let output = apikey(audit, &args).expect_exit(0);
    let stdout = output.stdout_text();
    let key = stdout.lines().last().expect("a line").trim().to_owned();
    assert!(key.starts_with("sbk_"), "{}", output.describe());
    let id = key[4..20].to_owned();
    (key, id)
}

/// Sends `method path` with `headers` and an optional JSON body; the answer is checked against the
/// API description.
async fn send(
    api: &TestClient,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&Value>,
) -> Reply {
    let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = api.client.request(method_value, api.url(path));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("json"));
    }
    let reply = Reply::read(request.send().await.expect("request sent")).await;
    reply.check(method, path.split('?').next().unwrap_or(path));
    reply
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

fn x_api_key(key: &str) -> (&'static str, String) {
    ("x-api-key", key.to_owned())
}

/// Runs `body` through the governed endpoint with `headers` and the trace id `id`.
async fn run(api: &TestClient, headers: &[(&str, String)], body: &Value, id: &str) -> Reply {
    let mut headers = headers.to_vec();
    headers.extend(trace(id));
    send(
        api,
        "POST",
        "/workflows/governed/execute",
        &headers,
        Some(body),
    )
    .await
}

/// Polls (every 100 ms, up to `within`) until `GET /workflows` with `headers` answers `status`;
/// how long it took.
async fn until_answered(
    api: &TestClient,
    headers: &[(&str, String)],
    status: u16,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let reply = send(api, "GET", "/workflows", headers, None).await;
        if reply.status.as_u16() == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {} after {within:?}: {}",
            reply.status,
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn records_of_kind(audit: &Path, kind: &str) -> Vec<Value> {
    json_lines(audit)
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// Creates a key through `POST /apikeys` as jake (an admin); the answer.
async fn create_over_http(app: &TestApp, body: Value) -> Value {
    send(app, "POST", "/apikeys", &[bearer(&app.jake())], Some(&body))
        .await
        .expect_ok(201)
}

#[tokio::test]
async fn a_key_made_on_the_command_line_runs_governed_workflows_as_its_owner_until_revoked() {
    let site = Site::new();
    let server = site.start();
    let (key, id) = create(&site.audit(), JAKE, "deployer", &["--name", "ci"]);
    let waited = until_answered(&server, &[bearer(&key)], 200, Duration::from_secs(3)).await;
    assert!(waited < Duration::from_secs(2), "accepted after {waited:?}");

    let ran = run(
        &server,
        &[bearer(&key)],
        &governance_request("noop"),
        "key-run",
    )
    .await;
    assert_eq!(ran.expect_ok(200)["success"], true);
    let audit = site.audit();
    let run_records: Vec<Value> = json_lines(&audit)
        .into_iter()
        .filter(|r| r["trace_id"] == "key-run")
        .collect();
    assert_eq!(run_records.len(), 2, "{run_records:#?}");
    for record in &run_records {
        assert_eq!(record["principal"]["actor"], JAKE, "{record}");
        assert_eq!(record["principal"]["role"], "deployer", "{record}");
        assert_eq!(
            record["principal"]["api_key"]["id"],
            id.as_str(),
            "{record}"
        );
    }

    // The key speaks for its owner only: another actor in the declaration is refused.
    let (anas_key, anas_id) = create(&audit, ANA, "deployer", &[]);
    until_answered(&server, &[bearer(&anas_key)], 200, Duration::from_secs(3)).await;
    let refused = run(
        &server,
        &[bearer(&anas_key)],
        &governance_request("noop"),
        "key-other",
    )
    .await;
    refused.expect(403, "ACTOR_MISMATCH");
    let rejected: Vec<Value> = json_lines(&audit)
        .into_iter()
        .filter(|r| r["trace_id"] == "key-other")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["outcome"], "rejected");
    assert_eq!(rejected[0]["principal"]["api_key"]["id"], anas_id.as_str());

    apikey(&audit, &["revoke", &id])
        .expect_exit(0)
        .expect_stdout("revoked");
    let waited = until_answered(&server, &[bearer(&key)], 401, Duration::from_secs(3)).await;
    assert!(waited < Duration::from_secs(2), "refused after {waited:?}");
    let after = run(
        &server,
        &[bearer(&key)],
        &governance_request("noop"),
        "key-late",
    )
    .await;
    let body = after.expect(401, "INVALID_API_KEY");
    assert_eq!(body["error"], "API key revoked");
    assert!(json_lines(&audit)
        .iter()
        .all(|r| r["trace_id"] != "key-late"));

    // Both creations and the revocation are on the trail, by the local operator, as the server
    // noticed them; the other key still works.
    let changes = records_of_kind(&audit, "apikey");
    let summary: Vec<(String, String)> = changes
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["key_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("created".to_owned(), id.clone()),
            ("created".to_owned(), anas_id.clone()),
            ("revoked".to_owned(), id.clone()),
        ]
    );
    for change in &changes {
        assert_eq!(change["principal"]["role"], "cli", "{change}");
        assert!(change.get("hash").is_none() && !change.to_string().contains("sbk_"));
    }
    assert_eq!(changes[0]["owner"], JAKE);
    assert_eq!(changes[0]["role"], "deployer");
    assert_eq!(changes[0]["name"], "ci");
    until_answered(&server, &[bearer(&anas_key)], 200, Duration::from_secs(1)).await;
}

#[test]
fn the_list_prints_one_line_per_key_and_neither_it_nor_the_file_holds_a_key() {
    let site = Site::new();
    let audit = site.audit();
    apikey(&audit, &["list"])
        .expect_exit(0)
        .expect_stderr("no API keys");
    let (first, first_id) = create(&audit, JAKE, "deployer", &["--expires-days", "30"]);
    let (second, second_id) = create(&audit, ANA, "admin", &["--workflow", "deploy-*"]);
    apikey(&audit, &["revoke", &first_id]).expect_exit(0);
    let listed = apikey(&audit, &["list"]).expect_exit(0);
    let stdout = listed.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{first_id} revoked ")),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!("{second_id} pending ")),
        "not on the trail until a server records it: {stdout}"
    );
    assert!(lines[1].contains("owner=ana@example.org") && lines[1].contains("workflows=deploy-*"));
    let file = std::fs::read_to_string(key_file(&audit)).expect("the key file");
    for key in [&first, &second] {
        let secret = &key[21..];
        assert!(!stdout.contains(secret) && !listed.stderr_text().contains(secret));
        assert!(!file.contains(secret), "the file holds hashes only");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key_file(&audit))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    apikey(&audit, &["revoke", "0000000000000000"])
        .expect_exit(1)
        .expect_stderr("no API key");
    apikey(&audit, &["create", "--owner", "jake", "--role", "deployer"])
        .expect_exit(2)
        .expect_stderr("owner");
}

#[tokio::test]
async fn a_key_is_accepted_in_x_api_key_but_not_beside_another_credential() {
    let app = TestApp::spawn().await;
    let created = create_over_http(&app, json!({"owner": JAKE, "role": "deployer"})).await;
    let key = created["key"].as_str().unwrap();
    let ran = run(
        &app,
        &[x_api_key(key)],
        &governance_request("noop"),
        "x-key",
    )
    .await;
    ran.expect_ok(200);
    let records = app.audit_for("x-key");
    assert_eq!(records[0]["principal"]["api_key"]["id"], created["id"]);
    let both = run(
        &app,
        &[x_api_key(key), bearer(&app.jake())],
        &governance_request("noop"),
        "x-both",
    )
    .await;
    both.expect(401, "INVALID_API_KEY");
    // A bearer value that is not `sbk_...` is a JWT, as before.
    let jwt = run(
        &app,
        &[bearer(&app.jake())],
        &governance_request("noop"),
        "x-jwt",
    )
    .await;
    jwt.expect_ok(200);
    assert!(app.audit_for("x-jwt")[0]["principal"]
        .get("api_key")
        .is_none());
}

#[tokio::test]
async fn a_wrong_secret_for_a_real_id_is_invalid_and_tells_nothing_more() {
    let app = TestApp::spawn().await;
    let created = create_over_http(&app, json!({"owner": JAKE, "role": "deployer"})).await;
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    let flipped: String = key[21..]
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let wrong = format!("sbk_{id}_{flipped}");
    for headers in [vec![bearer(&wrong)], vec![x_api_key(&wrong)]] {
        let body = send(&app, "GET", "/workflows", &headers, None)
            .await
            .expect(401, "INVALID_API_KEY");
        assert_eq!(body["error"], "Invalid API key");
    }
    send(
        &app,
        "DELETE",
        &format!("/apikeys/{id}"),
        &[bearer(&app.jake())],
        None,
    )
    .await
    .expect_ok(200);
    let body = send(&app, "GET", "/workflows", &[bearer(&wrong)], None)
        .await
        .expect(401, "INVALID_API_KEY");
    assert_eq!(
        body["error"], "Invalid API key",
        "a revocation is told to the key's holder only"
    );
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let created = create_over_http(
        &app,
        json!({"owner": JAKE, "role": "deployer", "expires_days": 1}),
    )
    .await;
    assert!(created["expires_at"].is_string());
    let key = created["key"].as_str().unwrap();
    until_answered(&app, &[bearer(key)], 200, Duration::from_secs(1)).await;
    // A day later, as far as the key file is concerned.
    let path = key_file(&app.audit_path);
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["keys"][0]["expires_at"] = json!("2020-01-01T00:00:00Z");
    std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    until_answered(&app, &[bearer(key)], 401, Duration::from_secs(2)).await;
    let body = run(&app, &[bearer(key)], &governance_request("noop"), "expired")
        .await
        .expect(401, "INVALID_API_KEY");
    assert_eq!(body["error"], "API key expired");
    let listed = send(&app, "GET", "/apikeys", &[bearer(&app.jake())], None)
        .await
        .expect_ok(200);
    assert_eq!(listed["keys"][0]["status"], "expired");
}

#[tokio::test]
async fn the_apikeys_endpoints_are_for_admins_in_person() {
    let app = TestApp::spawn().await;
    let admin = app.jake();
    let user = app.token(ANA, "deployer");
    let body = json!({"owner": ANA, "role": "admin", "name": "nightly", "workflows": ["noop"]});
    for (method, path) in [
        ("GET", "/apikeys"),
        ("POST", "/apikeys"),
        ("DELETE", "/apikeys/0000000000000000"),
    ] {
        send(&app, method, path, &[bearer(&user)], Some(&body))
            .await
            .expect(403, "FORBIDDEN_ROLE");
    }
    let created = create_over_http(&app, body.clone()).await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["owner"], ANA);
    assert_eq!(created["status"], "active");
    assert_eq!(created["created_by"], JAKE);
    assert_eq!(created["workflows"], json!(["noop"]));
    // An admin's key is still not a person: it may not manage keys.
    let refused = send(&app, "POST", "/apikeys", &[bearer(&key)], Some(&body))
        .await
        .expect(403, "FORBIDDEN_ROLE");
    assert!(
        refused["error"].as_str().unwrap().contains("API key"),
        "{refused}"
    );

    let listed = send(&app, "GET", "/apikeys", &[bearer(&admin)], None)
        .await
        .expect_ok(200);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(
        listed["keys"][0]["last_used_at"].is_string(),
        "used once, refused"
    );
    assert!(
        !listed.to_string().contains(&key[21..]),
        "never the key in a list"
    );

    for bad in [
        json!({"owner": "not-an-email", "role": "x"}),
        json!({"owner": JAKE, "role": "system"}),
        json!({"owner": JAKE, "role": "x", "expires_days": 0}),
        json!({"owner": JAKE, "role": "x", "workflows": ["../etc"]}),
        json!({"owner": JAKE, "role": "x", "colour": "blue"}),
        json!({"owner": JAKE}),
    ] {
        send(&app, "POST", "/apikeys", &[bearer(&admin)], Some(&bad))
            .await
            .expect(400, "VALIDATION_ERROR");
    }
    let revoked = send(
        &app,
        "DELETE",
        &format!("/apikeys/{id}"),
        &[bearer(&admin)],
        None,
    )
    .await
    .expect_ok(200);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_by"], JAKE);
    send(
        &app,
        "DELETE",
        &format!("/apikeys/{id}"),
        &[bearer(&admin)],
        None,
    )
    .await
    .expect_ok(200);
    send(
        &app,
        "DELETE",
        "/apikeys/0000000000000000",
        &[bearer(&admin)],
        None,
    )
    .await
    .expect(404, "NOT_FOUND");
    send(&app, "GET", "/workflows", &[bearer(&key)], None)
        .await
        .expect(401, "INVALID_API_KEY");

    let changes = records_of_kind(&app.audit_path, "apikey");
    let actions: Vec<&str> = changes
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["created", "revoked"],
        "a second revocation records nothing"
    );
    for change in &changes {
        assert_eq!(change["key_id"], id.as_str());
        assert_eq!(change["owner"], ANA);
        assert_eq!(change["role"], "admin");
        assert_eq!(change["workflows"], json!(["noop"]));
        assert_eq!(change["principal"]["actor"], JAKE, "by whom");
        assert!(!change.to_string().contains(&key[21..]));
    }
    let queried = send(
        &app,
        "GET",
        "/audit/entries?kind=apikey",
        &[bearer(&admin)],
        None,
    )
    .await
    .expect_ok(200);
    assert_eq!(
        queried["entries"].as_array().map(Vec::len),
        Some(2),
        "{queried}"
    );
}

#[tokio::test]
async fn a_key_limited_to_some_workflows_is_refused_the_others_on_the_record() {
    let app = TestApp::spawn().await;
    let created = create_over_http(
        &app,
        json!({"owner": JAKE, "role": "deployer", "workflows": ["no*"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    run(
        &app,
        &[bearer(key)],
        &run_request("noop", "grunt", json!({})),
        "scoped-ok",
    )
    .await
    .expect_ok(200);
    let refused = run(
        &app,
        &[bearer(key)],
        &run_request("with-steps", "grunt", json!({})),
        "scoped-no",
    )
    .await;
    let recorded = refused.expect_refused(&app, 403, "FORBIDDEN_ROLE");
    assert!(recorded.body["error"]
        .as_str()
        .unwrap()
        .contains("with-steps"));
    assert_eq!(
        recorded.record["principal"]["api_key"]["workflows"],
        json!(["no*"])
    );
}

#[tokio::test]
async fn a_key_may_not_decide_a_run_waiting_for_approval() {
    let guarded = json!({"approval": {"required": true, "approver_roles": ["admin"]},
                         "steps": [{"id": "say", "command": ["echo", "hi"]}]});
    let app = TestApp::with_workflow("guarded", guarded).await;
    app.execute(&governance_request("guarded"), &trace("wait-1"))
        .await
        .expect_ok(202);
    let created = create_over_http(&app, json!({"owner": ANA, "role": "admin"})).await;
    let key = created["key"].as_str().unwrap();
    let refused = send(
        &app,
        "POST",
        "/runs/wait-1/approve",
        &[bearer(key)],
        Some(&json!({})),
    )
    .await
    .expect(403, "APPROVAL_REFUSED");
    assert!(
        refused["error"].as_str().unwrap().contains("API key"),
        "{refused}"
    );
    send(
        &app,
        "POST",
        "/runs/wait-1/approve",
        &[bearer(&app.token(ANA, "admin"))],
        Some(&json!({})),
    )
    .await
    .expect_ok(202);
}

#[tokio::test]
async fn a_key_made_while_no_server_runs_is_recorded_before_the_server_serves() {
    let site = Site::new();
    let audit = site.audit();
    let (key, id) = create(&audit, JAKE, "deployer", &[]);
    let (_, revoked_id) = create(&audit, JAKE, "deployer", &[]);
    apikey(&audit, &["revoke", &revoked_id]).expect_exit(0);
    let mut server = site.start();
    // At once: its creation was recorded before the server listened.
    run(
        &server,
        &[bearer(&key)],
        &governance_request("noop"),
        "first-use",
    )
    .await
    .expect_ok(200);
    let records = json_lines(&audit);
    let position = |pred: &dyn Fn(&Value) -> bool| records.iter().position(pred).expect("a record");
    let created = position(&|r| r["kind"] == "apikey" && r["key_id"] == id.as_str());
    let used = position(&|r| r["trace_id"] == "first-use");
    assert!(
        created < used,
        "the creation is on the trail before the first use"
    );
    let revoked: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "apikey" && r["key_id"] == revoked_id.as_str())
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, ["created", "revoked"]);

    // Last uses are written back at shutdown (not per request).
    server.terminate();
    let listed = apikey(&audit, &["list"]).expect_exit(0);
    let line = listed
        .stdout_text()
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("the key's line")
        .to_owned();
    assert!(
        line.contains(" active ") && !line.contains("last_used=never"),
        "{line}"
    );

    // Both verifiers accept a log with API key records.
    sustainbot()
        .run(&["audit", "verify", audit.to_str().unwrap()])
        .expect_exit(0);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_audit.py");
    let python = Command::new("python3")
        .arg(script)
        .arg(&audit)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(python.status.success(), "{}", python.describe());
    // The records a server makes again after a restart: none (each change recorded once).
    let again = site.start();
    run(
        &again,
        &[bearer(&key)],
        &governance_request("noop"),
        "second-use",
    )
    .await
    .expect_ok(200);
    assert_eq!(records_of_kind(&audit, "apikey").len(), 3);
}

#[tokio::test]
async fn a_hand_edit_of_the_key_file_takes_effect_and_is_logged() {
    let site = Site::new();
    let server = site.start();
    let audit = site.audit();
    let (key, _) = create(&audit, JAKE, "deployer", &[]);
    until_answered(&server, &[bearer(&key)], 200, Duration::from_secs(3)).await;
    let path = key_file(&audit);
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["keys"] = json!([]);
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    until_answered(&server, &[bearer(&key)], 401, Duration::from_secs(3)).await;
    assert_eq!(
        server.logged_count("removed from the store by hand"),
        1,
        "{}",
        server.stderr()
    );
    assert_eq!(
        records_of_kind(&audit, "apikey").len(),
        1,
        "no record of it"
    );
}

//! The in-process server: `sustainbot::Application` on an ephemeral port, in its own temporary
//! directory, and the assertions that read its audit trail.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sustainbot::audit::verify::{verify_path, Report};
use sustainbot::auth::{parse_algorithm, JwtKeys};
use sustainbot::config::{Config, Overrides};
use sustainbot::Application;
use tempfile::TempDir;

use super::{json_lines, Reply, Settings, TestClient, TEST_SECRET};

/// A running server and everything a test needs to talk to it; derefs to its [`TestClient`].
pub struct TestApp {
    pub api: TestClient,
    pub audit_path: PathBuf,
    pub workflows_dir: PathBuf,
    /// The running server's state, for tests that drive the gate directly.
    pub state: sustainbot::http::AppState,
    /// Holds the workflows and the audit log; removed when the test ends.
    _dir: TempDir,
}

/// Configures a [`TestApp`] before it starts; its settings come from [`Settings`].
pub struct TestAppBuilder {
    env: BTreeMap<String, String>,
    workflows: Vec<(String, Value)>,
    /// Definition files written as they are: `(file name, text)`.
    files: Vec<(String, String)>,
    dev: bool,
    scripts: Option<PathBuf>,
    /// Whether `noop` and `with-steps` are written beside the test's own workflows.
    default_workflows: bool,
}

/// What a refused request (or a failed run) left behind: its error body and its last audit record.
pub struct Recorded {
    pub body: Value,
    pub record: Value,
}

impl Settings for TestAppBuilder {
    fn env(mut self, key: &str, value: &str) -> Self {
        self.env = self.env.env(key, value);
        self
    }
}

impl TestAppBuilder {
    /// Adds `workflows/<name>.json` with `definition`.
    pub fn workflow(mut self, name: &str, definition: Value) -> Self {
        self.workflows.push((name.to_owned(), definition));
        self
    }

    /// Adds `workflows/<file_name>` with `text` as it is (a YAML definition, a broken file).
    pub fn workflow_file(mut self, file_name: &str, text: &str) -> Self {
        self.files.push((file_name.to_owned(), text.to_owned()));
        self
    }

    /// Copies these files into `workflows/scripts/` (permissions kept), for command steps.
    pub fn scripts_from(mut self, dir: &Path) -> Self {
        self.scripts = Some(dir.to_owned());
        self
    }

    /// Only the test's own workflows: no `noop` and `with-steps` (a directory that must match
    /// another server's, as the compat test's does).
    pub fn without_default_workflows(mut self) -> Self {
        self.default_workflows = false;
        self
    }

    /// Development mode (`--dev`).
    pub fn dev(mut self, dev: bool) -> Self {
        self.dev = dev;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let workflows = dir.path().join("workflows");
        std::fs::create_dir_all(&workflows).expect("workflows dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        let mut files = Vec::new();
        if self.default_workflows {
            files.push(("noop".to_owned(), json!({"steps": []})));
            files.push((
                "with-steps".to_owned(),
                json!({"steps": [{"id": "build", "command": ["false"]}]}),
            ));
        }
        files.extend(self.workflows);
        if let Some(source) = &self.scripts {
            let target = workflows.join("scripts");
            std::fs::create_dir_all(&target).expect("scripts dir");
            for entry in std::fs::read_dir(source).expect("read scripts") {
                let path = entry.expect("script entry").path();
                std::fs::copy(&path, target.join(path.file_name().expect("file name")))
                    .expect("copy script");
            }
        }
        for (name, definition) in files {
            std::fs::write(
                workflows.join(format!("{name}.json")),
                serde_json::to_vec_pretty(&definition).expect("workflow json"),
            )
            .expect("write workflow");
        }
        for (file_name, text) in &self.files {
            std::fs::write(workflows.join(file_name), text).expect("write workflow file");
        }

        // The defaults first, so that the test's own settings override them.
        let mut vars = BTreeMap::new()
            .jwt_secret(TEST_SECRET)
            .workflows_dir(&workflows)
            .audit_log(&dir.path().join("logs/audit.jsonl"))
            .nothing_listening();
        vars.extend(self.env);
        let audit_path = PathBuf::from(&vars["AUDIT_LOG_PATH"]);
        let algorithm = vars.get("JWT_ALGORITHM").map_or("HS256", String::as_str);
        let keys = JwtKeys::new(
            vars["JWT_SECRET"].as_bytes(),
            parse_algorithm(algorithm).expect("a known algorithm"),
        );

        let config = Config::from_lookup(
            |name| vars.get(name).cloned(),
            Overrides {
                host: Some("127.0.0.1".to_owned()),
                port: Some(0),
                dev: self.dev,
            },
        )
        .expect("test configuration is valid");
        let app = Application::build(config).await.expect("server starts");
        let address = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        TestApp {
            api: TestClient::new(address, keys),
            audit_path,
            workflows_dir: workflows,
            state,
            _dir: dir,
        }
    }
}

impl Deref for TestApp {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.api
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            env: BTreeMap::new(),
            workflows: Vec::new(),
            files: Vec::new(),
            dev: false,
            scripts: None,
            default_workflows: true,
        }
    }

    /// A server with the defaults: governance on, the two standard workflows.
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    /// A server with the defaults and one more workflow.
    pub async fn with_workflow(name: &str, definition: Value) -> TestApp {
        TestApp::builder().workflow(name, definition).spawn().await
    }

    /// Every line of the audit log as JSON (none when the file does not exist).
    pub fn audit_lines(&self) -> Vec<Value> {
        json_lines(&self.audit_path)
    }

    /// The audit records of one trace id, in order.
    pub fn audit_for(&self, trace_id: &str) -> Vec<Value> {
        self.audit_lines()
            .into_iter()
            .filter(|line| line["trace_id"] == trace_id)
            .collect()
    }

    /// Each audit record of one trace id as its decision (approval records) or its outcome.
    pub fn outcomes(&self, trace_id: &str) -> Vec<String> {
        self.audit_for(trace_id).iter().map(step).collect()
    }

    /// Verifies the audit log the way `sustainbot audit verify` does.
    pub fn verify_audit(&self) -> Report {
        verify_path(&self.audit_path).expect("audit log readable")
    }
}

/// One record of a trail: its `decision` (approval records) or its `outcome`; `?` for neither.
pub fn step(record: &Value) -> String {
    record["decision"]
        .as_str()
        .or(record["outcome"].as_str())
        .unwrap_or("?")
        .to_owned()
}

impl Reply {
    /// Asserts a refusal as the contract states it: `status` with `code`, and exactly one audit
    /// record for the trace id the body names, `rejected` with the same code.
    #[track_caller]
    pub fn expect_refused(&self, app: &TestApp, status: u16, code: &str) -> Recorded {
        self.expect_refused_as(app, status, code, "rejected")
    }

    /// [`Reply::expect_refused`] for refusals on the record with another outcome (`failure` for a
    /// workflow name that is invalid or unknown).
    #[track_caller]
    pub fn expect_refused_as(
        &self,
        app: &TestApp,
        status: u16,
        code: &str,
        outcome: &str,
    ) -> Recorded {
        let body = self.expect(status, code);
        let records = app.audit_for(trace_id(&body));
        assert_eq!(records.len(), 1, "one audit record: {records:#?}");
        let record = records.into_iter().next().expect("one record");
        assert_eq!(record["outcome"], outcome, "{record}");
        assert_eq!(record["code"], code, "{record}");
        Recorded { body, record }
    }

    /// Asserts a run that started and failed: `status` with `code`, and the body's trace id on the
    /// record as `started` then `failure` with that code. The record is the `failure` one.
    #[track_caller]
    pub fn expect_run_failed(&self, app: &TestApp, status: u16, code: &str) -> Recorded {
        let body = self.expect(status, code);
        let records = app.audit_for(trace_id(&body));
        let outcomes: Vec<String> = records.iter().map(step).collect();
        assert_eq!(outcomes, ["started", "failure"], "{records:#?}");
        let record = records.into_iter().next_back().expect("two records");
        assert_eq!(record["code"], code, "{record}");
        Recorded { body, record }
    }
}

#[track_caller]
fn trace_id(body: &Value) -> &str {
    body["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the body names its trace id: {body}"))
}

//! The `sustainbot` binary as a child process: a clean environment, a site (directory) to run in,
//! its command line, and servers on a free port that are killed when dropped.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use sustainbot::auth::JwtKeys;
use sustainbot::sync;

use super::{json_lines, Settings, TestClient, TEST_SECRET};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sustainbot");

/// The binary, configured before it runs.
pub struct Process {
    command: Command,
    /// `RUST_LOG` of a server (`info`: the address is read from its log).
    level: &'static str,
}

/// What a command line left when it ended (`std::process::Output`), with assertions on it.
pub trait Finished {
    /// Asserts the exit code (with everything the process printed on failure).
    #[track_caller]
    fn expect_exit(self, code: i32) -> Self;
    /// Asserts that stdout contains `text`.
    #[track_caller]
    fn expect_stdout(self, text: &str) -> Self;
    /// Asserts that stderr contains `text`.
    #[track_caller]
    fn expect_stderr(self, text: &str) -> Self;
    fn stdout_text(&self) -> Cow<'_, str>;
    fn stderr_text(&self) -> Cow<'_, str>;
    /// Exit status, stdout and stderr, for failure messages.
    fn describe(&self) -> String;
}

/// The binary with a clean environment (no inherited `JWT_SECRET`, `AUDIT_LOG_PATH` or `.env`
/// surprises): only `PATH`, and `RUST_LOG=warn`.
pub fn sustainbot() -> Process {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    Process {
        command,
        level: "info",
    }
}

impl Settings for Process {
    fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }
}

impl Process {
    /// A server that logs at `debug`.
    pub fn debug_logs(self) -> Self {
        Process {
            level: "debug",
            ..self
        }
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Runs it with at most `limit` open file descriptors (as `ulimit -n` in a shell would).
    pub fn descriptor_limit(mut self, limit: u64) -> Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls setrlimit, which is async-signal-safe.
        unsafe {
            self.command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        self
    }

    /// Runs it with `args` to the end.
    pub fn run(mut self, args: &[&str]) -> Output {
        self.command
            .args(args)
            .output()
            .expect("run the sustainbot binary")
    }

    /// `--run workflow` with the `request.json` of its [`Site`].
    pub fn run_workflow(self, workflow: &str) -> Output {
        self.run(&["--run", workflow, "--request", "request.json"])
    }

    /// [`Process::run_workflow`] without waiting for it; its stdout is piped.
    // The caller waits for (or kills) the child it gets back.
    #[allow(clippy::zombie_processes)]
    pub fn spawn_workflow(mut self, workflow: &str) -> Child {
        self.command
            .args(["--run", workflow, "--request", "request.json"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the sustainbot binary")
    }

    /// The server command: port 0 on loopback, info logs (the address is read from them).
    fn serve(mut self) -> Command {
        self.command
            .env("RUST_LOG", self.level)
            .env("NO_COLOR", "1")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.command
    }

    /// Starts a server and waits for its address; panics (with its stderr) if it does not start.
    pub fn start(self) -> ServerProcess {
        let mut child = self.serve().spawn().expect("spawn the server");
        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("address=").nth(1) {
                    let _ = tx.send(address.trim().to_owned());
                }
                let mut lines = sync::lock(&lines);
                if lines.len() == 200 {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        ServerProcess::wait_for_address(child, tail, || {
            rx.recv_timeout(Duration::from_millis(50)).ok()
        })
    }

    /// Starts a server that writes its log as JSON lines to `log` (its readable text on stderr is
    /// dropped) and waits for the line that gives its address.
    pub fn start_with_json_log(self, log: &Path) -> ServerProcess {
        self.start_logging_to(log, Stdio::null())
    }

    /// Starts a server that writes JSON lines to `log` and its readable text to `stderr`, and
    /// waits for the JSON line that gives its address.
    pub fn start_logging_to(self, log: &Path, stderr: impl Into<Stdio>) -> ServerProcess {
        let mut command = self.json_log(log).serve();
        let child = command.stderr(stderr).spawn().expect("spawn the server");
        ServerProcess::wait_for_address(child, Arc::default(), || {
            let listening = json_lines(log)
                .into_iter()
                .find(|line| line["message"] == "SustainBot listening");
            let address = listening.and_then(|line| line["address"].as_str().map(str::to_owned));
            if address.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            address
        })
    }

    /// Starts a server that must refuse to: waits up to `within` for it to exit and returns its
    /// exit status and stderr (killing it and failing when it is still running by then).
    pub fn start_expecting_exit(self, within: Duration) -> (ExitStatus, String) {
        let mut child = self.serve().spawn().expect("spawn the server");
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll the server") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server was still running after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        (status, stderr)
    }
}

impl Finished for Output {
    #[track_caller]
    fn expect_exit(self, code: i32) -> Self {
        assert_eq!(self.status.code(), Some(code), "{}", self.describe());
        self
    }

    #[track_caller]
    fn expect_stdout(self, text: &str) -> Self {
        assert!(self.stdout_text().contains(text), "{}", self.describe());
        self
    }

    #[track_caller]
    fn expect_stderr(self, text: &str) -> Self {
        assert!(self.stderr_text().contains(text), "{}", self.describe());
        self
    }

    fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    fn describe(&self) -> String {
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status.code(),
            self.stdout_text(),
            self.stderr_text()
        )
    }
}

/// Sends SIGTERM to a child process (asks it to shut down gracefully).
pub fn sigterm(child: &Child) {
    signal(child, libc::SIGTERM);
}

/// Sends `signal` to a child process.
fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: sends a signal to our own child process.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "signal {signal} sent");
}

/// The keys of [`TEST_SECRET`], the secret every server process here is given.
fn test_keys() -> JwtKeys {
    JwtKeys::new(TEST_SECRET.as_bytes(), Algorithm::HS256)
}

/// A temporary directory to run the binary in, with `workflows/noop.json` and `request.json` (a
/// [`cli_request`]); the audit log goes to `logs/audit.jsonl`.
pub struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("workflows")).expect("workflows dir");
        std::fs::write(dir.path().join("workflows/noop.json"), r#"{"steps": []}"#)
            .expect("noop workflow");
        std::fs::write(dir.path().join("request.json"), cli_request().to_string())
            .expect("request");
        Site { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn audit(&self) -> PathBuf {
        self.dir.path().join("logs/audit.jsonl")
    }

    /// Writes `workflows/<name>.json`.
    pub fn workflow(&self, name: &str, definition: &Value) {
        self.write(&format!("workflows/{name}.json"), &definition.to_string());
    }

    /// Writes a file of the site, `relative` to it.
    pub fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.path().join(relative), text).expect("write a site file");
    }

    /// The binary in this site: the test secret, this site's workflows and audit log, and nothing
    /// listening where it would look for a model server.
    pub fn sustainbot(&self) -> Process {
        sustainbot()
            .current_dir(self.path())
            .jwt_secret(TEST_SECRET)
            .workflows_dir(&self.path().join("workflows"))
            .audit_log(&self.audit())
            .nothing_listening()
    }

    /// Starts a server here; see [`Process::start`].
    pub fn start(&self) -> ServerProcess {
        self.sustainbot().start()
    }

    /// Runs `workflow` here with `request.json`; see [`Process::run_workflow`].
    pub fn run_workflow(&self, workflow: &str) -> Output {
        self.sustainbot().run_workflow(workflow)
    }

    /// `sustainbot audit keygen` into `keys/`; the private and the public key.
    pub fn keygen(&self) -> (PathBuf, PathBuf) {
        self.sustainbot()
            .run(&["audit", "keygen", "--out", "keys"])
            .expect_exit(0);
        let keys = self.path().join("keys");
        (
            keys.join("audit-signing.key"),
            keys.join("audit-signing.pub"),
        )
    }
}

/// A governance request as an operator at a terminal gives it to `--run` (the workflow comes from
/// the command line).
pub fn cli_request() -> Value {
    json!({
        "workflow_name": "ignored",
        "aim": {"actor": {"name": "Jake Smith", "role": "DevOps Engineer"},
                "input": {"sources": [{"type": "cli", "description": "operator at a terminal"}]},
                "mission": {"objective": "Run the no-op workflow from the command line",
                            "success_criteria": ["exit code 0"]}},
        "drag_mode": "grunt"
    })
}

/// A server process; derefs to a [`TestClient`] for it. SIGKILLed on drop.
pub struct ServerProcess {
    child: Child,
    pub api: TestClient,
    /// The last lines of its stderr, for failure messages.
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl std::ops::Deref for ServerProcess {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.api
    }
}

impl ServerProcess {
    /// Waits up to 30 s for `next` to find the address of the server `child`; panics (with the
    /// `stderr` lines it logged) if it exits or does not say where it listens by then.
    fn wait_for_address(
        child: Child,
        stderr: Arc<Mutex<VecDeque<String>>>,
        mut next: impl FnMut() -> Option<String>,
    ) -> ServerProcess {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut server = ServerProcess {
            child,
            api: TestClient::new(String::new(), test_keys()),
            stderr,
        };
        loop {
            if let Some(address) = next() {
                server.api.address = format!("http://{address}");
                return server;
            }
            if Instant::now() > deadline {
                panic!("the server did not start in 30 s:\n{}", server.stderr());
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the server exited with {status} instead of starting:\n{}",
                    server.stderr()
                );
            }
        }
    }

    /// Runs `count` governed runs of `noop` one after the other and asserts each is
    /// acknowledged; returns their ids (`<prefix>-<n>`).
    pub async fn governed_runs(&self, prefix: &str, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for n in 0..count {
            let id = format!("{prefix}-{n}");
            let reply = self
                .execute(&super::governance_request("noop"), &super::trace(&id))
                .await;
            assert_eq!(
                reply.status.as_u16(),
                200,
                "{id}: {}\n{}",
                reply.text,
                self.stderr()
            );
            ids.push(id);
        }
        ids
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap it so its lock is gone.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server")
    }

    /// SIGHUP (reload the workflows, reopen the JSON log file).
    pub fn hangup(&self) {
        signal(&self.child, libc::SIGHUP);
    }

    /// SIGTERM (a graceful shutdown), then wait for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        sigterm(&self.child);
        self.child.wait().expect("reap the server")
    }

    /// Sends it `signal` (`libc::SIGTERM`, `SIGINT`, `SIGHUP`).
    pub fn signal(&self, signal: libc::c_int) {
        self::signal(&self.child, signal);
    }

    /// Its process id.
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a pid")
    }

    /// Waits up to `within` for it to exit; its exit status, or `None` (still running) by then.
    pub fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many of the lines it logged (of the last ones kept) contain `text`.
    pub fn logged_count(&self, text: &str) -> usize {
        sync::lock(&self.stderr)
            .iter()
            .filter(|line| line.contains(text))
            .count()
    }

    /// The last lines it logged.
    pub fn stderr(&self) -> String {
        let lines = sync::lock(&self.stderr);
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

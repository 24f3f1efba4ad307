//! The Prometheus project's own tools, for tests of what real scrapers and rule engines accept:
//! `promtool` and the `prometheus` server. They are found on `PATH`, or where `PROMTOOL` and
//! `PROMETHEUS` point; Debian's `prometheus` package brings both (`.ci/run` installs it). Without
//! them a test says so loudly and passes, except under CI (`CI` set), where a missing tool fails it.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `promtool`, or `None` after a loud notice that the calling test is skipped.
pub fn promtool() -> Option<PathBuf> {
    find("promtool", "PROMTOOL")
}

/// The `prometheus` server, or `None` after a loud notice that the calling test is skipped.
pub fn prometheus() -> Option<PathBuf> {
    find("prometheus", "PROMETHEUS")
}

fn find(name: &str, variable: &str) -> Option<PathBuf> {
    let found = match std::env::var_os(variable) {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
        }),
    };
    if found.is_none() {
        let missing = format!(
            "`{name}` is not installed (apt-get install prometheus, or set {variable} to its path)"
        );
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!ci, "{missing}: CI installs it in .ci/run");
        // Straight to the terminal: the test harness would swallow an `eprintln!` of a passing test.
        let notice = format!("\n!!!!! SKIPPED: {missing} !!!!!\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    }
    found
}

/// Runs `promtool args...`; its output, or a panic showing it when the exit status is not 0.
pub fn promtool_ok<I, S>(promtool: &Path, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new(promtool)
        .args(args)
        .output()
        .expect("run promtool");
    let text = describe(&output);
    assert!(output.status.success(), "promtool failed:\n{text}");
    text
}

/// `promtool check metrics` on `page` (the Prometheus text format, read from standard input).
pub fn check_metrics(promtool: &Path, page: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut stdin = child.stdin.take().expect("promtool stdin");
    stdin.write_all(page.as_bytes()).expect("write the page");
    drop(stdin);
    child.wait_with_output().expect("promtool output")
}

pub fn describe(output: &Output) -> String {
    format!(
        "status {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The names of the samples on a Prometheus text page (`_bucket`, `_sum`, `_total`... as scraped).
pub fn sample_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// A running `prometheus` server, stopped (and its data removed) when dropped.
pub struct Prometheus {
    child: std::process::Child,
    pub address: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` on a free loopback port, scraping `target` (`host:port`) every second as job
    /// `sustainbot`; returns once it answers `/-/ready` (at most 30 s).
    pub async fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: sustainbot\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write prometheus.yml");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        // Another process may take the free port between our look and Prometheus's bind: try again.
        for _ in 0..3 {
            let address = format!("127.0.0.1:{}", free_port());
            let mut child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={address}"))
                .arg("--log.level=warn")
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start prometheus");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("prometheus exited at start ({status}); trying another port");
                    break;
                }
                let ready = client.get(format!("http://{address}/-/ready")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return Prometheus {
                        child,
                        address,
                        client,
                        _dir: dir,
                    };
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("prometheus did not become ready");
    }

    /// `GET /api/v1/query?query=...`: the result vector (`data.result`).
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let reply: Value = self
            .client
            .get(format!("http://{}/api/v1/query", self.address))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("query answer is JSON");
        assert_eq!(reply["status"], "success", "{promql}: {reply}");
        reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single value `promql` has now, once it equals `expected`; panics with the last value after
    /// `within`.
    pub async fn wait_for_value(&self, promql: &str, expected: f64, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.query(promql).await;
            let value = last
                .first()
                .and_then(|sample| sample["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok());
            if last.len() == 1 && value == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{promql}: expected {expected} within {within:?}, last answer {last:?}");
    }

    /// `GET /api/v1/targets`: the active targets.
    pub async fn targets(&self) -> Vec<Value> {
        let reply: Value = self
            .client
            .get(format!("http://{}/api/v1/targets", self.address))
            .send()
            .await
            .expect("targets")
            .json()
            .await
            .expect("targets answer is JSON");
        reply["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    /// Stops the server before its temporary directory goes.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

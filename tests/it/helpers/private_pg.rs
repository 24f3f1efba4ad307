//! A PostgreSQL server of a test's own (`initdb` in a temporary directory, on a free port), for
//! the tests that stop and start the database under a running server: the machine's shared server
//! must never be stopped. `None` (after saying so loudly) when PostgreSQL's binaries are not
//! installed, unless `CI` or `SUSTAINBOT_REQUIRE_POSTGRES=1` is set.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// As root, PostgreSQL runs as `postgres` (it refuses root).
    run_as: Option<String>,
}

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("SUSTAINBOT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// The newest installed server's binaries (Debian: `/usr/lib/postgresql/<version>/bin`).
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("pg_ctl").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PrivatePostgres {
    /// Creates and starts a server.
    pub fn start() -> Option<PrivatePostgres> {
        let Some(bin) = binaries() else {
            assert!(
                !required(),
                "PostgreSQL is required (CI) but its binaries are not installed"
            );
            eprintln!(
                "\n!!!!! SKIPPED: PostgreSQL's binaries (initdb, pg_ctl) are not installed !!!!!\n"
            );
            return None;
        };
        let root = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::tempdir().expect("tempdir");
        let run_as = root.then(|| "postgres".to_owned());
        if root {
            let chowned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(chowned.success(), "chown the private database directory");
        }
        let server = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
            run_as,
        };
        let data = server.data();
        let initdb = server.command(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        server.resume();
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run a PostgreSQL command")
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let started = self.command(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().expect("utf-8 path"),
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            started.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (fast: connections are cut, as when a database server goes down).
    pub fn stop(&self) {
        let stopped = self.command(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().expect("utf-8 path"),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        assert!(
            stopped.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&stopped.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.command(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

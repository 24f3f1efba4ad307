//! Runs one `command` workflow step as a real child process, safely.
//!
//! - No shell, ever: `argv[0]` is the program and the rest are passed as literal arguments.
//! - The child's environment is exactly [`CommandSpec::env`]; the server's is never inherited, and a
//!   bare program name is looked up only on the `PATH` given there (absolute entries only).
//! - The child leads its own process group. On timeout or cancellation the whole group gets SIGTERM,
//!   then SIGKILL after [`TERM_GRACE`]; if the future running the step is dropped, the group gets
//!   SIGKILL at once. When the step ends normally, whatever it left running in its group is killed
//!   too, so nothing a step starts in its group outlives it.
//! - stdout and stderr are drained concurrently for as long as the child runs (a chatty child never
//!   blocks on a full pipe), keeping at most [`CommandSpec::max_output_bytes`] of each, with every
//!   secret in [`CommandSpec::redact`] replaced by `[REDACTED]`.
//!
//! Known limit: after a step exits normally its group is killed once the leader has been reaped. A
//! process-group id cannot be reused while any member of the group is alive, so this can only
//! misfire if the group is already empty and, within that instant, the kernel hands the same number
//! to a new process that also makes itself a group leader.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a timed-out or cancelled step has between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long the output pipes may stay open once the step's own process has exited (or been killed)
/// before its group is killed and reading stops.
pub const PIPE_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for the kernel to reap a SIGKILLed child before leaving it to tokio's reaper.
const REAP_LIMIT: Duration = Duration::from_secs(5);
/// What every secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";
/// Read size for the output pipes.
const CHUNK: usize = 16 * 1024;

/// What to run. `argv[0]` is the program: a bare name is looked up on the PATH given in `env`; a
/// relative path containing '/' is resolved against `base_dir` (the workflows directory); absolute as is.
#[derive(Clone)]
pub struct CommandSpec {
    /// Already substituted; never passed to a shell.
    pub argv: Vec<String>,
    /// The child's WHOLE environment (the parent's is cleared).
    pub env: Vec<(String, String)>,
    /// Resolves relative programs; also the working directory.
    pub base_dir: PathBuf,
    pub timeout: Duration,
    /// Cap per stream (stdout, stderr).
    pub max_output_bytes: usize,
    /// Secret values to replace with "[REDACTED]" in captured output (non-empty ones only).
    pub redact: Vec<String>,
}

/// Shows the command with secrets redacted and only the names of the environment variables.
impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let argv: Vec<String> = self.argv.iter().map(|a| redact(a, &self.redact)).collect();
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CommandSpec")
            .field("argv", &argv)
            .field("env", &env)
            .field("base_dir", &self.base_dir)
            .field("timeout", &self.timeout)
            .field("max_output_bytes", &self.max_output_bytes)
            .field("redact", &format_args!("<{} secrets>", self.redact.len()))
            .finish()
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// None when killed by a signal / timed out.
    pub exit_code: Option<i32>,
    /// The signal that ended the step's own process, if one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Lossy UTF-8, capped, redacted.
    pub stdout: String,
    pub stderr: String,
    /// The stream had more than `max_output_bytes` (after redaction) and was cut.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration: Duration,
}

impl CommandOutcome {
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }
}

/// Why a step could not be run to an outcome. Program names are shown redacted.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("the command is empty")]
    Empty,
    #[error("program not found: {program}")]
    NotFound { program: String },
    #[error("program is not an executable file: {program}")]
    NotExecutable { program: String },
    #[error("invalid environment variable {name:?}: names must be non-empty without '=' or NUL, values without NUL")]
    InvalidEnv { name: String },
    #[error("working directory {}: {source}", path.display())]
    BaseDir { path: PathBuf, source: io::Error },
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("lost track of {program}: {source}")]
    Wait { program: String, source: io::Error },
    /// The cancellation channel turned true (before or while the step ran); its process group has
    /// been killed.
    #[error("the step was cancelled")]
    Cancelled,
}

/// Runs the step to completion, timeout or cancellation (`cancel` turning true; a dropped sender
/// never cancels). Dropping the returned future kills the step's whole process group.
pub async fn run(
    spec: &CommandSpec,
    mut cancel: Option<watch::Receiver<bool>>,
) -> Result<CommandOutcome, CommandError> {
    let Some(program) = spec.argv.first().filter(|p| !p.is_empty()) else {
        return Err(CommandError::Empty);
    };
    if cancel.as_ref().is_some_and(|rx| *rx.borrow()) {
        return Err(CommandError::Cancelled);
    }
    let shown = redact(program, &spec.redact);
    check_env(spec)?;
    let base_dir = working_dir(&spec.base_dir).await?;
    let resolved = resolve_program(program, spec, &base_dir, &shown).await?;

    let mut command = Command::new(&resolved);
    command
        .args(spec.argv.iter().skip(1))
        .env_clear()
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .current_dir(&base_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);

    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        program: shown.clone(),
        source,
    })?;
    // Declared after `child` so that, if this future is dropped, the group is killed while the
    // leader is still unreaped (its pgid cannot have been reused).
    let mut group = GroupGuard::new(child.id());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let keep = spec
        .max_output_bytes
        .saturating_add(lookahead(&spec.redact));
    let mut out = Capture::new(keep);
    let mut err = Capture::new(keep);
    let ending = {
        let readers = pin!(async {
            tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err));
        });
        supervise(&mut child, &group, readers, spec.timeout, cancel.as_mut()).await
    };
    // `supervise` has already sent the group its final SIGKILL.
    group.disarm();

    let (exit_code, signal, timed_out) = match ending {
        Ending::Exited(status) => (status.code(), status.signal(), false),
        Ending::TimedOut(status) => (None, status.and_then(|s| s.signal()), true),
        Ending::Cancelled => return Err(CommandError::Cancelled),
        Ending::Lost(source) => {
            return Err(CommandError::Wait {
                program: shown,
                source,
            })
        }
    };
    let (stdout, stdout_truncated) = out.render(spec.max_output_bytes, &spec.redact);
    let (stderr, stderr_truncated) = err.render(spec.max_output_bytes, &spec.redact);
    Ok(CommandOutcome {
        exit_code,
        signal,
        timed_out,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        duration: started.elapsed(),
    })
}

/// Replaces every occurrence of every non-empty secret with "[REDACTED]" (longest secrets first).
///
/// Occurrences that overlap (of one secret or of several) are merged into a single `[REDACTED]`, so
/// no fragment of any secret survives; this is at least as strict as replacing longest first.
pub fn redact(text: &str, secrets: &[String]) -> String {
    replace_ranges(text, &secret_ranges(text, secrets), text.len())
}

/// How the supervised child ended.
enum Ending {
    Exited(ExitStatus),
    /// With the status if the child could be reaped.
    TimedOut(Option<ExitStatus>),
    Cancelled,
    Lost(io::Error),
}

/// Waits for the child while draining its pipes; enforces the timeout and cancellation. Every path
/// ends with SIGKILL to the group.
async fn supervise<F: Future<Output = ()>>(
    child: &mut Child,
    group: &GroupGuard,
    mut readers: Pin<&mut F>,
    timeout: Duration,
    cancel: Option<&mut watch::Receiver<bool>>,
) -> Ending {
    let mut readers_done = false;
    // `sleep` (unlike `sleep_until(now + timeout)`) saturates huge timeouts instead of panicking.
    let mut deadline = pin!(tokio::time::sleep(timeout));
    let mut cancelled = pin!(until_cancelled(cancel));

    let stop = loop {
        tokio::select! {
            biased;
            status = child.wait() => match status {
                Ok(status) => {
                    // Background grandchildren may hold the pipes open: a short grace, then stop.
                    if !readers_done {
                        let _ = tokio::time::timeout(PIPE_GRACE, readers.as_mut()).await;
                    }
                    group.signal(libc::SIGKILL);
                    return Ending::Exited(status);
                }
                Err(source) => break Ending::Lost(source),
            },
            () = readers.as_mut(), if !readers_done => readers_done = true,
            () = &mut deadline => break Ending::TimedOut(None),
            () = &mut cancelled => break Ending::Cancelled,
        }
    };

    // Timed out, cancelled or lost: SIGTERM the group, give it TERM_GRACE to go (still draining
    // the pipes), then SIGKILL whatever is left.
    group.signal(libc::SIGTERM);
    let mut status = None;
    let mut waiting = !matches!(stop, Ending::Lost(_));
    let mut term_deadline = pin!(tokio::time::sleep(TERM_GRACE));
    while waiting || !readers_done {
        tokio::select! {
            biased;
            result = child.wait(), if waiting => {
                waiting = false;
                status = result.ok();
            }
            () = readers.as_mut(), if !readers_done => readers_done = true,
            () = &mut term_deadline => break,
        }
    }
    group.signal(libc::SIGKILL);
    if waiting {
        status = tokio::time::timeout(REAP_LIMIT, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
    }
    if !readers_done {
        let _ = tokio::time::timeout(PIPE_GRACE, readers.as_mut()).await;
    }
    match stop {
        Ending::TimedOut(_) => Ending::TimedOut(status),
        other => other,
    }
}

/// Completes when the channel turns true; never if there is no channel or its sender is dropped.
async fn until_cancelled(cancel: Option<&mut watch::Receiver<bool>>) {
    if let Some(rx) = cancel {
        if rx.wait_for(|&cancelled| cancelled).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Signals the child's process group; on drop (the future running the step was dropped) SIGKILLs it.
struct GroupGuard {
    /// The group id, always > 1: never our own group (0) nor "every process" (-1) or init's.
    pgid: Option<libc::pid_t>,
}

impl GroupGuard {
    fn new(pid: Option<u32>) -> GroupGuard {
        let pgid = pid
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .filter(|&pgid| pgid > 1);
        GroupGuard { pgid }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg has no memory-safety preconditions; `pgid` > 1 so it can only reach
            // the child's own group. Failure (ESRCH: the group is gone) is fine to ignore.
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// One output stream: the first `keep` bytes, and how many there were in all.
struct Capture {
    bytes: Vec<u8>,
    keep: usize,
    total: usize,
}

impl Capture {
    fn new(keep: usize) -> Capture {
        Capture {
            bytes: Vec::new(),
            keep,
            total: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.total = self.total.saturating_add(chunk.len());
        let room = self.keep.saturating_sub(self.bytes.len()).min(chunk.len());
        self.bytes
            .extend_from_slice(chunk.get(..room).unwrap_or_default());
    }

    /// Lossy UTF-8, redacted, at most `max` bytes; and whether anything was cut.
    ///
    /// `keep` includes a look-ahead of (longest secret - 1) bytes past `max`, so every secret that
    /// starts inside the visible part is seen whole and redacted; text past the visible part is
    /// dropped before redaction can shift it forward, so no fragment of a secret is ever shown.
    fn render(&self, max: usize, secrets: &[String]) -> (String, bool) {
        let text = String::from_utf8_lossy(&self.bytes);
        let mut truncated = self.total > max;
        let limit = if text.len() > max {
            truncated = true;
            floor_char_boundary(&text, max)
        } else {
            text.len()
        };
        let mut shown = replace_ranges(&text, &secret_ranges(&text, secrets), limit);
        if shown.len() > max {
            shown.truncate(floor_char_boundary(&shown, max));
            truncated = true;
        }
        (shown, truncated)
    }
}

/// Reads a pipe to its end (or first error) into `capture`, never stopping early for the cap.
async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, capture: &mut Capture) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => capture.push(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Longest secret length - 1: how far past the cap a secret starting inside it can reach.
fn lookahead(secrets: &[String]) -> usize {
    secrets
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .saturating_sub(1)
}

/// Byte ranges (sorted, non-overlapping, on char boundaries) covered by any occurrence of any
/// non-empty secret; overlapping occurrences are merged.
fn secret_ranges(text: &str, secrets: &[String]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        // Step one character past each match start so overlapping occurrences are found too.
        let step = secret.chars().next().map_or(1, char::len_utf8);
        let mut from = 0;
        while let Some(found) = text.get(from..).and_then(|rest| rest.find(secret.as_str())) {
            let start = from + found;
            ranges.push((start, start + secret.len()));
            from = start + step;
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// `text[..limit]` with each range that starts before `limit` replaced (whole) by [`REDACTED`].
fn replace_ranges(text: &str, ranges: &[(usize, usize)], limit: usize) -> String {
    let mut out = String::with_capacity(limit.min(text.len()));
    let mut pos = 0;
    for &(start, end) in ranges {
        if start >= limit {
            break;
        }
        out.push_str(text.get(pos..start).unwrap_or_default());
        out.push_str(REDACTED);
        pos = end;
    }
    if pos < limit {
        out.push_str(text.get(pos..limit).unwrap_or_default());
    }
    out
}

/// The largest char boundary of `s` that is <= `index`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Names must be non-empty without '=' or NUL, values without NUL (else the child would see a
/// different environment from the one given).
fn check_env(spec: &CommandSpec) -> Result<(), CommandError> {
    for (name, value) in &spec.env {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(CommandError::InvalidEnv {
                name: redact(name, &spec.redact),
            });
        }
    }
    Ok(())
}

/// `base_dir` made absolute (so a relative program can't be resolved twice) and checked to be a
/// directory.
async fn working_dir(base_dir: &Path) -> Result<PathBuf, CommandError> {
    let error = |source| CommandError::BaseDir {
        path: base_dir.to_path_buf(),
        source,
    };
    let absolute = if base_dir.is_absolute() {
        base_dir.to_path_buf()
    } else {
        std::env::current_dir().map_err(error)?.join(base_dir)
    };
    match tokio::fs::metadata(&absolute).await {
        Ok(meta) if meta.is_dir() => Ok(absolute),
        Ok(_) => Err(error(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ))),
        Err(source) => Err(error(source)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Executable,
    NotExecutable,
    Missing,
}

/// Does `path` name an executable regular file (following symlinks)?
async fn probe(path: &Path) -> Probe {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Probe::Executable,
        Ok(_) => Probe::NotExecutable,
        Err(_) => Probe::Missing,
    }
}

/// The program's path: with a '/', absolute or relative to `base_dir`; a bare name, the first
/// executable file on the absolute entries of the `PATH` in `spec.env` (the last `PATH` given wins,
/// as for the child). Never the server's own PATH.
async fn resolve_program(
    program: &str,
    spec: &CommandSpec,
    base_dir: &Path,
    shown: &str,
) -> Result<PathBuf, CommandError> {
    if program.contains('/') {
        let path = Path::new(program);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        };
        return match probe(&path).await {
            Probe::Executable => Ok(path),
            Probe::NotExecutable => Err(CommandError::NotExecutable {
                program: shown.to_owned(),
            }),
            Probe::Missing => Err(CommandError::NotFound {
                program: shown.to_owned(),
            }),
        };
    }
    let search = spec
        .env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map_or("", |(_, value)| value.as_str());
    for dir in search.split(':').map(Path::new) {
        // Empty and relative entries would search the working directory: skipped.
        if !dir.is_absolute() {
            continue;
        }
        let candidate = dir.join(program);
        if probe(&candidate).await == Probe::Executable {
            return Ok(candidate);
        }
    }
    Err(CommandError::NotFound {
        program: shown.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/usr/bin:/bin";

    fn spec(argv: &[&str]) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: vec![("PATH".to_owned(), PATH.to_owned())],
            base_dir: std::env::temp_dir(),
            timeout: Duration::from_secs(20),
            max_output_bytes: 1 << 20,
            redact: Vec::new(),
        }
    }

    /// Alive = exists and is not a zombie (a zombie has already died; only its parent can reap it).
    fn alive(pid: i32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, None | Some('Z') | Some('X'))
    }

    /// Gives the kernel a moment to finish delivering SIGKILL; true if every pid is gone.
    async fn all_dead(pids: &[i32]) -> bool {
        for _ in 0..60 {
            if pids.iter().all(|&pid| !alive(pid)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn read_pids(path: &Path) -> Vec<i32> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }

    /// sh writes its own pid and those of two background `sleep 300`s (one ignoring SIGTERM) to
    /// `$1`, prints "started", then waits.
    const FAMILY: &str = r#"echo $$ > "$1"
sleep 300 &
echo $! >> "$1"
(trap '' TERM; exec sleep 300) &
echo $! >> "$1"
echo started
wait"#;

    fn family(pid_file: &Path) -> CommandSpec {
        let mut spec = spec(&["/bin/sh", "-c", FAMILY, "sh"]);
        spec.argv.push(pid_file.display().to_string());
        spec
    }

    #[tokio::test]
    async fn runs_argv_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let injection = format!("$(touch {})", marker.display());
        let spec = spec(&["/bin/echo", "; rm -rf /tmp/x", &injection, "`id`", "a|b"]);
        let outcome = run(&spec, None).await.unwrap();
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(
            outcome.stdout,
            format!("; rm -rf /tmp/x {injection} `id` a|b\n")
        );
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn captures_stdout_and_stderr_and_exit_code() {
        let spec = spec(&["/bin/sh", "-c", "echo out; echo err >&2; exit 0"]);
        let outcome = run(&spec, None).await.unwrap();
        assert_eq!(outcome.stdout, "out\n");
        assert_eq!(outcome.stderr, "err\n");
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.signal, None);
        assert!(!outcome.timed_out && !outcome.stdout_truncated && !outcome.stderr_truncated);
        assert!(outcome.success());
    }

    #[tokio::test]
    async fn nonzero_exit_is_not_success() {
        let outcome = run(&spec(&["/bin/sh", "-c", "echo failing >&2; exit 3"]), None)
            .await
            .unwrap();
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(outcome.stderr, "failing\n");
        assert!(!outcome.timed_out);
        assert!(!outcome.success());

        let outcome = run(&spec(&["/bin/sh", "-c", "kill -9 $$"]), None)
            .await
            .unwrap();
        assert_eq!(outcome.exit_code, None);
        assert_eq!(outcome.signal, Some(libc::SIGKILL));
        assert!(!outcome.success());
    }

    #[tokio::test]
    async fn a_hung_step_is_killed_at_its_timeout_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pids");
        let mut spec = family(&pid_file);
        spec.timeout = Duration::from_secs(1);
        let outcome = run(&spec, None).await.unwrap();
        assert!(outcome.timed_out, "{outcome:?}");
        assert!(!outcome.success());
        assert_eq!(outcome.exit_code, None);
        assert_eq!(outcome.stdout, "started\n");
        // SIGTERM, up to TERM_GRACE for the one ignoring it, then SIGKILL: never the full 300 s.
        assert!(outcome.duration < Duration::from_secs(8), "{outcome:?}");
        let pids = read_pids(&pid_file);
        assert_eq!(pids.len(), 3, "{pids:?}");
        assert!(all_dead(&pids).await, "still alive: {pids:?}");
    }

    #[tokio::test]
    async fn cancellation_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pids");
        let hung = family(&pid_file);
        let (tx, rx) = watch::channel(false);
        let watched = pid_file.clone();
        tokio::spawn(async move {
            while read_pids(&watched).len() < 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = tx.send(true);
            // Keep the sender alive until the step is gone.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let started = Instant::now();
        let result = run(&hung, Some(rx)).await;
        assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(8));
        let pids = read_pids(&pid_file);
        assert_eq!(pids.len(), 3, "{pids:?}");
        assert!(all_dead(&pids).await, "still alive: {pids:?}");

        // Already cancelled: nothing is started.
        let (tx, rx) = watch::channel(true);
        let result = run(&hung, Some(rx)).await;
        assert!(matches!(result, Err(CommandError::Cancelled)), "{result:?}");
        drop(tx);
        // A dropped sender never cancels.
        let (tx, rx) = watch::channel(false);
        drop(tx);
        let outcome = run(&spec(&["/bin/echo", "hi"]), Some(rx)).await.unwrap();
        assert!(outcome.success());
    }

    #[tokio::test]
    async fn output_is_capped_but_the_child_is_not_blocked() {
        let mut spec = spec(&[
            "/bin/sh",
            "-c",
            "yes | head -c 5000000; yes e | head -c 5000000 >&2; echo done >&2",
        ]);
        spec.max_output_bytes = 1000;
        let outcome = run(&spec, None).await.unwrap();
        assert!(outcome.success(), "{:?}", outcome.exit_code);
        assert!(outcome.duration < Duration::from_secs(10));
        assert_eq!(outcome.stdout.len(), 1000);
        assert!(outcome.stdout.starts_with("y\ny\n"));
        assert_eq!(outcome.stderr.len(), 1000);
        assert!(outcome.stdout_truncated && outcome.stderr_truncated);
    }

    #[tokio::test]
    async fn environment_is_only_what_is_given() {
        let mut spec = spec(&["env"]);
        spec.env
            .push(("GREETING".to_owned(), "hello world".to_owned()));
        let outcome = run(&spec, None).await.unwrap();
        assert!(outcome.success(), "{outcome:?}");
        let mut lines: Vec<&str> = outcome.stdout.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["GREETING=hello world", "PATH=/usr/bin:/bin"]);

        spec.env.push(("BAD=NAME".to_owned(), "x".to_owned()));
        let result = run(&spec, None).await;
        assert!(
            matches!(result, Err(CommandError::InvalidEnv { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn relative_programs_resolve_against_the_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        let script = dir.path().join("scripts/hello.sh");
        std::fs::write(&script, "#!/bin/sh\necho \"hello $1 from $(pwd)\"\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let here = dir.path().canonicalize().unwrap();
        for program in ["scripts/hello.sh", "./scripts/hello.sh"] {
            let mut spec = spec(&[program, "world"]);
            spec.base_dir = dir.path().to_path_buf();
            // Another test thread forking while the script was open for writing can make exec
            // fail with ETXTBSY for a moment.
            let mut attempt = 0;
            let outcome = loop {
                match run(&spec, None).await {
                    Err(CommandError::Spawn { source, .. })
                        if source.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 =>
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => break other.unwrap(),
                }
            };
            assert!(outcome.success(), "{outcome:?}");
            assert_eq!(
                outcome.stdout,
                format!("hello world from {}\n", here.display())
            );
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let not_found = |result: Result<CommandOutcome, CommandError>| match result {
            Err(CommandError::NotFound { program }) => program,
            other => panic!("expected NotFound, got {other:?}"),
        };
        assert_eq!(
            not_found(run(&spec(&["no-such-program-sustainbot"]), None).await),
            "no-such-program-sustainbot"
        );
        assert_eq!(
            not_found(run(&spec(&["/nonexistent/bin/tool"]), None).await),
            "/nonexistent/bin/tool"
        );
        let mut relative = spec(&["./missing.sh"]);
        relative.base_dir = dir.path().to_path_buf();
        assert_eq!(not_found(run(&relative, None).await), "./missing.sh");
        // No PATH in the given environment: the server's own PATH is never searched.
        let mut no_path = spec(&["sh", "-c", "true"]);
        no_path.env.clear();
        assert_eq!(not_found(run(&no_path, None).await), "sh");
        // Not executable, and empty.
        let plain = dir.path().join("plain.sh");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let result = run(&spec(&[&plain.display().to_string()]), None).await;
        assert!(
            matches!(result, Err(CommandError::NotExecutable { .. })),
            "{result:?}"
        );
        assert!(matches!(
            run(&spec(&[]), None).await,
            Err(CommandError::Empty)
        ));
        assert!(matches!(
            run(&spec(&[""]), None).await,
            Err(CommandError::Empty)
        ));
    }

    #[tokio::test]
    async fn secrets_are_redacted_from_output() {
        let mut spec = spec(&[
            "/bin/sh",
            "-c",
            "printf 'token=%s pass=%s\\n' s3cr3t-token hunter2; echo \"err s3cr3t-token\" >&2",
        ]);
        spec.redact = vec![
            "s3cr3t-token".to_owned(),
            String::new(),
            "hunter2".to_owned(),
        ];
        let outcome = run(&spec, None).await.unwrap();
        assert_eq!(outcome.stdout, "token=[REDACTED] pass=[REDACTED]\n");
        assert_eq!(outcome.stderr, "err [REDACTED]\n");
        assert!(!format!("{spec:?}").contains("hunter2"));

        // A secret cut by the cap leaves no fragment, even when redaction shortens the text.
        let secret = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123";
        let mut spec = spec.clone();
        spec.argv = vec![
            "/usr/bin/printf".to_owned(),
            format!("xxxxxxxx{secret}{secret}"),
        ];
        spec.redact = vec![secret.to_owned()];
        spec.max_output_bytes = 20;
        let outcome = run(&spec, None).await.unwrap();
        assert_eq!(outcome.stdout, "xxxxxxxx[REDACTED]");
        assert!(outcome.stdout_truncated);
        spec.max_output_bytes = 10;
        let outcome = run(&spec, None).await.unwrap();
        assert_eq!(outcome.stdout, "xxxxxxxx[R");

        let secrets = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            redact("pw=password123!", &secrets(&["password", "password123"])),
            "pw=[REDACTED]!"
        );
        assert_eq!(redact("abcd", &secrets(&["abc", "bcd"])), "[REDACTED]");
        assert_eq!(
            redact("a-b-a", &secrets(&["a", ""])),
            "[REDACTED]-b-[REDACTED]"
        );
        assert_eq!(redact("clé=ünï", &secrets(&["ünï"])), "clé=[REDACTED]");
        assert_eq!(redact("nothing", &secrets(&[""])), "nothing");
    }

    #[tokio::test]
    async fn a_finished_step_does_not_wait_for_its_background_children() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pids");
        let mut spec = spec(&[
            "/bin/sh",
            "-c",
            "sleep 300 & echo $! > \"$1\"; echo done",
            "sh",
        ]);
        spec.argv.push(pid_file.display().to_string());
        let outcome = run(&spec, None).await.unwrap();
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(outcome.stdout, "done\n");
        // The sleep holds the pipes open: PIPE_GRACE, not 300 s.
        assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
        let pids = read_pids(&pid_file);
        assert_eq!(pids.len(), 1, "{pids:?}");
        assert!(all_dead(&pids).await, "still alive: {pids:?}");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pids");
        let spec = family(&pid_file);
        {
            let mut step = pin!(run(&spec, None));
            let started = Instant::now();
            while read_pids(&pid_file).len() < 3 {
                assert!(started.elapsed() < Duration::from_secs(10), "never started");
                tokio::select! {
                    result = &mut step => panic!("finished early: {result:?}"),
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        } // dropped here
        let pids = read_pids(&pid_file);
        assert_eq!(pids.len(), 3, "{pids:?}");
        assert!(all_dead(&pids).await, "still alive: {pids:?}");
    }
}

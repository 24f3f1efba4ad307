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
//!   blocks on a full pipe), keeping what the run's [`OutputLimits`] allow of each: at most
//!   `max_bytes`, with every secret replaced by `[REDACTED]`.
//!
//! Known limit: after a step exits normally its group is killed once the leader has been reaped. A
//! process-group id cannot be reused while any member of the group is alive, so this can only
//! misfire if the group is already empty and, within that instant, the kernel hands the same number
//! to a new process that also makes itself a group leader.

mod capture;
mod step;
mod supervision;

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::watch;

pub use self::step::CommandStep;
pub use self::supervision::{PIPE_GRACE, TERM_GRACE};

use self::capture::{drain, Capture};
use self::supervision::{supervise, Ending, GroupGuard};
use super::redact::OutputLimits;

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
    /// The user the child runs as (`None`: the server's own).
    pub run_as: Option<RunAs>,
}

/// A user a command step runs as: a server running as root runs its steps as an unprivileged user
/// (`nobody` unless `COMMAND_RUN_AS` names another), with none of root's supplementary groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The user `name` from the password database.
    pub fn lookup(name: &str) -> Result<RunAs, String> {
        let c_name = std::ffi::CString::new(name).map_err(|_| format!("user name {name:?}"))?;
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buffer = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buffer` outlives the use of `entry`.
        let status = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if status != 0 || found.is_null() {
            return Err(format!("no user named {name:?} on this machine"));
        }
        Ok(RunAs {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        })
    }
}

/// Shows only the names of the environment variables (where a command's secrets are); its
/// arguments never hold one.
impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("CommandSpec")
            .field("argv", &self.argv)
            .field("env", &env)
            .field("base_dir", &self.base_dir)
            .field("timeout", &self.timeout)
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
    /// The stream had more than the limits' `max_bytes` (after redaction) and was cut.
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
/// never cancels), keeping of its output what `limits` allow. Dropping the returned future kills
/// the step's whole process group.
pub async fn run(
    spec: &CommandSpec,
    limits: &OutputLimits,
    mut cancel: Option<watch::Receiver<bool>>,
) -> Result<CommandOutcome, CommandError> {
    let Some(program) = spec.argv.first().filter(|p| !p.is_empty()) else {
        return Err(CommandError::Empty);
    };
    if cancel.as_ref().is_some_and(|rx| *rx.borrow()) {
        return Err(CommandError::Cancelled);
    }
    let shown = limits.redact(program);
    check_env(spec, limits)?;
    // The working directory and the program are checked with plain `stat`s on this thread, not
    // through `tokio::fs` (one blocking-pool round trip each: up to a dozen thread hand-offs per
    // step, which cost more than the spawn itself). A `stat` of a local path is microseconds, and
    // the spawn right after blocks this thread anyway until the child has exec'd the same path.
    let base_dir = working_dir(&spec.base_dir)?;
    let resolved = resolve_program(program, spec, &base_dir, &shown)?;

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
    if let Some(user) = spec.run_as {
        // As root, std also drops the supplementary groups (setgroups(0)) before exec.
        command.uid(user.uid).gid(user.gid);
    }

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

    let mut out = Capture::new(limits);
    let mut err = Capture::new(limits);
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
    let (stdout, stdout_truncated) = out.render(limits);
    let (stderr, stderr_truncated) = err.render(limits);
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

/// Names must be non-empty without '=' or NUL, values without NUL (else the child would see a
/// different environment from the one given).
fn check_env(spec: &CommandSpec, limits: &OutputLimits) -> Result<(), CommandError> {
    for (name, value) in &spec.env {
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(CommandError::InvalidEnv {
                name: limits.redact(name),
            });
        }
    }
    Ok(())
}

/// `base_dir` made absolute (so a relative program can't be resolved twice) and checked to be a
/// directory.
fn working_dir(base_dir: &Path) -> Result<PathBuf, CommandError> {
    let error = |source| CommandError::BaseDir {
        path: base_dir.to_path_buf(),
        source,
    };
    let absolute = if base_dir.is_absolute() {
        base_dir.to_path_buf()
    } else {
        std::env::current_dir().map_err(error)?.join(base_dir)
    };
    match std::fs::metadata(&absolute) {
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
fn probe(path: &Path) -> Probe {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Probe::Executable,
        Ok(_) => Probe::NotExecutable,
        Err(_) => Probe::Missing,
    }
}

/// The program's path: with a '/', absolute or relative to `base_dir`; a bare name, the first
/// executable file on the absolute entries of the `PATH` in `spec.env` (the last `PATH` given wins,
/// as for the child). Never the server's own PATH.
fn resolve_program(
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
        return match probe(&path) {
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
        if probe(&candidate) == Probe::Executable {
            return Ok(candidate);
        }
    }
    Err(CommandError::NotFound {
        program: shown.to_owned(),
    })
}

#[cfg(test)]
mod tests;

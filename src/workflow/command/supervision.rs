//! The step's process group: the timeout, cancellation, and the signals that end the group.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::process::ExitStatus;
use std::time::Duration;

use crate::workflow::cancel::until_cancelled;
use tokio::process::Child;
use tokio::sync::watch;

/// How long a timed-out or cancelled step has between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long the output pipes may stay open once the step's own process has exited (or been killed)
/// before its group is killed and reading stops.
pub const PIPE_GRACE: Duration = Duration::from_millis(200);
/// How long to wait for the kernel to reap a SIGKILLed child before leaving it to tokio's reaper.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// How the supervised child ended.
pub(super) enum Ending {
    Exited(ExitStatus),
    /// With the status if the child could be reaped.
    TimedOut(Option<ExitStatus>),
    Cancelled,
    Lost(io::Error),
}

/// Waits for the child while draining its pipes; enforces the timeout and cancellation. Every path
/// ends with SIGKILL to the group.
pub(super) async fn supervise<F: Future<Output = ()>>(
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

/// Signals the child's process group; on drop (the future running the step was dropped) SIGKILLs it.
pub(super) struct GroupGuard {
    /// The group id, always > 1: never our own group (0) nor "every process" (-1) or init's.
    pgid: Option<libc::pid_t>,
}

impl GroupGuard {
    pub(super) fn new(pid: Option<u32>) -> GroupGuard {
        let pgid = pid
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .filter(|&pgid| pgid > 1);
        GroupGuard { pgid }
    }

    pub(super) fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg has no memory-safety preconditions; `pgid` > 1 so it can only reach
            // the child's own group. Failure (ESRCH: the group is gone) is fine to ignore.
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
    }

    pub(super) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

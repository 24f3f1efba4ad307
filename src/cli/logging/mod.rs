//! Where log lines go: readable text on standard error (filtered by `RUST_LOG`, default `info`);
//! with `JSON_LOGGING_ENABLED`, JSON lines to `JSON_LOG_PATH` as well (reopened on SIGHUP); with an
//! OTLP endpoint, the spans to the collector (see `sustainbot::trace::otel`).

mod file;

use std::sync::OnceLock;
use std::time::Duration;

use sustainbot::config::{JsonLog, LoggingConfig};
use sustainbot::trace::otel::{Traces, SPANS};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::fmt::{self, MakeWriter};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How long sending the last spans may hold up the exit.
const TRACES_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// The JSON log file, for SIGHUP.
static LOG_FILE: OnceLock<file::LogFile> = OnceLock::new();

type Output = Box<dyn Layer<Registry> + Send + Sync>;

/// What logging keeps running until the process ends.
pub struct Logging {
    traces: Option<Traces>,
}

impl Logging {
    /// Sends the spans still buffered (bounded by [`TRACES_FLUSH_BOUND`]).
    pub fn shutdown(self) {
        if let Some(traces) = self.traces {
            traces.shutdown(TRACES_FLUSH_BOUND);
        }
    }
}

/// Installs the subscriber. `serving` (the server, `--run`): JSON lines and traces as configured;
/// the other commands are tools at a terminal and only print text.
pub fn init(config: &LoggingConfig, serving: bool) -> Logging {
    let mut outputs: Vec<Output> = Vec::new();
    let mut problems = Vec::new();
    match config.json.as_ref().filter(|_| serving) {
        None => outputs.push(text()),
        Some(JsonLog::Stderr) => outputs.push(json_lines(std::io::stderr)),
        Some(JsonLog::File(path)) => {
            outputs.push(text());
            match file::LogFile::open(path) {
                Ok(file) => {
                    outputs.push(json_lines(file.clone()));
                    let _ = LOG_FILE.set(file);
                }
                Err(e) => problems.push(format!(
                    "cannot open JSON_LOG_PATH {}: {e}; no JSON lines are written",
                    path.display()
                )),
            }
        }
    }
    let traces = match config.traces.as_ref().filter(|_| serving) {
        None => None,
        Some(traces) => match Traces::start::<Registry>(traces) {
            Ok((traces, layer)) => {
                outputs.push(Box::new(layer));
                Some(traces)
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
    };
    tracing_subscriber::registry().with(outputs).init();
    for problem in problems {
        tracing::warn!("{problem}");
    }
    Logging { traces }
}

/// What the logs show: `RUST_LOG` (default `info`), without the spans made for traces only (so a
/// line's `span` is its request's).
fn logs() -> impl Filter<Registry> + Send + Sync {
    let rust_log = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    rust_log.and(filter_fn(|meta| meta.target() != SPANS))
}

fn text() -> Output {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(logs())
        .boxed()
}

/// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields at
/// the top, the current span's fields in `span`, every span's in `spans` (outermost first).
fn json_lines<W>(writer: W) -> Output
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(logs())
        .boxed()
}

/// Reopens the JSON log file on each SIGHUP (logrotate's `postrotate`), if there is one. Call
/// inside the runtime before the server says it listens: SIGHUP no longer ends the process once
/// this returns.
pub fn reopen_on_hangup() {
    let Some(file) = LOG_FILE.get() else {
        return;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the JSON log file will not be reopened");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match file.reopen() {
                    Ok(()) => {
                        tracing::info!(path = %file.path().display(), "JSON log file reopened")
                    }
                    Err(e) => tracing::warn!(
                        path = %file.path().display(),
                        error = %e,
                        "cannot reopen the JSON log file; still writing to the old one"
                    ),
                }
            }
        });
    }
}

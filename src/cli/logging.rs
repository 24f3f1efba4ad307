//! Where log lines go: readable text on standard error, or JSON lines (to `JSON_LOG_PATH` when
//! set). `RUST_LOG` filters (default `info`).

use sustainbot::config::LoggingConfig;
use tracing_subscriber::EnvFilter;

pub fn init(config: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let file = config.json_log_path.as_ref().and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                eprintln!(
                    "sustainbot: cannot open JSON_LOG_PATH {}: {e}",
                    path.display()
                )
            })
            .ok()
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match (config.json, file) {
        (true, Some(file)) => builder
            .json()
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        (true, None) => builder.json().with_writer(std::io::stderr).init(),
        (false, _) => builder.with_writer(std::io::stderr).init(),
    }
}

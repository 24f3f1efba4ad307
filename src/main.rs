//! The `sustainbot` command line: serve (the default), run one workflow, mint a token, verify an audit log.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sustainbot::audit::checkpoint::PublicKey;
use sustainbot::audit::verify::{verify_log, VerifyOptions};
use sustainbot::auth::{self, JwtKeys, Principal};
use sustainbot::config::{Config, Overrides};
use sustainbot::pipeline::{RequestBody, RunRequest, Submitted, Wait};
use sustainbot::trace::TraceId;
use sustainbot::{build_state, shutdown_signal, Application};

#[derive(Parser)]
#[command(
    name = "sustainbot",
    version,
    about = "Governed workflow-automation server",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on [env: SUSTAINBOT_HOST, default 0.0.0.0]
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on [env: SUSTAINBOT_PORT, default 5000]
    #[arg(long)]
    port: Option<u16>,
    /// Development mode: a throwaway JWT secret and a printed demo token. Never in production.
    #[arg(long)]
    dev: bool,
    /// Run one workflow through the governance gate and exit (0 success, 1 failure).
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
    /// With --run: the governance request (AIM + DRAG mode) as a JSON file, or - for standard input.
    #[arg(long, value_name = "FILE", requires = "run")]
    request: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(ServeArgs),
    /// Mint a JWT with JWT_SECRET (and JWT_ALGORITHM).
    Token {
        /// The human the token speaks for (an email); becomes the `actor` claim.
        #[arg(long)]
        actor: String,
        #[arg(long, default_value = "user")]
        role: String,
        /// Lifetime in seconds; 0 for a token without expiry.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Audit-trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify a log's hash chain (all its segments), and with --public-key every checkpoint
    /// signature; exits non-zero naming the first bad line.
    Verify {
        /// The log's active file or its directory [default: AUDIT_LOG_PATH or ./logs/audit.jsonl]
        path: Option<PathBuf>,
        /// The public key (`sustainbot audit keygen`) that must have signed the checkpoints.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new Ed25519 key pair for signed checkpoints: DIR/audit-signing.key (private, 0600) and
    /// DIR/audit-signing.pub.
    Keygen {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the last N records of a log (all its segments), oldest first, one JSON line each,
    /// exactly as written.
    Tail {
        /// The log's active file or its directory [default: AUDIT_LOG_PATH or ./logs/audit.jsonl]
        path: Option<PathBuf>,
        /// How many records.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
        n: usize,
    },
    /// Print every record that matches, in seq order, one JSON line each, exactly as written (so
    /// each line still carries its own verifiable integrity_hash).
    Export(ExportArgs),
}

#[derive(Args)]
struct ExportArgs {
    /// The log's active file or its directory [default: AUDIT_LOG_PATH or ./logs/audit.jsonl]
    path: Option<PathBuf>,
    /// Only this trace id.
    #[arg(long)]
    trace_id: Option<String>,
    /// Only records whose aim.actor.email, aim.actor.name or principal.actor is this (any case).
    #[arg(long)]
    actor: Option<String>,
    /// Only this workflow_name.
    #[arg(long)]
    workflow: Option<String>,
    /// Only this outcome: started, success, failure, rejected, cancelled.
    #[arg(long)]
    outcome: Option<String>,
    /// Only this DRAG mode: draft, research, grunt, execute.
    #[arg(long)]
    drag_mode: Option<String>,
    /// Only this kind of record: run, recovery, checkpoint, retention.
    #[arg(long)]
    kind: Option<String>,
    /// Only records stamped at or after this RFC 3339 time (e.g. 2026-01-31T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records stamped before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

// Request handling allocates many small short-lived objects (JSON values, strings); mimalloc keeps
// that cheaper than the system allocator under concurrency (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's option setter (in the linked mimalloc library).
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_e` (libmimalloc-sys 0.1.49's vendored header).
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;

fn main() -> ExitCode {
    // Give freed memory back to the OS at once instead of after 10 ms: under load the default keeps
    // several MiB more resident (measured in BENCHMARKS.md) for no measurable speed.
    // SAFETY: a plain setter of an integer option, called before any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    // `.env` first; the process environment wins over it.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        None => serve_or_run(cli.serve),
        Some(Command::Serve(args)) => serve_or_run(args),
        Some(Command::Token { actor, role, ttl }) => token(&actor, &role, ttl),
        Some(Command::Audit { command }) => match command {
            AuditCommand::Verify {
                path,
                public_key,
                json,
            } => verify(path, public_key, json),
            AuditCommand::Keygen { out } => keygen(&out),
            AuditCommand::Tail { path, n } => audit_tail(path, n),
            AuditCommand::Export(args) => audit_export(args),
        },
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("JSON_LOGGING_ENABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1");
    let file = std::env::var("JSON_LOG_PATH")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match (json, file) {
        (true, Some(file)) => builder
            .json()
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        (true, None) => builder.json().with_writer(std::io::stderr).init(),
        (false, _) => builder.with_writer(std::io::stderr).init(),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn serve_or_run(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        host: args.host.clone(),
        port: args.port,
        dev: args.dev,
    };
    let config = match Config::from_env(overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sustainbot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.run {
        Some(name) => runtime.block_on(run_once(config, &name, args.request)),
        None => runtime.block_on(serve(config)),
    }
}

async fn serve(config: Config) -> ExitCode {
    let dev_token = config.dev.then(|| {
        let keys = JwtKeys::new(config.jwt_secret.as_bytes(), config.jwt_algorithm);
        (
            keys.mint("jake@example.org", "admin", Some(86_400)),
            config.jwt_secret.clone(),
            config.jwt_secret_generated,
        )
    });
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::from(2);
        }
    };
    let address = app.local_addr();
    tracing::info!(%address, "SustainBot listening");
    if let Some((Ok(token), secret, generated)) = dev_token {
        print_dev_banner(address, &token, generated.then_some(secret.as_str()));
    }
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sustainbot: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_dev_banner(address: std::net::SocketAddr, token: &str, generated_secret: Option<&str>) {
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        address.ip().to_string()
    };
    let url = format!("http://{host}:{}", address.port());
    println!("\nSustainBot DEV MODE: not for production.");
    println!("  listening on {url}");
    if let Some(secret) = generated_secret {
        println!("  throwaway JWT secret for this process (to mint more tokens with `sustainbot token`):");
        println!("    export JWT_SECRET={secret}");
    }
    println!("  demo token (actor jake@example.org, role admin, 24 h):");
    println!("    export SUSTAINBOT_TOKEN={token}");
    println!("  try:");
    println!("    curl -s {url}/workflows -H \"Authorization: Bearer $SUSTAINBOT_TOKEN\"");
    println!("    SUSTAINBOT_URL={url} scripts/demo-governance.sh\n");
}

async fn run_once(config: Config, name: &str, request: Option<PathBuf>) -> ExitCode {
    let state = match build_state(config) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::from(2);
        }
    };
    let body = match request.map(|path| read_request(&path)).transpose() {
        Ok(body) => body,
        Err(e) => {
            eprintln!("sustainbot: {e}");
            return ExitCode::FAILURE;
        }
    };
    // With a request file: a governed run of NAME. Without: the ungoverned path, which the gate
    // refuses (on the record) unless governance is disabled.
    let body = match body {
        Some(mut body) => {
            if let Value::Object(map) = &mut body {
                map.insert("workflow_name".into(), Value::String(name.to_owned()));
            }
            RequestBody::Governed(Ok(Some(body)))
        }
        None => RequestBody::Ungoverned {
            workflow_name: name.to_owned(),
            parameters: Ok(None),
        },
    };
    let request = RunRequest {
        trace_id: TraceId::random().into_string(),
        principal: Principal::local_operator(),
        body,
        // Nobody could decide it from here: a workflow that requires approval is refused.
        approvable: false,
    };
    // SIGINT/SIGTERM drains the gate as the server's shutdown does: the run is cancelled (its
    // command steps killed) and recorded as `cancelled`.
    let submit = state.gate.submit(request, Wait::Outcome);
    tokio::pin!(submit);
    let submitted = tokio::select! {
        submitted = &mut submit => submitted,
        () = shutdown_signal() => {
            let gate = state.gate.clone();
            tokio::spawn(async move {
                gate.drain(std::time::Duration::ZERO, std::time::Duration::from_secs(10)).await
            });
            submit.await
        }
    };
    let (success, result) = match submitted {
        Ok(Submitted::Finished(report)) => (report.success, serde_json::to_value(&report)),
        Ok(_) => (
            false,
            Ok(json!({"success": false, "error": "the run did not finish"})),
        ),
        Err(e) => (
            false,
            Ok(json!({"success": false, "error": e.to_string(), "code": e.code()})),
        ),
    };
    state
        .gate
        .drain(
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(10),
        )
        .await;
    state.gate.audit().close().await;
    println!(
        "{}",
        result
            .and_then(|r| serde_json::to_string_pretty(&r))
            .unwrap_or_default()
    );
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read_request(path: &std::path::Path) -> Result<Value, String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}

fn token(actor: &str, role: &str, ttl: u64) -> ExitCode {
    let secret = std::env::var("JWT_SECRET").ok();
    let secret = match auth::check_secret(secret.as_deref()) {
        Ok(secret) => secret.to_owned(),
        Err(e) => {
            eprintln!("sustainbot token: {e}");
            return ExitCode::from(2);
        }
    };
    let algorithm = match auth::parse_algorithm(
        &std::env::var("JWT_ALGORITHM").unwrap_or_else(|_| "HS256".into()),
    ) {
        Ok(alg) => alg,
        Err(e) => {
            eprintln!("sustainbot token: {e}");
            return ExitCode::from(2);
        }
    };
    let keys = JwtKeys::new(secret.as_bytes(), algorithm);
    match keys.mint(actor, role, (ttl > 0).then_some(ttl)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sustainbot token: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(dir: &std::path::Path) -> ExitCode {
    match sustainbot::audit::checkpoint::keygen(dir) {
        Ok((private, public)) => {
            println!(
                "private key: {} (keep it secret; set AUDIT_SIGNING_KEY to it)",
                private.display()
            );
            println!(
                "public key:  {} (for auditors: audit verify --public-key)",
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sustainbot audit keygen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The audit log a command reads: the argument, else `AUDIT_LOG_PATH`, else the default.
fn audit_path(path: Option<PathBuf>) -> PathBuf {
    path.or_else(|| {
        std::env::var("AUDIT_LOG_PATH")
            .ok()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("./logs/audit.jsonl"))
}

fn verify(path: Option<PathBuf>, public_key: Option<PathBuf>, as_json: bool) -> ExitCode {
    let path = audit_path(path);
    let mut options = VerifyOptions::default();
    if let Some(key_path) = public_key {
        match PublicKey::from_file(&key_path) {
            Ok(key) => options.public_key = Some(key),
            Err(e) => {
                eprintln!("sustainbot audit verify: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let signed = options.public_key.is_some();
    let report = match verify_log(&path, &options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!(
                "sustainbot audit verify: cannot read {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    if as_json {
        println!(
            "{}",
            json!({"path": path, "valid": report.is_valid(), "report": report})
        );
    } else if let Some(problem) = &report.problem {
        let file = problem.file.as_deref().unwrap_or(&path);
        println!(
            "FAILED {}: line {}: {}",
            file.display(),
            problem.line,
            problem.message
        );
        println!("  {} records verified before it", report.records);
    } else {
        println!(
            "OK {}: {} records in {} file(s), seq {}..{}, head hash {}",
            path.display(),
            report.records,
            report.files,
            report.first_seq,
            report.head_seq,
            report.head_hash
        );
        match (signed, report.last_checkpoint_seq) {
            (true, Some(covered)) => println!(
                "  signed: {} checkpoint(s) verify; records through seq {covered} are proven by the key, {} after it are chain-checked only",
                report.checkpoints,
                report.head_seq.saturating_sub(covered)
            ),
            (false, _) if report.checkpoints > 0 => println!(
                "  {} checkpoint(s) present; pass --public-key to check their signatures",
                report.checkpoints
            ),
            _ => {}
        }
    }
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes audit lines to standard output; a closed pipe (`| head`) ends the output quietly.
fn print_lines<'a>(
    out: &mut impl std::io::Write,
    lines: impl IntoIterator<Item = &'a Vec<u8>>,
) -> std::io::Result<()> {
    for line in lines {
        out.write_all(line)?;
    }
    Ok(())
}

/// The exit code for an output error: success when the reader went away, else a message.
fn output_failed(command: &str, e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        eprintln!("sustainbot audit {command}: cannot write the output: {e}");
        ExitCode::FAILURE
    }
}

fn audit_tail(path: Option<PathBuf>, n: usize) -> ExitCode {
    let path = audit_path(path);
    let lines = match sustainbot::audit::query::tail_lines(&path, n) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("sustainbot audit tail: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    match print_lines(&mut out, &lines).and_then(|()| std::io::Write::flush(&mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output_failed("tail", &e),
    }
}

fn audit_export(args: ExportArgs) -> ExitCode {
    use sustainbot::audit::query::{parse_timestamp, query_lines, Filter};
    /// Records read per page: memory stays bounded however large the log.
    const PAGE: usize = 1000;
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(parse_timestamp)
            .transpose()
            .map_err(|e| format!("--{name}: {e}"))
    };
    let (since, until) = match (time("since", &args.since), time("until", &args.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("sustainbot audit export: {e}");
            return ExitCode::from(2);
        }
    };
    let path = audit_path(args.path);
    let mut filter = Filter {
        trace_id: args.trace_id,
        actor: args.actor,
        workflow: args.workflow,
        outcome: args.outcome,
        drag_mode: args.drag_mode,
        kind: args.kind,
        since,
        until,
        after_seq: None,
    };
    if let Err(e) = filter.check() {
        eprintln!("sustainbot audit export: {e}");
        return ExitCode::from(2);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let page = match query_lines(&path, &filter, PAGE) {
            Ok(page) => page,
            Err(e) => {
                eprintln!(
                    "sustainbot audit export: cannot read {}: {e}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        };
        if let Err(e) = print_lines(&mut out, &page.lines) {
            return output_failed("export", &e);
        }
        match page.next_cursor {
            Some(cursor) => filter.after_seq = Some(cursor),
            None => break,
        }
    }
    match std::io::Write::flush(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => output_failed("export", &e),
    }
}

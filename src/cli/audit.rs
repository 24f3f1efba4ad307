//! `sustainbot audit ...`: verify a log, make a signing key, print its last records, export what
//! matches. These need only the audit section of the configuration (no `JWT_SECRET`).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;
use sustainbot::audit::checkpoint::PublicKey;
use sustainbot::audit::verify::{verify_log, Report, VerifyOptions};
use sustainbot::config::AuditConfig;

use super::{audit_db, Env, ExportArgs};

pub fn keygen(dir: &std::path::Path) -> ExitCode {
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

/// The audit log a command reads: the argument, else `AUDIT_LOG_PATH`, else the default. Nothing
/// else of the configuration matters to reading a log.
fn audit_path(env: &Env, path: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    if let Some(path) = path {
        return Ok(path);
    }
    env.section(AuditConfig::read_log_path).map_err(|e| {
        eprintln!("sustainbot audit: {e}");
        ExitCode::from(2)
    })
}

/// Verification options with the public key read from `public_key`, if given.
pub(super) fn verify_options(public_key: Option<PathBuf>) -> Result<VerifyOptions, ExitCode> {
    let mut options = VerifyOptions::default();
    if let Some(key_path) = public_key {
        match PublicKey::from_file(&key_path) {
            Ok(key) => options.public_key = Some(key),
            Err(e) => {
                eprintln!("sustainbot audit verify: {e}");
                return Err(ExitCode::from(2));
            }
        }
    }
    Ok(options)
}

/// Where a command reads the trail: the chain in a PostgreSQL database or a JSONL log.
pub(super) enum Source {
    Database(String),
    File(PathBuf),
}

/// `--database-url`, else the PATH given, else `DATABASE_URL` (the server's trail is then in the
/// database), else `AUDIT_LOG_PATH` or the default log.
fn source(
    env: &Env,
    path: Option<PathBuf>,
    database_url: Option<String>,
) -> Result<Source, ExitCode> {
    if let Some(url) = database_url {
        return Ok(Source::Database(url));
    }
    if path.is_none() {
        if let Some(url) = env.get("DATABASE_URL").filter(|url| !url.trim().is_empty()) {
            return Ok(Source::Database(url));
        }
    }
    audit_path(env, path).map(Source::File)
}

pub fn verify(
    env: &Env,
    path: Option<PathBuf>,
    database_url: Option<String>,
    public_key: Option<PathBuf>,
    as_json: bool,
) -> ExitCode {
    let options = match verify_options(public_key) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let (name, report) = match source(env, path, database_url) {
        Err(code) => return code,
        Ok(Source::Database(url)) => match audit_db::verify(env, &url, &options) {
            Ok(report) => (PathBuf::from(audit_db::display(&url)), report),
            Err(code) => return code,
        },
        Ok(Source::File(path)) => match verify_log(&path, &options) {
            Ok(report) => (path, report),
            Err(e) => {
                eprintln!(
                    "sustainbot audit verify: cannot read {}: {e}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        },
    };
    print_report(&name, &report, options.public_key.is_some(), as_json);
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_report(path: &std::path::Path, report: &Report, signed: bool, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"path": path, "valid": report.is_valid(), "report": report})
        );
    } else if let Some(problem) = &report.problem {
        let file = problem.file.as_deref().unwrap_or(path);
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
pub(super) fn output_failed(command: &str, e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        eprintln!("sustainbot audit {command}: cannot write the output: {e}");
        ExitCode::FAILURE
    }
}

pub fn tail(env: &Env, path: Option<PathBuf>, n: usize) -> ExitCode {
    let path = match audit_path(env, path) {
        Ok(path) => path,
        Err(code) => return code,
    };
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

/// Where an export writes: standard output, or a file it creates (or truncates).
fn output(out: Option<&std::path::Path>) -> std::io::Result<Box<dyn std::io::Write>> {
    Ok(match out {
        Some(path) => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path)?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

pub fn export(env: &Env, args: ExportArgs) -> ExitCode {
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
    let source = match source(env, args.path, args.database_url) {
        Ok(source) => source,
        Err(code) => return code,
    };
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
    let mut out = match output(args.out.as_deref()) {
        Ok(out) => out,
        Err(e) => {
            let name = args.out.as_deref().unwrap_or(std::path::Path::new("-"));
            eprintln!(
                "sustainbot audit export: cannot create {}: {e}",
                name.display()
            );
            return ExitCode::from(2);
        }
    };
    let path = match source {
        Source::Database(url) => return audit_db::export(env, &url, &filter, &mut out),
        Source::File(path) => path,
    };
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

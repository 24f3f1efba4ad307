//! `sustainbot audit ... --database-url URL`: the audit chain in PostgreSQL, verified, exported as
//! one JSONL file, or filled from a JSONL log (`audit import`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sqlx::PgPool;
use sustainbot::audit::postgres::{self, ImportError, PgReader};
use sustainbot::audit::query::Filter;
use sustainbot::audit::verify::{Report, VerifyOptions};
use tokio::runtime::Runtime;

use super::audit::{output_failed, verify_options};
use super::Env;

/// The database as the output names it: scheme, host, port and name, never a password.
pub fn display(url: &str) -> String {
    match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(options) => format!(
            "postgresql://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        ),
        Err(_) => "postgresql".to_owned(),
    }
}

/// A runtime for the pool and a reader on the database (its schema applied), waiting at most
/// `DB_POOL_TIMEOUT` (default 30 s) for the database.
fn connect(env: &Env, command: &str, url: &str) -> Result<(Runtime, PgReader), ExitCode> {
    let seconds = env
        .get("DB_POOL_TIMEOUT")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(30)
        .max(1);
    let timeout = Duration::from_secs(seconds);
    // Multi-threaded: the readers block this thread on the runtime, whose workers drive the sockets.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("sustainbot audit {command}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })?;
    let connected = runtime.block_on(async {
        let pool = sustainbot::db::connect(url, timeout).await?;
        // Only an import writes: the others read the schema as it is.
        if command == "import" {
            sustainbot::db::migrate(&pool).await?;
        }
        Ok::<PgPool, sustainbot::db::DbError>(pool)
    });
    let pool = connected.map_err(|e| {
        eprintln!("sustainbot audit {command}: {}: {e}", display(url));
        ExitCode::from(2)
    })?;
    let reader = PgReader::new(pool, runtime.handle().clone(), timeout);
    Ok((runtime, reader))
}

pub fn verify(env: &Env, url: &str, options: &VerifyOptions) -> Result<Report, ExitCode> {
    let (runtime, reader) = connect(env, "verify", url)?;
    let _context = runtime.enter();
    reader.verify(options).map_err(|e| {
        eprintln!("sustainbot audit verify: cannot read {}: {e}", display(url));
        ExitCode::from(2)
    })
}

pub fn export(env: &Env, url: &str, filter: &Filter, out: &mut dyn Write) -> ExitCode {
    let (runtime, reader) = match connect(env, "export", url) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let _context = runtime.enter();
    match postgres::export(&reader, filter, out) {
        Ok(_) => ExitCode::SUCCESS,
        // A closed pipe is the reader's choice; a database error is not.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => output_failed("export", &e),
        Err(e) => {
            eprintln!("sustainbot audit export: {}: {e}", display(url));
            ExitCode::from(2)
        }
    }
}

pub fn import(
    env: &Env,
    path: &Path,
    database_url: Option<String>,
    public_key: Option<PathBuf>,
) -> ExitCode {
    let Some(url) = database_url.or_else(|| env.get("DATABASE_URL")) else {
        eprintln!("sustainbot audit import: name the database with --database-url or DATABASE_URL");
        return ExitCode::from(2);
    };
    let options = match verify_options(public_key) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let (runtime, reader) = match connect(env, "import", &url) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let _context = runtime.enter();
    match postgres::import(runtime.handle(), reader.pool(), path, &options) {
        Ok(imported) if imported.records == 0 => {
            println!("nothing to import: {} holds no records", path.display());
            ExitCode::SUCCESS
        }
        Ok(imported) => {
            println!(
                "imported {} records (seq {}..{}) from {} into {}; head hash {}",
                imported.records,
                imported.first_seq,
                imported.head_seq,
                path.display(),
                display(&url),
                imported.head_hash
            );
            ExitCode::SUCCESS
        }
        Err(e @ ImportError::Invalid(_)) => {
            eprintln!("sustainbot audit import: {e}; nothing was imported");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("sustainbot audit import: {e}; nothing was imported");
            ExitCode::from(2)
        }
    }
}

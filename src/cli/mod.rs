//! The `sustainbot` command line: serve (the default), run one workflow, mint a token, manage API
//! keys, read and verify an audit log, check and migrate workflow files. Every command reads its configuration
//! from one snapshot of the environment, and only the sections it needs.

mod apikey;
mod audit;
mod audit_db;
mod audit_legacy;
mod logging;
mod policy;
mod serve;
mod token;
mod workflows;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sustainbot::config::{section, ConfigError, LoggingConfig};

#[derive(Parser)]
#[command(
    name = "sustainbot",
    version,
    about = "Governed workflow-automation server",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on [env: SUSTAINBOT_HOST, default 0.0.0.0]
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on [env: SUSTAINBOT_PORT, default 5000]
    #[arg(long)]
    pub port: Option<u16>,
    /// Development mode: a throwaway JWT secret and a printed demo token. Never in production.
    #[arg(long)]
    pub dev: bool,
    /// Run one workflow through the governance gate and exit (0 success, 1 failure).
    #[arg(long, value_name = "NAME")]
    pub run: Option<String>,
    /// With --run: the governance request (AIM + DRAG mode) as a JSON file, or - for standard input.
    #[arg(long, value_name = "FILE", requires = "run")]
    pub request: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// API keys for machines: create (printed once), list, revoke.
    Apikey {
        /// Keep the keys in this PostgreSQL database (the `api_keys` table every server on it
        /// reads) [default: DATABASE_URL when set, else the file API_KEYS_PATH].
        #[arg(long, global = true, value_name = "URL")]
        database_url: Option<String>,
        #[command(subcommand)]
        command: apikey::ApikeyCommand,
    },
    /// Audit-trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Workflow-file tools: check a directory, migrate the original server's files.
    Workflows {
        #[command(subcommand)]
        command: WorkflowsCommand,
    },
    /// Roles-policy tools (`POLICY_PATH`): check a file, explain a decision.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: every problem as FILE:LINE:COLUMN: message. Exits 1 when there is
    /// any, 2 when the file cannot be read.
    Check {
        /// The policy file [default: POLICY_PATH]
        file: Option<PathBuf>,
    },
    /// Say which rule of the policy decides whether roles may do an action (on a workflow in a
    /// DRAG mode), and what each rule makes of it. Exits 0 when allowed, 1 when refused, 2 when
    /// the question or the file is unusable.
    Explain {
        /// A role of the caller (repeat for a caller with several).
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<String>,
        /// run, approve, cancel, override, audit.read, reload or apikey.manage.
        #[arg(long)]
        action: String,
        /// The workflow (for run, approve, cancel, override).
        #[arg(long)]
        workflow: Option<String>,
        /// The DRAG mode: draft, research, grunt or execute.
        #[arg(long)]
        mode: Option<String>,
        /// The policy file [default: POLICY_PATH]
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum WorkflowsCommand {
    /// Say what each definition file of a directory is: native, legacy (the original server's
    /// format, run through OpenClaw) or invalid (with the reason). One line per file; exits 1 when
    /// any file is invalid, 2 when the directory cannot be read.
    Check {
        /// The directory [default: WORKFLOWS_DIR or ./workflows]
        dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a native definition (one `openclaw` step posting the same body) for each legacy file
    /// of DIR into OUT, and copy native files there unchanged. Exits 1 when any file is invalid
    /// (not written), 2 when nothing could be written.
    Migrate {
        /// The directory of the files to migrate.
        dir: PathBuf,
        /// Where to write the definitions (created if needed; may be DIR itself, with --force).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Overwrite files that exist in OUT.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify a log's hash chain (all its segments), and with --public-key every checkpoint
    /// signature; exits non-zero naming the first bad line. With --legacy FILE: verify the
    /// original (Python) server's audit log instead, and with PATH also that our log anchors it.
    Verify {
        /// The log's active file or its directory [default: AUDIT_LOG_PATH or ./logs/audit.jsonl;
        /// with --legacy, only when given]
        path: Option<PathBuf>,
        /// The original server's audit.jsonl: check every line's integrity_hash its way (and, with
        /// PATH, that a genesis record there holds this file's digest).
        #[arg(long, value_name = "FILE")]
        legacy: Option<PathBuf>,
        /// The public key (`sustainbot audit keygen`) that must have signed the checkpoints.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Verify the chain in this PostgreSQL database instead of a file [default without PATH:
        /// DATABASE_URL, when set].
        #[arg(long, value_name = "URL", conflicts_with_all = ["path", "legacy"])]
        database_url: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a JSONL log (all its segments) into the empty audit chain of a PostgreSQL database:
    /// the same lines, seqs and hashes, verified as they are read (with --public-key, every
    /// checkpoint's signature too); nothing is imported unless the whole log verifies. Servers on
    /// the database then continue the chain.
    Import {
        /// The log's active file or its directory.
        path: PathBuf,
        /// The database [default: DATABASE_URL].
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// The public key that must have signed the log's checkpoints.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
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
    /// Verify the original (Python) server's audit log FILE and anchor it in ours
    /// (AUDIT_LOG_PATH): one `genesis` record with its line count and SHA-256. Refuses a file
    /// with any bad line; a file already anchored is not written again.
    ImportLegacy {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print every record that matches, in seq order, one JSON line each, exactly as written (so
    /// each line still carries its own verifiable integrity_hash).
    Export(ExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    /// The log's active file or its directory [default: DATABASE_URL's chain when set, else
    /// AUDIT_LOG_PATH or ./logs/audit.jsonl]
    pub path: Option<PathBuf>,
    /// Export the chain in this PostgreSQL database: with no filter, one JSONL file of every
    /// record that `sustainbot audit verify` accepts.
    #[arg(long, value_name = "URL", conflicts_with = "path")]
    pub database_url: Option<String>,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only this trace id.
    #[arg(long)]
    pub trace_id: Option<String>,
    /// Only records whose aim.actor.email, aim.actor.name or principal.actor is this (any case).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this workflow_name.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only this outcome: started, success, failure, rejected, cancelled.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only this DRAG mode: draft, research, grunt, execute.
    #[arg(long)]
    pub drag_mode: Option<String>,
    /// Only this kind of record: run, recovery, checkpoint, retention, approval, override, genesis,
    /// apikey.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only records stamped at or after this RFC 3339 time (e.g. 2026-01-31T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records stamped before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

// Request handling allocates many small short-lived objects (JSON values, strings); mimalloc keeps
// that cheaper than the system allocator under concurrency (see BENCHMARKS.md).

/// The environment, read once at start: every section of the configuration comes from it.
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment now (`.env` already applied); variables that are not Unicode are
    /// left out (none of ours can be).
    pub fn capture() -> Env {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect())
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// Reads one section of the configuration.
    pub fn section<T>(
        &self,
        read: impl FnOnce(&mut sustainbot::config::Reader<'_>) -> T,
    ) -> Result<T, ConfigError> {
        section(&|name| self.get(name), read)
    }
}

/// Runs the command line.
pub fn run(cli: Cli, env: &Env) -> ExitCode {
    // A bad logging variable does not stop a command that does not serve: it logs as by default
    // (serving reads the whole configuration and refuses to start with every problem listed).
    let serving = matches!(cli.command, None | Some(Command::Serve(_)));
    let logging = match env.section(LoggingConfig::read) {
        Ok(config) => logging::init(&config, serving),
        Err(e) => {
            let logging = logging::init(&LoggingConfig::default(), serving);
            tracing::warn!("{e}; logging as by default");
            logging
        }
    };
    let code = command(cli, env);
    logging.shutdown();
    code
}

/// The command itself, once logging is up.
fn command(cli: Cli, env: &Env) -> ExitCode {
    match cli.command {
        None => serve::serve_or_run(cli.serve, env),
        Some(Command::Serve(args)) => serve::serve_or_run(args, env),
        Some(Command::Token { actor, role, ttl }) => token::token(env, &actor, &role, ttl),
        Some(Command::Apikey {
            database_url,
            command,
        }) => apikey::apikey(env, database_url, command),
        Some(Command::Audit { command }) => match command {
            AuditCommand::Verify {
                path,
                legacy: Some(file),
                public_key,
                json,
                ..
            } => audit_legacy::verify(&file, path, public_key, json),
            AuditCommand::Verify {
                path,
                legacy: None,
                public_key,
                database_url,
                json,
            } => audit::verify(env, path, database_url, public_key, json),
            AuditCommand::Import {
                path,
                database_url,
                public_key,
            } => audit_db::import(env, &path, database_url, public_key),
            AuditCommand::ImportLegacy { file } => audit_legacy::import(env, &file),
            AuditCommand::Keygen { out } => audit::keygen(&out),
            AuditCommand::Tail { path, n } => audit::tail(env, path, n),
            AuditCommand::Export(args) => audit::export(env, args),
        },
        Some(Command::Workflows { command }) => match command {
            WorkflowsCommand::Check { dir, json } => workflows::check(env, dir, json),
            WorkflowsCommand::Migrate { dir, out, force } => workflows::migrate(&dir, &out, force),
        },
        Some(Command::Policy { command }) => match command {
            PolicyCommand::Check { file } => policy::check(env, file),
            PolicyCommand::Explain {
                roles,
                action,
                workflow,
                mode,
                policy,
            } => policy::explain(
                env,
                policy::Asked {
                    policy,
                    roles,
                    action,
                    workflow,
                    mode,
                },
            ),
        },
    }
}

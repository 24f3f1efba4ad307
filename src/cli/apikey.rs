//! `sustainbot apikey create|list|revoke`: API keys for machines, in the key store (the
//! `api_keys` table of `DATABASE_URL` or `--database-url`, else the file `API_KEYS_PATH`). The
//! command line never writes the audit log (a running server holds it): it
//! leaves each creation and revocation marked unrecorded in the store, and the server records it
//! (at start-up, or within a second while it runs). A key is accepted once its creation is
//! recorded; a revocation takes effect within a second of this command.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use sustainbot::auth::apikey::{self, ApiKey, KeyId, KeyRequest, KeyStoreError};
use sustainbot::auth::Principal;
use sustainbot::config::{ApiKeysConfig, DatabaseConfig};
use sustainbot::db;

use super::audit_db::display;
use super::Env;

#[derive(Subcommand)]
pub enum ApikeyCommand {
    /// Create a key that speaks for OWNER with ROLE. Prints the key once, alone on standard
    /// output (the details go to standard error); only its hash is stored.
    Create {
        /// The accountable human (an email): the actor of every use of the key.
        #[arg(long, value_name = "EMAIL")]
        owner: String,
        /// The role every use has.
        #[arg(long)]
        role: String,
        /// A name for people [default: the key's id].
        #[arg(long)]
        name: Option<String>,
        /// Days until the key expires (1 to 3650) [default: never].
        #[arg(long, value_name = "N")]
        expires_days: Option<u32>,
        /// Only workflows matching PATTERN (`*` for any characters); repeat for several
        /// [default: every workflow the role may run].
        #[arg(long = "workflow", value_name = "PATTERN")]
        workflows: Vec<String>,
    },
    /// One line per key, beginning with its id: status, owner, role, name, times, workflows
    /// (never the key).
    List,
    /// Revoke the key with this id (a running server refuses it within a second).
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub fn apikey(env: &Env, database_url: Option<String>, command: ApikeyCommand) -> ExitCode {
    let (config, database) =
        match env.section(|r| (ApiKeysConfig::read(r), DatabaseConfig::read(r))) {
            Ok(read) => read,
            Err(e) => {
                eprintln!("sustainbot apikey: {e}");
                return ExitCode::from(2);
            }
        };
    // `--database-url`, else DATABASE_URL: the table the servers on that database read.
    let timeout = database
        .as_ref()
        .map_or(Duration::from_secs(30), |d| d.timeout);
    let url = database_url.or_else(|| database.map(|d| d.url.expose().to_owned()));
    // A request is checked before anything is opened.
    let task = match command {
        ApikeyCommand::Create {
            owner,
            role,
            name,
            expires_days,
            workflows,
        } => {
            let request = KeyRequest {
                owner,
                role,
                name,
                expires_days,
                workflows: (!workflows.is_empty()).then_some(workflows),
            };
            if let Err(problems) = request.check() {
                eprintln!("sustainbot apikey create: {problems}");
                return ExitCode::from(2);
            }
            Task::Create(request)
        }
        ApikeyCommand::List => Task::List,
        ApikeyCommand::Revoke { id } => Task::Revoke(id),
    };
    let outcome = block_on(async {
        let store = match &url {
            Some(url) => {
                let unreachable =
                    |e: db::DbError| KeyStoreError::Io(format!("{}: {e}", display(url)));
                let pool = db::connect(url, timeout).await.map_err(unreachable)?;
                // The schema is the server's own; applying it is idempotent (and takes turns with
                // servers starting at the same time).
                db::migrate(&pool).await.map_err(unreachable)?;
                apikey::open_store(&config, Some((pool, timeout)))
            }
            None => apikey::open_store(&config, None),
        };
        match task {
            Task::Create(request) => create(store.as_ref(), &request).await,
            Task::List => list(store.as_ref()).await,
            Task::Revoke(id) => revoke(store.as_ref(), &id).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sustainbot apikey: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command, checked.
enum Task {
    Create(KeyRequest),
    List,
    Revoke(String),
}

fn block_on<T>(work: impl Future<Output = Result<T, KeyStoreError>>) -> Result<T, KeyStoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KeyStoreError::Io(format!("cannot start a runtime: {e}")))?
        .block_on(work)
}

async fn create(
    store: &dyn apikey::ApiKeyStore,
    request: &KeyRequest,
) -> Result<ExitCode, KeyStoreError> {
    let (key, text) = request.issue(Principal::local_operator())?;
    store.insert(key.clone()).await?;
    eprintln!(
        "API key {} ({}) created for {} with role {}, {}; workflows: {}.",
        key.id,
        key.name,
        key.owner,
        key.role,
        expiry(&key),
        workflows(&key)
    );
    eprintln!(
        "It is shown this once (only its hash is stored). A server records its creation on the \
         audit trail (at once if running, else at its start) and accepts it from then on."
    );
    println!("{}", text.expose());
    Ok(ExitCode::SUCCESS)
}

async fn list(store: &dyn apikey::ApiKeyStore) -> Result<ExitCode, KeyStoreError> {
    // In the store's order: the order they were created in.
    let (keys, _) = store.load().await?;
    if keys.is_empty() {
        eprintln!("no API keys");
    }
    let now = chrono::Utc::now();
    for key in &keys {
        println!(
            "{} {} owner={} role={} name={:?} created={} by={} {} last_used={} workflows={}",
            key.id,
            key.status(now).as_str(),
            key.owner,
            key.role,
            key.name,
            apikey::rfc3339(key.created_at),
            apikey::who(&key.created_by),
            match key.revoked_at {
                Some(at) => format!("revoked={}", apikey::rfc3339(at)),
                None => format!(
                    "expires={}",
                    key.expires_at
                        .map_or_else(|| "never".to_owned(), apikey::rfc3339)
                ),
            },
            key.last_used_at
                .map_or_else(|| "never".to_owned(), apikey::rfc3339),
            workflows(key)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(store: &dyn apikey::ApiKeyStore, id: &str) -> Result<ExitCode, KeyStoreError> {
    let Some(id) = KeyId::parse(id) else {
        eprintln!("sustainbot apikey revoke: {id:?} is not an API key id (16 hex digits)");
        return Ok(ExitCode::FAILURE);
    };
    let at = apikey::now();
    match store.revoke(id, Principal::local_operator(), at).await {
        Ok(key) if key.revoked_at == Some(at) => {
            println!("{} revoked", key.id);
            Ok(ExitCode::SUCCESS)
        }
        Ok(key) => {
            let when = key.revoked_at.map(apikey::rfc3339).unwrap_or_default();
            println!("{} was already revoked at {when}", key.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(KeyStoreError::NotFound(id)) => {
            eprintln!("sustainbot apikey revoke: no API key {id}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e),
    }
}

fn expiry(key: &ApiKey) -> String {
    key.expires_at.map_or_else(
        || "never expires".to_owned(),
        |at| format!("expires {}", apikey::rfc3339(at)),
    )
}

fn workflows(key: &ApiKey) -> String {
    key.workflows
        .as_ref()
        .map_or_else(|| "all".to_owned(), |patterns| patterns.join(","))
}

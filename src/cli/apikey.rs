//! `sustainbot apikey create|list|revoke`: API keys for machines, in the key store
//! (`API_KEYS_PATH`). The command line never writes the audit log (a running server holds it): it
//! leaves each creation and revocation marked unrecorded in the store, and the server records it
//! (at start-up, or within a second while it runs). A key is accepted once its creation is
//! recorded; a revocation takes effect within a second of this command.

use std::future::Future;
use std::process::ExitCode;

use clap::Subcommand;
use sustainbot::auth::apikey::{self, ApiKey, KeyId, KeyRequest, KeyStoreError};
use sustainbot::auth::Principal;
use sustainbot::config::ApiKeysConfig;

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

pub fn apikey(env: &Env, command: ApikeyCommand) -> ExitCode {
    let config = match env.section(ApiKeysConfig::read) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sustainbot apikey: {e}");
            return ExitCode::from(2);
        }
    };
    let store = apikey::open_store(&config);
    let outcome = match command {
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
            block_on(create(store.as_ref(), &request))
        }
        ApikeyCommand::List => block_on(list(store.as_ref())),
        ApikeyCommand::Revoke { id } => block_on(revoke(store.as_ref(), &id)),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sustainbot apikey: {e}");
            ExitCode::FAILURE
        }
    }
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

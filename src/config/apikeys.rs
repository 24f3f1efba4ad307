//! Where the API keys are kept.

use std::path::PathBuf;

use super::{AuditConfig, Reader};

/// The API keys' store.
#[derive(Debug, Clone)]
pub struct ApiKeysConfig {
    /// `API_KEYS_PATH`: the key file (hashes only); by default `api_keys.json` beside the audit
    /// log. Not used with `DATABASE_URL`: the keys are then in the database's `api_keys` table.
    pub path: PathBuf,
}

impl ApiKeysConfig {
    pub fn read(reader: &mut Reader<'_>) -> ApiKeysConfig {
        let path = reader.text("API_KEYS_PATH").map_or_else(
            || {
                let log = AuditConfig::read_log_path(reader);
                log.with_file_name("api_keys.json")
            },
            PathBuf::from,
        );
        ApiKeysConfig { path }
    }
}

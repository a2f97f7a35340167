//! The TOML config file given by `--config`. Keys mirror the long flags with `_` for `-`;
//! every key is optional and unknown keys are an error, so a typo is caught at start.

use std::path::{Path, PathBuf};

use super::{CacheMode, ConfigError, DeferBegin, LogFormat, ReplicationMode};

/// Settings read from the config file; `None` means "not set here".
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--listen`.
    pub listen: Option<String>,
    /// See `--upstream`.
    pub upstream: Option<String>,
    /// See `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// See `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// See `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// See `--log-format`.
    pub log_format: Option<LogFormat>,
    /// See `--max-client-conn`.
    pub max_client_conn: Option<usize>,
    /// See `--shutdown-timeout`.
    pub shutdown_timeout: Option<String>,
    /// See `--cache`.
    pub cache: Option<CacheMode>,
    /// See `--cache-size`.
    pub cache_size: Option<String>,
    /// See `--cache-max-entry`.
    pub cache_max_entry: Option<String>,
    /// See `--cache-ttl`.
    pub cache_ttl: Option<String>,
    /// See `--replication`.
    pub replication: Option<ReplicationMode>,
    /// See `--defer-begin`.
    pub defer_begin: Option<DeferBegin>,
    /// See `--publication`.
    pub publication: Option<String>,
    /// See `--cache-ttl-unreplicated`.
    pub cache_ttl_unreplicated: Option<String>,
    /// See `--cache-allow-tables`.
    pub cache_allow_tables: Option<Vec<String>>,
    /// See `--cache-deny-tables`.
    pub cache_deny_tables: Option<Vec<String>>,
    /// See `--admin-users`.
    pub admin_users: Option<Vec<String>>,
    /// See `--auth-query`.
    pub auth_query: Option<String>,
    /// See `--shared-cache`.
    pub shared_cache: Option<String>,
    /// See `--shared-cache-ttl`.
    pub shared_cache_ttl: Option<String>,
    /// See `--shared-cache-max-entry`.
    pub shared_cache_max_entry: Option<String>,
    /// See `--shared-cache-timeout`.
    pub shared_cache_timeout: Option<String>,
    /// See `--replica`.
    pub replicas: Option<Vec<String>>,
    /// See `--replica-pool-size`.
    pub replica_pool_size: Option<u64>,
    /// Time a client has to send its startup packet and finish TLS (file only; default 10s).
    pub startup_timeout: Option<String>,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}

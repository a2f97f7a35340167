//! Configuration: one resolved [`Config`] built from flags, environment, file and defaults.
//!
//! Precedence is flag > environment variable > `--config` file > built-in default, the same for
//! every setting. clap reads flags and their `PGCACHED_*` variables ([`cli`]); serde reads the
//! TOML file ([`file`]); [`Config::resolve`] merges them in that order and validates the result
//! once, so the rest of the program sees only checked values.

pub mod cli;
pub mod duration;
pub mod file;
pub mod size;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::shared_cache::{self, SharedCacheSettings, SharedUrl, SharedUrlError};
use crate::sql::names::{parse_relation, RelationName};
use crate::upstream::url::{UpstreamUrl, UpstreamUrlError};

pub use cli::{Cli, Command};
pub use file::FileConfig;

/// Default client listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6432";
/// Default upstream PostgreSQL.
pub const DEFAULT_UPSTREAM: &str = "postgres://127.0.0.1:5432";
/// Default Prometheus endpoint address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9187";
/// Default limit of concurrent client connections.
pub const DEFAULT_MAX_CLIENT_CONN: usize = 1000;
/// Default grace period for sessions at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send its startup packet and finish TLS.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Default memory for cached results.
pub const DEFAULT_CACHE_SIZE: u64 = 256 * 1024 * 1024;
/// Default largest cached result.
pub const DEFAULT_CACHE_MAX_ENTRY: u64 = 1024 * 1024;

/// Whether the result cache serves reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Relay only.
    Off,
    /// Serve repeated reads from memory.
    #[default]
    On,
}

/// Whether pgcached answers a READ COMMITTED `BEGIN` itself and sends it to PostgreSQL with
/// the block's first statement that needs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeferBegin {
    /// Every BEGIN is relayed as it comes.
    Off,
    /// A block that only reads cached results never reaches PostgreSQL.
    #[default]
    On,
}

/// How writes made outside pgcached reach the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// Stream each database's changes when possible; where no stream can work (one clear
    /// warning), serve cached results for at most `--cache-ttl-unreplicated`.
    #[default]
    Auto,
    /// Serve nothing from the cache for a database whose stream is not running.
    Required,
    /// Never stream: the operator vouches that nothing writes except through pgcached;
    /// invalidation by pgcached's own writes and `--cache-ttl` only.
    Off,
}

/// Default bound on the age of cached results of a database without a working change feed.
pub const DEFAULT_CACHE_TTL_UNREPLICATED: Duration = Duration::from_secs(1);

/// Cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Off or on.
    pub mode: CacheMode,
    /// Bytes of cached results, at most.
    pub size: u64,
    /// Largest single result cached.
    pub max_entry: u64,
    /// Age after which a cached result is dropped.
    pub ttl: Option<Duration>,
    /// How outside writes are followed.
    pub replication: ReplicationMode,
    /// The operator's publication to stream with pgoutput; `None` decodes every table with
    /// test_decoding.
    pub publication: Option<String>,
    /// With `auto`, how long a cached result of a database without a working change feed is
    /// served at most; zero caches nothing there.
    pub ttl_unreplicated: Duration,
    /// When not empty, only reads whose every table matches one of these are cached.
    pub allow_tables: Vec<RelationName>,
    /// Reads of a table matching one of these are never cached.
    pub deny_tables: Vec<RelationName>,
    /// Whether a READ COMMITTED BEGIN waits in pgcached until its block needs PostgreSQL.
    pub defer_begin: DeferBegin,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where PostgreSQL is, with pgcached's own credentials and TLS settings.
    pub upstream: UpstreamUrl,
    /// Where `/metrics` is served.
    pub metrics_listen: SocketAddr,
    /// Certificate chain (PEM) offered to clients that ask for TLS.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Clients beyond this many concurrent connections are refused with SQLSTATE 53300.
    pub max_client_conn: usize,
    /// How long sessions may finish their work after SIGINT/SIGTERM.
    pub shutdown_timeout: Duration,
    /// How long a client has to send its startup packet and finish TLS (config file only).
    pub startup_timeout: Duration,
    /// The result cache.
    pub cache: CacheSettings,
    /// Roles admitted to the admin console; empty turns the console off.
    pub admin_users: Vec<String>,
    /// The query that reads a role's SCRAM verifier, or `None` to relay TLS clients' SCRAM
    /// logins without channel binding.
    pub auth_query: Option<String>,
    /// The shared tier (Redis/Valkey), if any.
    pub shared_cache: Option<SharedCacheSettings>,
    /// Read replicas cacheable-read misses may go to.
    pub replicas: ReplicaSettings,
}

/// Read replicas (`--replica`, `--replica-pool-size`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// The replicas, each one host; credentials in a URL are pgcached's own (for its checks of
    /// the replica), taken from `--upstream` when the URL has none.
    pub urls: Vec<UpstreamUrl>,
    /// Connections pgcached opens to each replica at most (logged in as client roles).
    pub pool_size: usize,
}

/// Connections per replica unless `--replica-pool-size` says otherwise.
pub const DEFAULT_REPLICA_POOL_SIZE: usize = 32;

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML for pgcached.
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// An address does not parse.
    #[error("invalid {setting} address {value:?}: expected HOST:PORT such as 127.0.0.1:6432")]
    Address {
        setting: &'static str,
        value: String,
    },
    /// The upstream URL does not parse.
    #[error("invalid upstream URL: {0}")]
    Upstream(#[from] UpstreamUrlError),
    /// A duration does not parse.
    #[error("invalid {setting} {value:?}: {reason}")]
    Duration {
        setting: &'static str,
        value: String,
        reason: String,
    },
    /// A publication name pgcached will not put into SQL.
    #[error("invalid publication name {0:?}: use letters, digits and _ (at most 63)")]
    Publication(String),
    /// A size does not parse.
    #[error("invalid {setting} {value:?}: {reason}")]
    Size {
        setting: &'static str,
        value: String,
        reason: String,
    },
    /// Only one of the TLS files was given.
    #[error("--tls-cert and --tls-key must be given together")]
    TlsPair,
    /// A limit of zero would refuse everyone.
    #[error("--max-client-conn must be at least 1")]
    ZeroClients,
    /// A table name in an allow or deny list that cannot name a table.
    #[error(
        "invalid table {value:?} in {setting}: use table or schema.table \
         (unquoted names fold to lower case; quote mixed case: \"Name\")"
    )]
    TableName {
        setting: &'static str,
        value: String,
    },
    /// An empty role name in `--admin-users`.
    #[error("invalid --admin-users {0:?}: a comma-separated list of role names")]
    AdminUsers(String),
    /// A `--replica` URL does not parse or names several hosts.
    #[error("invalid --replica URL {value:?}: {reason}")]
    Replica { value: String, reason: String },
    /// `--replica-pool-size` is not a positive number.
    #[error("invalid --replica-pool-size {0:?}: a number of connections, at least 1")]
    ReplicaPoolSize(String),
    /// Replicas without what tells how far they must have replayed.
    #[error(
        "--replica needs --cache on and --replication auto or required: a replica answers a \
         miss only once it has replayed every change the cache has seen"
    )]
    ReplicasWithoutStream,
    /// Replicas without pgcached's own role to check them and follow the primary with.
    #[error(
        "--replica needs pgcached's own credentials in --upstream \
         (postgres://pgcached:secret@host:port): replicas are checked against the primary's \
         identity, which pgcached reads as its own role"
    )]
    ReplicasWithoutCredentials,
    /// The shared-cache URL does not parse.
    #[error("invalid --shared-cache URL: {0}")]
    SharedCache(#[from] SharedUrlError),
    /// A shared tier without what validates its entries.
    #[error(
        "--shared-cache needs --cache on and --replication auto or required: results are \
         judged by the change stream's positions"
    )]
    SharedCacheWithoutStream,
}

impl Config {
    /// Merges flags/env (`cli`) over the file (`file`) over defaults, and validates.
    pub fn resolve(cli: &Cli, file: &FileConfig) -> Result<Config, ConfigError> {
        let listen = pick(&cli.listen, &file.listen, DEFAULT_LISTEN);
        let upstream = pick(&cli.upstream, &file.upstream, DEFAULT_UPSTREAM);
        let metrics_listen = pick(
            &cli.metrics_listen,
            &file.metrics_listen,
            DEFAULT_METRICS_LISTEN,
        );
        let shutdown_timeout = match cli
            .shutdown_timeout
            .as_ref()
            .or(file.shutdown_timeout.as_ref())
        {
            Some(text) => duration::parse(text).map_err(|reason| ConfigError::Duration {
                setting: "shutdown timeout",
                value: text.clone(),
                reason,
            })?,
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };
        let startup_timeout = match &file.startup_timeout {
            Some(text) => duration::parse(text).map_err(|reason| ConfigError::Duration {
                setting: "startup timeout",
                value: text.clone(),
                reason,
            })?,
            None => DEFAULT_STARTUP_TIMEOUT,
        };
        let cache = CacheSettings {
            mode: cli.cache.or(file.cache).unwrap_or_default(),
            size: parse_size(
                "cache size",
                cli.cache_size.as_ref().or(file.cache_size.as_ref()),
            )?
            .unwrap_or(DEFAULT_CACHE_SIZE),
            max_entry: parse_size(
                "cache max entry",
                cli.cache_max_entry
                    .as_ref()
                    .or(file.cache_max_entry.as_ref()),
            )?
            .unwrap_or(DEFAULT_CACHE_MAX_ENTRY),
            ttl: match cli.cache_ttl.as_ref().or(file.cache_ttl.as_ref()) {
                None => None,
                Some(text) if text.trim() == "none" => None,
                Some(text) => {
                    Some(
                        duration::parse(text).map_err(|reason| ConfigError::Duration {
                            setting: "cache TTL",
                            value: text.clone(),
                            reason,
                        })?,
                    )
                }
            },
            replication: cli.replication.or(file.replication).unwrap_or_default(),
            publication: cli.publication.clone().or_else(|| file.publication.clone()),
            ttl_unreplicated: match cli
                .cache_ttl_unreplicated
                .as_ref()
                .or(file.cache_ttl_unreplicated.as_ref())
            {
                None => DEFAULT_CACHE_TTL_UNREPLICATED,
                Some(text) => duration::parse(text).map_err(|reason| ConfigError::Duration {
                    setting: "cache TTL for databases without replication",
                    value: text.clone(),
                    reason,
                })?,
            },
            allow_tables: table_list(
                "--cache-allow-tables",
                &cli.cache_allow_tables,
                &file.cache_allow_tables,
            )?,
            deny_tables: table_list(
                "--cache-deny-tables",
                &cli.cache_deny_tables,
                &file.cache_deny_tables,
            )?,
            defer_begin: cli.defer_begin.or(file.defer_begin).unwrap_or_default(),
        };
        let admin_users = list(&cli.admin_users, &file.admin_users);
        if let Some(bad) = admin_users
            .iter()
            .find(|u| u.is_empty() || u.contains(char::is_whitespace))
        {
            return Err(ConfigError::AdminUsers(bad.clone()));
        }
        if let Some(publication) = &cache.publication {
            if publication.is_empty()
                || publication.len() > 63
                || !publication
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(ConfigError::Publication(publication.clone()));
            }
        }
        let tls_cert = cli.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let tls_key = cli.tls_key.clone().or_else(|| file.tls_key.clone());
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(ConfigError::TlsPair);
        }
        let max_client_conn = cli
            .max_client_conn
            .or(file.max_client_conn)
            .unwrap_or(DEFAULT_MAX_CLIENT_CONN);
        if max_client_conn == 0 {
            return Err(ConfigError::ZeroClients);
        }
        let auth_query = pick(
            &cli.auth_query,
            &file.auth_query,
            crate::auth::DEFAULT_AUTH_QUERY,
        );
        let auth_query = match auth_query.trim() {
            "" | "none" => None,
            query => Some(query.to_owned()),
        };
        let shared_cache = shared_cache_settings(cli, file, &cache)?;
        let upstream = UpstreamUrl::parse(&upstream)?;
        let replicas = replica_settings(cli, file, &upstream)?;
        if !replicas.urls.is_empty()
            && (cache.mode == CacheMode::Off || cache.replication == ReplicationMode::Off)
        {
            return Err(ConfigError::ReplicasWithoutStream);
        }
        if !replicas.urls.is_empty() && upstream.user.is_none() {
            return Err(ConfigError::ReplicasWithoutCredentials);
        }
        Ok(Config {
            listen: parse_addr("listen", &listen)?,
            upstream,
            metrics_listen: parse_addr("metrics", &metrics_listen)?,
            tls_cert,
            tls_key,
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            max_client_conn,
            shutdown_timeout,
            startup_timeout,
            cache,
            admin_users,
            auth_query,
            shared_cache,
            replicas,
        })
    }

    /// Reads the file named by `--config`/`PGCACHED_CONFIG` (if any) and resolves.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(cli, &file)
    }
}

/// The shared tier's settings, when `--shared-cache` is given.
fn shared_cache_settings(
    cli: &Cli,
    file: &FileConfig,
    cache: &CacheSettings,
) -> Result<Option<SharedCacheSettings>, ConfigError> {
    let Some(url) = cli.shared_cache.as_ref().or(file.shared_cache.as_ref()) else {
        return Ok(None);
    };
    if url.trim().is_empty() || url.trim() == "none" {
        return Ok(None);
    }
    if cache.mode == CacheMode::Off || cache.replication == ReplicationMode::Off {
        return Err(ConfigError::SharedCacheWithoutStream);
    }
    let duration = |setting: &'static str, text: Option<&String>, default: Duration| match text {
        None => Ok(default),
        Some(text) => duration::parse(text).map_err(|reason| ConfigError::Duration {
            setting,
            value: text.clone(),
            reason,
        }),
    };
    Ok(Some(SharedCacheSettings {
        url: SharedUrl::parse(url)?,
        ttl: duration(
            "shared cache TTL",
            cli.shared_cache_ttl
                .as_ref()
                .or(file.shared_cache_ttl.as_ref()),
            shared_cache::DEFAULT_TTL,
        )?,
        max_entry: parse_size(
            "shared cache max entry",
            cli.shared_cache_max_entry
                .as_ref()
                .or(file.shared_cache_max_entry.as_ref()),
        )?
        .unwrap_or(shared_cache::DEFAULT_MAX_ENTRY),
        timeout: duration(
            "shared cache timeout",
            cli.shared_cache_timeout
                .as_ref()
                .or(file.shared_cache_timeout.as_ref()),
            shared_cache::DEFAULT_TIMEOUT,
        )?,
    }))
}

fn parse_size(setting: &'static str, text: Option<&String>) -> Result<Option<u64>, ConfigError> {
    match text {
        None => Ok(None),
        Some(text) => size::parse(text)
            .map(Some)
            .map_err(|reason| ConfigError::Size {
                setting,
                value: text.clone(),
                reason,
            }),
    }
}

/// A comma-separated flag, or else the file's list; entries trimmed, empty ones dropped.
/// `--replica` (repeatable, or comma-separated in `PGCACHED_REPLICA`) and `replicas` in the
/// file; each URL names one host and borrows `--upstream`'s credentials when it has none.
fn replica_settings(
    cli: &Cli,
    file: &FileConfig,
    upstream: &UpstreamUrl,
) -> Result<ReplicaSettings, ConfigError> {
    let texts: Vec<String> = if cli.replica.is_empty() {
        file.replicas.clone().unwrap_or_default()
    } else {
        cli.replica.clone()
    };
    let mut urls = Vec::new();
    for text in texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let invalid = |reason: String| ConfigError::Replica {
            value: text.to_owned(),
            reason,
        };
        let mut url = UpstreamUrl::parse(text).map_err(|e| invalid(e.to_string()))?;
        if url.hosts.len() != 1 {
            return Err(invalid("name one host per --replica".to_owned()));
        }
        if url.user.is_none() {
            url.user.clone_from(&upstream.user);
            url.password.clone_from(&upstream.password);
        }
        if url.database.is_none() {
            url.database.clone_from(&upstream.database);
        }
        urls.push(url);
    }
    let pool_size = match cli
        .replica_pool_size
        .clone()
        .or_else(|| file.replica_pool_size.map(|n| n.to_string()))
    {
        None => DEFAULT_REPLICA_POOL_SIZE,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(ConfigError::ReplicaPoolSize(text))?,
    };
    Ok(ReplicaSettings { urls, pool_size })
}

fn list(flag: &Option<String>, file: &Option<Vec<String>>) -> Vec<String> {
    let entries: Vec<String> = match (flag, file) {
        (Some(text), _) => text.split(',').map(str::to_owned).collect(),
        (None, Some(list)) => list.clone(),
        (None, None) => Vec::new(),
    };
    entries
        .into_iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

fn table_list(
    setting: &'static str,
    flag: &Option<String>,
    file: &Option<Vec<String>>,
) -> Result<Vec<RelationName>, ConfigError> {
    list(flag, file)
        .into_iter()
        .map(|table| {
            parse_relation(&table).ok_or(ConfigError::TableName {
                setting,
                value: table,
            })
        })
        .collect()
}

fn pick(flag: &Option<String>, file: &Option<String>, default: &str) -> String {
    flag.clone()
        .or_else(|| file.clone())
        .unwrap_or_else(|| default.to_owned())
}

fn parse_addr(setting: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    let error = || ConfigError::Address {
        setting,
        value: value.to_owned(),
    };
    value
        .to_socket_addrs()
        .map_err(|_| error())?
        .next()
        .ok_or_else(error)
}

#[cfg(test)]
mod tests;

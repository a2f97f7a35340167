//! Command-line flags. Each flag can also be set by its `PGCACHED_*` environment variable; none
//! has a clap default, so that an unset flag falls through to the config file and then to the
//! built-in default (shown in the help text).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::{CacheMode, DeferBegin, LogFormat, ReplicationMode};

/// pgcached: a transparent caching proxy for PostgreSQL.
#[derive(Debug, Clone, Parser)]
#[command(name = "pgcached", version, about, long_about = None)]
pub struct Cli {
    /// Address clients connect to [default: 127.0.0.1:6432]
    #[arg(long, global = true, env = "PGCACHED_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// PostgreSQL URL; its credentials, sslmode and sslrootcert are pgcached's own [default: postgres://127.0.0.1:5432]
    #[arg(long, global = true, env = "PGCACHED_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// Address of the Prometheus /metrics endpoint [default: 127.0.0.1:9187]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<String>,

    /// Certificate chain (PEM) that lets clients negotiate TLS; needs --tls-key
    #[arg(long, global = true, env = "PGCACHED_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert
    #[arg(long, global = true, env = "PGCACHED_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// TOML config file; flags and environment variables override it
    #[arg(long, global = true, env = "PGCACHED_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log line format; RUST_LOG sets levels [default: text]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,

    /// Most concurrent client connections; extra clients get SQLSTATE 53300 [default: 1000]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_MAX_CLIENT_CONN",
        value_name = "N"
    )]
    pub max_client_conn: Option<usize>,

    /// Grace period for sessions after SIGINT/SIGTERM, e.g. 30s [default: 30s]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_SHUTDOWN_TIMEOUT",
        value_name = "DURATION"
    )]
    pub shutdown_timeout: Option<String>,

    /// Serve repeated reads from the result cache: on or off [default: on]
    #[arg(long, global = true, env = "PGCACHED_CACHE", value_name = "MODE")]
    pub cache: Option<CacheMode>,

    /// Memory for cached results, e.g. 256MiB, 1GiB [default: 256MiB]
    #[arg(long, global = true, env = "PGCACHED_CACHE_SIZE", value_name = "SIZE")]
    pub cache_size: Option<String>,

    /// Largest result cached; larger ones stream through uncached [default: 1MiB]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_CACHE_MAX_ENTRY",
        value_name = "SIZE"
    )]
    pub cache_max_entry: Option<String>,

    /// Drop cached results older than this, e.g. 60s; none keeps them until invalidated [default: none]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_CACHE_TTL",
        value_name = "DURATION"
    )]
    pub cache_ttl: Option<String>,

    /// Answer a READ COMMITTED BEGIN in pgcached and send it with the block's first statement that needs PostgreSQL: on or off [default: on]
    #[arg(long, global = true, env = "PGCACHED_DEFER_BEGIN", value_name = "MODE")]
    pub defer_begin: Option<DeferBegin>,

    /// Follow writes made outside pgcached by logical decoding: auto, required or off [default: auto]
    #[arg(long, global = true, env = "PGCACHED_REPLICATION", value_name = "MODE")]
    pub replication: Option<ReplicationMode>,

    /// Stream this existing publication with pgoutput; reads of tables it does not carry are not cached [default: none, every table through test_decoding]
    #[arg(long, global = true, env = "PGCACHED_PUBLICATION", value_name = "NAME")]
    pub publication: Option<String>,

    /// With --replication auto, serve cached results of a database without a working change feed for at most this long; 0 caches nothing there [default: 1s]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_CACHE_TTL_UNREPLICATED",
        value_name = "DURATION"
    )]
    pub cache_ttl_unreplicated: Option<String>,

    /// Only reads whose every table is listed are cached: comma-separated `table` or `schema.table` [default: all tables]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_CACHE_ALLOW_TABLES",
        value_name = "TABLES"
    )]
    pub cache_allow_tables: Option<String>,

    /// Reads of any listed table are never cached: comma-separated `table` or `schema.table` [default: none]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_CACHE_DENY_TABLES",
        value_name = "TABLES"
    )]
    pub cache_deny_tables: Option<String>,

    /// Roles admitted to the admin console (database `pgcached`), comma-separated; their password is checked by PostgreSQL [default: none, console off]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_ADMIN_USERS",
        value_name = "ROLES"
    )]
    pub admin_users: Option<String>,

    /// Query returning a role's SCRAM verifier ($1: the role), run in the --upstream database as pgcached's role, so TLS clients' SCRAM logins keep channel binding; `none` relays them without it [default: SELECT public.pgcached_scram_verifier($1)]
    #[arg(long, global = true, env = "PGCACHED_AUTH_QUERY", value_name = "SQL")]
    pub auth_query: Option<String>,

    /// A Redis/Valkey shared by several pgcacheds as a second cache level: redis://host:port, rediss:// for TLS, redis+cluster://h1:p1,h2:p2 for a cluster [default: none]
    #[arg(long, global = true, env = "PGCACHED_SHARED_CACHE", value_name = "URL")]
    pub shared_cache: Option<String>,

    /// How long a result lives in the shared cache [default: 300s]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_SHARED_CACHE_TTL",
        value_name = "DURATION"
    )]
    pub shared_cache_ttl: Option<String>,

    /// Largest result written to the shared cache [default: 512KiB]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_SHARED_CACHE_MAX_ENTRY",
        value_name = "SIZE"
    )]
    pub shared_cache_max_entry: Option<String>,

    /// Longest a lookup in the shared cache may take before the query goes to PostgreSQL [default: 20ms]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_SHARED_CACHE_TIMEOUT",
        value_name = "DURATION"
    )]
    pub shared_cache_timeout: Option<String>,

    /// A read replica of --upstream (one host; repeat for more) that cacheable-read misses may go to once it has replayed what they must see: postgres://[pgcached:secret@]host:port[?sslmode=...] [default: none]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_REPLICA",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub replica: Vec<String>,

    /// Connections pgcached opens to each replica at most [default: 32]
    #[arg(
        long,
        global = true,
        env = "PGCACHED_REPLICA_POOL_SIZE",
        value_name = "N"
    )]
    pub replica_pool_size: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one, pgcached serves.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Start a throwaway local PostgreSQL, serve pgcached in front of it (admin console open to role postgres), print how to connect
    Demo {
        /// Also start a streaming standby of it, which cache misses go to (--replica)
        #[arg(long)]
        standby: bool,
    },
}

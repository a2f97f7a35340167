//! pgcached: a transparent caching proxy for PostgreSQL.
//!
//! Clients connect to pgcached exactly as they would to PostgreSQL; each client session gets its
//! own connection to the real server, and every message is relayed both ways without being
//! re-encoded. Authentication is the server's own: pgcached forwards the StartupMessage and the
//! whole exchange that follows, so it never needs a client's password.
//!
//! Layout (modules other crates use are `pub`; the rest are `pub(crate)`):
//! - [`admin`]: the admin console on the virtual database `pgcached`.
//! - [`auth`]: client logins: relayed to PostgreSQL, with SCRAM pass-through for TLS clients.
//! - [`config`]: flags, environment, config file and defaults, resolved into one [`config::Config`].
//! - [`server`]: the listener, client limit and shutdown sequence.
//! - [`session`]: one client session: startup negotiation, then the relay.
//! - [`wire`]: framing and the few messages pgcached writes itself; decides nothing.
//! - [`upstream`]: the upstream URL and connections to PostgreSQL (TLS per `sslmode`, cancel).
//! - [`tls`]: rustls configs for both sides (one provider: ring).
//! - [`net`]: a stream that is plain TCP or TLS.
//! - [`metrics`]: the metric registry (every metric: name, type, labels, help), handles, and
//!   the Prometheus exporter.
//! - [`error`]: errors told to clients, sorted into kinds (metric label, SQLSTATE, log level,
//!   the client-safe text).
//! - [`shutdown`]: the draining/terminating signal shared by all sessions.
//! - [`demo`]: the `pgcached demo` subcommand (its throwaway PostgreSQL is the
//!   `pgcached-local-cluster` crate).
//! - [`sql`]: syntactic analysis of a statement (sqlparser): its kind and what a read uses.
//! - [`catalog`]: what PostgreSQL's catalog says about relations and functions.
//! - [`bypass`]: why a statement is relayed without a cache lookup (metric label, explanation).
//! - [`classify`]: the memoized verdict per statement text: cacheable (on which tables) or not.
//! - [`cache_metrics`]: cache metric handles.
//! - [`pins`]: row-level dependencies: canonical values, row keys, column sets in use.
//! - [`replica`]: read replicas answering cache misses once they have replayed far enough.
//! - [`release`]: pgcached's own connections leave a database a client drops or renames.
//! - [`replication`]: one logical-decoding stream per database, feeding the cache.
//! - [`shared_cache`]: the shared tier in Redis/Valkey, validated by WAL positions.
//! - [`stats`]: in-process totals, per-table invalidations and open sessions, for the admin
//!   console and the per-table metrics.

pub(crate) mod admin;
pub mod auth;
#[doc(hidden)]
pub mod bench_api;
pub(crate) mod bypass;
pub(crate) mod cache_metrics;
pub(crate) mod catalog;
pub(crate) mod classify;
pub mod config;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod net;
pub(crate) mod pins;
pub(crate) mod release;
pub mod replica;
pub mod replication;
pub mod server;
pub(crate) mod session;
pub mod shared_cache;
pub(crate) mod shutdown;
pub(crate) mod sql;
pub(crate) mod stats;
pub(crate) mod tls;
pub mod upstream;
pub(crate) mod wire;

pub use config::Config;
pub use server::Server;

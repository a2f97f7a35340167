//! Test harness for pgcached: a real PostgreSQL, pgcached in-process, real clients.
//!
//! Layout:
//! - [`cluster`]: the throwaway PostgreSQL shared by a test binary (started once, removed when
//!   the binary exits, even if it panics or is killed).
//! - [`proxy`]: pgcached served in-process on port 0, on its own runtime thread.
//! - [`clients`]: connection URLs, tokio-postgres connections, and runners for psql, pgbench and
//!   the driver scripts in `tests/clients/`.
//! - [`certs`]: a test CA with server certificates for TLS tests.
//! - [`console`]: the admin console from tests (`SHOW REPLICATION`, `EXPLAIN CACHE`).
//! - [`external`]: reads through pgcached while writing straight to PostgreSQL.
//! - [`history`]: committed states of an oracle's tables, and the check that reads saw a
//!   permitted one.
//! - [`raw`]: a raw wire client for malformed and hand-made messages.
//! - [`redis`]: a throwaway `redis-server` (or a cluster of them) for the shared-tier tests.
//! - [`dashboard`]: the Grafana dashboard's queries, for the dashboard tests.

pub mod certs;
pub mod clients;
pub mod cluster;
pub mod console;
pub mod dashboard;
pub mod external;
pub mod history;
pub mod proxy;
pub mod random;
pub mod raw;
pub mod redis;
pub mod statements;

pub use clients::{connect, url, Endpoint};
pub use cluster::shared_cluster;
pub use proxy::TestProxy;

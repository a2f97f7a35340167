//! Sources of "table T changed" for pgcached's cache, outside its own traffic.
//!
//! Writes that pass through pgcached are seen in the session itself. Writes made elsewhere
//! (other services, cron jobs, psql straight to the database) reach pgcached through
//! PostgreSQL's logical replication: one stream per database, on a TEMPORARY slot with the
//! `pgoutput` plugin, so a pgcached that dies never leaves a slot holding WAL back. Each
//! committed transaction is reported as the set of tables it touched.
//!
//! This crate knows nothing about client sessions or the cache: it reports to an
//! [`InvalidationSink`].
//!
//! Layout:
//! - [`pgoutput`]: the few pgoutput messages that matter: which relation a change is for.
//! - [`replication`]: the stream per database, with reconnects and backoff.

pub mod pgoutput;
pub mod replication;

/// Where change reports go.
pub trait InvalidationSink: Send + Sync + 'static {
    /// A transaction that touched these tables (relation OIDs) committed in `database`;
    /// `commit_time_micros` is the commit time in microseconds since 2000-01-01.
    fn tables_changed(&self, database: &str, tables: &[u32], commit_time_micros: i64);

    /// The stream of `database` is (again) streaming: changes from now on are reported. What
    /// happened while it was down is unknown.
    fn stream_up(&self, database: &str);

    /// The stream of `database` is down: changes are not being reported.
    fn stream_down(&self, database: &str, reason: &str);

    /// Replication cannot work for `database` as configured (wal_level, privileges,
    /// publication); `reason` says what to fix.
    fn stream_unavailable(&self, database: &str, reason: &str);
}

//! Sources of "table T changed" for pgcached's cache, outside its own traffic.
//!
//! Writes that pass through pgcached are seen in the session itself. Writes made elsewhere
//! (other services, cron jobs, psql straight to the database) reach pgcached through
//! PostgreSQL's logical decoding: one replication connection per database, on a TEMPORARY slot,
//! so a pgcached that dies never leaves a slot holding WAL back, and pgcached creates nothing
//! that outlives its connection. By default the slot decodes with `test_decoding`, which ships
//! with PostgreSQL, needs no publication and reports every table, with or without a primary key:
//! nothing pgcached sets up can make a statement of any client fail. With a publication named
//! by the operator, the slot decodes with `pgoutput` instead. Each committed transaction is
//! reported as the set of tables it touched.
//!
//! This crate knows nothing about client sessions, TLS, authentication or the cache: it gets an
//! authenticated connection from a [`Connect`], relation names from a [`RelationNames`], and
//! reports to an [`InvalidationSink`].
//!
//! Layout:
//! - [`change`]: the decoded form of a row change, the same for both output plugins.
//! - [`test_decoding`]: parser of test_decoding's text lines.
//! - [`pgoutput`]: decoder of pgoutput's binary messages (protocol version 1).
//! - [`wire`]: framing and the few protocol messages of a replication connection.
//! - [`session`]: a replication connection: simple queries, slot creation, the copy stream.
//! - [`names`]: relation names (test_decoding) to OIDs, refreshed when in doubt.
//! - [`problem`]: what keeps a stream from working, as operators must fix it.
//! - [`replication`]: the stream per database, with reconnects and backoff.

pub mod change;
pub mod names;
pub mod pgoutput;
pub mod problem;
pub mod replication;
pub mod session;
pub mod test_decoding;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub use change::{Change, ChangeKind, Column, RelationRef, RowImage, Value};
pub use names::RelationNames;
pub use problem::Problem;
pub use replication::{spawn, Decoding, StreamConfig};
pub use wire::{Lsn, ServerError};

/// A boxed future, for the trait objects the stream is given.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An authenticated connection to PostgreSQL, plain or TLS.
pub trait ReplicationIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ReplicationIo for T {}

/// Why no authenticated replication connection could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// Something an operator must change (TLS settings, credentials, no user).
    #[error("{}", .0.text())]
    Problem(Problem),
    /// PostgreSQL refused the connection; its SQLSTATE says whether an operator must act.
    #[error("{0}")]
    Server(ServerError),
    /// Anything else (network, timeout): try again.
    #[error("{0}")]
    Transient(String),
}

/// Opens replication connections: TCP, TLS and the login with `replication=database`, up to
/// the first ReadyForQuery.
pub trait Connect: Send + Sync + 'static {
    /// An authenticated replication connection to `database`.
    fn connect<'a>(
        &'a self,
        database: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn ReplicationIo>, ConnectError>>;
}

/// A committed transaction, as far as the cache is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Relation OIDs the transaction changed (rows inserted, updated, deleted, truncated).
    pub tables: Vec<u32>,
    /// Its row changes with their images, for invalidation by key; every table in `tables`
    /// whose changes are not all here is in `whole_tables`.
    pub rows: Vec<TableChange>,
    /// Tables some of whose changes were not kept (too many in one transaction): invalidated
    /// as whole tables.
    pub whole_tables: Vec<u32>,
    /// Which tables changed is not known for certain (a change that could not be decoded, a
    /// name that maps to no table, the relation names changed meanwhile): everything cached for
    /// the database is suspect.
    pub whole_database: bool,
    /// Commit time in microseconds since 2000-01-01, when the plugin reported it.
    pub commit_time_micros: Option<i64>,
    /// WAL position of the end of the commit record.
    pub end_lsn: Lsn,
    /// The transaction's (top-level) id, when the plugin reported it: what tells when the
    /// commit is visible to new snapshots.
    pub xid: Option<u32>,
}

/// One row change, with the OID of its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// The table's OID (as reported: for a partition, the leaf or the published ancestor).
    pub table: u32,
    /// The change.
    pub change: Change,
}

/// Where a stream starts: what it will report from, on which server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// The slot's consistent point: every transaction whose commit ends after it is reported;
    /// none before it is.
    pub consistent_point: Lsn,
    /// The server's system identifier (`IDENTIFY_SYSTEM`): positions of different clusters
    /// are not comparable.
    pub system_id: String,
    /// The server's timeline: positions on different timelines are not comparable either.
    pub timeline: u32,
}

/// Where change reports go.
pub trait InvalidationSink: Send + Sync + 'static {
    /// A transaction that touched tables committed in `database`.
    fn committed(&self, database: &str, commit: &Commit);

    /// The stream of `database` is (again) streaming: every transaction committed after
    /// `start.consistent_point` is reported, in commit order. What happened before is unknown.
    fn stream_up(&self, database: &str, start: &StreamStart);

    /// Every transaction of `database` committed up to `position` has been reported (a commit
    /// or a keepalive passed it).
    fn advanced(&self, _database: &str, _position: Lsn) {}

    /// The stream of `database` is down for now (lost, server restarting): changes are not
    /// being reported until it is up again.
    fn stream_down(&self, database: &str, reason: &str);

    /// The stream of `database` cannot work as PostgreSQL or pgcached is configured;
    /// `problem` says what to fix. It is tried again now and then.
    fn stream_unavailable(&self, database: &str, problem: &Problem);
}

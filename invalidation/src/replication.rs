//! The change stream of one database.
//!
//! Each connection checks what it needs (`IDENTIFY_SYSTEM`, `wal_level`, the publication when
//! one is named), creates a TEMPORARY slot (`CREATE_REPLICATION_SLOT … TEMPORARY LOGICAL
//! <plugin>`, gone when the connection ends), and streams it (`START_REPLICATION … LOGICAL
//! 0/0`). On every commit the tables the transaction touched are reported. Standby status
//! updates go out every second, and at once when the server asks, carrying the end of the last
//! commit processed, so the server can recycle WAL promptly.
//!
//! When the stream fails it is reported down at once and reconnected with backoff; on
//! reconnect it is reported up again, and the cache drops what it held for the database, since
//! the gap is unknown. Problems an operator must fix ([`Problem`]) are reported as unavailable
//! and retried slowly.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::change::RelationRef;
use crate::names::{NameMap, RelationNames};
use crate::pgoutput;
use crate::problem::Problem;
use crate::session::{Session, SessionError, StreamMessage};
use crate::test_decoding;
use crate::wire::Lsn;
use crate::{Change, Commit, Connect, ConnectError, InvalidationSink, StreamStart, TableChange};

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay after a transient failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the server hears how far the stream got.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Relations one transaction may name before it counts as "the whole database".
const MAX_RELATIONS_PER_TRANSACTION: usize = 10_000;

static SLOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How changes are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoding {
    /// `test_decoding`: every table, no publication needed.
    TestDecoding,
    /// `pgoutput`, streaming the operator's publication (only its tables are reported).
    Pgoutput {
        /// The publication's name.
        publication: String,
    },
}

impl Decoding {
    /// The output plugin.
    pub fn plugin(&self) -> &'static str {
        match self {
            Decoding::TestDecoding => "test_decoding",
            Decoding::Pgoutput { .. } => "pgoutput",
        }
    }

    /// For people: the plugin, and the publication with pgoutput.
    pub fn describe(&self) -> String {
        match self {
            Decoding::TestDecoding => "test_decoding".to_owned(),
            Decoding::Pgoutput { publication } => format!("pgoutput ({publication})"),
        }
    }

    fn options(&self) -> String {
        match self {
            Decoding::TestDecoding => {
                "(\"include-xids\" '1', \"include-timestamp\" '1', \"skip-empty-xacts\" '1')"
                    .to_owned()
            }
            Decoding::Pgoutput { publication } => format!(
                "(proto_version '1', publication_names '{}')",
                quote_identifier(publication).replace('\'', "''")
            ),
        }
    }
}

/// Which database to follow, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The database.
    pub database: String,
    /// The decoding.
    pub decoding: Decoding,
}

/// Why one connection ended.
#[derive(Debug)]
enum StreamError {
    /// Something an operator must change.
    Problem(Problem),
    /// Anything else: reconnect.
    Transient(String),
}

impl StreamError {
    fn from_session(error: SessionError, plugin: &'static str) -> StreamError {
        match &error {
            SessionError::Server(server) => match Problem::from_server(server, plugin) {
                Some(problem) => StreamError::Problem(problem),
                None => StreamError::Transient(error.to_string()),
            },
            _ => StreamError::Transient(error.to_string()),
        }
    }
}

/// Starts following `config.database` in the background, reporting to `sink`, until aborted.
pub fn spawn(
    config: StreamConfig,
    connect: Arc<dyn Connect>,
    names: Arc<dyn RelationNames>,
    sink: Arc<dyn InvalidationSink>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut stream = Stream {
                config: &config,
                names: names.as_ref(),
                sink: sink.as_ref(),
                streamed: false,
            };
            let result = stream.run(connect.as_ref()).await;
            if stream.streamed {
                backoff = FIRST_BACKOFF;
            }
            match result {
                Ok(()) => sink.stream_down(&config.database, "the server ended the stream"),
                Err(StreamError::Problem(problem)) => {
                    sink.stream_unavailable(&config.database, &problem);
                    tokio::time::sleep(problem.retry_after()).await;
                    continue;
                }
                Err(StreamError::Transient(reason)) => {
                    sink.stream_down(&config.database, &reason);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// Row changes of one transaction kept for invalidation by key; past this, the tables of further
/// changes are invalidated whole (memory stays bounded whatever a transaction writes).
const MAX_CHANGES_KEPT: usize = 4096;

/// The changes of the transaction being read.
#[derive(Debug, Default)]
struct Transaction {
    /// Its transaction id, when the plugin reported it.
    xid: Option<u32>,
    relations: BTreeSet<RelationRef>,
    /// Row changes kept for invalidation by key, at most [`MAX_CHANGES_KEPT`].
    changes: Vec<Change>,
    /// Relations with changes that were not kept: invalidated as whole tables.
    not_kept: BTreeSet<RelationRef>,
    /// Some change could not be read, or there were too many relations to list.
    unknown: bool,
}

impl Transaction {
    fn add(&mut self, change: Change) {
        if self.relations.len() < MAX_RELATIONS_PER_TRANSACTION {
            self.relations.insert(change.relation.clone());
        } else if !self.relations.contains(&change.relation) {
            self.unknown = true;
            return;
        }
        if self.changes.len() < MAX_CHANGES_KEPT && !self.not_kept.contains(&change.relation) {
            self.changes.push(change);
        } else {
            self.not_kept.insert(change.relation);
        }
    }
}

/// A decoded message, whichever the plugin.
enum Event {
    Begin { xid: Option<u32> },
    Changes(Vec<crate::Change>),
    Commit { time_micros: Option<i64> },
    Nothing,
    Unreadable(String),
}

/// One connection, from the checks to the end of the stream.
struct Stream<'a> {
    config: &'a StreamConfig,
    names: &'a dyn RelationNames,
    sink: &'a dyn InvalidationSink,
    /// True once the stream was reported up.
    streamed: bool,
}

impl Stream<'_> {
    async fn run(&mut self, connect: &dyn Connect) -> Result<(), StreamError> {
        let plugin = self.config.decoding.plugin();
        let session_error = |e| StreamError::from_session(e, plugin);
        let io = connect
            .connect(&self.config.database)
            .await
            .map_err(|e| match e {
                ConnectError::Problem(problem) => StreamError::Problem(problem),
                ConnectError::Server(error) => match Problem::from_server(&error, plugin) {
                    Some(problem) => StreamError::Problem(problem),
                    None => StreamError::Transient(error.to_string()),
                },
                ConnectError::Transient(reason) => StreamError::Transient(reason),
            })?;
        let mut session = Session::new(io);
        let identity = session
            .simple_query("IDENTIFY_SYSTEM")
            .await
            .map_err(session_error)?;
        if identity
            .first()
            .and_then(|row| row.get(3))
            .is_none_or(Option::is_none)
        {
            return Err(StreamError::Transient(
                "the connection is not a logical replication connection (IDENTIFY_SYSTEM names no database)"
                    .to_owned(),
            ));
        }
        let wal_level = session
            .value("SHOW wal_level")
            .await
            .map_err(session_error)?
            .unwrap_or_else(|| "unknown".to_owned());
        if wal_level != "logical" {
            return Err(StreamError::Problem(Problem::WalLevel {
                current: wal_level,
            }));
        }
        if let Decoding::Pgoutput { publication } = &self.config.decoding {
            let exists = session
                .simple_query(&format!(
                    "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = '{}'",
                    publication.replace('\'', "''")
                ))
                .await
                .map_err(session_error)?;
            if exists.is_empty() {
                return Err(StreamError::Problem(Problem::PublicationMissing {
                    publication: publication.clone(),
                }));
            }
        }
        let text = |row: Option<&Vec<Option<Bytes>>>, column: usize| {
            row.and_then(|row| row.get(column).cloned().flatten())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        };
        let system_id = text(identity.first(), 0).unwrap_or_default();
        let timeline = text(identity.first(), 1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let slot = slot_name();
        let created = session
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT \"{slot}\" TEMPORARY LOGICAL {plugin} NOEXPORT_SNAPSHOT"
            ))
            .await
            .map_err(session_error)?;
        let Some(consistent_point) = text(created.first(), 1).and_then(|t| Lsn::parse(&t)) else {
            return Err(StreamError::Transient(
                "CREATE_REPLICATION_SLOT named no consistent point".to_owned(),
            ));
        };
        session
            .start_replication(&format!(
                "START_REPLICATION SLOT \"{slot}\" LOGICAL 0/0 {}",
                self.config.decoding.options()
            ))
            .await
            .map_err(session_error)?;
        info!(
            database = %self.config.database,
            %slot,
            decoding = %self.config.decoding.describe(),
            "replication stream started"
        );
        self.sink.stream_up(
            &self.config.database,
            &StreamStart {
                consistent_point,
                system_id,
                timeline,
            },
        );
        self.streamed = true;
        let result = self
            .follow(&mut session, consistent_point)
            .await
            .map_err(session_error);
        if result.is_ok() {
            session.close().await;
        }
        result
    }

    /// Reads the copy stream until it ends or fails.
    /// `from` is the slot's consistent point: everything committed up to it is known.
    async fn follow(&mut self, session: &mut Session, from: Lsn) -> Result<(), SessionError> {
        let mut decoder = pgoutput::Decoder::default();
        let mut name_map = NameMap::default();
        let mut transaction: Option<Transaction> = None;
        let mut applied = from;
        let mut status = tokio::time::interval(STATUS_INTERVAL);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                message = session.next() => message?,
                _ = status.tick() => {
                    session.send_status(applied).await?;
                    continue;
                }
            };
            match message {
                StreamMessage::End => return Ok(()),
                StreamMessage::Keepalive { wal_end, reply } => {
                    // Everything the server decoded up to `wal_end` was sent before this
                    // keepalive, so every commit up to there has been reported.
                    if transaction.is_none() && wal_end > applied {
                        applied = wal_end;
                        self.sink.advanced(&self.config.database, applied);
                    }
                    if reply {
                        session.send_status(applied).await?;
                    }
                }
                StreamMessage::XLogData { start, data, cut } => {
                    match self.decode(&mut decoder, data, cut) {
                        Event::Begin { xid } => {
                            transaction = Some(Transaction {
                                xid,
                                ..Transaction::default()
                            })
                        }
                        Event::Changes(changes) => {
                            let open = transaction.get_or_insert_with(|| Transaction {
                                // A change outside a transaction is not what the plugin does.
                                unknown: true,
                                ..Transaction::default()
                            });
                            for change in changes {
                                open.add(change);
                            }
                        }
                        Event::Nothing => {}
                        Event::Unreadable(reason) => {
                            debug!(database = %self.config.database, %reason, "unreadable change; the whole database is invalidated at commit");
                            transaction.get_or_insert_with(Transaction::default).unknown = true;
                        }
                        Event::Commit { time_micros } => {
                            let finished = transaction.take().unwrap_or_default();
                            self.commit(&mut name_map, finished, time_micros, start)
                                .await;
                            applied = applied.max(start);
                            self.sink.advanced(&self.config.database, applied);
                        }
                    }
                }
            }
        }
    }

    fn decode(&self, decoder: &mut pgoutput::Decoder, data: Bytes, cut: bool) -> Event {
        match self.config.decoding {
            Decoding::TestDecoding => {
                let line = if cut {
                    test_decoding::parse_prefix(&data)
                } else {
                    test_decoding::parse(&data)
                };
                match line {
                    Ok(test_decoding::Line::Begin { xid }) => Event::Begin { xid },
                    Ok(test_decoding::Line::Changes(changes)) => Event::Changes(changes),
                    Ok(test_decoding::Line::Commit { time_micros }) => {
                        Event::Commit { time_micros }
                    }
                    Ok(test_decoding::Line::Message) => Event::Nothing,
                    Err(e) => Event::Unreadable(e.to_string()),
                }
            }
            Decoding::Pgoutput { .. } => {
                let message = if cut {
                    decoder.decode_prefix(data)
                } else {
                    decoder.decode(data)
                };
                match message {
                    Ok(pgoutput::Message::Begin { xid }) => Event::Begin { xid: Some(xid) },
                    Ok(pgoutput::Message::Changes(changes)) => Event::Changes(changes),
                    Ok(pgoutput::Message::Commit { time_micros, .. }) => Event::Commit {
                        time_micros: Some(time_micros),
                    },
                    Ok(pgoutput::Message::Other) => Event::Nothing,
                    Err(e) => Event::Unreadable(e.to_string()),
                }
            }
        }
    }

    /// Reports a committed transaction.
    async fn commit(
        &self,
        name_map: &mut NameMap,
        transaction: Transaction,
        time_micros: Option<i64>,
        end_lsn: Lsn,
    ) {
        let mut tables = Vec::new();
        let mut names = BTreeSet::new();
        for relation in &transaction.relations {
            match relation {
                RelationRef::Oid(oid) => tables.push(*oid),
                RelationRef::Name(name) => {
                    names.insert(name.clone());
                }
            }
        }
        let mut whole_database = transaction.unknown;
        if !names.is_empty() {
            let resolved = name_map
                .resolve(self.names, &self.config.database, &names)
                .await;
            tables.extend(resolved.oids);
            whole_database |= resolved.whole_database;
        }
        if tables.is_empty() && !whole_database {
            return;
        }
        tables.sort_unstable();
        tables.dedup();
        let oid_of = |relation: &RelationRef| match relation {
            RelationRef::Oid(oid) => Some(*oid),
            RelationRef::Name(name) => name_map.oid(name),
        };
        let mut whole_tables: Vec<u32> = transaction.not_kept.iter().filter_map(oid_of).collect();
        let mut rows = Vec::with_capacity(transaction.changes.len());
        for change in transaction.changes {
            match oid_of(&change.relation) {
                Some(table) => rows.push(TableChange { table, change }),
                None => whole_database = true,
            }
        }
        whole_tables.sort_unstable();
        whole_tables.dedup();
        self.sink.committed(
            &self.config.database,
            &Commit {
                tables,
                rows,
                whole_tables,
                whole_database,
                commit_time_micros: time_micros,
                end_lsn,
                xid: transaction.xid,
            },
        );
    }
}

/// A slot name no other connection uses: `pgcached_<pid>_<counter>_<clock>`.
fn slot_name() -> String {
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "pgcached_{}_{}_{}",
        std::process::id(),
        SLOT_COUNTER.fetch_add(1, Ordering::Relaxed),
        clock
    )
}

/// A double-quoted identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_options_per_plugin() {
        assert_eq!(
            Decoding::TestDecoding.options(),
            "(\"include-xids\" '1', \"include-timestamp\" '1', \"skip-empty-xacts\" '1')"
        );
        assert_eq!(
            Decoding::Pgoutput {
                publication: "shop".to_owned()
            }
            .options(),
            "(proto_version '1', publication_names '\"shop\"')"
        );
        let slot = slot_name();
        assert!(slot.len() <= 63 && slot.starts_with("pgcached_"), "{slot}");
        assert!(slot
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_ne!(slot_name(), slot_name());
    }
}

//! The logical-replication stream of one database.
//!
//! Each connection creates a TEMPORARY slot (`CREATE_REPLICATION_SLOT … TEMPORARY LOGICAL
//! pgoutput`) on a gated replication session, then streams the configured publication. On every
//! Commit the tables the transaction touched are reported. Standby status updates go out every
//! second, so the server can recycle WAL promptly. When the stream fails, it is reported down at
//! once and reconnected with backoff; on reconnect it is reported up again, and the cache drops
//! what it held for the database, since the gap is unknown.
//!
//! Problems an operator must fix (wal_level, the REPLICATION attribute, the publication) are
//! reported as unavailable with a message that names the fix, and retried slowly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::client::ReplicationEvent;
use pgwire_replication::{PgWireError, ReplicationClient, ReplicationConfig};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::pgoutput::{self, Change};
use crate::InvalidationSink;

/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay after a transient failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Delay before retrying after a configuration problem.
const CONFIG_RETRY: Duration = Duration::from_secs(30);

static SLOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where and how to stream one database.
#[derive(Clone)]
pub struct StreamConfig {
    /// PostgreSQL host.
    pub host: String,
    /// PostgreSQL port.
    pub port: u16,
    /// Role with the REPLICATION attribute.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The database to stream.
    pub database: String,
    /// Publication to stream (created `FOR ALL TABLES` if missing and permitted).
    pub publication: String,
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("publication", &self.publication)
            .finish()
    }
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    /// Something an operator must change.
    #[error("{0}")]
    Config(String),
    /// Anything else: reconnect.
    #[error("{0}")]
    Transient(String),
}

impl From<PgWireError> for StreamError {
    fn from(error: PgWireError) -> StreamError {
        let text = error.to_string();
        let lower = text.to_ascii_lowercase();
        if lower.contains("wal_level") {
            StreamError::Config(format!(
                "logical replication is off ({text}); set wal_level = logical on PostgreSQL and restart it"
            ))
        } else if lower.contains("permission")
            || lower.contains("must be superuser or replication role")
            || lower.contains("must have the replication")
            || lower.contains("no pg_hba.conf entry for replication")
            || lower.contains("authentication")
        {
            StreamError::Config(format!(
                "pgcached's role cannot open a replication connection ({text}); give it the \
                 REPLICATION attribute (ALTER ROLE … REPLICATION) and a 'replication' line in pg_hba.conf"
            ))
        } else {
            StreamError::Transient(text)
        }
    }
}

/// Starts streaming `config.database` in the background, reporting to `sink`, until aborted.
pub fn spawn(config: StreamConfig, sink: Arc<dyn InvalidationSink>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match stream_once(&config, sink.as_ref()).await {
                Ok(()) => {
                    sink.stream_down(&config.database, "the server ended the stream");
                    backoff = FIRST_BACKOFF;
                }
                Err(StreamError::Config(reason)) => {
                    sink.stream_unavailable(&config.database, &reason);
                    tokio::time::sleep(CONFIG_RETRY).await;
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

/// One replication connection, from slot creation to the end of the stream.
async fn stream_once(
    config: &StreamConfig,
    sink: &dyn InvalidationSink,
) -> Result<(), StreamError> {
    let slot = format!(
        "pgcached_{}_{}",
        std::process::id(),
        SLOT_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let replication = ReplicationConfig::new(
        config.host.clone(),
        config.user.clone(),
        config.password.clone(),
        config.database.clone(),
        slot.clone(),
        config.publication.clone(),
    )
    .with_port(config.port)
    .with_status_interval(Duration::from_secs(1))
    .with_wakeup_interval(Duration::from_secs(1))
    .with_application_name("pgcached replication");
    let mut client = ReplicationClient::connect_gated(replication).await?;

    let wal_level = first_value(client.simple_query("SHOW wal_level").await?);
    if wal_level.as_deref() != Some("logical") {
        return Err(StreamError::Config(format!(
            "wal_level is {}; set wal_level = logical on PostgreSQL and restart it",
            wal_level.as_deref().unwrap_or("unknown")
        )));
    }
    ensure_publication(&mut client, &config.publication).await?;
    client
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT \"{slot}\" TEMPORARY LOGICAL pgoutput"
        ))
        .await?;
    client.start().await?;
    client.wait_started().await?;
    info!(database = %config.database, %slot, "replication stream started");
    sink.stream_up(&config.database);

    let mut touched: Vec<u32> = Vec::new();
    let mut unknown = false;
    loop {
        let event = match client.recv().await? {
            Some(event) => event,
            None => return Ok(()),
        };
        match event {
            ReplicationEvent::Begin { .. } => {
                touched.clear();
                unknown = false;
            }
            ReplicationEvent::XLogData { data, .. } => match pgoutput::change(&data) {
                Change::Relations(relations) => {
                    for oid in relations {
                        if !touched.contains(&oid) {
                            touched.push(oid);
                        }
                    }
                }
                Change::Malformed => unknown = true,
                Change::None => {}
            },
            ReplicationEvent::Commit {
                end_lsn,
                commit_time_micros,
                ..
            } => {
                if unknown {
                    // Which tables changed is unknown: everything in the database is suspect.
                    sink.stream_up(&config.database);
                } else if !touched.is_empty() {
                    sink.tables_changed(&config.database, &touched, commit_time_micros);
                }
                client.update_applied_lsn(end_lsn);
                touched.clear();
                unknown = false;
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if touched.is_empty() {
                    client.update_applied_lsn(wal_end);
                }
            }
            other => debug!(?other, "replication event ignored"),
        }
    }
}

fn first_value(rows: Vec<pgwire_replication::client::QueryRow>) -> Option<String> {
    rows.into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Makes sure the publication exists, creating it `FOR ALL TABLES` when permitted.
async fn ensure_publication(
    client: &mut ReplicationClient,
    publication: &str,
) -> Result<(), StreamError> {
    let quoted = publication.replace('\'', "''");
    let rows = client
        .simple_query(&format!(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = '{quoted}'"
        ))
        .await?;
    if !rows.is_empty() {
        return Ok(());
    }
    let identifier = publication.replace('"', "\"\"");
    match client
        .simple_query(&format!(
            "CREATE PUBLICATION \"{identifier}\" FOR ALL TABLES WITH (publish_via_partition_root = true)"
        ))
        .await
    {
        Ok(_) => {
            tracing::warn!(
                publication,
                "created publication FOR ALL TABLES: tables without a primary key or REPLICA \
                 IDENTITY can no longer be updated or deleted from; give them REPLICA IDENTITY FULL"
            );
            Ok(())
        }
        Err(e) => Err(StreamError::Config(format!(
            "publication \"{publication}\" does not exist and pgcached may not create it ({e}); \
             as a superuser run: CREATE PUBLICATION \"{identifier}\" FOR ALL TABLES \
             WITH (publish_via_partition_root = true)"
        ))),
    }
}

//! Following writes made outside pgcached: one logical-replication stream per database that
//! clients use, feeding the cache's generations.
//!
//! A stream starts when the first session of a database has authenticated (so only real
//! databases get one). Until it runs, and whenever it is down, the database's cached results
//! are not served (fail closed); when it (re)starts, everything cached for the database is
//! dropped, since what happened meanwhile is unknown. With `--replication auto`, a database
//! whose stream cannot work as configured (wal_level, privileges, publication, TLS) is cached
//! anyway, invalidated by pgcached's own writes and `--cache-ttl` only, after one clear warning;
//! with `required` it is not cached at all.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, gauge};
use parking_lot::Mutex;
use pgcached_cache::{ResultCache, TableId};
use pgcached_invalidation::replication::{self, StreamConfig};
use pgcached_invalidation::InvalidationSink;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cache_metrics::CacheMetrics;
use crate::config::ReplicationMode;
use crate::stats::InvalidationSource;
use crate::upstream::url::{SslMode, UpstreamUrl};

/// Gauge: 1 while the database's replication stream runs, else 0.
pub const REPLICATION_CONNECTED: &str = "pgcached_replication_connected";
/// Gauge: commit time to invalidation of the last transaction seen, per database.
pub const REPLICATION_LAG_SECONDS: &str = "pgcached_replication_lag_seconds";
/// Counter: replication streams re-established after a loss.
pub const REPLICATION_RECONNECTS_TOTAL: &str = "pgcached_replication_reconnects_total";

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_OFFSET: Duration = Duration::from_secs(946_684_800);

/// The streams, one per database.
pub struct Replication {
    mode: ReplicationMode,
    upstream: UpstreamUrl,
    publication: String,
    sink: Arc<CacheSink>,
    streams: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Replication {
    /// Streams changes into `cache` as `mode` says.
    pub fn new(
        mode: ReplicationMode,
        upstream: UpstreamUrl,
        publication: String,
        cache: Arc<ResultCache>,
        metrics: CacheMetrics,
    ) -> Replication {
        describe_gauge!(
            REPLICATION_CONNECTED,
            "1 while the database's replication stream runs"
        );
        describe_gauge!(
            REPLICATION_LAG_SECONDS,
            metrics::Unit::Seconds,
            "Commit time to invalidation of the last transaction seen"
        );
        describe_counter!(
            REPLICATION_RECONNECTS_TOTAL,
            "Replication streams re-established"
        );
        Replication {
            mode,
            upstream,
            publication,
            sink: Arc::new(CacheSink {
                cache,
                metrics,
                mode,
                state: Mutex::new(SinkState::default()),
            }),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Makes sure `database` is followed; called once a session of it has authenticated.
    pub fn ensure(&self, database: &str) {
        if self.mode == ReplicationMode::Off {
            return;
        }
        let mut streams = self.streams.lock();
        if streams.contains_key(database) {
            return;
        }
        let problem = match (&self.upstream.user, self.upstream.sslmode) {
            (None, _) => Some(
                "the --upstream URL has no user: give pgcached its own role with the REPLICATION \
                 attribute, e.g. postgres://pgcached:secret@host/db"
                    .to_owned(),
            ),
            (_, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => Some(
                "the replication stream does not support TLS yet (sslmode in --upstream requires it)"
                    .to_owned(),
            ),
            _ => None,
        };
        if let Some(reason) = problem {
            self.sink.stream_unavailable(database, &reason);
            streams.insert(database.to_owned(), tokio::spawn(async {}));
            return;
        }
        // Fail closed until the stream runs.
        self.sink.cache.generations().set_available(database, false);
        let config = StreamConfig {
            host: self.upstream.host.clone(),
            port: self.upstream.port,
            user: self.upstream.user.clone().unwrap_or_default(),
            password: self.upstream.password.clone().unwrap_or_default(),
            database: database.to_owned(),
            publication: self.publication.clone(),
        };
        let sink: Arc<dyn InvalidationSink> = self.sink.clone();
        streams.insert(database.to_owned(), replication::spawn(config, sink));
    }
}

/// One database's stream, as `SHOW REPLICATION` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStatus {
    /// The database followed.
    pub database: String,
    /// `streaming`, `starting`, `down` or `unavailable` (see [`Replication::status`]).
    pub state: &'static str,
    /// Commit-to-invalidation delay of the last transaction seen.
    pub lag_seconds: Option<f64>,
    /// When the last change arrived.
    pub last_change: Option<SystemTime>,
    /// Transactions (with changes to published tables) seen.
    pub transactions: u64,
    /// Times the stream was re-established.
    pub reconnects: u64,
    /// Why it is not streaming, when it is not.
    pub problem: Option<String>,
}

impl Replication {
    /// The mode in force.
    pub fn mode(&self) -> ReplicationMode {
        self.mode
    }

    /// Every database followed (or tried), by name: `streaming` while the stream runs,
    /// `starting` before it first ran, `down` after it was lost, `unavailable` when it cannot
    /// work as configured.
    pub fn status(&self) -> Vec<StreamStatus> {
        let mut names: Vec<String> = self.streams.lock().keys().cloned().collect();
        names.sort();
        let state = self.sink.state.lock();
        names
            .into_iter()
            .map(|database| {
                let stats = state.stats.get(&database).cloned().unwrap_or_default();
                let problem = state.problems.get(&database).cloned();
                let status = if state.up.contains(&database) {
                    "streaming"
                } else if problem.is_some() {
                    "unavailable"
                } else if state.ever_up.contains(&database) {
                    "down"
                } else {
                    "starting"
                };
                StreamStatus {
                    database,
                    state: status,
                    lag_seconds: stats.lag_seconds,
                    last_change: stats.last_change,
                    transactions: stats.transactions,
                    reconnects: stats.reconnects,
                    problem,
                }
            })
            .collect()
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        for (_, stream) in self.streams.lock().drain() {
            stream.abort();
        }
    }
}

#[derive(Default)]
struct SinkState {
    /// Databases whose stream has run at least once.
    ever_up: HashSet<String>,
    /// Databases whose stream runs now.
    up: HashSet<String>,
    /// Databases already warned about a configuration problem.
    warned: HashSet<String>,
    /// Why a database's stream cannot work as configured.
    problems: HashMap<String, String>,
    /// Figures per database.
    stats: HashMap<String, DatabaseStats>,
}

#[derive(Debug, Clone, Default)]
struct DatabaseStats {
    lag_seconds: Option<f64>,
    last_change: Option<SystemTime>,
    transactions: u64,
    reconnects: u64,
}

/// Applies stream reports to the cache.
struct CacheSink {
    cache: Arc<ResultCache>,
    metrics: CacheMetrics,
    mode: ReplicationMode,
    state: Mutex<SinkState>,
}

impl InvalidationSink for CacheSink {
    fn tables_changed(&self, database: &str, tables: &[u32], commit_time_micros: i64) {
        let database_id: Arc<str> = Arc::from(database);
        for oid in tables {
            let table = TableId {
                database: Arc::clone(&database_id),
                oid: *oid,
            };
            self.cache.generations().bump_table(&table);
            self.metrics.table_invalidated(&table);
        }
        self.metrics
            .invalidation(InvalidationSource::Replication, tables.len() as u64);
        let lag = lag_since(commit_time_micros);
        if let Some(lag) = lag {
            gauge!(REPLICATION_LAG_SECONDS, "database" => database.to_owned()).set(lag);
        }
        let mut state = self.state.lock();
        let stats = state.stats.entry(database.to_owned()).or_default();
        stats.lag_seconds = lag.or(stats.lag_seconds);
        stats.last_change = Some(SystemTime::now());
        stats.transactions += 1;
    }

    fn stream_up(&self, database: &str) {
        let generations = self.cache.generations();
        generations.bump_database(database);
        generations.set_available(database, true);
        self.metrics
            .invalidation(InvalidationSource::Replication, 1);
        let mut state = self.state.lock();
        state.problems.remove(database);
        if !state.ever_up.insert(database.to_owned()) && !state.up.contains(database) {
            counter!(REPLICATION_RECONNECTS_TOTAL).increment(1);
            state
                .stats
                .entry(database.to_owned())
                .or_default()
                .reconnects += 1;
            info!(
                database,
                "replication stream re-established; cached results of the database dropped"
            );
        }
        state.up.insert(database.to_owned());
        state.warned.remove(database);
        gauge!(REPLICATION_CONNECTED, "database" => database.to_owned()).set(1.0);
    }

    fn stream_down(&self, database: &str, reason: &str) {
        let generations = self.cache.generations();
        generations.set_available(database, false);
        generations.bump_database(database);
        gauge!(REPLICATION_CONNECTED, "database" => database.to_owned()).set(0.0);
        let mut state = self.state.lock();
        if state.up.remove(database) {
            warn!(
                database,
                reason, "replication stream lost; serving nothing from the cache for this database until it is back"
            );
        }
    }

    fn stream_unavailable(&self, database: &str, reason: &str) {
        let generations = self.cache.generations();
        gauge!(REPLICATION_CONNECTED, "database" => database.to_owned()).set(0.0);
        let mut state = self.state.lock();
        state.up.remove(database);
        state
            .problems
            .insert(database.to_owned(), reason.to_owned());
        let first = state.warned.insert(database.to_owned());
        match self.mode {
            ReplicationMode::Required => {
                generations.set_available(database, false);
                if first {
                    warn!(
                        database,
                        "replication required but unavailable: {reason}. Nothing is served from \
                         the cache for this database until it works."
                    );
                }
            }
            ReplicationMode::Auto | ReplicationMode::Off => {
                if first {
                    generations.bump_database(database);
                }
                generations.set_available(database, true);
                if first {
                    warn!(
                        database,
                        "caching without replication: {reason}. Writes made outside pgcached \
                         reach the cache only through --cache-ttl."
                    );
                }
            }
        }
    }
}

/// Seconds from a PostgreSQL commit timestamp (µs since 2000-01-01) to now.
fn lag_since(commit_time_micros: i64) -> Option<f64> {
    let commit = UNIX_EPOCH
        + POSTGRES_EPOCH_OFFSET
        + Duration::from_micros(u64::try_from(commit_time_micros).ok()?);
    let lag = SystemTime::now().duration_since(commit).unwrap_or_default();
    Some(lag.as_secs_f64())
}

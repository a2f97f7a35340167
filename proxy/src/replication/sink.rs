//! Applying what the streams report to the cache: generations bumped, and per database the
//! feed that decides how its cached results may be served.
//!
//! | stream state | `auto` | `required` |
//! |---|---|---|
//! | starting, down | nothing served (fail closed) | nothing served |
//! | streaming | served until invalidated | served until invalidated |
//! | unavailable (a [`Problem`]) | served at most `--cache-ttl-unreplicated` after their lookup (`0`: nothing cached) | nothing served |
//!
//! Every change of state that widens what may be served bumps the database, so nothing filled
//! under an older state survives it.
//!
//! When another PostgreSQL server becomes current ([`crate::upstream::primary`]),
//! [`CacheSink::server_changed`] puts every database back to `down`, drops every entry and
//! forgets every position; reports of streams connected in an older era are ignored from then
//! on (their connections fail at their next read, and the streams reconnect to the new server).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge};
use parking_lot::Mutex;
use pgcached_cache::{Feed, ResultCache, TableId};
use pgcached_invalidation::{Commit, InvalidationSink, Lsn, Problem, StreamStart};
use tracing::{debug, info, warn};

use super::rebump::{Bumped, Rebumps};
use super::sources::ConnectedEras;
use super::visibility::{SnapshotSource, Visibility};
use crate::cache_metrics::CacheMetrics;
use crate::config::ReplicationMode;
use crate::metrics::registry::{
    REPLICATION_CONNECTED, REPLICATION_FALLBACK, REPLICATION_LAG_SECONDS, REPLICATION_PROBLEM,
    REPLICATION_RECONNECTS_TOTAL,
};
use crate::pins::changes;
use crate::pins::writes::Bump;
use crate::pins::PinRegistry;
use crate::stats::InvalidationSource;

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_OFFSET: Duration = Duration::from_secs(946_684_800);

/// Where a database's stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Not yet streamed.
    Starting,
    /// Changes are being followed.
    Streaming,
    /// Lost, reconnecting.
    Down {
        /// Why it was lost.
        reason: String,
    },
    /// Cannot work as configured.
    Unavailable {
        /// What to fix.
        problem: Problem,
    },
}

impl StreamState {
    /// `starting`, `streaming`, `down` or `unavailable`.
    pub fn label(&self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Streaming => "streaming",
            StreamState::Down { .. } => "down",
            StreamState::Unavailable { .. } => "unavailable",
        }
    }
}

/// What is known about one database.
#[derive(Debug, Clone)]
pub struct DatabaseFeed {
    /// The stream's state.
    pub state: StreamState,
    /// The stream ran at least once.
    pub ever_up: bool,
    /// The problem last warned about (one warning per problem, not per retry).
    warned: Option<&'static str>,
    /// Commit-to-invalidation delay of the last transaction seen.
    pub lag_seconds: Option<f64>,
    /// When the last change arrived.
    pub last_change: Option<SystemTime>,
    /// Transactions seen.
    pub transactions: u64,
    /// Times the stream was re-established.
    pub reconnects: u64,
}

impl Default for DatabaseFeed {
    fn default() -> DatabaseFeed {
        DatabaseFeed {
            state: StreamState::Starting,
            ever_up: false,
            warned: None,
            lag_seconds: None,
            last_change: None,
            transactions: 0,
            reconnects: 0,
        }
    }
}

/// Applies stream reports to the cache.
pub struct CacheSink {
    pub(super) cache: Arc<ResultCache>,
    /// The column sets reads pin: which keys a row change bumps.
    registry: Arc<PinRegistry>,
    metrics: CacheMetrics,
    mode: ReplicationMode,
    ttl_unreplicated: Duration,
    pub(super) feeds: Mutex<HashMap<String, DatabaseFeed>>,
    /// The shared tier's record of change positions, when there is a shared tier.
    journal: Option<Arc<crate::shared_cache::Journal>>,
    /// Streamed commits waiting to be bumped again after fixed delays.
    rebumps: Arc<Rebumps>,
    /// Streamed commits waiting to be bumped again once visible (with a snapshot source).
    visibility: Option<Arc<Visibility>>,
    /// The era of each database's stream, and the current one.
    eras: Arc<ConnectedEras>,
}

impl CacheSink {
    pub(super) fn new(
        cache: Arc<ResultCache>,
        registry: Arc<PinRegistry>,
        metrics: CacheMetrics,
        mode: ReplicationMode,
        ttl_unreplicated: Duration,
        journal: Option<Arc<crate::shared_cache::Journal>>,
        eras: Arc<ConnectedEras>,
    ) -> CacheSink {
        CacheSink {
            eras,
            rebumps: Rebumps::start(Arc::clone(cache.generations())),
            visibility: None,
            cache,
            registry,
            metrics,
            mode,
            ttl_unreplicated,
            feeds: Mutex::new(HashMap::new()),
            journal,
        }
    }

    /// Streamed commits are bumped again once `source` shows them visible, rather than after
    /// fixed delays ([`super::visibility`]).
    pub(super) fn with_snapshots(mut self, source: Arc<dyn SnapshotSource>) -> CacheSink {
        self.visibility = Visibility::start(
            Arc::clone(self.cache.generations()),
            source,
            Arc::clone(&self.rebumps),
        );
        self
    }

    /// The feed a database gets while its stream cannot work.
    fn unavailable_feed(&self) -> Feed {
        match self.mode {
            ReplicationMode::Required => Feed::Down,
            ReplicationMode::Auto | ReplicationMode::Off => Feed::Bounded(self.ttl_unreplicated),
        }
    }

    /// A database is followed from now on: nothing is served until its stream says more.
    pub(super) fn starting(&self, database: &str) {
        self.cache.generations().set_feed(database, Feed::Down);
        self.feeds.lock().entry(database.to_owned()).or_default();
        gauge!(REPLICATION_CONNECTED, "database" => database.to_owned()).set(0.0);
        gauge!(REPLICATION_FALLBACK, "database" => database.to_owned()).set(0.0);
    }

    /// Another server is current (called once its era is published, before any report of it):
    /// every database waits for a stream of the new era, nothing cached survives, no position
    /// counts.
    pub(super) fn server_changed(&self) {
        let generations = self.cache.generations();
        let mut feeds = self.feeds.lock();
        for (database, feed) in feeds.iter_mut() {
            generations.set_feed(database, Feed::Down);
            if let Some(journal) = &self.journal {
                journal.stream_down(database);
            }
            gauge!(REPLICATION_CONNECTED, "database" => database.clone()).set(0.0);
            Self::clear_problem(database, feed);
            feed.state = StreamState::Down {
                reason: "the upstream server changed".to_owned(),
            };
        }
        generations.server_changed();
        self.cache.clear();
    }

    /// Whether a report of `database`'s stream belongs to the current era; holds off a switch
    /// while the report is applied.
    fn current_era(&self, database: &str) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
        let held = self.eras.hold(database);
        if held.is_none() {
            debug!(
                database,
                "report of a stream of the previous upstream server ignored"
            );
        }
        held
    }

    /// Clears the problem gauge of `feed`'s current problem, if any.
    fn clear_problem(database: &str, feed: &DatabaseFeed) {
        if let StreamState::Unavailable { problem } = &feed.state {
            gauge!(REPLICATION_PROBLEM, "database" => database.to_owned(), "problem" => problem.label())
                .set(0.0);
        }
    }

    /// What `SHOW REPLICATION` says the cache does for a database in `state`.
    pub fn serving(&self, state: &StreamState) -> String {
        match state {
            StreamState::Streaming => "cached results, invalidated by the stream".to_owned(),
            StreamState::Starting | StreamState::Down { .. } => {
                "nothing from the cache until the stream runs".to_owned()
            }
            StreamState::Unavailable { .. } => match self.unavailable_feed() {
                Feed::Bounded(ttl) if ttl.is_zero() => {
                    "nothing cached (--cache-ttl-unreplicated 0)".to_owned()
                }
                Feed::Bounded(ttl) => {
                    format!("cached results at most {ttl:?} old (--cache-ttl-unreplicated)")
                }
                Feed::Down | Feed::Live => {
                    "nothing from the cache (--replication required)".to_owned()
                }
            },
        }
    }
}

impl InvalidationSink for CacheSink {
    fn committed(&self, database: &str, commit: &Commit) {
        let Some(_era) = self.current_era(database) else {
            return;
        };
        let generations = self.cache.generations();
        let position = commit.end_lsn.0;
        if commit.whole_database {
            generations.bump_database_at(database, position);
            self.metrics
                .invalidation(InvalidationSource::Replication, 1);
        }
        let database_id: Arc<str> = Arc::from(database);
        let table_of = |oid: u32| TableId {
            database: Arc::clone(&database_id),
            oid,
        };
        let mut bumps = Vec::new();
        for oid in &commit.whole_tables {
            bumps.push(Bump::Table(table_of(*oid)));
        }
        for row in &commit.rows {
            bumps.extend(changes::bumps(
                &table_of(row.table),
                &row.change,
                &self.registry,
            ));
        }
        // Every table changed, even one whose rows were all cut off: its whole-table reads.
        for oid in &commit.tables {
            bumps.push(Bump::Rows(table_of(*oid)));
        }
        let bumps = Bump::distinct(bumps);
        for bump in &bumps {
            bump.apply_at(generations, position);
        }
        // Again once visible: the commit may not be visible to snapshots yet
        // ([`super::visibility`]; [`super::rebump`] without a transaction id).
        let bumped = Bumped {
            database: commit.whole_database.then(|| Arc::clone(&database_id)),
            bumps: bumps.clone(),
        };
        match (&self.visibility, commit.xid) {
            (Some(visibility), Some(xid)) => {
                visibility.schedule(Arc::clone(&database_id), xid, bumped)
            }
            _ => self.rebumps.schedule(bumped),
        }
        if let Some(journal) = &self.journal {
            journal.committed(database, &commit.tables, commit.whole_database, position);
        }
        // After the bumps: a lookup stamped with this position sees them.
        generations.positions().advance(database, position);
        for oid in &commit.tables {
            self.metrics.table_invalidated(&table_of(*oid));
        }
        self.metrics
            .invalidated(InvalidationSource::Replication, &bumps);
        self.metrics
            .invalidation(InvalidationSource::Replication, commit.tables.len() as u64);
        let lag = commit.commit_time_micros.and_then(lag_since);
        if let Some(lag) = lag {
            gauge!(REPLICATION_LAG_SECONDS, "database" => database.to_owned()).set(lag);
        }
        let mut feeds = self.feeds.lock();
        let feed = feeds.entry(database.to_owned()).or_default();
        feed.lag_seconds = lag.or(feed.lag_seconds);
        feed.last_change = Some(SystemTime::now());
        feed.transactions += 1;
    }

    fn stream_up(&self, database: &str, start: &StreamStart) {
        let Some(_era) = self.current_era(database) else {
            return;
        };
        let generations = self.cache.generations();
        // What happened before the stream ran is unknown: drop what was filled meanwhile.
        generations.drop_database(database);
        generations
            .positions()
            .stream_started(database, start.consistent_point.0);
        if let Some(journal) = &self.journal {
            journal.stream_up(database, start);
        }
        generations.set_feed(database, Feed::Live);
        self.metrics
            .invalidation(InvalidationSource::Replication, 1);
        let mut feeds = self.feeds.lock();
        let feed = feeds.entry(database.to_owned()).or_default();
        Self::clear_problem(database, feed);
        if feed.ever_up && feed.state != StreamState::Streaming {
            counter!(REPLICATION_RECONNECTS_TOTAL).increment(1);
            feed.reconnects += 1;
            info!(
                database,
                "replication stream re-established; cached results of the database dropped"
            );
        } else if feed.warned.is_some() {
            info!(database, "replication stream works now; caching as usual");
        }
        feed.ever_up = true;
        feed.state = StreamState::Streaming;
        feed.warned = None;
        gauge!(REPLICATION_CONNECTED, "database" => database.to_owned()).set(1.0);
        gauge!(REPLICATION_FALLBACK, "database" => database.to_owned()).set(0.0);
    }

    fn advanced(&self, database: &str, position: Lsn) {
        let Some(_era) = self.current_era(database) else {
            return;
        };
        if let Some(journal) = &self.journal {
            journal.advanced(database, position.0);
        }
        self.cache
            .generations()
            .positions()
            .advance(database, position.0);
    }

    fn stream_down(&self, database: &str, reason: &str) {
        let generations = self.cache.generations();
        generations.set_feed(database, Feed::Down);
        generations.positions().stream_stopped(database);
        if let Some(journal) = &self.journal {
            journal.stream_down(database);
        }
        generations.drop_database(database);
        gauge!(REPLICATION_CONNECTED, "database" => database.to_owned()).set(0.0);
        gauge!(REPLICATION_FALLBACK, "database" => database.to_owned()).set(0.0);
        let mut feeds = self.feeds.lock();
        let feed = feeds.entry(database.to_owned()).or_default();
        if feed.state == StreamState::Streaming {
            warn!(
                database,
                reason,
                "replication stream lost; serving nothing from the cache for this database until it is back"
            );
        }
        Self::clear_problem(database, feed);
        feed.state = StreamState::Down {
            reason: reason.to_owned(),
        };
    }

    fn stream_unavailable(&self, database: &str, problem: &Problem) {
        let generations = self.cache.generations();
        let fallback = self.unavailable_feed();
        let mut feeds = self.feeds.lock();
        let feed = feeds.entry(database.to_owned()).or_default();
        let already = matches!(feed.state, StreamState::Unavailable { .. });
        if !already {
            // Entries filled under another state must not be served under this one.
            generations.set_feed(database, fallback);
            generations.positions().stream_stopped(database);
            if let Some(journal) = &self.journal {
                journal.stream_down(database);
            }
            generations.drop_database(database);
        }
        Self::clear_problem(database, feed);
        gauge!(REPLICATION_CONNECTED, "database" => database.to_owned()).set(0.0);
        gauge!(REPLICATION_PROBLEM, "database" => database.to_owned(), "problem" => problem.label())
            .set(1.0);
        gauge!(REPLICATION_FALLBACK, "database" => database.to_owned()).set(
            if matches!(fallback, Feed::Bounded(_)) {
                1.0
            } else {
                0.0
            },
        );
        if feed.warned != Some(problem.label()) {
            let text = problem.text();
            match fallback {
                Feed::Bounded(ttl) if ttl.is_zero() => warn!(
                    database,
                    problem = problem.label(),
                    "no change feed for this database: {text}. Until it works, nothing is cached \
                     for it (--cache-ttl-unreplicated 0)."
                ),
                Feed::Bounded(ttl) => warn!(
                    database,
                    problem = problem.label(),
                    "no change feed for this database: {text}. Until it works, its cached \
                     results are served for at most {ttl:?} (--cache-ttl-unreplicated), so writes \
                     made outside pgcached show within that."
                ),
                Feed::Down | Feed::Live => warn!(
                    database,
                    problem = problem.label(),
                    "replication required but unavailable: {text}. Nothing is served from the \
                     cache for this database until it works."
                ),
            }
            feed.warned = Some(problem.label());
        }
        feed.state = StreamState::Unavailable {
            problem: problem.clone(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;
    use crate::upstream::{UpstreamUrl, Upstreams};
    use pgcached_cache::{CacheConfig, Generations};

    fn start(position: u64) -> StreamStart {
        StreamStart {
            consistent_point: Lsn(position),
            system_id: "7".to_owned(),
            timeline: 1,
        }
    }

    #[tokio::test]
    async fn reports_of_a_stream_of_the_previous_server_are_ignored() {
        let url = UpstreamUrl::parse("postgres://u@a,b").expect("url");
        let upstreams = Upstreams::new(url, true);
        upstreams.force_switch_for_tests();
        let eras = Arc::new(ConnectedEras::new(Arc::clone(&upstreams)));
        let cache = Arc::new(ResultCache::new(
            CacheConfig {
                max_bytes: 1 << 20,
                max_entry_bytes: 1 << 16,
                ttl: None,
            },
            Arc::new(Generations::new()),
        ));
        let sink = Arc::new(CacheSink::new(
            Arc::clone(&cache),
            Arc::new(PinRegistry::default()),
            CacheMetrics::new(Arc::new(Counters::default())),
            ReplicationMode::Auto,
            Duration::from_secs(1),
            None,
            Arc::clone(&eras),
        ));
        let hook = Arc::downgrade(&sink);
        upstreams.on_switch(Box::new(move || {
            if let Some(sink) = hook.upgrade() {
                sink.server_changed();
            }
        }));
        let generations = cache.generations();
        let standing = generations.positions().standing("app");
        eras.set("app", upstreams.era());
        sink.stream_up("app", &start(100));
        sink.advanced("app", Lsn(500));
        assert_eq!(generations.feed("app"), Feed::Live);
        assert_eq!((standing.since(), standing.applied()), (Some(100), 500));

        upstreams.force_switch_for_tests();
        assert_eq!(
            generations.feed("app"),
            Feed::Down,
            "nothing served meanwhile"
        );
        assert_eq!((standing.since(), standing.applied()), (None, 0));
        // The old stream still reports from its buffers: none of it counts.
        sink.advanced("app", Lsn(9000));
        sink.stream_up("app", &start(8000));
        assert_eq!(generations.feed("app"), Feed::Down);
        assert_eq!((standing.since(), standing.applied()), (None, 0));

        // A connection of the new era.
        eras.set("app", upstreams.era());
        sink.stream_up("app", &start(300));
        sink.advanced("app", Lsn(350));
        assert_eq!(generations.feed("app"), Feed::Live);
        assert_eq!((standing.since(), standing.applied()), (Some(300), 350));
    }
}

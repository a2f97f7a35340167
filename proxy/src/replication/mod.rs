//! Following writes made outside pgcached: one logical-decoding stream per database that
//! clients use, feeding the cache's generations.
//!
//! A stream starts when the first session of a database has authenticated (so only real
//! databases get one). It logs in as pgcached itself ([`sources::OwnLogin`]: the credentials,
//! `sslmode` and `sslrootcert` of `--upstream`) and decodes with test_decoding, or with pgoutput
//! and the operator's publication (`--publication`). Until it runs, and whenever it is down,
//! the database's cached results are not served (fail closed); when it (re)starts, everything
//! cached for the database is dropped, since what happened meanwhile is unknown. A database
//! whose stream cannot work as configured (a [`Problem`]: wal_level, privileges, resource
//! limits, TLS) gets one warning that says what to fix; with `--replication auto` its results
//! are then served for at most `--cache-ttl-unreplicated`, with `required` not at all.
//!
//! Layout: this file starts streams and reports their status; [`sink`] applies what they
//! report; [`sources`] is what they are given (the login, the catalog's names).

mod rebump;
pub mod sink;
pub mod sources;
mod visibility;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use pgcached_cache::ResultCache;
use pgcached_invalidation::{
    Connect, Decoding, InvalidationSink, Problem, RelationNames, StreamConfig,
};
use tokio::task::JoinHandle;

use crate::cache_metrics::CacheMetrics;
use crate::catalog::Catalog;
use crate::config::ReplicationMode;
use crate::upstream::{Connector, UpstreamUrl};
use sink::{CacheSink, StreamState};
use sources::{CatalogNames, ConnectedEras, OwnLogin};

/// How pgcached follows writes made elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// `auto`, `required` or `off`.
    pub mode: ReplicationMode,
    /// The operator's publication for pgoutput, or `None` for test_decoding.
    pub publication: Option<String>,
    /// With `auto`: the longest a result of a database without a change feed is served.
    pub ttl_unreplicated: Duration,
}

/// The streams, one per database.
pub struct Replication {
    mode: ReplicationMode,
    upstream: UpstreamUrl,
    decoding: Decoding,
    connect: Arc<dyn Connect>,
    names: Arc<dyn RelationNames>,
    sink: Arc<CacheSink>,
    streams: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Replication {
    /// Streams changes into `cache` as `settings` say, connecting with `connector` and reading
    /// relation names from `catalog`.
    pub fn new(
        settings: ReplicationSettings,
        connector: Connector,
        catalog: Arc<Catalog>,
        cache: Arc<ResultCache>,
        registry: Arc<crate::pins::PinRegistry>,
        metrics: CacheMetrics,
        journal: Option<Arc<crate::shared_cache::Journal>>,
    ) -> Replication {
        let upstream = connector.url().clone();
        let upstreams = Arc::clone(connector.upstreams());
        let decoding = match settings.publication {
            Some(publication) => Decoding::Pgoutput { publication },
            None => Decoding::TestDecoding,
        };
        let eras = Arc::new(ConnectedEras::new(Arc::clone(&upstreams)));
        let sink = Arc::new(
            CacheSink::new(
                cache,
                registry,
                metrics,
                settings.mode,
                settings.ttl_unreplicated,
                journal,
                Arc::clone(&eras),
            )
            .with_snapshots(Arc::new(visibility::ControlSnapshots::new(
                catalog.control(),
            ))),
        );
        let on_switch = Arc::downgrade(&sink);
        upstreams.on_switch(Box::new(move || {
            if let Some(sink) = on_switch.upgrade() {
                sink.server_changed();
            }
        }));
        Replication {
            mode: settings.mode,
            connect: Arc::new(OwnLogin {
                connector,
                user: upstream.user.clone().unwrap_or_default(),
                password: upstream.password.clone(),
                eras,
            }),
            upstream,
            decoding,
            names: Arc::new(CatalogNames(catalog)),
            sink,
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
        self.sink.starting(database);
        if self.upstream.user.is_none() {
            self.sink.stream_unavailable(database, &Problem::NoUser);
            streams.insert(database.to_owned(), tokio::spawn(async {}));
            return;
        }
        let config = StreamConfig {
            database: database.to_owned(),
            decoding: self.decoding.clone(),
        };
        let sink: Arc<dyn InvalidationSink> = self.sink.clone();
        streams.insert(
            database.to_owned(),
            pgcached_invalidation::spawn(
                config,
                Arc::clone(&self.connect),
                Arc::clone(&self.names),
                sink,
            ),
        );
    }
}

impl Replication {
    /// Stops following `database` before a statement that needs it free of other connections
    /// ([`crate::release`]): the stream's task has ended when this returns (its temporary slot
    /// goes with its connection), and nothing of the database is served until a session of it
    /// logs in again and starts a new stream.
    pub(crate) async fn release(&self, database: &str) {
        let Some(task) = self.streams.lock().remove(database) else {
            return;
        };
        task.abort();
        // Ended before the sink is told: a stream still running could report itself back up.
        let _ = task.await;
        self.sink.stream_down(
            database,
            "let go of for DROP, RENAME or TEMPLATE of the database",
        );
    }
}

/// One database's stream, as `SHOW REPLICATION` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStatus {
    /// The database followed.
    pub database: String,
    /// `streaming`, `starting`, `down` or `unavailable`.
    pub state: &'static str,
    /// What the cache serves for the database meanwhile.
    pub serving: String,
    /// Commit-to-invalidation delay of the last transaction seen.
    pub lag_seconds: Option<f64>,
    /// When the last change arrived.
    pub last_change: Option<SystemTime>,
    /// Transactions with changes seen.
    pub transactions: u64,
    /// Times the stream was re-established.
    pub reconnects: u64,
    /// The problem's label, when unavailable.
    pub problem: Option<&'static str>,
    /// Why it is not streaming and what to fix, when it is not.
    pub detail: Option<String>,
}

impl Replication {
    /// The mode in force.
    pub fn mode(&self) -> ReplicationMode {
        self.mode
    }

    /// How changes are decoded.
    pub fn decoding(&self) -> &Decoding {
        &self.decoding
    }

    /// Every database followed (or tried), by name.
    pub fn status(&self) -> Vec<StreamStatus> {
        let mut names: Vec<String> = self.streams.lock().keys().cloned().collect();
        names.sort();
        let feeds = self.sink.feeds.lock();
        names
            .into_iter()
            .map(|database| {
                let feed = feeds.get(&database).cloned().unwrap_or_default();
                let (problem, detail) = match &feed.state {
                    StreamState::Unavailable { problem } => {
                        (Some(problem.label()), Some(problem.text()))
                    }
                    StreamState::Down { reason } => (None, Some(reason.clone())),
                    StreamState::Starting | StreamState::Streaming => (None, None),
                };
                StreamStatus {
                    state: feed.state.label(),
                    serving: self.sink.serving(&feed.state),
                    database,
                    lag_seconds: feed.lag_seconds,
                    last_change: feed.last_change,
                    transactions: feed.transactions,
                    reconnects: feed.reconnects,
                    problem,
                    detail,
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

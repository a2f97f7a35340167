//! Generation counters: one per table, one per database.
//!
//! Bumping a counter is one atomic increment. Entries hold [`GenerationHandle`]s (shared
//! atomics) of the counters they depend on, so checking an entry is a few atomic loads with no
//! map lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

/// A table in a database: the database name and the relation's OID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    /// Database name.
    pub database: Arc<str>,
    /// `pg_class.oid` (of the partition root for partitions).
    pub oid: u32,
}

/// A shared counter.
#[derive(Debug, Clone, Default)]
pub struct GenerationHandle(Arc<AtomicU64>);

impl GenerationHandle {
    /// The current value.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// How a database's cached results may be served, given what is known about the feed of
/// changes made outside pgcached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Feed {
    /// Changes reach the cache (or nothing is expected to write elsewhere): results are served
    /// until invalidated.
    #[default]
    Live,
    /// The feed is down for now: nothing is served (fail closed).
    Down,
    /// No feed can work: a result is served for at most this long after the lookup that
    /// filled it; zero means nothing is cached at all.
    Bounded(Duration),
}

/// All counters.
#[derive(Debug, Default)]
pub struct Generations {
    tables: RwLock<HashMap<TableId, GenerationHandle>>,
    databases: RwLock<HashMap<Arc<str>, GenerationHandle>>,
    /// Databases whose feed is not [`Feed::Live`] (only those are stored, so that the usual
    /// case is one check of an empty map).
    feeds: RwLock<HashMap<Arc<str>, Feed>>,
}

impl Generations {
    /// No counters yet; each starts at 0 on first use.
    pub fn new() -> Generations {
        Generations::default()
    }

    /// The counter of a table.
    pub fn table(&self, table: &TableId) -> GenerationHandle {
        if let Some(handle) = self.tables.read().get(table) {
            return handle.clone();
        }
        self.tables
            .write()
            .entry(table.clone())
            .or_default()
            .clone()
    }

    /// The counter of a whole database.
    pub fn database(&self, database: &str) -> GenerationHandle {
        if let Some(handle) = self.databases.read().get(database) {
            return handle.clone();
        }
        self.databases
            .write()
            .entry(Arc::from(database))
            .or_default()
            .clone()
    }

    /// Invalidates every entry that depends on `table`.
    pub fn bump_table(&self, table: &TableId) {
        self.table(table).bump();
    }

    /// Invalidates every entry of `database`.
    pub fn bump_database(&self, database: &str) {
        self.database(database).bump();
    }

    /// Sets how `database`'s cached results may be served. Moving to a more restrictive feed
    /// does not by itself drop what is stored: the caller bumps the database when the entries
    /// filled under the old feed must go.
    pub fn set_feed(&self, database: &str, feed: Feed) {
        if feed == Feed::Live {
            self.feeds.write().remove(database);
        } else {
            self.feeds.write().insert(Arc::from(database), feed);
        }
    }

    /// How `database`'s cached results may be served now.
    pub fn feed(&self, database: &str) -> Feed {
        let feeds = self.feeds.read();
        if feeds.is_empty() {
            return Feed::Live;
        }
        feeds.get(database).copied().unwrap_or_default()
    }

    /// Databases with a counter (every database a read was looked up in), by name.
    pub fn databases(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.databases.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Tables seen so far with their generation.
    pub fn tables(&self) -> Vec<(TableId, u64)> {
        self.tables
            .read()
            .iter()
            .map(|(t, h)| (t.clone(), h.current()))
            .collect()
    }
}

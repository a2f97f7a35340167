//! Generation counters: per database, per table, per (table, column set), and a fixed array of
//! counters for row keys.
//!
//! Bumping a counter is one atomic increment. Entries hold [`GenerationHandle`]s (shared
//! atomics) of the counters they depend on, and indexes into the key array, so checking an
//! entry is a few atomic loads with no map lookup.
//!
//! Counters and what bumps them:
//! - a **database** counter: everything cached for the database (a stream restart, a catalog
//!   change, a write whose reach is unknown);
//! - per table, a **whole-table** counter (TRUNCATE, a change of unknown rows: every read of the
//!   table) and a **rows** counter (any change at all: reads that depend on the whole table);
//! - per (table, column set), a **column-set** counter: a change whose value of those columns is
//!   unknown (a row image without them), so every read pinning rows by those columns;
//! - **key slots**: a bounded array indexed by a hash of (table, column set, values). A read that
//!   pins rows by equality depends on the slots of its keys; a change bumps the slots of the keys
//!   of its old and new rows. Two keys sharing a slot only invalidate each other too often, never
//!   too little.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

/// Number of key slots (a power of two); 8 bytes each.
pub const KEY_SLOTS: usize = 1 << 18;

/// A table in a database: the database name and the relation's OID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    /// Database name.
    pub database: Arc<str>,
    /// `pg_class.oid` (of the partition root for partitions).
    pub oid: u32,
}

/// A set of columns of a table that reads pin rows by, as numbered by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnSetId(pub u32);

/// A hash of (table, column set, canonical values): one row key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub u64);

impl KeyHash {
    fn slot(self) -> usize {
        (self.0 as usize) & (KEY_SLOTS - 1)
    }
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

/// The two counters of a table.
#[derive(Debug, Clone, Default)]
struct TableCounters {
    /// Bumped when the table changes in unknown rows (every read of it is affected).
    whole: GenerationHandle,
    /// Bumped at every change (reads of the whole table are affected).
    rows: GenerationHandle,
}

/// All counters.
pub struct Generations {
    databases: RwLock<HashMap<Arc<str>, GenerationHandle>>,
    tables: RwLock<HashMap<TableId, TableCounters>>,
    column_sets: RwLock<HashMap<(TableId, ColumnSetId), GenerationHandle>>,
    keys: Box<[AtomicU64]>,
    /// Databases whose feed is not [`Feed::Live`] (only those are stored, so that the usual
    /// case is one check of an empty map).
    feeds: RwLock<HashMap<Arc<str>, Feed>>,
}

impl Default for Generations {
    fn default() -> Generations {
        Generations {
            databases: RwLock::default(),
            tables: RwLock::default(),
            column_sets: RwLock::default(),
            keys: (0..KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            feeds: RwLock::default(),
        }
    }
}

impl std::fmt::Debug for Generations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generations")
            .field("databases", &self.databases.read().len())
            .field("tables", &self.tables.read().len())
            .field("column_sets", &self.column_sets.read().len())
            .finish_non_exhaustive()
    }
}

impl Generations {
    /// No counters yet; each starts at 0 on first use.
    pub fn new() -> Generations {
        Generations::default()
    }

    fn counters(&self, table: &TableId) -> TableCounters {
        if let Some(counters) = self.tables.read().get(table) {
            return counters.clone();
        }
        self.tables
            .write()
            .entry(table.clone())
            .or_default()
            .clone()
    }

    /// The counter a read of the whole table depends on (bumped by every change to it).
    pub fn table(&self, table: &TableId) -> GenerationHandle {
        self.counters(table).rows
    }

    /// The counter a read of some rows of the table depends on (bumped when the table changes
    /// in unknown rows).
    pub fn whole_table(&self, table: &TableId) -> GenerationHandle {
        self.counters(table).whole
    }

    /// The counter of a column set of a table.
    pub fn column_set(&self, table: &TableId, columns: ColumnSetId) -> GenerationHandle {
        let key = (table.clone(), columns);
        if let Some(handle) = self.column_sets.read().get(&key) {
            return handle.clone();
        }
        self.column_sets.write().entry(key).or_default().clone()
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

    /// The current value of a key's slot.
    pub fn key(&self, key: KeyHash) -> u64 {
        self.keys[key.slot()].load(Ordering::Acquire)
    }

    /// Invalidates every entry that reads `table`, whatever rows it reads.
    pub fn bump_table(&self, table: &TableId) {
        let counters = self.counters(table);
        counters.whole.bump();
        counters.rows.bump();
    }

    /// Some rows of `table` changed: invalidates the entries that read the whole table. The
    /// rows' keys are bumped with [`Generations::bump_key`] or [`Generations::bump_column_set`].
    pub fn bump_table_rows(&self, table: &TableId) {
        self.counters(table).rows.bump();
    }

    /// A change of `table` whose values of `columns` are unknown: invalidates every entry that
    /// pins rows of the table by those columns.
    pub fn bump_column_set(&self, table: &TableId, columns: ColumnSetId) {
        self.column_set(table, columns).bump();
    }

    /// A row with this key changed: invalidates the entries that pin it.
    pub fn bump_key(&self, key: KeyHash) {
        self.keys[key.slot()].fetch_add(1, Ordering::AcqRel);
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

    /// Tables seen so far with the generation of their rows counter.
    pub fn tables(&self) -> Vec<(TableId, u64)> {
        self.tables
            .read()
            .iter()
            .map(|(t, c)| (t.clone(), c.rows.current()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(oid: u32) -> TableId {
        TableId {
            database: Arc::from("app"),
            oid,
        }
    }

    #[test]
    fn each_bump_moves_exactly_its_counters() {
        let g = Generations::new();
        let (rows, whole) = (g.table(&table(1)), g.whole_table(&table(1)));
        let set = g.column_set(&table(1), ColumnSetId(3));
        let before = (rows.current(), whole.current(), set.current());
        g.bump_table_rows(&table(1));
        assert_eq!(
            (rows.current(), whole.current(), set.current()),
            (before.0 + 1, before.1, before.2)
        );
        g.bump_column_set(&table(1), ColumnSetId(3));
        assert_eq!(set.current(), before.2 + 1);
        g.bump_table(&table(1));
        assert_eq!(whole.current(), before.1 + 1);
        assert_eq!(rows.current(), before.0 + 2);
        let other = g.column_set(&table(2), ColumnSetId(3));
        assert_eq!(other.current(), 0, "another table's column set is its own");
    }

    #[test]
    fn keys_share_slots_only_modulo_the_array() {
        let g = Generations::new();
        let a = KeyHash(7);
        let b = KeyHash(7 + KEY_SLOTS as u64);
        let c = KeyHash(8);
        g.bump_key(a);
        assert_eq!(g.key(a), 1);
        assert_eq!(
            g.key(b),
            1,
            "a collision invalidates too much, never too little"
        );
        assert_eq!(g.key(c), 0);
    }
}

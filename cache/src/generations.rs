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
//!
//! Beside its count, every counter keeps the WAL position of the last change the stream
//! reported for it and the ticket of the last change made through this pgcached
//! ([`crate::positions`]): what the shared tier compares a result's stamp with. A stream's
//! change is bumped with its position (`bump_*_at`); any other bump takes a ticket. Either way
//! the position or ticket is stored before the count moves, so a reader that sees the count
//! moved also sees why.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::positions::{LastChange, Positions};

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

/// A counter, with the position and ticket of its last change.
#[derive(Debug, Default)]
struct Counter {
    generation: AtomicU64,
    /// The WAL position of the last change the stream reported.
    position: AtomicU64,
    /// The ticket of the last change made through this pgcached.
    ticket: AtomicU64,
}

/// A shared counter.
#[derive(Debug, Clone, Default)]
pub struct GenerationHandle(Arc<Counter>);

impl GenerationHandle {
    /// The current value.
    pub fn current(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// The stream's position and this pgcached's ticket of the last change.
    pub(crate) fn last_change(&self) -> (u64, u64) {
        (
            self.0.position.load(Ordering::Acquire),
            self.0.ticket.load(Ordering::Acquire),
        )
    }

    fn bump(&self, change: Change) {
        match change {
            Change::At(position) => {
                self.0.position.fetch_max(position, Ordering::AcqRel);
            }
            Change::Ticket(ticket) => {
                self.0.ticket.fetch_max(ticket, Ordering::AcqRel);
            }
            Change::Unchanged => {}
        }
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Why a counter moves.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// The stream reported a change at this position.
    At(u64),
    /// A change through this pgcached, with its ticket.
    Ticket(u64),
    /// Nothing changed in the data (the stream restarted, the catalog changed): entries of
    /// this pgcached are dropped; what the shared tier knows is unaffected.
    Unchanged,
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
    /// Per key slot, the stream's position of its last change.
    key_positions: Box<[AtomicU64]>,
    /// Per key slot, the ticket of its last change through this pgcached.
    key_tickets: Box<[AtomicU64]>,
    positions: Positions,
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
            key_positions: (0..KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            key_tickets: (0..KEY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            positions: Positions::default(),
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

    /// The positions: streams, tickets, per-database standing.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// The stream's position and this pgcached's ticket of a key slot's last change.
    pub(crate) fn key_last_change(&self, key: KeyHash) -> (u64, u64) {
        (
            self.key_positions[key.slot()].load(Ordering::Acquire),
            self.key_tickets[key.slot()].load(Ordering::Acquire),
        )
    }

    /// The last change of these counters and keys, with tickets resolved.
    pub(crate) fn last_change<'a>(
        &self,
        counters: impl Iterator<Item = &'a GenerationHandle>,
        keys: impl Iterator<Item = KeyHash>,
    ) -> LastChange {
        let (mut position, mut ticket) = (0, 0);
        for (p, t) in counters
            .map(GenerationHandle::last_change)
            .chain(keys.map(|key| self.key_last_change(key)))
        {
            position = position.max(p);
            ticket = ticket.max(t);
        }
        match self.positions.bound(ticket) {
            Some(bound) => LastChange::At(position.max(bound)),
            None => LastChange::Unresolved,
        }
    }

    fn local(&self) -> Change {
        Change::Ticket(self.positions.take_ticket())
    }

    /// Invalidates every entry that reads `table`, whatever rows it reads (a change made
    /// through this pgcached).
    pub fn bump_table(&self, table: &TableId) {
        self.table_changed(table, self.local());
    }

    /// [`Generations::bump_table`] for a change the stream reported at `position`.
    pub fn bump_table_at(&self, table: &TableId, position: u64) {
        self.table_changed(table, Change::At(position));
    }

    fn table_changed(&self, table: &TableId, change: Change) {
        let counters = self.counters(table);
        counters.whole.bump(change);
        counters.rows.bump(change);
    }

    /// Some rows of `table` changed: invalidates the entries that read the whole table. The
    /// rows' keys are bumped with [`Generations::bump_key`] or [`Generations::bump_column_set`].
    pub fn bump_table_rows(&self, table: &TableId) {
        self.counters(table).rows.bump(self.local());
    }

    /// [`Generations::bump_table_rows`] for a change the stream reported at `position`.
    pub fn bump_table_rows_at(&self, table: &TableId, position: u64) {
        self.counters(table).rows.bump(Change::At(position));
    }

    /// A change of `table` whose values of `columns` are unknown: invalidates every entry that
    /// pins rows of the table by those columns.
    pub fn bump_column_set(&self, table: &TableId, columns: ColumnSetId) {
        self.column_set(table, columns).bump(self.local());
    }

    /// [`Generations::bump_column_set`] for a change the stream reported at `position`.
    pub fn bump_column_set_at(&self, table: &TableId, columns: ColumnSetId, position: u64) {
        self.column_set(table, columns).bump(Change::At(position));
    }

    /// A row with this key changed: invalidates the entries that pin it.
    pub fn bump_key(&self, key: KeyHash) {
        let ticket = self.positions.take_ticket();
        self.key_tickets[key.slot()].fetch_max(ticket, Ordering::AcqRel);
        self.keys[key.slot()].fetch_add(1, Ordering::AcqRel);
    }

    /// [`Generations::bump_key`] for a change the stream reported at `position`.
    pub fn bump_key_at(&self, key: KeyHash, position: u64) {
        self.key_positions[key.slot()].fetch_max(position, Ordering::AcqRel);
        self.keys[key.slot()].fetch_add(1, Ordering::AcqRel);
    }

    /// Invalidates every entry of `database` (a change of unknown reach made through this
    /// pgcached).
    pub fn bump_database(&self, database: &str) {
        self.database(database).bump(self.local());
    }

    /// [`Generations::bump_database`] for a change the stream reported at `position`.
    pub fn bump_database_at(&self, database: &str, position: u64) {
        self.database(database).bump(Change::At(position));
    }

    /// Drops every entry of `database` held here although its data did not change (the
    /// stream restarted, the catalog changed): the shared tier judges those by coverage and
    /// catalog digest instead.
    pub fn drop_database(&self, database: &str) {
        self.database(database).bump(Change::Unchanged);
    }

    /// PostgreSQL is another server now (another system, or a new timeline after a promotion):
    /// every entry held here is dropped, and every position and ticket is forgotten, since
    /// positions of different servers are not comparable. The caller makes sure no stream of
    /// the old server reports anything afterwards and no stream of the new one runs yet.
    pub fn server_changed(&self) {
        for handle in self.databases.read().values() {
            handle.bump(Change::Unchanged);
        }
        let forget = |handle: &GenerationHandle| {
            handle.0.position.store(0, Ordering::Release);
            handle.0.ticket.store(0, Ordering::Release);
        };
        self.databases.read().values().for_each(forget);
        for counters in self.tables.read().values() {
            forget(&counters.whole);
            forget(&counters.rows);
        }
        self.column_sets.read().values().for_each(forget);
        for slot in self.key_positions.iter().chain(self.key_tickets.iter()) {
            slot.store(0, Ordering::Release);
        }
        self.positions.server_changed();
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
    fn bumps_record_where_or_by_whom_they_changed() {
        let g = Generations::new();
        let rows = g.table(&table(1));
        let key = KeyHash(5);
        assert_eq!(
            g.last_change([&rows].into_iter(), [key].into_iter()),
            LastChange::At(0)
        );
        g.bump_table_rows_at(&table(1), 300);
        g.bump_key_at(key, 200);
        assert_eq!(
            g.last_change([&rows].into_iter(), [key].into_iter()),
            LastChange::At(300)
        );
        g.bump_key(key);
        assert_eq!(
            g.last_change([&rows].into_iter(), [key].into_iter()),
            LastChange::Unresolved,
            "a change through this pgcached is unbounded until resolved"
        );
        let ticket = g.positions().unresolved().expect("a ticket");
        g.positions().resolve(ticket, 900);
        assert_eq!(
            g.last_change([&rows].into_iter(), [key].into_iter()),
            LastChange::At(900)
        );
        let db = g.database("app");
        let before = db.current();
        g.drop_database("app");
        assert_eq!(db.current(), before + 1);
        assert_eq!(db.last_change(), (0, 0), "a drop is no change of data");
    }

    #[test]
    fn a_change_of_server_drops_entries_and_forgets_positions() {
        let g = Generations::new();
        let db = g.database("app");
        let rows = g.table(&table(1));
        let key = KeyHash(9);
        g.bump_table_rows_at(&table(1), 5000);
        g.bump_key_at(key, 6000);
        g.positions().stream_started("app", 4000);
        let before = db.current();
        g.server_changed();
        assert_eq!(
            db.current(),
            before + 1,
            "every entry of the database dropped"
        );
        assert_eq!(
            g.last_change([&rows].into_iter(), [key].into_iter()),
            LastChange::At(0),
            "positions of the old server are not compared with the new one's"
        );
        assert_eq!(g.positions().standing("app").since(), None);
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

//! The column sets reads pin rows by, per table: what invalidation by key must compute keys
//! for when a table changes.
//!
//! A read pinning `users(id)` registers the set `(id)` of `users` with the types of its columns
//! when it is classified, before any lookup. From then on every change to `users` (a proxied
//! write at its acknowledgement, a replication row image) bumps the keys of that set for the old
//! and new rows, or, when a row image lacks one of the columns, the whole set. Because a set is
//! registered before any read that depends on it is looked up, a change processed after a
//! lookup always sees the set. Sets are never forgotten (a session may still look up under a
//! classification made before a catalog change); a table's replica identity is, on every
//! catalog change, until the table's facts are read again: an unknown identity covers no set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use pgcached_cache::{ColumnSetId, TableId};

use super::canonical::PinType;

/// Most tables with registered sets; pins of further tables are not registered.
pub const MAX_TABLES: usize = 100_000;

/// Most column sets registered per table; further pins of the table are not registered (those
/// reads depend on the whole table).
pub const MAX_SETS_PER_TABLE: usize = 16;

/// A column set: its number and its columns, sorted by name, with their types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSet {
    /// Its number.
    pub id: ColumnSetId,
    /// The columns, sorted by name.
    pub columns: Arc<[(String, PinType)]>,
}

/// Which columns identify a row in the table's old row images (its replica identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The primary key or the replica identity index: these columns.
    Key(Vec<String>),
    /// `REPLICA IDENTITY FULL`: every column.
    Full,
    /// No identity (`NOTHING`, or `DEFAULT` without a primary key): no old images.
    Nothing,
}

impl Identity {
    /// True when an UPDATE without an old image left these columns as they were: PostgreSQL
    /// omits the old image only when the identity's columns did not change.
    pub fn covers(&self, columns: &[(String, PinType)]) -> bool {
        match self {
            Identity::Key(key) => columns.iter().all(|(name, _)| key.contains(name)),
            Identity::Full | Identity::Nothing => false,
        }
    }
}

/// A table's registered sets and identity.
#[derive(Debug, Clone)]
pub struct TableSets {
    /// The sets, in registration order.
    pub sets: Vec<ColumnSet>,
    /// The table's replica identity when the first set was registered.
    pub identity: Identity,
}

/// The registry shared by classification, sessions and the replication sink.
#[derive(Debug, Default)]
pub struct PinRegistry {
    tables: RwLock<HashMap<TableId, Arc<TableSets>>>,
    next: AtomicU32,
}

impl PinRegistry {
    /// The number of the set `columns` (sorted by name) of `table`, registering it; `None` when
    /// the table already has [`MAX_SETS_PER_TABLE`] others.
    pub fn register(
        &self,
        table: &TableId,
        columns: &[(String, PinType)],
        identity: Identity,
    ) -> Option<ColumnSetId> {
        if let Some(found) = self.find(table, columns, &identity) {
            return Some(found);
        }
        let mut tables = self.tables.write();
        if !tables.contains_key(table) && tables.len() >= MAX_TABLES {
            return None;
        }
        let entry = tables.entry(table.clone()).or_insert_with(|| {
            Arc::new(TableSets {
                sets: Vec::new(),
                identity: identity.clone(),
            })
        });
        if let Some(set) = entry.sets.iter().find(|s| &*s.columns == columns) {
            let id = set.id;
            if entry.identity != identity {
                let mut updated = (**entry).clone();
                updated.identity = identity;
                *entry = Arc::new(updated);
            }
            return Some(id);
        }
        if entry.sets.len() >= MAX_SETS_PER_TABLE {
            return None;
        }
        let id = ColumnSetId(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let mut updated = (**entry).clone();
        updated.sets.push(ColumnSet {
            id,
            columns: Arc::from(columns),
        });
        updated.identity = identity;
        *entry = Arc::new(updated);
        Some(id)
    }

    /// The set's number when it is registered with this identity already.
    fn find(
        &self,
        table: &TableId,
        columns: &[(String, PinType)],
        identity: &Identity,
    ) -> Option<ColumnSetId> {
        let tables = self.tables.read();
        let sets = tables.get(table).filter(|t| t.identity == *identity)?;
        sets.sets
            .iter()
            .find(|s| &*s.columns == columns)
            .map(|s| s.id)
    }

    /// The sets registered for `table` (none: its changes need no keys).
    pub fn of_table(&self, table: &TableId) -> Option<Arc<TableSets>> {
        self.tables.read().get(table).cloned()
    }

    /// The catalog of `database` changed: its tables' identities are unknown until their facts
    /// are read again (an unknown identity covers no set).
    pub fn forget_identities(&self, database: &str) {
        for (table, sets) in self.tables.write().iter_mut() {
            if &*table.database == database && sets.identity != Identity::Nothing {
                let mut updated = (**sets).clone();
                updated.identity = Identity::Nothing;
                *sets = Arc::new(updated);
            }
        }
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

    fn set(names: &[&str]) -> Vec<(String, PinType)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), PinType::Integer))
            .collect()
    }

    #[test]
    fn a_set_is_registered_once_and_found_by_its_table() {
        let registry = PinRegistry::default();
        let id = registry
            .register(&table(1), &set(&["id"]), Identity::Key(vec!["id".into()]))
            .expect("registered");
        assert_eq!(
            registry.register(&table(1), &set(&["id"]), Identity::Full),
            Some(id)
        );
        let other = registry
            .register(&table(1), &set(&["a", "b"]), Identity::Full)
            .expect("second set");
        assert_ne!(other, id);
        let sets = registry.of_table(&table(1)).expect("sets");
        assert_eq!(sets.sets.len(), 2);
        assert!(registry.of_table(&table(2)).is_none());
        registry.forget_identities("app");
        let sets = registry.of_table(&table(1)).expect("sets stay");
        assert_eq!(sets.sets.len(), 2);
        assert_eq!(sets.identity, Identity::Nothing, "unknown until read again");
        registry.register(&table(1), &set(&["id"]), Identity::Key(vec!["id".into()]));
        assert_eq!(
            registry.of_table(&table(1)).expect("sets").identity,
            Identity::Key(vec!["id".into()])
        );
    }

    #[test]
    fn a_table_has_a_bounded_number_of_sets() {
        let registry = PinRegistry::default();
        for i in 0..MAX_SETS_PER_TABLE {
            let name = format!("c{i}");
            assert!(registry
                .register(&table(1), &set(&[&name]), Identity::Nothing)
                .is_some());
        }
        assert!(registry
            .register(&table(1), &set(&["one_more"]), Identity::Nothing)
            .is_none());
    }

    #[test]
    fn an_identity_covers_the_sets_inside_its_key() {
        let key = Identity::Key(vec!["a".into(), "b".into()]);
        assert!(key.covers(&set(&["a"])));
        assert!(key.covers(&set(&["a", "b"])));
        assert!(!key.covers(&set(&["c"])));
        assert!(
            !Identity::Full.covers(&set(&["a"])),
            "FULL always sends the old row"
        );
        assert!(!Identity::Nothing.covers(&set(&["a"])));
    }
}

//! Invalidations per table: for `SHOW TABLES` and for `pgcached_table_invalidations_total`.
//!
//! Writes reach pgcached table by table at the acknowledgement of a write it relayed (its target
//! and the tables its cascades reach), through the logical-replication stream (which reports
//! relayed writes once more), and through `INVALIDATE TABLE`; a relayed write whose reach is
//! unknown invalidates its database and is not counted per table. Every table is counted here,
//! but only the busiest few become metric labels: a label value is a table name, and the set of
//! names must stay small for Prometheus whatever clients create. The label set is capped for the
//! life of the process ([`MAX_LABELLED_TABLES`]); tables past the cap are visible in `SHOW TABLES`
//! only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::counter;
use parking_lot::Mutex;
use pgcached_cache::TableId;

use crate::catalog::Catalog;
use crate::metrics::registry::TABLE_INVALIDATIONS_TOTAL;

/// Tables exported per refresh, busiest first.
pub const TOP_TABLES: usize = 10;
/// Distinct (database, table) label pairs ever exported by one process.
pub const MAX_LABELLED_TABLES: usize = 50;
/// Tables tracked at most; past this, the least recently changed are forgotten.
const MAX_TRACKED: usize = 100_000;
/// How often the top tables are exported.
const EXPORT_INTERVAL: Duration = Duration::from_secs(5);

/// What happened to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// Times its cached results were invalidated.
    pub invalidations: u64,
    /// When that last happened.
    pub last_change: SystemTime,
}

/// Invalidation counts per table.
#[derive(Debug, Default)]
pub struct TableActivity {
    tables: Mutex<HashMap<TableId, Activity>>,
}

impl TableActivity {
    /// Records one invalidation of `table`, now.
    pub fn invalidated(&self, table: &TableId) {
        let now = SystemTime::now();
        let mut tables = self.tables.lock();
        if tables.len() >= MAX_TRACKED && !tables.contains_key(table) {
            forget_oldest_half(&mut tables);
        }
        let activity = tables.entry(table.clone()).or_insert(Activity {
            invalidations: 0,
            last_change: now,
        });
        activity.invalidations += 1;
        activity.last_change = now;
    }

    /// What is known of `table`.
    pub fn get(&self, table: &TableId) -> Option<Activity> {
        self.tables.lock().get(table).copied()
    }

    /// Every table with invalidations, busiest first.
    pub fn busiest(&self) -> Vec<(TableId, Activity)> {
        let mut all: Vec<(TableId, Activity)> = self
            .tables
            .lock()
            .iter()
            .map(|(t, a)| (t.clone(), *a))
            .collect();
        all.sort_by(|a, b| {
            b.1.invalidations
                .cmp(&a.1.invalidations)
                .then_with(|| a.0.cmp(&b.0))
        });
        all
    }
}

fn forget_oldest_half(tables: &mut HashMap<TableId, Activity>) {
    let mut times: Vec<SystemTime> = tables.values().map(|a| a.last_change).collect();
    times.sort();
    if let Some(cut) = times.get(times.len() / 2).copied() {
        tables.retain(|_, a| a.last_change > cut);
    }
}

/// Exports the busiest tables as `pgcached_table_invalidations_total{database, table}`, every
/// few seconds, naming them through the catalog. Ends when `activity` is the last reference.
pub fn spawn_export(activity: Arc<TableActivity>, catalog: Arc<Catalog>) {
    tokio::spawn(async move {
        let mut labelled: HashSet<(Arc<str>, String)> = HashSet::new();
        let mut tick = tokio::time::interval(EXPORT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if Arc::strong_count(&activity) == 1 {
                return;
            }
            export_top(&activity, &catalog, &mut labelled).await;
        }
    });
}

async fn export_top(
    activity: &TableActivity,
    catalog: &Catalog,
    labelled: &mut HashSet<(Arc<str>, String)>,
) {
    let top: Vec<(TableId, Activity)> = activity.busiest().into_iter().take(TOP_TABLES).collect();
    let tables: Vec<TableId> = top.iter().map(|(table, _)| table.clone()).collect();
    // A table dropped since its last change has no name any more: it is skipped.
    let mut names = catalog.names_of(&tables).await;
    for (table, counts) in top {
        let Some(name) = names.remove(&table) else {
            continue;
        };
        let label = (Arc::clone(&table.database), name);
        if !labelled.contains(&label) {
            if labelled.len() >= MAX_LABELLED_TABLES {
                continue;
            }
            labelled.insert(label.clone());
        }
        counter!(
            TABLE_INVALIDATIONS_TOTAL,
            "database" => label.0.to_string(),
            "table" => label.1,
        )
        .absolute(counts.invalidations);
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
    fn a_full_registry_forgets_its_least_recently_changed_half() {
        let start = SystemTime::UNIX_EPOCH;
        let mut tables: HashMap<TableId, Activity> = (0..10)
            .map(|oid| {
                let activity = Activity {
                    invalidations: 1,
                    last_change: start + Duration::from_secs(u64::from(oid)),
                };
                (table(oid), activity)
            })
            .collect();
        forget_oldest_half(&mut tables);
        let mut left: Vec<u32> = tables.keys().map(|t| t.oid).collect();
        left.sort_unstable();
        assert_eq!(left, vec![6, 7, 8, 9]);
    }

    #[test]
    fn busiest_tables_come_first() {
        let activity = TableActivity::default();
        activity.invalidated(&table(1));
        for _ in 0..3 {
            activity.invalidated(&table(2));
        }
        activity.invalidated(&table(3));
        activity.invalidated(&table(3));
        let order: Vec<(u32, u64)> = activity
            .busiest()
            .iter()
            .map(|(t, a)| (t.oid, a.invalidations))
            .collect();
        assert_eq!(order, vec![(2, 3), (3, 2), (1, 1)]);
        assert_eq!(activity.get(&table(3)).map(|a| a.invalidations), Some(2));
        assert!(activity.get(&table(9)).is_none());
    }
}

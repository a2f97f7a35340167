//! Relation names, as test_decoding prints them, to relation OIDs.
//!
//! test_decoding names the relation of each change as it was called when the change was made.
//! Cached entries depend on OIDs, so names are looked up in a map of the database's current
//! names (`quote_ident(nspname) || '.' || quote_ident(relname)` → OID) read from the catalog.
//! A name and its OID can part ways: a table renamed, or dropped and created again, after the
//! change was committed but before the map was read, or the other way round. So:
//!
//! - the map is read again when a transaction names a relation the map does not know, and when
//!   the catalog watcher has seen the catalog change since the map was read
//!   ([`RelationNames::version`]);
//! - a read that finds any difference from the previous map (a name new, gone or pointing
//!   elsewhere) reports the whole database as changed, as does a name still unknown after a
//!   read, or a map that cannot be read.
//!
//! ARCHITECTURE.md has the argument why, together with the catalog watcher, this never lets a
//! stale row be served.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::BoxFuture;

/// The catalog, as the name map needs it.
pub trait RelationNames: Send + Sync + 'static {
    /// The current names of every permanent table, partitioned table and materialized view of
    /// `database`, quoted as `quote_ident` quotes, with their OIDs.
    fn load<'a>(&'a self, database: &'a str)
        -> BoxFuture<'a, Result<HashMap<String, u32>, String>>;

    /// A counter that moves (before anything is invalidated) each time the catalog watcher
    /// finds the catalog of `database` changed, or could not read it.
    fn version(&self, database: &str) -> u64;
}

/// The names of one database, as last read.
#[derive(Debug, Default)]
pub struct NameMap {
    map: HashMap<String, u32>,
    /// The catalog version read just before the map; `None` before the first read or after a
    /// failed one.
    version: Option<u64>,
    /// Names still unknown after the read at `version`: not worth another read.
    unknown: HashSet<String>,
    /// True once a read succeeded: later reads are compared with the last good map.
    loaded: bool,
}

/// What a transaction's relation names map to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The OIDs of the names found.
    pub oids: Vec<u32>,
    /// Some change cannot be attributed with certainty: invalidate the whole database.
    pub whole_database: bool,
}

impl NameMap {
    /// The OID of a name as last read (after [`NameMap::resolve`] of its transaction).
    pub fn oid(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }

    /// Maps `names` (relations a transaction changed) to OIDs, reading the catalog first when
    /// needed.
    pub async fn resolve(
        &mut self,
        source: &dyn RelationNames,
        database: &str,
        names: &BTreeSet<String>,
    ) -> Resolved {
        let mut whole_database = false;
        let current = source.version(database);
        let stale = self.version != Some(current);
        let missing = names
            .iter()
            .any(|name| !self.map.contains_key(name) && !self.unknown.contains(name));
        if stale || missing {
            match source.load(database).await {
                Ok(map) => {
                    if self.loaded && map != self.map {
                        whole_database = true;
                    }
                    self.loaded = true;
                    self.map = map;
                    self.version = Some(current);
                    self.unknown.clear();
                }
                Err(e) => {
                    tracing::debug!(database, error = %e, "relation names unavailable");
                    self.version = None;
                    whole_database = true;
                }
            }
        }
        let mut oids = Vec::with_capacity(names.len());
        for name in names {
            match self.map.get(name) {
                Some(oid) => oids.push(*oid),
                None => {
                    whole_database = true;
                    if self.version.is_some() {
                        self.unknown.insert(name.clone());
                    }
                }
            }
        }
        Resolved {
            oids,
            whole_database,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Catalog {
        map: Mutex<HashMap<String, u32>>,
        version: AtomicU64,
        loads: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Catalog {
        fn set(&self, entries: &[(&str, u32)]) {
            *self.map.lock().expect("map") = entries
                .iter()
                .map(|(name, oid)| ((*name).to_owned(), *oid))
                .collect();
        }
    }

    impl RelationNames for Catalog {
        fn load<'a>(
            &'a self,
            _database: &'a str,
        ) -> BoxFuture<'a, Result<HashMap<String, u32>, String>> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            let result = if self.fail.load(Ordering::SeqCst) {
                Err("down".to_owned())
            } else {
                Ok(self.map.lock().expect("map").clone())
            };
            Box::pin(async move { result })
        }

        fn version(&self, _database: &str) -> u64 {
            self.version.load(Ordering::SeqCst)
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    async fn resolve(map: &mut NameMap, catalog: &Catalog, list: &[&str]) -> Resolved {
        map.resolve(catalog, "app", &names(list)).await
    }

    #[tokio::test]
    async fn known_names_map_without_reading_the_catalog_again() {
        let catalog = Catalog::default();
        catalog.set(&[("public.a", 1), ("\"S\".\"b c\"", 2)]);
        let mut map = NameMap::default();
        let mut first = resolve(&mut map, &catalog, &["public.a", "\"S\".\"b c\""]).await;
        first.oids.sort_unstable();
        assert_eq!(
            first,
            Resolved {
                oids: vec![1, 2],
                whole_database: false
            },
            "the first read has nothing to differ from"
        );
        resolve(&mut map, &catalog, &["public.a"]).await;
        assert_eq!(catalog.loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn any_difference_found_by_a_read_invalidates_the_whole_database() {
        let catalog = Catalog::default();
        catalog.set(&[("public.a", 1)]);
        let mut map = NameMap::default();
        resolve(&mut map, &catalog, &["public.a"]).await;
        // Renamed and recreated: `a` is another table now, the old one is `a_old`.
        catalog.set(&[("public.a", 7), ("public.a_old", 1)]);
        let after = resolve(&mut map, &catalog, &["public.a_old"]).await;
        assert_eq!(
            after,
            Resolved {
                oids: vec![1],
                whole_database: true
            }
        );
        // Nothing changed since: a new table in the map is a difference, an unchanged map not.
        catalog.set(&[("public.a", 7), ("public.a_old", 1), ("public.n", 9)]);
        assert!(
            resolve(&mut map, &catalog, &["public.n"])
                .await
                .whole_database
        );
        assert!(
            !resolve(&mut map, &catalog, &["public.n"])
                .await
                .whole_database
        );
    }

    #[tokio::test]
    async fn a_catalog_change_seen_by_the_watcher_forces_a_read() {
        let catalog = Catalog::default();
        catalog.set(&[("public.a", 1)]);
        let mut map = NameMap::default();
        resolve(&mut map, &catalog, &["public.a"]).await;
        // `a` was renamed and a new `a` created; the change names `a` (the new one).
        catalog.set(&[("public.a", 2), ("public.b", 1)]);
        catalog.version.fetch_add(1, Ordering::SeqCst);
        let resolved = resolve(&mut map, &catalog, &["public.a"]).await;
        assert_eq!(
            resolved,
            Resolved {
                oids: vec![2],
                whole_database: true
            }
        );
        assert_eq!(catalog.loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unknown_names_and_unreadable_maps_invalidate_the_whole_database() {
        let catalog = Catalog::default();
        catalog.set(&[("public.a", 1)]);
        let mut map = NameMap::default();
        let unknown = resolve(&mut map, &catalog, &["public.a", "public.gone"]).await;
        assert_eq!(
            unknown,
            Resolved {
                oids: vec![1],
                whole_database: true
            }
        );
        // Still unknown: no new read for the same name at the same version.
        assert!(
            resolve(&mut map, &catalog, &["public.gone"])
                .await
                .whole_database
        );
        assert_eq!(catalog.loads.load(Ordering::SeqCst), 1);
        catalog.fail.store(true, Ordering::SeqCst);
        catalog.version.fetch_add(1, Ordering::SeqCst);
        assert!(
            resolve(&mut map, &catalog, &["public.a"])
                .await
                .whole_database
        );
        // After a failed read the next transaction reads again.
        catalog.fail.store(false, Ordering::SeqCst);
        let back = resolve(&mut map, &catalog, &["public.a"]).await;
        assert_eq!(back.oids, vec![1]);
        assert_eq!(catalog.loads.load(Ordering::SeqCst), 3);
    }
}

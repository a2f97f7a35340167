//! The catalog watcher: DDL and privilege changes made outside pgcached.
//!
//! A `REVOKE` in psql, an `ALTER TABLE … RENAME` by a migration tool, a new row-level policy:
//! none of these are in the logical-replication stream, yet each can make a cached result wrong
//! or visible to the wrong role. Twice a second, per database, the watcher reads a digest of
//! the catalog ([`super::queries::FINGERPRINT`]); when it changes, every classification is
//! forgotten and every cached result of the database dropped. If the digest cannot be read,
//! the database's results are dropped too, on every attempt: nothing older than a poll interval
//! survives a blind spot.
//!
//! The replication stream maps relation names to OIDs with a map read from the catalog. Each
//! time the watcher finds the catalog changed, or could not read it, or reads it for the first
//! time (nothing to compare with: a change may just have happened), it first moves the
//! catalog's version, so the stream reads its names again before it attributes another
//! change, and then drops the database's cached results (ARCHITECTURE.md has why that order
//! matters).
//!
//! The digest is also what results are stamped with for the shared tier: a result read from it
//! is served only while this pgcached reads the same digest as the pgcached that filled it.
//! Dropping entries for a catalog change is therefore no change of data
//! ([`pgcached_cache::Generations::drop_database`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pgcached_cache::ResultCache;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::Catalog;
use crate::cache_metrics::CacheMetrics;
use crate::classify::Classifier;
use crate::stats::InvalidationSource;

/// How often each database's catalog digest is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// One watcher per database.
pub struct CatalogWatchers {
    catalog: Arc<Catalog>,
    classifier: Arc<Classifier>,
    cache: Arc<ResultCache>,
    metrics: CacheMetrics,
    watchers: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl CatalogWatchers {
    /// Watchers that invalidate `cache` and `classifier`.
    pub fn new(
        catalog: Arc<Catalog>,
        classifier: Arc<Classifier>,
        cache: Arc<ResultCache>,
        metrics: CacheMetrics,
    ) -> CatalogWatchers {
        CatalogWatchers {
            catalog,
            classifier,
            cache,
            metrics,
            watchers: Mutex::new(HashMap::new()),
        }
    }

    /// Another PostgreSQL server is current: what was read from the old one's catalog (facts,
    /// classifications, replica identities, role settings) is forgotten now rather than at the
    /// next poll, since OIDs of another system mean other relations.
    pub fn server_changed(&self) {
        self.catalog.forget_facts();
        self.classifier.clear();
        for name in self.watchers.lock().keys() {
            self.catalog.moved(name);
            self.catalog.forget_role_settings(name);
            self.classifier.registry().forget_identities(name);
        }
    }

    /// Stops watching `database` (see [`crate::release`]); a later session of it starts a new
    /// watcher. Its results are already unserved: its stream was let go of first.
    pub(crate) async fn release(&self, database: &str) {
        let Some(task) = self.watchers.lock().remove(database) else {
            return;
        };
        task.abort();
        let _ = task.await;
    }

    /// Makes sure `database` is watched; called once a session of it has authenticated.
    pub fn ensure(&self, database: &str) {
        let mut watchers = self.watchers.lock();
        if watchers.contains_key(database) {
            return;
        }
        let catalog = Arc::clone(&self.catalog);
        let classifier = Arc::clone(&self.classifier);
        let cache = Arc::clone(&self.cache);
        let metrics = self.metrics.clone();
        let name = database.to_owned();
        let task = tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut failing = false;
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match catalog.fingerprint(&name).await {
                    Ok(digest) => {
                        if failing {
                            // Statements judged while the catalog was unreachable were marked
                            // uncacheable: judge them again.
                            classifier.clear();
                            failing = false;
                        }
                        if last.as_ref() != Some(&digest) {
                            catalog.moved(&name);
                            if last.is_some() {
                                info!(database = %name, "catalog changed; cached results and classifications dropped");
                                classifier.catalog_changed(&name);
                                metrics.invalidation(InvalidationSource::Catalog, 1);
                            }
                            // The digest first: a lookup that records the old counters
                            // and then reads the new digest would stamp a result of the old
                            // catalog with it.
                            cache
                                .generations()
                                .positions()
                                .set_catalog(&name, digest_hash(&digest));
                            cache.generations().drop_database(&name);
                        }
                        last = Some(digest);
                    }
                    Err(e) => {
                        debug!(database = %name, error = %e, "catalog digest unavailable");
                        catalog.moved(&name);
                        classifier.registry().forget_identities(&name);
                        cache.generations().positions().set_catalog(&name, None);
                        cache.generations().drop_database(&name);
                        last = None;
                        failing = true;
                    }
                }
            }
        });
        watchers.insert(database.to_owned(), task);
    }
}

/// The digest (an md5 in hexadecimal, the same for every pgcached reading the same catalog) as
/// the number results are stamped with; `None` for an empty or unreadable one.
fn digest_hash(digest: &str) -> Option<u64> {
    let hash = u64::from_str_radix(digest.get(..16)?, 16).ok()?;
    // 0 means "no digest" in a stamp.
    Some(hash.max(1))
}

impl Drop for CatalogWatchers {
    fn drop(&mut self) {
        for (_, task) in self.watchers.lock().drain() {
            task.abort();
        }
    }
}

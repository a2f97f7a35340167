//! The result store: entries weighed in bytes, looked up by key, valid while the generations
//! they were computed under are current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use crate::flight::{FillWait, Flights};
use crate::generations::{ColumnSetId, Feed, GenerationHandle, Generations, KeyHash, TableId};
use crate::key::CacheKey;
use crate::positions::{LastChange, Stamp};

/// Bytes counted per entry on top of its key and data (bookkeeping, allocator overhead).
const ENTRY_OVERHEAD: u64 = 160;

/// Cache limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Total bytes of entries (keys, data, overhead), at most.
    pub max_bytes: u64,
    /// Largest single result stored.
    pub max_entry_bytes: usize,
    /// Age after which an entry is no longer served.
    pub ttl: Option<Duration>,
}

/// A stored result.
#[derive(Debug)]
pub struct Entry {
    /// The wire bytes replayed on a hit.
    pub response: Bytes,
    /// A second buffer kept apart (e.g. a RowDescription for Describe); may be empty.
    pub meta: Bytes,
    /// The counters this result was computed under, with their values then.
    dependencies: Recorded,
    /// When it was stored.
    pub filled_at: Instant,
    /// How long PostgreSQL took to produce it (lookup to fill): what each hit saves.
    pub cost: Duration,
    /// What the entry is, for people (the statement with its literals removed); may be empty.
    pub label: Arc<str>,
    /// The tables it was read from (shared with every entry of the same statement).
    pub tables: Arc<[TableId]>,
    /// When it stops being served, if a TTL is set.
    pub expires_at: Option<Instant>,
    /// Times served.
    pub hits: AtomicU64,
    /// Where its database stood at the lookup (for a result from the shared tier: where the
    /// filling pgcached's stood).
    pub stamp: Stamp,
}

impl Entry {
    /// Past its TTL, or, while the database has no change feed, older than `bound` counted
    /// from the lookup that filled it (the database is bumped when the feed is lost, so this
    /// only matters if that bump were missed: the bound holds by itself).
    fn is_expired(&self, now: Instant, bound: Option<Duration>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
            || bound.is_some_and(|bound| {
                now.saturating_duration_since(self.filled_at) + self.cost >= bound
            })
    }

    fn is_current(&self, now: Instant, bound: Option<Duration>, generations: &Generations) -> bool {
        !self.is_expired(now, bound) && self.dependencies.is_current(generations)
    }
}

/// Rows of one table a read pins by equality on a set of columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDependency {
    /// The table.
    pub table: TableId,
    /// The columns compared.
    pub columns: ColumnSetId,
    /// The keys (values of those columns) the read pins.
    pub keys: Vec<KeyHash>,
}

/// What a result depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dependencies<'a> {
    /// Tables read as a whole (scans, ranges, aggregates, anything not pinned to keys).
    pub tables: &'a [TableId],
    /// Tables read only at some keys.
    pub rows: &'a [RowDependency],
}

/// Counter values recorded when a query was sent.
#[derive(Debug, Default)]
struct Recorded {
    counters: Vec<(GenerationHandle, u64)>,
    keys: Vec<(KeyHash, u64)>,
}

impl Recorded {
    fn of(generations: &Generations, database: &str, deps: &Dependencies<'_>) -> Recorded {
        let mut counters = Vec::with_capacity(1 + deps.tables.len() + 2 * deps.rows.len());
        let mut record = |handle: GenerationHandle| {
            let value = handle.current();
            counters.push((handle, value));
        };
        record(generations.database(database));
        for table in deps.tables {
            record(generations.table(table));
        }
        let mut keys = Vec::new();
        for rows in deps.rows {
            record(generations.whole_table(&rows.table));
            record(generations.column_set(&rows.table, rows.columns));
            for key in &rows.keys {
                keys.push((*key, generations.key(*key)));
            }
        }
        Recorded { counters, keys }
    }

    fn is_current(&self, generations: &Generations) -> bool {
        self.counters.iter().all(|(h, v)| h.current() == *v)
            && self.keys.iter().all(|(k, v)| generations.key(*k) == *v)
    }

    fn last_change(&self, generations: &Generations) -> LastChange {
        generations.last_change(
            self.counters.iter().map(|(h, _)| h),
            self.keys.iter().map(|(k, _)| *k),
        )
    }
}

/// Told of every result stored (a shared tier publishes them).
pub trait FillObserver: Send + Sync {
    /// `entry` was stored under `key`, a read of `database`.
    fn filled(&self, database: &str, key: &CacheKey, entry: &Arc<Entry>);
}

/// Why the database's change feed keeps a lookup from happening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedRefusal {
    /// The change stream is starting or lost.
    ReplicationDown,
    /// No change stream can work and no bounded staleness is allowed.
    NoChangeFeed,
}

/// What a lookup found.
pub enum Lookup {
    /// A current entry.
    Hit(Arc<Entry>),
    /// Not cached (or stale, now removed): this session fills the key. Record the read's
    /// dependencies ([`Reservation::record`]) before sending the query.
    Miss(Reservation),
    /// Another session is filling this key right now.
    Wait(FillWait),
    /// Not looked up: the feed does not allow it now.
    Bypass(FeedRefusal),
}

/// What a fill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillOutcome {
    /// Stored.
    Stored,
    /// Not stored: a dependency changed while the query ran.
    Stale,
    /// Not stored: larger than the per-entry cap.
    TooLarge,
    /// Not stored: the query took longer than the database's bound on staleness (it has no
    /// change feed), so the result was already too old to serve.
    Expired,
}

#[derive(Clone)]
struct EntryWeight;

impl Weighter<CacheKey, Arc<Entry>> for EntryWeight {
    fn weight(&self, key: &CacheKey, entry: &Arc<Entry>) -> u64 {
        key.len() as u64 + entry.response.len() as u64 + entry.meta.len() as u64 + ENTRY_OVERHEAD
    }
}

#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<CacheKey, Arc<Entry>> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: CacheKey, _entry: Arc<Entry>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

struct Inner {
    entries: Cache<CacheKey, Arc<Entry>, EntryWeight, DefaultHashBuilder, CountEvictions>,
    generations: Arc<Generations>,
    flights: Flights,
    evictions: Arc<AtomicU64>,
    hits: AtomicU64,
    expired: AtomicU64,
    config: CacheConfig,
    observer: OnceLock<Arc<dyn FillObserver>>,
}

/// The shared result store.
#[derive(Clone)]
pub struct ResultCache {
    inner: Arc<Inner>,
}

impl ResultCache {
    /// An empty store.
    pub fn new(config: CacheConfig, generations: Arc<Generations>) -> ResultCache {
        let evictions = CountEvictions::default();
        let estimated_items = (config.max_bytes / 2048).clamp(16, 1 << 20) as usize;
        let entries = Cache::with(
            estimated_items,
            config.max_bytes.max(1),
            EntryWeight,
            DefaultHashBuilder::default(),
            evictions.clone(),
        );
        ResultCache {
            inner: Arc::new(Inner {
                entries,
                generations,
                flights: Flights::default(),
                evictions: evictions.0,
                hits: AtomicU64::new(0),
                expired: AtomicU64::new(0),
                config,
                observer: OnceLock::new(),
            }),
        }
    }

    /// Tells `observer` of every result stored from now on (once; a second call is ignored).
    pub fn observe_fills(&self, observer: Arc<dyn FillObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// The generation counters.
    pub fn generations(&self) -> &Arc<Generations> {
        &self.inner.generations
    }

    /// Looks up `key`, a read in `database`.
    pub fn lookup(&self, key: &CacheKey, database: &str) -> Lookup {
        let inner = &self.inner;
        let bound = match inner.generations.feed(database) {
            Feed::Live => None,
            Feed::Down => return Lookup::Bypass(FeedRefusal::ReplicationDown),
            Feed::Bounded(bound) if bound.is_zero() => {
                return Lookup::Bypass(FeedRefusal::NoChangeFeed)
            }
            Feed::Bounded(bound) => Some(bound),
        };
        if let Some(entry) = inner.entries.get(key) {
            let now = Instant::now();
            if entry.is_current(now, bound, &inner.generations) {
                entry.hits.fetch_add(1, Ordering::Relaxed);
                inner.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(entry);
            }
            if entry.is_expired(now, bound) {
                inner.expired.fetch_add(1, Ordering::Relaxed);
            }
            inner.entries.remove(key);
        }
        if let Err(wait) = inner.flights.start(key) {
            return Lookup::Wait(wait);
        }
        let started = Instant::now();
        Lookup::Miss(Reservation {
            cache: self.clone(),
            key: Some(key.clone()),
            database: Arc::from(database),
            started,
            deadline: bound.map(|bound| started + bound),
        })
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (as weighed).
    pub fn weight_bytes(&self) -> u64 {
        self.inner.entries.weight()
    }

    /// Entries evicted to stay under the size limit.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Hits served since the start.
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    /// Entries found past their TTL (and dropped) since the start.
    pub fn expired(&self) -> u64 {
        self.inner.expired.load(Ordering::Relaxed)
    }

    /// A copy of every entry (for inspection; costs a pass over the whole store).
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.inner.entries.iter().map(|(_, entry)| entry).collect()
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.inner.entries.clear();
    }

    /// The limits.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }
}

/// The right to fill one key, before its dependencies are recorded. Dropping it ends the
/// flight (waiters look up again).
pub struct Reservation {
    cache: ResultCache,
    key: Option<CacheKey>,
    database: Arc<str>,
    started: Instant,
    /// While the database has no change feed: when a result of this lookup stops being
    /// servable.
    deadline: Option<Instant>,
}

impl Reservation {
    /// Records the current generations of everything the read depends on. Call it before the
    /// query is sent: a fill is refused if any of them moves before it lands.
    pub fn record(mut self, deps: &Dependencies<'_>) -> FillGuard {
        let inner = &self.cache.inner;
        let dependencies = Recorded::of(&inner.generations, &self.database, deps);
        // After the counters: a change reported before this position was bumped before it.
        let stamp = inner.generations.positions().stamp(&self.database);
        FillGuard {
            cache: self.cache.clone(),
            key: self.key.take(),
            database: Arc::clone(&self.database),
            dependencies,
            stamp,
            shared: false,
            started: self.started,
            deadline: self.deadline,
            ttl: inner.config.ttl,
            label: Arc::from(""),
            tables: Arc::from(Vec::new()),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.inner.flights.end(&key);
        }
    }
}

/// The right to fill one key, holding the generations seen before the query was sent.
pub struct FillGuard {
    cache: ResultCache,
    key: Option<CacheKey>,
    database: Arc<str>,
    dependencies: Recorded,
    /// Where the database stood at the lookup (for a result from the shared tier: where the
    /// filling pgcached's stood).
    stamp: Stamp,
    /// The result comes from the shared tier: not published again.
    shared: bool,
    /// When the lookup missed: the fill's cost is measured from here.
    started: Instant,
    /// While the database has no change feed: the entry is never served after this instant
    /// (the lookup plus the bound), whatever its TTL.
    deadline: Option<Instant>,
    /// How long the entry will be served.
    ttl: Option<Duration>,
    label: Arc<str>,
    tables: Arc<[TableId]>,
}

impl FillGuard {
    /// Serves the entry for at most `ttl` instead of the store's default.
    pub fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = Some(ttl);
    }

    /// Describes the entry for people: what it is and which tables it reads (shown by
    /// inspection, never used for lookups).
    pub fn set_label(&mut self, label: Arc<str>, tables: Arc<[TableId]>) {
        self.label = label;
        self.tables = tables;
    }

    /// The key being filled.
    pub fn key(&self) -> Option<&CacheKey> {
        self.key.as_ref()
    }

    /// The database of the read.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The tables the read is labelled with ([`FillGuard::set_label`]).
    pub fn tables(&self) -> &[TableId] {
        &self.tables
    }

    /// The read's TTL, if it has one.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// Where the database stood when the dependencies were recorded.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The last change known of anything the read depends on: the stream's positions and
    /// this pgcached's resolved tickets, as of now.
    pub fn last_change(&self) -> LastChange {
        self.dependencies.last_change(&self.cache.inner.generations)
    }

    /// A waiter on this fill (the flight it holds), for a session that hands the guard to
    /// another task.
    pub fn wait(&self) -> Option<FillWait> {
        self.cache.inner.flights.subscribe(self.key.as_ref()?)
    }

    /// The result will come from the shared tier, filled under `stamp`: the entry keeps that
    /// stamp and is not published again.
    pub fn from_shared(&mut self, stamp: Stamp) {
        self.stamp = stamp;
        self.shared = true;
    }

    /// True if no dependency has changed since the lookup.
    pub fn is_still_valid(&self) -> bool {
        self.dependencies.is_current(&self.cache.inner.generations)
    }

    /// Stores the result if it is within the cap and no dependency changed.
    pub fn fill(mut self, response: Bytes, meta: Bytes) -> FillOutcome {
        let inner = Arc::clone(&self.cache.inner);
        let Some(key) = self.key.take() else {
            return FillOutcome::Stale;
        };
        let now = Instant::now();
        let outcome = if response.len() + meta.len() > inner.config.max_entry_bytes {
            FillOutcome::TooLarge
        } else if !self.is_still_valid() {
            FillOutcome::Stale
        } else if self.deadline.is_some_and(|deadline| now >= deadline) {
            FillOutcome::Expired
        } else {
            let expires_at = match (self.ttl.map(|ttl| now + ttl), self.deadline) {
                (Some(at), Some(deadline)) => Some(at.min(deadline)),
                (at, deadline) => at.or(deadline),
            };
            let entry = Entry {
                response,
                meta,
                dependencies: std::mem::take(&mut self.dependencies),
                filled_at: now,
                cost: now.saturating_duration_since(self.started),
                label: Arc::clone(&self.label),
                tables: Arc::clone(&self.tables),
                expires_at,
                hits: AtomicU64::new(0),
                stamp: self.stamp,
            };
            let entry = Arc::new(entry);
            inner.entries.insert(key.clone(), Arc::clone(&entry));
            if !self.shared {
                if let Some(observer) = inner.observer.get() {
                    observer.filled(&self.database, &key, &entry);
                }
            }
            FillOutcome::Stored
        };
        inner.flights.end(&key);
        outcome
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.inner.flights.end(&key);
        }
    }
}

#[cfg(test)]
mod tests;

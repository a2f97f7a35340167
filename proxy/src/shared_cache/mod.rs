//! The shared tier: a second level of the result cache in Redis/Valkey, shared by every
//! pgcached in front of the same PostgreSQL.
//!
//! On a miss in this pgcached's memory, the session's lookup is handed here ([`SharedCache::fetch`])
//! with the read's dependencies already recorded; the session waits for it like for another
//! session's fill (bounded by `--shared-cache-timeout`). A value found is decoded (its full key
//! compared, [`codec`]), judged ([`validate`]) and, if it may be served, filled into memory
//! through the same guard as a result from PostgreSQL, so a change while it was fetched still
//! refuses it. Every result this pgcached fills from PostgreSQL is published
//! ([`pgcached_cache::FillObserver`]), stamped with where its database stood at the lookup.
//!
//! Nothing on the hot path waits for Redis beyond one bounded `GET`; when Redis is slow or down
//! ([`health`]) nothing waits at all and pgcached serves from memory and PostgreSQL as without
//! the tier. No counter is shared: validity follows from WAL positions, which every pgcached
//! learns from its own stream ([`journal`] for what a late stream cannot know).
//!
//! Layout:
//! - [`url`]: the `--shared-cache` URL.
//! - [`client`]: the connection (one server or a cluster) and its bounded calls.
//! - [`codec`]: key names and entry bytes.
//! - [`validate`]: whether a result may be served here.
//! - [`journal`]: the shared record of change positions, and the floor a starting stream reads.
//! - [`resolver`]: positions for changes made through this pgcached.
//! - [`health`]: up or down, one warning per outage.

pub mod client;
pub mod codec;
pub mod health;
pub mod journal;
pub mod resolver;
pub mod url;
pub mod validate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{counter, histogram};
use pgcached_cache::{
    CacheKey, Entry, FillGuard, FillObserver, FillOutcome, FillWait, Generations, ResultCache,
};
use tokio::sync::mpsc;

use crate::metrics::registry::{
    SHARED_CACHE_DURATION_SECONDS, SHARED_CACHE_HITS_TOTAL, SHARED_CACHE_MISSES_TOTAL,
    SHARED_CACHE_REFUSED_TOTAL, SHARED_CACHE_WRITES_TOTAL,
};
use crate::upstream::control::ControlConnections;
use client::{Client, Failure};
use codec::{decode, encode, entry_name, DecodeError};
use health::{Health, HealthReport, PROBE_INTERVAL};
pub use journal::Journal;
pub use url::{SharedUrl, SharedUrlError};
use validate::{judge, Knowledge, Refusal};

/// Default lifetime of an entry in the shared tier.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Default largest entry published.
pub const DEFAULT_MAX_ENTRY: u64 = 512 * 1024;
/// Default bound of a lookup in the shared tier.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);

/// Entries waiting to be published; more are dropped.
const PUBLISH_QUEUE: usize = 4096;
/// Entries written in one round trip.
const PUBLISH_BATCH: usize = 64;
/// Bound of one publishing round trip (off the hot path).
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(250);

/// The tier's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCacheSettings {
    /// Where it is.
    pub url: SharedUrl,
    /// How long an entry lives there.
    pub ttl: Duration,
    /// Largest entry published.
    pub max_entry: u64,
    /// Bound of a lookup.
    pub timeout: Duration,
}

/// What a write to the tier came to, for `pgcached_shared_cache_writes_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written.
    Stored,
    /// Larger than `--shared-cache-max-entry`.
    TooLarge,
    /// Not written: the tier is down, the queue full, or the result cannot be judged elsewhere
    /// (no stream or catalog digest here).
    Dropped,
    /// The write failed.
    Failed,
}

impl WriteOutcome {
    /// Every outcome, for the metric's documentation.
    pub const ALL: [WriteOutcome; 4] = [
        WriteOutcome::Stored,
        WriteOutcome::TooLarge,
        WriteOutcome::Dropped,
        WriteOutcome::Failed,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            WriteOutcome::Stored => "stored",
            WriteOutcome::TooLarge => "too_large",
            WriteOutcome::Dropped => "dropped",
            WriteOutcome::Failed => "failed",
        }
    }
}

/// Totals since the start, for `SHOW SHARED CACHE`.
#[derive(Debug, Default)]
struct Totals {
    hits: AtomicU64,
    misses: AtomicU64,
    refused: AtomicU64,
    /// Per [`Refusal::ALL`] entry.
    reasons: [AtomicU64; Refusal::ALL.len()],
    errors: AtomicU64,
    written: AtomicU64,
}

/// One entry on its way to the tier.
struct Publish {
    name: String,
    value: Bytes,
    ttl_ms: u64,
}

/// What `SHOW SHARED CACHE` shows.
#[derive(Debug, Clone)]
pub struct SharedReport {
    /// The URL without credentials.
    pub url: String,
    /// Up or down.
    pub health: HealthReport,
    /// Results served from the tier.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Results found but not served here.
    pub refused: u64,
    /// The same, by reason (those that happened).
    pub reasons: Vec<(&'static str, u64)>,
    /// Failed calls.
    pub errors: u64,
    /// Entries written.
    pub written: u64,
    /// Per database: stream live, its start, the position recorded, the floor.
    pub databases: Vec<(String, bool, u64, u64, &'static str)>,
}

/// What [`SharedCache::fetch`] did with a miss.
pub(crate) enum Fetch {
    /// The tier is looking: wait for this, then look up in memory again.
    Waiting(FillWait),
    /// The tier cannot help now: the guard, to relay and fill as without it.
    Declined(FillGuard),
}

/// The shared tier of one pgcached.
pub struct SharedCache {
    settings: SharedCacheSettings,
    client: Arc<Client>,
    health: Arc<Health>,
    journal: Arc<Journal>,
    generations: Arc<Generations>,
    queue: mpsc::Sender<Publish>,
    totals: Totals,
}

/// What becomes of a miss the tier has no result for: the guard goes on to another source.
pub(crate) type Fallback = Box<dyn FnOnce(FillGuard) + Send>;

impl SharedCache {
    /// Starts the tier for `cache`: its connection, the record's writer, the resolver of
    /// tickets, the publisher; from now on every fill of `cache` is published. Must run inside
    /// a tokio runtime.
    pub fn start(
        settings: SharedCacheSettings,
        cache: &ResultCache,
        control: Arc<ControlConnections>,
    ) -> Result<Arc<SharedCache>, Failure> {
        let client = Arc::new(Client::new(settings.url.clone(), settings.timeout)?);
        let health = Arc::new(Health::default());
        let journal = Arc::new(Journal::new(Arc::clone(&client), Arc::clone(&health)));
        let (queue, published) = mpsc::channel(PUBLISH_QUEUE);
        let shared = Arc::new(SharedCache {
            settings,
            client,
            health,
            journal,
            generations: Arc::clone(cache.generations()),
            queue,
            totals: Totals::default(),
        });
        tokio::spawn(probe(
            Arc::clone(&shared.client),
            Arc::clone(&shared.health),
        ));
        let journal = Arc::clone(&shared.journal);
        tokio::spawn(async move { journal.run().await });
        tokio::spawn(resolver::run(Arc::clone(cache.generations()), control));
        tokio::spawn(publish(Arc::clone(&shared), published));
        cache.observe_fills(Arc::new(Publisher(Arc::clone(&shared))));
        Ok(shared)
    }

    /// The stream side (what the replication sink reports to).
    pub fn journal(&self) -> Arc<Journal> {
        Arc::clone(&self.journal)
    }

    /// Looks the read of `guard` up in the tier. [`Fetch::Waiting`]: the session waits for
    /// it, then looks up in memory again (a result served from the tier is there by then);
    /// when the tier has no result it may serve, `fallback` gets the guard (a read replica
    /// fills it meanwhile). [`Fetch::Declined`] gives the guard back when the tier cannot help
    /// now (down, no stream, no catalog digest): the session relays and fills as without the
    /// tier.
    pub(crate) fn fetch(self: &Arc<Self>, guard: FillGuard, fallback: Option<Fallback>) -> Fetch {
        if !self.health.is_up() {
            return Fetch::Declined(guard);
        }
        let standing = self.generations.positions().standing(guard.database());
        if standing.since().is_none() || standing.catalog() == 0 {
            return Fetch::Declined(guard);
        }
        let Some(namespace) = self.journal.namespace(guard.database()) else {
            return Fetch::Declined(guard);
        };
        let (Some(wait), Some(key)) = (guard.wait(), guard.key().cloned()) else {
            return Fetch::Declined(guard);
        };
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let unserved = shared.look_up(&namespace, key, guard).await;
            if let (Some(guard), Some(fallback)) = (unserved, fallback) {
                fallback(guard);
            }
        });
        Fetch::Waiting(wait)
    }

    /// The guard back when the tier served nothing for it.
    async fn look_up(&self, namespace: &str, key: CacheKey, guard: FillGuard) -> Option<FillGuard> {
        let started = Instant::now();
        let found = self.client.get(&entry_name(namespace, &key)).await;
        histogram!(SHARED_CACHE_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
        match found {
            Ok(None) => {
                self.totals.misses.fetch_add(1, Ordering::Relaxed);
                counter!(SHARED_CACHE_MISSES_TOTAL).increment(1);
                Some(guard)
            }
            Ok(Some(value)) => self.found(&key, value, guard),
            Err(failure) => {
                self.totals.errors.fetch_add(1, Ordering::Relaxed);
                self.health.failed(&failure);
                Some(guard)
            }
        }
    }

    /// A value found for `key`: served if it is `key`'s and valid here; else the guard back
    /// (unless a change arrived while it was fetched, which ends the fill).
    fn found(&self, key: &CacheKey, value: Bytes, mut guard: FillGuard) -> Option<FillGuard> {
        let entry = match decode(key, value) {
            Ok(entry) => entry,
            Err(DecodeError::KeyMismatch) => return self.refused(Refusal::KeyMismatch, guard),
            Err(DecodeError::Undecodable) => return self.refused(Refusal::Undecodable, guard),
        };
        let database = guard.database().to_owned();
        let standing = self.generations.positions().standing(&database);
        let knowledge = Knowledge::of(&guard, &standing, self.journal.floor(&database));
        let tables: Vec<u32> = guard.tables().iter().map(|t| t.oid).collect();
        if let Err(refusal) = judge(entry.stamp, &tables, &knowledge) {
            return self.refused(refusal, guard);
        }
        guard.from_shared(entry.stamp);
        match guard.fill(entry.response, entry.meta) {
            FillOutcome::Stored => {
                self.totals.hits.fetch_add(1, Ordering::Relaxed);
                counter!(SHARED_CACHE_HITS_TOTAL).increment(1);
            }
            // A change arrived while it was fetched.
            FillOutcome::Stale | FillOutcome::Expired => self.count_refusal(Refusal::Moved),
            FillOutcome::TooLarge => {}
        }
        None
    }

    /// A refusal of a found value: counted, and the guard back.
    fn refused(&self, refusal: Refusal, guard: FillGuard) -> Option<FillGuard> {
        self.count_refusal(refusal);
        Some(guard)
    }

    fn count_refusal(&self, refusal: Refusal) {
        self.totals.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(index) = Refusal::ALL.iter().position(|r| *r == refusal) {
            self.totals.reasons[index].fetch_add(1, Ordering::Relaxed);
        }
        counter!(SHARED_CACHE_REFUSED_TOTAL, "reason" => refusal.label()).increment(1);
    }

    fn wrote(&self, outcome: WriteOutcome, count: u64) {
        if outcome == WriteOutcome::Stored {
            self.totals.written.fetch_add(count, Ordering::Relaxed);
        }
        counter!(SHARED_CACHE_WRITES_TOTAL, "outcome" => outcome.label()).increment(count);
    }

    /// For `SHOW SHARED CACHE`.
    pub fn report(&self) -> SharedReport {
        SharedReport {
            url: self.client.url().redacted(),
            health: self.health.report(),
            hits: self.totals.hits.load(Ordering::Relaxed),
            misses: self.totals.misses.load(Ordering::Relaxed),
            refused: self.totals.refused.load(Ordering::Relaxed),
            reasons: Refusal::ALL
                .iter()
                .zip(&self.totals.reasons)
                .map(|(r, n)| (r.label(), n.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            errors: self.totals.errors.load(Ordering::Relaxed),
            written: self.totals.written.load(Ordering::Relaxed),
            databases: self.journal.report(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &SharedCacheSettings {
        &self.settings
    }
}

/// Publishes every result filled from PostgreSQL.
struct Publisher(Arc<SharedCache>);

impl FillObserver for Publisher {
    fn filled(&self, database: &str, key: &CacheKey, entry: &Arc<Entry>) {
        let shared = &self.0;
        let size = entry.response.len() + entry.meta.len();
        if size as u64 > shared.settings.max_entry {
            return shared.wrote(WriteOutcome::TooLarge, 1);
        }
        let now = Instant::now();
        let ttl = match entry.expires_at {
            Some(at) => at.saturating_duration_since(now).min(shared.settings.ttl),
            None => shared.settings.ttl,
        };
        let namespace = shared.journal.namespace(database);
        let (Some(namespace), true, false) = (
            namespace,
            shared.health.is_up() && entry.stamp.catalog != 0,
            ttl.as_millis() == 0,
        ) else {
            return shared.wrote(WriteOutcome::Dropped, 1);
        };
        let cost = u64::try_from(entry.cost.as_micros()).unwrap_or(u64::MAX);
        let publish = Publish {
            name: entry_name(&namespace, key),
            value: encode(key, entry.stamp, cost, &entry.response, &entry.meta),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        if shared.queue.try_send(publish).is_err() {
            shared.wrote(WriteOutcome::Dropped, 1);
        }
    }
}

/// Writes queued entries, a batch per round trip.
async fn publish(shared: Arc<SharedCache>, mut queue: mpsc::Receiver<Publish>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push((first.name, first.value, first.ttl_ms));
        while batch.len() < PUBLISH_BATCH {
            match queue.try_recv() {
                Ok(more) => batch.push((more.name, more.value, more.ttl_ms)),
                Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        if !shared.health.is_up() {
            shared.wrote(WriteOutcome::Dropped, count);
        } else {
            match shared.client.set_all(&batch, PUBLISH_TIMEOUT).await {
                Ok(()) => shared.wrote(WriteOutcome::Stored, count),
                Err(failure) => {
                    shared.totals.errors.fetch_add(1, Ordering::Relaxed);
                    shared.health.failed(&failure);
                    shared.wrote(WriteOutcome::Failed, count);
                }
            }
        }
        batch.clear();
    }
}

/// Connects, and probes the tier every [`PROBE_INTERVAL`].
async fn probe(client: Arc<Client>, health: Arc<Health>) {
    let limit = (client.timeout() * 10).max(Duration::from_millis(100));
    loop {
        // Also while up: an outage is noticed (and told) even when nothing is looked up.
        let result = match client.connect().await {
            Ok(()) => client.ping(limit).await,
            Err(failure) => Err(failure),
        };
        match result {
            Ok(()) => health.succeeded(),
            Err(failure) => health.failed(&failure),
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

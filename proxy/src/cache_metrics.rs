//! Cache metric names and handles.
//!
//! Names are fixed: dashboards and scripts depend on them. Handles for the hot path (hits,
//! misses, the hit-latency histogram) are created once; bypass reasons are a small fixed set of
//! `&'static str` labels, never SQL text or anything a client controls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, Counter, Histogram};
use pgcached_cache::{FillOutcome, ResultCache, TableId};

use crate::classify::Classifier;
use crate::session::caching::expect::QueryPath;
use crate::stats::{Counters, InvalidationSource, QueryKind, TableActivity};

/// Counter: reads answered from the cache.
pub const CACHE_HITS_TOTAL: &str = "pgcached_cache_hits_total";
/// Counter: cacheable reads not in the cache (relayed and captured).
pub const CACHE_MISSES_TOTAL: &str = "pgcached_cache_misses_total";
/// Counter: statements relayed without a cache lookup, by `reason`.
pub const CACHE_BYPASS_TOTAL: &str = "pgcached_cache_bypass_total";
/// Gauge: entries in the cache.
pub const CACHE_ENTRIES: &str = "pgcached_cache_entries";
/// Gauge: bytes held by the cache.
pub const CACHE_BYTES: &str = "pgcached_cache_bytes";
/// Counter: entries evicted to stay under `--cache-size`.
pub const CACHE_EVICTIONS_TOTAL: &str = "pgcached_cache_evictions_total";
/// Histogram: time from request to answer, by `path` = hit, miss, passthrough.
pub const QUERY_DURATION_SECONDS: &str = "pgcached_query_duration_seconds";
/// Counter: fills, by `outcome` = stored, stale, too_large.
pub const CACHE_FILLS_TOTAL: &str = "pgcached_cache_fills_total";
/// Counter: invalidations, by `source`.
pub const INVALIDATIONS_TOTAL: &str = "pgcached_invalidations_total";
/// Counter: bytes answered from the cache.
pub const CACHE_HIT_BYTES_TOTAL: &str = "pgcached_cache_hit_bytes_total";
/// Counter: client statements, by `kind` = read_cached, read_uncacheable, write, other.
pub const QUERIES_TOTAL: &str = "pgcached_queries_total";
/// Counter: estimated PostgreSQL time saved, in microseconds: each hit adds the time its entry
/// took to compute when it was filled (the miss latency seen by pgcached).
pub const DB_TIME_SAVED_MICROSECONDS_TOTAL: &str = "pgcached_db_time_saved_microseconds_total";
/// Counter: counters bumped by invalidations, by `source` (proxy, replication) and `scope`
/// (key, column_set, table_rows, table): how narrowly writes invalidate.
pub const INVALIDATION_SCOPES_TOTAL: &str = "pgcached_invalidation_scopes_total";
/// Gauge: statement texts whose classification is memoized.
pub const CLASSIFY_MEMO_ENTRIES: &str = "pgcached_classify_memo_entries";

/// Histogram buckets, 50 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Cache metric handles, and the in-process totals the admin console reads.
#[derive(Clone)]
pub struct CacheMetrics {
    hits: Counter,
    hit_bytes: Counter,
    saved: Counter,
    misses: Counter,
    hit_duration: Histogram,
    miss_duration: Histogram,
    passthrough_duration: Histogram,
    queries: [Counter; 4],
    invalidations: [Counter; 5],
    /// Totals since start.
    pub counters: Arc<Counters>,
    /// Invalidations per table.
    pub tables: Arc<TableActivity>,
}

impl CacheMetrics {
    /// Describes the metrics and creates the handles; totals go to `counters`.
    pub fn new(counters: Arc<Counters>) -> CacheMetrics {
        describe_counter!(CACHE_HITS_TOTAL, "Reads answered from the cache");
        describe_counter!(CACHE_MISSES_TOTAL, "Cacheable reads not in the cache");
        describe_counter!(
            CACHE_BYPASS_TOTAL,
            "Statements relayed without a cache lookup, by reason"
        );
        describe_gauge!(CACHE_ENTRIES, "Entries in the cache");
        describe_gauge!(CACHE_BYTES, "Bytes held by the cache");
        describe_counter!(
            CACHE_EVICTIONS_TOTAL,
            "Entries evicted to stay under --cache-size"
        );
        describe_histogram!(
            QUERY_DURATION_SECONDS,
            metrics::Unit::Seconds,
            "Time from request to answer, by path"
        );
        describe_counter!(CACHE_FILLS_TOTAL, "Cache fills, by outcome");
        describe_counter!(INVALIDATIONS_TOTAL, "Invalidations, by source");
        describe_counter!(CACHE_HIT_BYTES_TOTAL, "Bytes answered from the cache");
        describe_counter!(
            INVALIDATION_SCOPES_TOTAL,
            "Counters bumped by invalidations, by source and scope (key, column_set, table_rows, table)"
        );
        describe_counter!(QUERIES_TOTAL, "Client statements, by kind");
        describe_counter!(
            DB_TIME_SAVED_MICROSECONDS_TOTAL,
            metrics::Unit::Microseconds,
            "Estimated PostgreSQL time saved: the fill-time latency of each entry, per hit"
        );
        describe_gauge!(
            CLASSIFY_MEMO_ENTRIES,
            "Statement texts whose classification is memoized"
        );
        describe_counter!(
            crate::stats::tables::TABLE_INVALIDATIONS_TOTAL,
            "Invalidations of the busiest tables, by database and table"
        );
        CacheMetrics {
            hits: counter!(CACHE_HITS_TOTAL),
            hit_bytes: counter!(CACHE_HIT_BYTES_TOTAL),
            saved: counter!(DB_TIME_SAVED_MICROSECONDS_TOTAL),
            misses: counter!(CACHE_MISSES_TOTAL),
            hit_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "hit"),
            miss_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "miss"),
            passthrough_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "passthrough"),
            queries: QueryKind::ALL.map(|k| counter!(QUERIES_TOTAL, "kind" => k.label())),
            invalidations: InvalidationSource::ALL
                .map(|s| counter!(INVALIDATIONS_TOTAL, "source" => s.label())),
            counters,
            tables: Arc::new(TableActivity::default()),
        }
    }

    /// A hit of `bytes` bytes, answered `started` ago, of an entry that cost PostgreSQL `cost`.
    pub fn hit(&self, bytes: usize, started: Instant, cost: Duration) {
        let saved = u64::try_from(cost.as_micros()).unwrap_or(u64::MAX);
        self.hits.increment(1);
        self.hit_bytes.increment(bytes as u64);
        self.saved.increment(saved);
        self.hit_duration.record(started.elapsed().as_secs_f64());
        let counters = &self.counters;
        Counters::add(&counters.hits, 1);
        Counters::add(&counters.hit_bytes, bytes as u64);
        Counters::add(&counters.saved_micros, saved);
    }

    /// A miss.
    pub fn miss(&self) {
        self.misses.increment(1);
        Counters::add(&self.counters.misses, 1);
    }

    /// A client statement of `kind`.
    pub fn query(&self, kind: QueryKind) {
        self.queries[kind as usize].increment(1);
        self.counters.query(kind);
    }

    /// A statement relayed without lookup.
    pub fn bypass(&self, reason: &'static str) {
        counter!(CACHE_BYPASS_TOTAL, "reason" => reason).increment(1);
    }

    /// A relayed request answered after `started`.
    pub(crate) fn duration(&self, path: QueryPath, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        match path {
            QueryPath::Miss => self.miss_duration.record(seconds),
            QueryPath::Passthrough => self.passthrough_duration.record(seconds),
        }
    }

    /// A fill attempt.
    pub fn filled(&self, outcome: FillOutcome) {
        let label = match outcome {
            FillOutcome::Stored => "stored",
            FillOutcome::Stale => "stale",
            FillOutcome::TooLarge => "too_large",
            FillOutcome::Expired => "expired",
        };
        counter!(CACHE_FILLS_TOTAL, "outcome" => label).increment(1);
        if outcome == FillOutcome::Stored {
            Counters::add(&self.counters.fills, 1);
        }
    }

    /// `count` invalidations from `source`.
    pub fn invalidation(&self, source: InvalidationSource, count: u64) {
        self.invalidations[source as usize].increment(count);
        self.counters.invalidated(source, count);
    }

    /// The counters one write (proxied or replicated) bumped, by scope.
    pub fn invalidated(&self, source: InvalidationSource, bumps: &[crate::pins::writes::Bump]) {
        use crate::pins::writes::Bump;
        let mut counts = [0u64; 4];
        for bump in bumps {
            let index = match bump {
                Bump::Key(_) => 0,
                Bump::ColumnSet(..) => 1,
                Bump::Rows(_) => 2,
                Bump::Table(_) => 3,
            };
            counts[index] += 1;
        }
        for (scope, count) in ["key", "column_set", "table_rows", "table"]
            .iter()
            .zip(counts)
        {
            if count > 0 {
                counter!(INVALIDATION_SCOPES_TOTAL, "source" => source.label(), "scope" => *scope)
                    .increment(count);
            }
        }
        let counters = &self.counters;
        Counters::add(&counters.key_invalidations, counts[0]);
        Counters::add(
            &counters.table_invalidations,
            counts[1] + counts[2] + counts[3],
        );
    }

    /// One table's results were invalidated (from replication or the admin console).
    pub fn table_invalidated(&self, table: &TableId) {
        self.tables.invalidated(table);
    }
}

/// Publishes the cache's size gauges, eviction and expiry counts and the memo size every second.
pub fn spawn_gauges(cache: Arc<ResultCache>, classifier: Arc<Classifier>, metrics: CacheMetrics) {
    tokio::spawn(async move {
        let entries = metrics::gauge!(CACHE_ENTRIES);
        let bytes = metrics::gauge!(CACHE_BYTES);
        let memo = metrics::gauge!(CLASSIFY_MEMO_ENTRIES);
        let evictions = counter!(CACHE_EVICTIONS_TOTAL);
        let mut reported = 0u64;
        let mut reported_expired = 0u64;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            entries.set(cache.len() as f64);
            bytes.set(cache.weight_bytes() as f64);
            memo.set(classifier.len() as f64);
            let now = cache.evictions();
            evictions.increment(now.saturating_sub(reported));
            reported = now;
            let expired = cache.expired();
            metrics.invalidation(
                InvalidationSource::Ttl,
                expired.saturating_sub(reported_expired),
            );
            reported_expired = expired;
            if Arc::strong_count(&cache) == 1 {
                return;
            }
        }
    });
}

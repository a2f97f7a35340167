//! Cache metric names and handles.
//!
//! Names are fixed: dashboards and scripts depend on them. Handles for the hot path (hits,
//! misses, the hit-latency histogram) are created once; bypass reasons are a small fixed set of
//! `&'static str` labels, never SQL text or anything a client controls.

use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, Counter, Histogram};
use pgcached_cache::{FillOutcome, ResultCache};

use crate::session::caching::expect::QueryPath;

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

/// Histogram buckets, 50 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Cache metric handles.
#[derive(Clone)]
pub struct CacheMetrics {
    hits: Counter,
    hit_bytes: Counter,
    misses: Counter,
    hit_duration: Histogram,
    miss_duration: Histogram,
    passthrough_duration: Histogram,
}

impl CacheMetrics {
    /// Describes the metrics and creates the handles.
    pub fn new() -> CacheMetrics {
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
        CacheMetrics {
            hits: counter!(CACHE_HITS_TOTAL),
            hit_bytes: counter!(CACHE_HIT_BYTES_TOTAL),
            misses: counter!(CACHE_MISSES_TOTAL),
            hit_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "hit"),
            miss_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "miss"),
            passthrough_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "passthrough"),
        }
    }

    /// A hit of `bytes` bytes, answered `started` ago.
    pub fn hit(&self, bytes: usize, started: Instant) {
        self.hits.increment(1);
        self.hit_bytes.increment(bytes as u64);
        self.hit_duration.record(started.elapsed().as_secs_f64());
    }

    /// A miss.
    pub fn miss(&self) {
        self.misses.increment(1);
    }

    /// A statement relayed without lookup.
    pub fn bypass(&self, reason: &'static str) {
        counter!(CACHE_BYPASS_TOTAL, "reason" => reason).increment(1);
    }

    /// A relayed request answered after `started`.
    pub fn duration(&self, path: QueryPath, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        match path {
            QueryPath::Hit => self.hit_duration.record(seconds),
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
        };
        counter!(CACHE_FILLS_TOTAL, "outcome" => label).increment(1);
    }

    /// An invalidation from `source`.
    pub fn invalidation(&self, source: &'static str) {
        counter!(INVALIDATIONS_TOTAL, "source" => source).increment(1);
    }
}

impl Default for CacheMetrics {
    fn default() -> Self {
        CacheMetrics::new()
    }
}

/// Publishes the cache's size gauges and eviction count every second.
pub fn spawn_gauges(cache: Arc<ResultCache>) {
    tokio::spawn(async move {
        let entries = metrics::gauge!(CACHE_ENTRIES);
        let bytes = metrics::gauge!(CACHE_BYTES);
        let evictions = counter!(CACHE_EVICTIONS_TOTAL);
        let expirations = counter!(INVALIDATIONS_TOTAL, "source" => "ttl");
        let mut reported = 0u64;
        let mut reported_expired = 0u64;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            entries.set(cache.len() as f64);
            bytes.set(cache.weight_bytes() as f64);
            let now = cache.evictions();
            evictions.increment(now.saturating_sub(reported));
            reported = now;
            let expired = cache.expired();
            expirations.increment(expired.saturating_sub(reported_expired));
            reported_expired = expired;
            if Arc::strong_count(&cache) == 1 {
                return;
            }
        }
    });
}

//! Cache metric handles (the metrics themselves are in [`crate::metrics::registry`]).
//!
//! Handles for the hot path (hits, misses, fills, the latency histograms) are created once; bypass
//! reasons are the fixed labels of [`BypassReason`], never SQL text or anything a client
//! controls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, Counter, Histogram};
use pgcached_cache::{FillOutcome, ResultCache, TableId};

use crate::bypass::BypassReason;
use crate::classify::Classifier;
use crate::metrics::registry::{
    BEGINS_DEFERRED_TOTAL, BLOCKS_LOCAL_TOTAL, CACHE_BYPASS_TOTAL, CACHE_BYTES, CACHE_ENTRIES,
    CACHE_EVICTIONS_TOTAL, CACHE_FILLS_TOTAL, CACHE_HITS_TOTAL, CACHE_HIT_BYTES_TOTAL,
    CACHE_MISSES_TOTAL, CLASSIFY_MEMO_ENTRIES, DB_TIME_SAVED_MICROSECONDS_TOTAL,
    INVALIDATIONS_TOTAL, INVALIDATION_SCOPES_TOTAL, QUERIES_TOTAL, QUERY_DURATION_SECONDS,
    STATEMENTS_PARSED_TOTAL,
};
use crate::session::caching::expect::QueryPath;
use crate::stats::{Counters, InvalidationSource, QueryKind, TableActivity};

/// Every fill outcome, in the order of [`CacheMetrics`]'s handles.
const FILL_OUTCOMES: [FillOutcome; 4] = [
    FillOutcome::Stored,
    FillOutcome::Stale,
    FillOutcome::TooLarge,
    FillOutcome::Expired,
];

/// Where `outcome` is in [`FILL_OUTCOMES`].
fn fill_index(outcome: FillOutcome) -> usize {
    match outcome {
        FillOutcome::Stored => 0,
        FillOutcome::Stale => 1,
        FillOutcome::TooLarge => 2,
        FillOutcome::Expired => 3,
    }
}

/// The metric label of a fill outcome.
fn fill_label(outcome: FillOutcome) -> &'static str {
    match outcome {
        FillOutcome::Stored => "stored",
        FillOutcome::Stale => "stale",
        FillOutcome::TooLarge => "too_large",
        FillOutcome::Expired => "expired",
    }
}

/// Cache metric handles, and the in-process totals the admin console reads.
#[derive(Clone)]
pub struct CacheMetrics {
    hits: Counter,
    hit_bytes: Counter,
    saved: Counter,
    misses: Counter,
    begins_deferred: Counter,
    blocks_local: Counter,
    hit_duration: Histogram,
    miss_duration: Histogram,
    passthrough_duration: Histogram,
    queries: [Counter; 4],
    invalidations: [Counter; 5],
    /// One per [`FillOutcome`], in the order of [`FILL_OUTCOMES`].
    fills: [Counter; 4],
    /// Totals since start.
    pub counters: Arc<Counters>,
    /// Invalidations per table.
    pub tables: Arc<TableActivity>,
}

impl CacheMetrics {
    /// Creates the handles; totals go to `counters`.
    pub fn new(counters: Arc<Counters>) -> CacheMetrics {
        CacheMetrics {
            hits: counter!(CACHE_HITS_TOTAL),
            hit_bytes: counter!(CACHE_HIT_BYTES_TOTAL),
            saved: counter!(DB_TIME_SAVED_MICROSECONDS_TOTAL),
            misses: counter!(CACHE_MISSES_TOTAL),
            begins_deferred: counter!(BEGINS_DEFERRED_TOTAL),
            blocks_local: counter!(BLOCKS_LOCAL_TOTAL),
            hit_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "hit"),
            miss_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "miss"),
            passthrough_duration: metrics::histogram!(QUERY_DURATION_SECONDS, "path" => "passthrough"),
            queries: QueryKind::ALL.map(|k| counter!(QUERIES_TOTAL, "kind" => k.label())),
            invalidations: InvalidationSource::ALL
                .map(|s| counter!(INVALIDATIONS_TOTAL, "source" => s.label())),
            fills: FILL_OUTCOMES
                .map(|outcome| counter!(CACHE_FILLS_TOTAL, "outcome" => fill_label(outcome))),
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

    /// A BEGIN answered here, kept until its block needs PostgreSQL.
    pub(crate) fn begin_deferred(&self) {
        self.begins_deferred.increment(1);
    }

    /// A block begun here ended without reaching PostgreSQL.
    pub(crate) fn block_ended_locally(&self) {
        self.blocks_local.increment(1);
    }

    /// A client statement of `kind`.
    pub fn query(&self, kind: QueryKind) {
        self.queries[kind as usize].increment(1);
        self.counters.query(kind);
    }

    /// A statement relayed without lookup.
    pub fn bypass(&self, reason: BypassReason) {
        counter!(CACHE_BYPASS_TOTAL, "reason" => reason.label()).increment(1);
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
        self.fills[fill_index(outcome)].increment(1);
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

    /// One table's results were invalidated (by a relayed write, the stream or the console).
    pub fn table_invalidated(&self, table: &TableId) {
        self.tables.invalidated(table);
    }
}

/// Publishes the cache's size gauges, eviction and expiry counts, the memo size and the parse
/// count every second.
pub fn spawn_gauges(cache: Arc<ResultCache>, classifier: Arc<Classifier>, metrics: CacheMetrics) {
    tokio::spawn(async move {
        let entries = metrics::gauge!(CACHE_ENTRIES);
        let bytes = metrics::gauge!(CACHE_BYTES);
        let memo = metrics::gauge!(CLASSIFY_MEMO_ENTRIES);
        let evictions = counter!(CACHE_EVICTIONS_TOTAL);
        let parsed = counter!(STATEMENTS_PARSED_TOTAL);
        let mut reported_parses = 0u64;
        let mut reported = 0u64;
        let mut reported_expired = 0u64;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            entries.set(cache.len() as f64);
            bytes.set(cache.weight_bytes() as f64);
            memo.set(classifier.len() as f64);
            let parses = classifier.parses();
            parsed.increment(parses.saturating_sub(reported_parses));
            reported_parses = parses;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fill_outcome_has_its_own_handle() {
        for (i, outcome) in FILL_OUTCOMES.into_iter().enumerate() {
            assert_eq!(fill_index(outcome), i);
        }
        let labels: std::collections::HashSet<_> = FILL_OUTCOMES.map(fill_label).into();
        assert_eq!(labels.len(), FILL_OUTCOMES.len());
    }
}

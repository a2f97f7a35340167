//! Process-wide totals, readable by the admin console.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kind of a client statement, the `kind` label of `pgcached_queries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A read pgcached may cache (answered from the cache or filled into it).
    ReadCached,
    /// A read pgcached never caches (volatile function, unlogged table, in a transaction, ...).
    ReadUncacheable,
    /// A data or schema change.
    Write,
    /// Everything else: SET, BEGIN, SHOW, CALL, unparsable text, and every statement while
    /// caching is off.
    Other,
}

impl QueryKind {
    /// Every kind, in label order.
    pub const ALL: [QueryKind; 4] = [
        QueryKind::ReadCached,
        QueryKind::ReadUncacheable,
        QueryKind::Write,
        QueryKind::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            QueryKind::ReadCached => "read_cached",
            QueryKind::ReadUncacheable => "read_uncacheable",
            QueryKind::Write => "write",
            QueryKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What invalidated cached results, the `source` label of `pgcached_invalidations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationSource {
    /// A write relayed by pgcached was acknowledged.
    Proxy,
    /// The logical-replication stream reported a change (or (re)started).
    Replication,
    /// The catalog watcher saw DDL or a privilege change.
    Catalog,
    /// An entry outlived `--cache-ttl` (or its statement's `ttl` hint).
    Ttl,
    /// `INVALIDATE TABLE` / `INVALIDATE ALL` in the admin console.
    Admin,
}

impl InvalidationSource {
    /// Every source, in label order.
    pub const ALL: [InvalidationSource; 5] = [
        InvalidationSource::Proxy,
        InvalidationSource::Replication,
        InvalidationSource::Catalog,
        InvalidationSource::Ttl,
        InvalidationSource::Admin,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            InvalidationSource::Proxy => "proxy",
            InvalidationSource::Replication => "replication",
            InvalidationSource::Catalog => "catalog",
            InvalidationSource::Ttl => "ttl",
            InvalidationSource::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Totals since pgcached started.
#[derive(Debug, Default)]
pub struct Counters {
    queries: [AtomicU64; 4],
    invalidations: [AtomicU64; 5],
    /// Reads answered from the cache.
    pub hits: AtomicU64,
    /// Cacheable reads relayed and captured.
    pub misses: AtomicU64,
    /// Bytes answered from the cache.
    pub hit_bytes: AtomicU64,
    /// Sum, over hits, of what the entry cost PostgreSQL when it was filled (µs).
    pub saved_micros: AtomicU64,
    /// ErrorResponses relayed from PostgreSQL.
    pub upstream_errors: AtomicU64,
    /// Client sessions that reached PostgreSQL.
    pub sessions: AtomicU64,
    /// Fills stored.
    pub fills: AtomicU64,
    /// Row keys invalidated (by proxied writes and the replication stream).
    pub key_invalidations: AtomicU64,
    /// Column sets, tables' rows or whole tables invalidated.
    pub table_invalidations: AtomicU64,
}

impl Counters {
    /// Counts one statement of `kind`.
    pub fn query(&self, kind: QueryKind) {
        self.queries[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Statements of `kind` so far.
    pub fn queries(&self, kind: QueryKind) -> u64 {
        self.queries[kind.index()].load(Ordering::Relaxed)
    }

    /// Counts `count` invalidations from `source`.
    pub fn invalidated(&self, source: InvalidationSource, count: u64) {
        self.invalidations[source.index()].fetch_add(count, Ordering::Relaxed);
    }

    /// Invalidations from `source` so far.
    pub fn invalidations(&self, source: InvalidationSource) -> u64 {
        self.invalidations[source.index()].load(Ordering::Relaxed)
    }

    /// Adds to one of the public totals.
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Reads one of the public totals.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_sources_count_apart() {
        let counters = Counters::default();
        counters.query(QueryKind::Write);
        counters.query(QueryKind::Write);
        counters.query(QueryKind::ReadCached);
        counters.invalidated(InvalidationSource::Admin, 3);
        assert_eq!(counters.queries(QueryKind::Write), 2);
        assert_eq!(counters.queries(QueryKind::ReadCached), 1);
        assert_eq!(counters.queries(QueryKind::Other), 0);
        assert_eq!(counters.invalidations(InvalidationSource::Admin), 3);
        assert_eq!(counters.invalidations(InvalidationSource::Proxy), 0);
        for (i, kind) in QueryKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        for (i, source) in InvalidationSource::ALL.iter().enumerate() {
            assert_eq!(source.index(), i);
        }
    }
}

//! Every metric pgcached exports: name, type, label names and help, in one list.
//!
//! [`ALL`] is the registry. The exporter describes every metric from it (help text, unit,
//! histogram buckets: [`describe_all`], [`super::install_exporter`]), code emits metrics through
//! the constants below (a [`Metric`] is accepted wherever the `metrics` macros take a name), and
//! the tests check `docs/METRICS.md`, the Grafana dashboard and the alert rules against it. A
//! metric that is not in [`ALL`] is exported without a description, which the dashboard test
//! catches. Names are fixed: dashboards and alerts depend on them. `docs/METRICS.md` explains
//! each metric and its label values.

use metrics::{describe_counter, describe_gauge, describe_histogram, KeyName, Unit};

/// How a metric behaves, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricType {
    /// Only goes up (`_total`).
    Counter,
    /// A value now.
    Gauge,
    /// A distribution over these bucket bounds.
    Histogram(&'static [f64]),
}

impl MetricType {
    /// The Prometheus type name: `counter`, `gauge` or `histogram`.
    pub fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram(_) => "histogram",
        }
    }
}

/// One metric pgcached exports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// The exported name (`pgcached_...`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricType,
    /// The label names every series of it carries (histograms add `le`).
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
    /// The unit, where there is one beyond a plain count.
    pub unit: Option<Unit>,
}

/// A metric is named by its registry entry in the `metrics` macros: `counter!(CACHE_HITS_TOTAL)`.
impl From<Metric> for KeyName {
    fn from(metric: Metric) -> KeyName {
        KeyName::from(metric.name)
    }
}

/// Histogram buckets of [`QUERY_DURATION_SECONDS`], 50 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

const fn metric(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
        unit: None,
    }
}

const fn with_unit(metric: Metric, unit: Unit) -> Metric {
    Metric {
        unit: Some(unit),
        ..metric
    }
}

use MetricType::{Counter, Gauge};

// Connections.
pub const CLIENT_CONNECTIONS: Metric = metric(
    "pgcached_client_connections",
    Gauge,
    &[],
    "Client connections open now (startup phase included)",
);
pub const CLIENT_CONNECTIONS_TOTAL: Metric = metric(
    "pgcached_client_connections_total",
    Counter,
    &["outcome"],
    "Client connections accepted, by outcome",
);
pub const UPSTREAM_CONNECTIONS: Metric = metric(
    "pgcached_upstream_connections",
    Gauge,
    &[],
    "Connections open to PostgreSQL for client sessions",
);
pub const UPSTREAM_CONNECTIONS_TOTAL: Metric = metric(
    "pgcached_upstream_connections_total",
    Counter,
    &["outcome"],
    "Connections to PostgreSQL attempted for client sessions, by outcome",
);
pub const SESSION_ERRORS_TOTAL: Metric = metric(
    "pgcached_session_errors_total",
    Counter,
    &["kind"],
    "Sessions ended by an error, by kind",
);
pub const CANCEL_REQUESTS_TOTAL: Metric = metric(
    "pgcached_cancel_requests_total",
    Counter,
    &[],
    "Cancel requests forwarded to PostgreSQL",
);

// Queries.
pub const QUERIES_TOTAL: Metric = metric(
    "pgcached_queries_total",
    Counter,
    &["kind"],
    "Client statements, by kind",
);
pub const QUERIES_RELAYED_TOTAL: Metric = metric(
    "pgcached_queries_relayed_total",
    Counter,
    &["protocol"],
    "Queries relayed to PostgreSQL, by protocol",
);
pub const QUERY_DURATION_SECONDS: Metric = with_unit(
    metric(
        "pgcached_query_duration_seconds",
        MetricType::Histogram(&DURATION_BUCKETS),
        &["path"],
        "Time from request to answer, by path",
    ),
    Unit::Seconds,
);
pub const UPSTREAM_ERRORS_TOTAL: Metric = metric(
    "pgcached_upstream_errors_total",
    Counter,
    &["class"],
    "Errors PostgreSQL sent to clients, by SQLSTATE class",
);

// Cache.
pub const CACHE_HITS_TOTAL: Metric = metric(
    "pgcached_cache_hits_total",
    Counter,
    &[],
    "Reads answered from the cache",
);
pub const CACHE_MISSES_TOTAL: Metric = metric(
    "pgcached_cache_misses_total",
    Counter,
    &[],
    "Cacheable reads not in the cache",
);
pub const BEGINS_DEFERRED_TOTAL: Metric = metric(
    "pgcached_begins_deferred_total",
    Counter,
    &[],
    "READ COMMITTED BEGINs answered by pgcached and sent with their block's first statement that needs PostgreSQL",
);
pub const BLOCKS_LOCAL_TOTAL: Metric = metric(
    "pgcached_blocks_local_total",
    Counter,
    &[],
    "Transaction blocks begun and ended by pgcached without reaching PostgreSQL",
);
pub const CACHE_BYPASS_TOTAL: Metric = metric(
    "pgcached_cache_bypass_total",
    Counter,
    &["reason"],
    "Statements relayed without a cache lookup, by reason",
);
pub const CACHE_FILLS_TOTAL: Metric = metric(
    "pgcached_cache_fills_total",
    Counter,
    &["outcome"],
    "Cache fills, by outcome",
);
pub const CACHE_ENTRIES: Metric =
    metric("pgcached_cache_entries", Gauge, &[], "Entries in the cache");
pub const CACHE_BYTES: Metric = metric(
    "pgcached_cache_bytes",
    Gauge,
    &[],
    "Bytes held by the cache",
);
pub const CACHE_EVICTIONS_TOTAL: Metric = metric(
    "pgcached_cache_evictions_total",
    Counter,
    &[],
    "Entries evicted to stay under --cache-size",
);
pub const CACHE_HIT_BYTES_TOTAL: Metric = metric(
    "pgcached_cache_hit_bytes_total",
    Counter,
    &[],
    "Bytes answered from the cache",
);
pub const DB_TIME_SAVED_MICROSECONDS_TOTAL: Metric = with_unit(
    metric(
        "pgcached_db_time_saved_microseconds_total",
        Counter,
        &[],
        "Estimated PostgreSQL time saved: the fill-time latency of each entry, per hit",
    ),
    Unit::Microseconds,
);
pub const CLASSIFY_MEMO_ENTRIES: Metric = metric(
    "pgcached_classify_memo_entries",
    Gauge,
    &[],
    "Statement texts whose classification is memoized",
);
pub const STATEMENTS_PARSED_TOTAL: Metric = metric(
    "pgcached_statements_parsed_total",
    Counter,
    &[],
    "Statement shapes parsed to be classified (texts differing only in literals share one)",
);

// Invalidation and replication.
pub const INVALIDATIONS_TOTAL: Metric = metric(
    "pgcached_invalidations_total",
    Counter,
    &["source"],
    "Invalidations, by source",
);
pub const TABLE_INVALIDATIONS_TOTAL: Metric = metric(
    "pgcached_table_invalidations_total",
    Counter,
    &["database", "table"],
    "Invalidations of the busiest tables, by database and table",
);
pub const INVALIDATION_SCOPES_TOTAL: Metric = metric(
    "pgcached_invalidation_scopes_total",
    Counter,
    &["source", "scope"],
    "Counters bumped by invalidations, by source and scope (key, column_set, table_rows, table)",
);
pub const REPLICATION_CONNECTED: Metric = metric(
    "pgcached_replication_connected",
    Gauge,
    &["database"],
    "1 while the database's replication stream runs",
);
pub const REPLICATION_LAG_SECONDS: Metric = with_unit(
    metric(
        "pgcached_replication_lag_seconds",
        Gauge,
        &["database"],
        "Commit time to invalidation of the last transaction seen",
    ),
    Unit::Seconds,
);
pub const REPLICATION_RECONNECTS_TOTAL: Metric = metric(
    "pgcached_replication_reconnects_total",
    Counter,
    &[],
    "Replication streams re-established after a loss",
);
pub const REPLICATION_REBUMPS_TOTAL: Metric = metric(
    "pgcached_replication_rebumps_total",
    Counter,
    &["after"],
    "Streamed commits bumped again: once a snapshot showed them visible, or after a fixed delay",
);
pub const REPLICATION_PROBLEM: Metric = metric(
    "pgcached_replication_problem",
    Gauge,
    &["database", "problem"],
    "1 while this problem keeps the database's replication stream from working",
);
pub const REPLICATION_FALLBACK: Metric = metric(
    "pgcached_replication_fallback",
    Gauge,
    &["database"],
    "1 while the database has no change feed and its cached results live at most --cache-ttl-unreplicated",
);

/// The registry: every metric pgcached exports.
// Shared tier.
pub const SHARED_CACHE_HITS_TOTAL: Metric = metric(
    "pgcached_shared_cache_hits_total",
    Counter,
    &[],
    "Results served from the shared tier (then kept in memory)",
);
pub const SHARED_CACHE_MISSES_TOTAL: Metric = metric(
    "pgcached_shared_cache_misses_total",
    Counter,
    &[],
    "Lookups in the shared tier that found nothing",
);
pub const SHARED_CACHE_REFUSED_TOTAL: Metric = metric(
    "pgcached_shared_cache_refused_total",
    Counter,
    &["reason"],
    "Results found in the shared tier but not served here, by reason",
);
pub const SHARED_CACHE_ERRORS_TOTAL: Metric = metric(
    "pgcached_shared_cache_errors_total",
    Counter,
    &["kind"],
    "Failed calls to the shared tier, by kind",
);
pub const SHARED_CACHE_WRITES_TOTAL: Metric = metric(
    "pgcached_shared_cache_writes_total",
    Counter,
    &["outcome"],
    "Results offered to the shared tier, by outcome",
);
pub const SHARED_CACHE_UP: Metric = metric(
    "pgcached_shared_cache_up",
    Gauge,
    &[],
    "1 while the shared tier answers, 0 while it is down",
);
pub const UPSTREAM_CURRENT: Metric = metric(
    "pgcached_upstream_current",
    Gauge,
    &["host"],
    "1 for the upstream host sessions, the catalog and the change streams use now, 0 for the others",
);
pub const UPSTREAM_CHANGES_TOTAL: Metric = metric(
    "pgcached_upstream_changes_total",
    Counter,
    &[],
    "Changes of upstream server (another host, system or timeline): each dropped the cache",
);
// Read replicas.
pub const REPLICA_ROUTES_TOTAL: Metric = metric(
    "pgcached_replica_routes_total",
    Counter,
    &["route"],
    "Cache misses by where they went: `replica`, or why the primary (lagging, unavailable, own_write_unbounded, no_stream, no_credential, private_state, login_refused)",
);
pub const REPLICA_READS_TOTAL: Metric = metric(
    "pgcached_replica_reads_total",
    Counter,
    &["replica", "outcome"],
    "Misses a replica was asked for, by outcome (filled; else the primary answered: unfit, stale, busy, failed)",
);
pub const REPLICA_USABLE: Metric = metric(
    "pgcached_replica_usable",
    Gauge,
    &["replica"],
    "1 while the replica is a standby of the current primary that answers checks",
);
pub const REPLICA_LAG_SECONDS: Metric = with_unit(
    metric(
        "pgcached_replica_lag_seconds",
        Gauge,
        &["replica"],
        "Time since the replica's last replayed transaction while it has received WAL not yet replayed (0 when caught up)",
    ),
    Unit::Seconds,
);
pub const REPLICA_BEHIND_BYTES: Metric = with_unit(
    metric(
        "pgcached_replica_behind_bytes",
        Gauge,
        &["replica"],
        "WAL bytes between the replica's replay position and the newest position pgcached knows of",
    ),
    Unit::Bytes,
);
pub const SHARED_CACHE_DURATION_SECONDS: Metric = with_unit(
    metric(
        "pgcached_shared_cache_duration_seconds",
        MetricType::Histogram(&DURATION_BUCKETS),
        &[],
        "Time of one lookup in the shared tier",
    ),
    Unit::Seconds,
);

pub const ALL: &[Metric] = &[
    CLIENT_CONNECTIONS,
    CLIENT_CONNECTIONS_TOTAL,
    UPSTREAM_CONNECTIONS,
    UPSTREAM_CONNECTIONS_TOTAL,
    SESSION_ERRORS_TOTAL,
    CANCEL_REQUESTS_TOTAL,
    QUERIES_TOTAL,
    QUERIES_RELAYED_TOTAL,
    QUERY_DURATION_SECONDS,
    UPSTREAM_ERRORS_TOTAL,
    CACHE_HITS_TOTAL,
    CACHE_MISSES_TOTAL,
    BEGINS_DEFERRED_TOTAL,
    BLOCKS_LOCAL_TOTAL,
    CACHE_BYPASS_TOTAL,
    CACHE_FILLS_TOTAL,
    CACHE_ENTRIES,
    CACHE_BYTES,
    CACHE_EVICTIONS_TOTAL,
    CACHE_HIT_BYTES_TOTAL,
    DB_TIME_SAVED_MICROSECONDS_TOTAL,
    CLASSIFY_MEMO_ENTRIES,
    STATEMENTS_PARSED_TOTAL,
    INVALIDATIONS_TOTAL,
    TABLE_INVALIDATIONS_TOTAL,
    INVALIDATION_SCOPES_TOTAL,
    REPLICATION_CONNECTED,
    REPLICATION_LAG_SECONDS,
    REPLICATION_RECONNECTS_TOTAL,
    REPLICATION_REBUMPS_TOTAL,
    REPLICATION_PROBLEM,
    REPLICATION_FALLBACK,
    SHARED_CACHE_HITS_TOTAL,
    SHARED_CACHE_MISSES_TOTAL,
    SHARED_CACHE_REFUSED_TOTAL,
    SHARED_CACHE_ERRORS_TOTAL,
    SHARED_CACHE_WRITES_TOTAL,
    SHARED_CACHE_UP,
    SHARED_CACHE_DURATION_SECONDS,
    UPSTREAM_CURRENT,
    UPSTREAM_CHANGES_TOTAL,
    REPLICA_ROUTES_TOTAL,
    REPLICA_READS_TOTAL,
    REPLICA_USABLE,
    REPLICA_LAG_SECONDS,
    REPLICA_BEHIND_BYTES,
];

/// The registry entry of `name`, if pgcached exports it.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|metric| metric.name == name)
}

/// Gives the current recorder every metric's help text and unit.
pub fn describe_all() {
    for metric in ALL {
        match (metric.kind, metric.unit) {
            (MetricType::Counter, Some(unit)) => describe_counter!(metric.name, unit, metric.help),
            (MetricType::Counter, None) => describe_counter!(metric.name, metric.help),
            (MetricType::Gauge, Some(unit)) => describe_gauge!(metric.name, unit, metric.help),
            (MetricType::Gauge, None) => describe_gauge!(metric.name, metric.help),
            (MetricType::Histogram(_), Some(unit)) => {
                describe_histogram!(metric.name, unit, metric.help)
            }
            (MetricType::Histogram(_), None) => describe_histogram!(metric.name, metric.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_typed_by_suffix() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name is listed twice");
        for metric in ALL {
            assert!(metric.name.starts_with("pgcached_"), "{}", metric.name);
            assert_eq!(
                metric.name.ends_with("_total"),
                metric.kind == MetricType::Counter,
                "{}: counters, and only counters, end in _total",
                metric.name
            );
            assert!(!metric.help.is_empty(), "{}", metric.name);
            assert!(
                metric.labels.iter().all(|l| *l != "le" && !l.is_empty()),
                "{}",
                metric.name
            );
        }
    }

    #[test]
    fn a_metric_names_its_series() {
        let key = metrics::Key::from_name(CACHE_HITS_TOTAL);
        assert_eq!(key.name(), "pgcached_cache_hits_total");
        assert_eq!(find("pgcached_cache_hits_total"), Some(&CACHE_HITS_TOTAL));
        assert_eq!(find("pgcached_nothing"), None);
    }
}

//! The metrics pgcached exports: the registry, the session handles, the exporter.
//!
//! Every metric is an entry of [`registry`] (name, type, labels, help), so dashboards, alerts
//! and docs have one list to check against. Handles are created once, when the server starts
//! (after the exporter is installed), and shared with the sessions: updating a metric is then an
//! atomic add, with no name lookup.
//!
//! Layout:
//! - [`registry`]: every metric's name, type, label names and help.
//! - this file: the handles of the listener and sessions ([`ProxyMetrics`]), and the exporter.
//!
//! The cache's handles are in [`crate::cache_metrics`].

pub mod registry;

use std::net::SocketAddr;
use std::sync::Arc;

use metrics::{counter, Counter, Gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::ErrorKind;
use crate::stats::{Counters, QueryKind};
use registry::{
    MetricType, CANCEL_REQUESTS_TOTAL, CLIENT_CONNECTIONS, CLIENT_CONNECTIONS_TOTAL,
    QUERIES_RELAYED_TOTAL, QUERIES_TOTAL, SESSION_ERRORS_TOTAL, UPSTREAM_CONNECTIONS,
    UPSTREAM_CONNECTIONS_TOTAL, UPSTREAM_ERRORS_TOTAL,
};

/// How a client connection ended up, the `outcome` label of
/// [`registry::CLIENT_CONNECTIONS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOutcome {
    /// Reached PostgreSQL and was relayed.
    Relayed,
    /// Refused by `--max-client-conn`.
    RefusedLimit,
    /// Bad or missing startup packet, or failed TLS handshake.
    BadStartup,
    /// PostgreSQL could not be reached.
    UpstreamUnavailable,
    /// A CancelRequest, forwarded.
    Cancel,
    /// Refused because pgcached is shutting down.
    ShuttingDown,
    /// A session of the admin console (database `pgcached`).
    Admin,
    /// PostgreSQL (or pgcached, for a malformed SCRAM exchange) refused the login.
    LoginRefused,
    /// The login phase broke off (a connection lost, a malformed message, too slow).
    LoginFailed,
}

impl ConnectionOutcome {
    const ALL: [ConnectionOutcome; 9] = [
        ConnectionOutcome::Relayed,
        ConnectionOutcome::RefusedLimit,
        ConnectionOutcome::BadStartup,
        ConnectionOutcome::UpstreamUnavailable,
        ConnectionOutcome::Cancel,
        ConnectionOutcome::ShuttingDown,
        ConnectionOutcome::Admin,
        ConnectionOutcome::LoginRefused,
        ConnectionOutcome::LoginFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            ConnectionOutcome::Relayed => "relayed",
            ConnectionOutcome::RefusedLimit => "refused_limit",
            ConnectionOutcome::BadStartup => "bad_startup",
            ConnectionOutcome::UpstreamUnavailable => "upstream_unavailable",
            ConnectionOutcome::Cancel => "cancel",
            ConnectionOutcome::ShuttingDown => "shutting_down",
            ConnectionOutcome::Admin => "admin",
            ConnectionOutcome::LoginRefused => "login_refused",
            ConnectionOutcome::LoginFailed => "login_failed",
        }
    }
}

/// Metric handles shared by the listener and all sessions.
#[derive(Clone)]
pub struct ProxyMetrics {
    /// Open client connections.
    pub client_connections: Gauge,
    /// Open upstream connections.
    pub upstream_connections: Gauge,
    /// Simple-protocol queries relayed.
    pub queries_simple: Counter,
    /// Extended-protocol executes relayed.
    pub queries_extended: Counter,
    /// Cancel requests forwarded.
    pub cancel_requests: Counter,
    outcomes: [Counter; 9],
    upstream_opened: Counter,
    upstream_failed: Counter,
    statements_other: Counter,
    /// Totals since start, for the admin console.
    pub counters: Arc<Counters>,
}

impl ProxyMetrics {
    /// Creates the handles with the current recorder; totals go to `counters`.
    pub fn new(counters: Arc<Counters>) -> ProxyMetrics {
        ProxyMetrics {
            upstream_opened: counter!(UPSTREAM_CONNECTIONS_TOTAL, "outcome" => "opened"),
            upstream_failed: counter!(UPSTREAM_CONNECTIONS_TOTAL, "outcome" => "failed"),
            statements_other: counter!(QUERIES_TOTAL, "kind" => QueryKind::Other.label()),
            counters,
            client_connections: metrics::gauge!(CLIENT_CONNECTIONS),
            upstream_connections: metrics::gauge!(UPSTREAM_CONNECTIONS),
            queries_simple: counter!(QUERIES_RELAYED_TOTAL, "protocol" => "simple"),
            queries_extended: counter!(QUERIES_RELAYED_TOTAL, "protocol" => "extended"),
            cancel_requests: counter!(CANCEL_REQUESTS_TOTAL),
            outcomes: ConnectionOutcome::ALL
                .map(|o| counter!(CLIENT_CONNECTIONS_TOTAL, "outcome" => o.label())),
        }
    }

    /// Counts one client connection by how it ended up.
    pub fn connection(&self, outcome: ConnectionOutcome) {
        let index = ConnectionOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.outcomes[index].increment(1);
    }

    /// Counts a connection to PostgreSQL opened (`true`) or failed.
    pub fn upstream_connection(&self, opened: bool) {
        if opened {
            self.upstream_opened.increment(1);
            Counters::add(&self.counters.sessions, 1);
        } else {
            self.upstream_failed.increment(1);
        }
    }

    /// Counts an ErrorResponse from PostgreSQL (`frame` with tag and length) by SQLSTATE class.
    pub fn upstream_error(&self, frame: &[u8]) {
        Counters::add(&self.counters.upstream_errors, 1);
        let class = crate::wire::error_response::sqlstate_class(frame)
            .and_then(|c| std::str::from_utf8(&c).ok().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        counter!(UPSTREAM_ERRORS_TOTAL, "class" => class).increment(1);
    }

    /// Counts a statement relayed by a session that does not cache (kind `other`).
    pub fn statement_without_cache(&self) {
        self.statements_other.increment(1);
        self.counters.query(QueryKind::Other);
    }

    /// Counts a session that ended with an error of this kind.
    pub fn session_error(&self, kind: ErrorKind) {
        counter!(SESSION_ERRORS_TOTAL, "kind" => kind.label()).increment(1);
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {address}: {reason}")]
pub struct MetricsError {
    address: SocketAddr,
    reason: String,
}

/// Installs the global Prometheus recorder and its HTTP listener on `address`, with every
/// metric of the [`registry`] described (help, unit) and every histogram's buckets set.
///
/// Must run inside a tokio runtime. Call once per process, before [`ProxyMetrics::new`].
pub fn install_exporter(address: SocketAddr) -> Result<(), MetricsError> {
    let failed = |reason: String| MetricsError { address, reason };
    // Bind first so that a taken port is a clear error, not a background task's log line.
    std::net::TcpListener::bind(address).map_err(|e| failed(e.to_string()))?;
    let mut builder = PrometheusBuilder::new().with_http_listener(address);
    for metric in registry::ALL {
        if let MetricType::Histogram(buckets) = metric.kind {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), buckets)
                .map_err(|e| failed(e.to_string()))?;
        }
    }
    builder.install().map_err(|e| failed(e.to_string()))?;
    registry::describe_all();
    Ok(())
}

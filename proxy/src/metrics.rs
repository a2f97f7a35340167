//! Metric names and the handles pgcached updates.
//!
//! Every metric name is a documented constant here, so dashboards and alerts have one place to
//! look. Handles are created once, when the server starts (after the exporter is installed), and
//! shared with the sessions: updating a metric is then an atomic add, with no name lookup.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics::{counter, describe_counter, describe_gauge, Counter, Gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::cache_metrics::QUERIES_TOTAL;
use crate::error::ErrorKind;
use crate::stats::{Counters, QueryKind};

/// Gauge: client connections open now (startup phase included).
pub const CLIENT_CONNECTIONS: &str = "pgcached_client_connections";
/// Counter: client connections accepted, by `outcome` (see [`ConnectionOutcome`]).
pub const CLIENT_CONNECTIONS_TOTAL: &str = "pgcached_client_connections_total";
/// Gauge: connections open to PostgreSQL for client sessions.
pub const UPSTREAM_CONNECTIONS: &str = "pgcached_upstream_connections";
/// Counter: connections to PostgreSQL attempted for client sessions, by `outcome` = opened,
/// failed.
pub const UPSTREAM_CONNECTIONS_TOTAL: &str = "pgcached_upstream_connections_total";
/// Counter: ErrorResponses PostgreSQL sent to clients, by SQLSTATE `class` (two characters,
/// e.g. `22` data exception, `23` integrity constraint violation, `42` syntax or access rule).
pub const UPSTREAM_ERRORS_TOTAL: &str = "pgcached_upstream_errors_total";
/// Counter: queries relayed to PostgreSQL, by `protocol` (`simple` = Query, `extended` = Execute).
pub const QUERIES_RELAYED_TOTAL: &str = "pgcached_queries_relayed_total";
/// Counter: sessions that ended with an error, by `kind` (see [`ErrorKind::label`]).
pub const SESSION_ERRORS_TOTAL: &str = "pgcached_session_errors_total";
/// Counter: cancel requests forwarded to PostgreSQL.
pub const CANCEL_REQUESTS_TOTAL: &str = "pgcached_cancel_requests_total";

/// How a client connection ended up, the `outcome` label of [`CLIENT_CONNECTIONS_TOTAL`].
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
    /// Registers descriptions and creates the handles with the current recorder; totals go to
    /// `counters`.
    pub fn new(counters: Arc<Counters>) -> ProxyMetrics {
        describe_gauge!(CLIENT_CONNECTIONS, "Client connections open now");
        describe_counter!(
            CLIENT_CONNECTIONS_TOTAL,
            "Client connections accepted, by outcome"
        );
        describe_gauge!(UPSTREAM_CONNECTIONS, "Connections open to PostgreSQL");
        describe_counter!(
            QUERIES_RELAYED_TOTAL,
            "Queries relayed to PostgreSQL, by protocol"
        );
        describe_counter!(SESSION_ERRORS_TOTAL, "Sessions ended by an error, by kind");
        describe_counter!(CANCEL_REQUESTS_TOTAL, "Cancel requests forwarded");
        describe_counter!(
            UPSTREAM_CONNECTIONS_TOTAL,
            "Connections to PostgreSQL attempted for client sessions, by outcome"
        );
        describe_counter!(
            UPSTREAM_ERRORS_TOTAL,
            "Errors PostgreSQL sent to clients, by SQLSTATE class"
        );
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

/// Installs the global Prometheus recorder and its HTTP listener on `address`.
///
/// Must run inside a tokio runtime. Call once per process, before [`ProxyMetrics::new`].
pub fn install_exporter(address: SocketAddr) -> Result<(), MetricsError> {
    // Bind first so that a taken port is a clear error, not a background task's log line.
    std::net::TcpListener::bind(address).map_err(|e| MetricsError {
        address,
        reason: e.to_string(),
    })?;
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(
            Matcher::Full(crate::cache_metrics::QUERY_DURATION_SECONDS.to_owned()),
            &crate::cache_metrics::DURATION_BUCKETS,
        )
        .map_err(|e| MetricsError {
            address,
            reason: e.to_string(),
        })?
        .install()
        .map_err(|e| MetricsError {
            address,
            reason: e.to_string(),
        })
}

//! Session errors, sorted into kinds.
//!
//! A kind feeds three things at once: the `kind` label of `pgcached_session_errors_total`, the
//! SQLSTATE and text the client is told (when the protocol still allows telling it), and the
//! level the event is logged at. A client's own mistake is logged at debug; only trouble with
//! PostgreSQL or pgcached itself is a warning.

use crate::auth::LoginError;
use crate::upstream::UpstreamError;
use crate::wire::error_response::sqlstate;
use crate::wire::frame::BadLength;
use crate::wire::startup::StartupPacketError;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client sent a startup packet no server accepts.
    #[error("bad startup packet: {0}")]
    Startup(#[from] StartupPacketError),
    /// The client broke framing after startup.
    #[error("malformed message from client: {0}")]
    ClientFrame(BadLength),
    /// PostgreSQL broke framing.
    #[error("malformed message from PostgreSQL: {0}")]
    UpstreamFrame(BadLength),
    /// The client did not finish startup in time.
    #[error("client sent no startup packet in time")]
    StartupTimeout,
    /// SSLRequest twice, or after TLS.
    #[error("unexpected second SSL negotiation")]
    DuplicateSslRequest,
    /// The client's TLS handshake failed.
    #[error("TLS handshake with client failed: {0}")]
    ClientTls(std::io::Error),
    /// I/O error or EOF on the client socket.
    #[error("client connection lost: {0}")]
    ClientIo(std::io::Error),
    /// PostgreSQL could not be reached.
    #[error(transparent)]
    UpstreamConnect(#[from] UpstreamError),
    /// The PostgreSQL connection failed mid-session.
    #[error("connection to PostgreSQL lost: {0}")]
    UpstreamIo(std::io::Error),
    /// PostgreSQL closed the connection without saying why.
    #[error("PostgreSQL closed the connection unexpectedly")]
    UpstreamClosed,
    /// `--max-client-conn` reached.
    #[error("too many client connections (max {0})")]
    TooManyClients(usize),
    /// pgcached is shutting down.
    #[error("pgcached is shutting down")]
    Shutdown,
    /// The login phase broke off.
    #[error(transparent)]
    Login(LoginError),
}

/// How loudly an error deserves to be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// The client's own doing, or routine.
    Debug,
    /// Operators may want to see it.
    Info,
    /// Something is wrong outside the client's control.
    Warn,
}

impl SessionError {
    /// Metric label: a short fixed word per kind.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Startup(_) | SessionError::DuplicateSslRequest => "bad_startup",
            SessionError::ClientFrame(_) => "client_protocol",
            SessionError::UpstreamFrame(_) => "upstream_protocol",
            SessionError::StartupTimeout => "startup_timeout",
            SessionError::ClientTls(_) => "client_tls",
            SessionError::ClientIo(_) => "client_lost",
            SessionError::UpstreamConnect(_) => "upstream_unavailable",
            SessionError::UpstreamIo(_) | SessionError::UpstreamClosed => "upstream_lost",
            SessionError::TooManyClients(_) => "too_many_clients",
            SessionError::Shutdown => "shutdown",
            SessionError::Login(LoginError::ClientIo(_)) => "client_lost",
            SessionError::Login(LoginError::ClientFrame(_) | LoginError::Refused) => {
                "client_protocol"
            }
            SessionError::Login(LoginError::UpstreamIo(_)) => "upstream_lost",
            SessionError::Login(LoginError::UpstreamProtocol(_)) => "upstream_protocol",
            SessionError::Login(LoginError::Timeout(_)) => "login_timeout",
        }
    }

    /// SQLSTATE for the ErrorResponse sent to the client.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SessionError::Startup(StartupPacketError::UnsupportedVersion { .. }) => {
                sqlstate::FEATURE_NOT_SUPPORTED
            }
            SessionError::Startup(_)
            | SessionError::ClientFrame(_)
            | SessionError::DuplicateSslRequest
            | SessionError::StartupTimeout
            | SessionError::ClientTls(_)
            | SessionError::ClientIo(_) => sqlstate::PROTOCOL_VIOLATION,
            SessionError::UpstreamFrame(_)
            | SessionError::UpstreamConnect(_)
            | SessionError::UpstreamIo(_)
            | SessionError::UpstreamClosed => sqlstate::CONNECTION_FAILURE,
            SessionError::TooManyClients(_) => sqlstate::TOO_MANY_CONNECTIONS,
            SessionError::Shutdown => sqlstate::ADMIN_SHUTDOWN,
            SessionError::Login(
                LoginError::ClientIo(_) | LoginError::ClientFrame(_) | LoginError::Refused,
            ) => sqlstate::PROTOCOL_VIOLATION,
            SessionError::Login(
                LoginError::UpstreamIo(_)
                | LoginError::UpstreamProtocol(_)
                | LoginError::Timeout(_),
            ) => sqlstate::CONNECTION_FAILURE,
        }
    }

    /// The level to log this at.
    pub fn log_level(&self) -> LogLevel {
        match self {
            SessionError::UpstreamConnect(_)
            | SessionError::UpstreamFrame(_)
            | SessionError::Login(LoginError::UpstreamProtocol(_)) => LogLevel::Warn,
            SessionError::UpstreamIo(_)
            | SessionError::UpstreamClosed
            | SessionError::TooManyClients(_) => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

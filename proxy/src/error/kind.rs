//! The kinds of errors pgcached originates, and what each one owns.

use crate::wire::error_response::sqlstate;

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

/// What went wrong, as far as a client, a dashboard and the log need to know.
///
/// A client's own mistake is logged at debug; only trouble with PostgreSQL or pgcached itself
/// is a warning. Two kinds may share a metric label where an operator need not tell them apart
/// ([`ErrorKind::UnsupportedProtocol`] is counted as `bad_startup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The client sent a startup packet no server accepts (or asked for SSL twice).
    BadStartup,
    /// The client asked for a protocol version pgcached does not speak.
    UnsupportedProtocol,
    /// The client broke the protocol after startup, or during the login.
    ClientProtocol,
    /// The client sent no startup packet in time.
    StartupTimeout,
    /// The client's TLS handshake failed.
    ClientTls,
    /// The client's connection failed or closed.
    ClientLost,
    /// PostgreSQL broke the protocol.
    UpstreamProtocol,
    /// PostgreSQL could not be reached (TCP, TLS negotiation, timeout).
    UpstreamUnavailable,
    /// The connection to PostgreSQL failed or closed during a session.
    UpstreamLost,
    /// `--max-client-conn` reached.
    TooManyClients,
    /// pgcached is shutting down.
    Shutdown,
    /// The login did not finish in time.
    LoginTimeout,
    /// The admin console refused the role (console off, or role not in `--admin-users`).
    ConsoleRefused,
}

impl ErrorKind {
    /// Every kind, for metric handles created once.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::BadStartup,
        ErrorKind::UnsupportedProtocol,
        ErrorKind::ClientProtocol,
        ErrorKind::StartupTimeout,
        ErrorKind::ClientTls,
        ErrorKind::ClientLost,
        ErrorKind::UpstreamProtocol,
        ErrorKind::UpstreamUnavailable,
        ErrorKind::UpstreamLost,
        ErrorKind::TooManyClients,
        ErrorKind::Shutdown,
        ErrorKind::LoginTimeout,
        ErrorKind::ConsoleRefused,
    ];

    /// The `kind` label of `pgcached_session_errors_total` and the `kind` field of log lines.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadStartup | ErrorKind::UnsupportedProtocol => "bad_startup",
            ErrorKind::ClientProtocol => "client_protocol",
            ErrorKind::StartupTimeout => "startup_timeout",
            ErrorKind::ClientTls => "client_tls",
            ErrorKind::ClientLost => "client_lost",
            ErrorKind::UpstreamProtocol => "upstream_protocol",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamLost => "upstream_lost",
            ErrorKind::TooManyClients => "too_many_clients",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::LoginTimeout => "login_timeout",
            ErrorKind::ConsoleRefused => "console_refused",
        }
    }

    /// The SQLSTATE of the ErrorResponse, so drivers classify the error as they would
    /// PostgreSQL's own.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::UnsupportedProtocol => sqlstate::FEATURE_NOT_SUPPORTED,
            ErrorKind::BadStartup
            | ErrorKind::ClientProtocol
            | ErrorKind::StartupTimeout
            | ErrorKind::ClientTls
            | ErrorKind::ClientLost => sqlstate::PROTOCOL_VIOLATION,
            ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamUnavailable
            | ErrorKind::UpstreamLost
            | ErrorKind::LoginTimeout => sqlstate::CONNECTION_FAILURE,
            ErrorKind::TooManyClients => sqlstate::TOO_MANY_CONNECTIONS,
            ErrorKind::Shutdown => sqlstate::ADMIN_SHUTDOWN,
            ErrorKind::ConsoleRefused => sqlstate::INVALID_AUTHORIZATION,
        }
    }

    /// The level to log this at.
    pub fn log_level(self) -> LogLevel {
        match self {
            ErrorKind::UpstreamProtocol | ErrorKind::UpstreamUnavailable => LogLevel::Warn,
            ErrorKind::UpstreamLost | ErrorKind::TooManyClients | ErrorKind::ConsoleRefused => {
                LogLevel::Info
            }
            ErrorKind::BadStartup
            | ErrorKind::UnsupportedProtocol
            | ErrorKind::ClientProtocol
            | ErrorKind::StartupTimeout
            | ErrorKind::ClientTls
            | ErrorKind::ClientLost
            | ErrorKind::Shutdown
            | ErrorKind::LoginTimeout => LogLevel::Debug,
        }
    }

    /// What a client is told when nothing more precise is safe to say.
    pub fn client_text(self) -> &'static str {
        match self {
            ErrorKind::BadStartup => "invalid startup packet",
            ErrorKind::UnsupportedProtocol => "unsupported frontend protocol",
            ErrorKind::ClientProtocol => "invalid message from the client",
            ErrorKind::StartupTimeout => "no startup packet in time",
            ErrorKind::ClientTls => "TLS handshake with the client failed",
            ErrorKind::ClientLost => "client connection lost",
            ErrorKind::UpstreamProtocol => "PostgreSQL sent a malformed message",
            ErrorKind::UpstreamUnavailable => "pgcached could not reach PostgreSQL",
            ErrorKind::UpstreamLost => "connection to PostgreSQL lost",
            ErrorKind::TooManyClients => "too many client connections",
            ErrorKind::Shutdown => "pgcached is shutting down",
            ErrorKind::LoginTimeout => "the login did not finish in time",
            ErrorKind::ConsoleRefused => "not admitted to the admin console",
        }
    }

    /// The DETAIL line of kinds whose cause is withheld from the client.
    pub fn client_detail(self) -> Option<&'static str> {
        match self {
            ErrorKind::UpstreamProtocol
            | ErrorKind::UpstreamUnavailable
            | ErrorKind::UpstreamLost
            | ErrorKind::LoginTimeout => Some("The cause is in pgcached's log."),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short_fixed_words() {
        for kind in ErrorKind::ALL {
            let label = kind.label();
            assert!(
                !label.is_empty() && label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{kind:?}: {label}"
            );
            assert_eq!(kind.sqlstate().len(), 5, "{kind:?}");
        }
    }

    #[test]
    fn sqlstates_are_postgresqls() {
        assert_eq!(ErrorKind::UpstreamUnavailable.sqlstate(), "08006");
        assert_eq!(ErrorKind::ClientProtocol.sqlstate(), "08P01");
        assert_eq!(ErrorKind::TooManyClients.sqlstate(), "53300");
        assert_eq!(ErrorKind::Shutdown.sqlstate(), "57P01");
        assert_eq!(ErrorKind::UnsupportedProtocol.sqlstate(), "0A000");
        assert_eq!(ErrorKind::ConsoleRefused.sqlstate(), "28000");
    }
}

//! Why a client session ended early, and what the client is told about it.

use std::borrow::Cow;

use super::{ClientFacing, ErrorKind};
use crate::auth::LoginError;
use crate::upstream::UpstreamError;
use crate::wire::frame::BadLength;
use crate::wire::startup::StartupPacketError;

/// Why a session ended early. `Display` is the full story, for pgcached's log (the upstream's
/// address, the I/O error); the client reads [`ClientFacing::client_message`].
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
    /// A BEGIN pgcached answered locally and sent ahead of its block's first statement did not
    /// open the block; nothing of the block was sent, and the session closes.
    #[error("PostgreSQL did not open the transaction block pgcached had begun")]
    DeferredBeginFailed,
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

impl ClientFacing for SessionError {
    fn kind(&self) -> ErrorKind {
        match self {
            SessionError::Startup(StartupPacketError::UnsupportedVersion { .. }) => {
                ErrorKind::UnsupportedProtocol
            }
            SessionError::Startup(_) | SessionError::DuplicateSslRequest => ErrorKind::BadStartup,
            SessionError::ClientFrame(_) => ErrorKind::ClientProtocol,
            SessionError::UpstreamFrame(_) => ErrorKind::UpstreamProtocol,
            SessionError::StartupTimeout => ErrorKind::StartupTimeout,
            SessionError::ClientTls(_) => ErrorKind::ClientTls,
            SessionError::ClientIo(_) => ErrorKind::ClientLost,
            SessionError::UpstreamConnect(_) => ErrorKind::UpstreamUnavailable,
            SessionError::UpstreamIo(_) => ErrorKind::UpstreamLost,
            SessionError::UpstreamClosed | SessionError::DeferredBeginFailed => {
                ErrorKind::UpstreamLost
            }
            SessionError::TooManyClients(_) => ErrorKind::TooManyClients,
            SessionError::Shutdown => ErrorKind::Shutdown,
            SessionError::Login(e) => e.kind(),
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        match self {
            // What the client itself sent.
            SessionError::Startup(e) => Cow::Owned(e.to_string()),
            SessionError::ClientFrame(e) => Cow::Owned(format!("malformed message: {e}")),
            SessionError::DuplicateSslRequest => Cow::Borrowed("unexpected second SSL negotiation"),
            SessionError::UpstreamConnect(e) => Cow::Borrowed(e.client_text()),
            SessionError::UpstreamClosed => {
                Cow::Borrowed("PostgreSQL closed the connection unexpectedly")
            }
            SessionError::DeferredBeginFailed => Cow::Borrowed(
                "PostgreSQL did not open the transaction block; none of its statements ran",
            ),
            SessionError::Login(e) => e.client_message(),
            _ => Cow::Borrowed(self.kind().client_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::error_response;

    fn told(error: &SessionError) -> (String, String) {
        let frame = crate::error::fatal_response(error);
        let code = error_response::field(&frame, b'C')
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        let message = error_response::field(&frame, b'M')
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        (code, message)
    }

    #[test]
    fn a_deferred_begin_that_failed_closes_with_a_connection_failure() {
        let (code, message) = told(&SessionError::DeferredBeginFailed);
        assert_eq!(code, "08006");
        assert!(message.contains("none of its statements ran"), "{message}");
    }

    #[test]
    fn the_upstream_address_and_cause_reach_the_log_only() {
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for (upstream, expected) in [
            (
                UpstreamError::Connect {
                    address: "db.internal:5432".to_owned(),
                    source: refused(),
                },
                "pgcached could not reach PostgreSQL",
            ),
            (
                UpstreamError::Timeout {
                    address: "db.internal:5432".to_owned(),
                },
                "timed out",
            ),
            (
                UpstreamError::TlsRefused {
                    address: "db.internal:5432".to_owned(),
                },
                "does not support TLS",
            ),
            (
                UpstreamError::Handshake {
                    address: "db.internal:5432".to_owned(),
                    source: std::io::Error::other("invalid peer certificate: UnknownIssuer"),
                },
                "TLS handshake with PostgreSQL failed",
            ),
            (
                UpstreamError::Io {
                    address: "db.internal:5432".to_owned(),
                    source: refused(),
                },
                "PostgreSQL",
            ),
            (
                UpstreamError::BadSslAnswer {
                    address: "db.internal:5432".to_owned(),
                    byte: b'X',
                },
                "SSL request",
            ),
            (
                UpstreamError::ServerName("db.internal".to_owned()),
                "TLS server name",
            ),
        ] {
            let error = SessionError::UpstreamConnect(upstream);
            let logged = error.to_string();
            let (code, message) = told(&error);
            assert_eq!(code, "08006", "{logged}");
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("db.internal"), "{message}");
            assert!(!message.contains("5432"), "{message}");
            assert!(!message.contains("refused"), "{message}");
            assert!(!message.contains("UnknownIssuer"), "{message}");
            assert!(logged.contains("db.internal"), "{logged}");
        }
    }

    #[test]
    fn lost_connections_hide_the_io_error() {
        let error = SessionError::UpstreamIo(std::io::Error::other("reset by 10.0.0.7:5432"));
        let (code, message) = told(&error);
        assert_eq!(code, "08006");
        assert_eq!(message, "pgcached: connection to PostgreSQL lost");
        assert!(error.to_string().contains("10.0.0.7"));
    }

    #[test]
    fn a_clients_own_mistake_is_told_back_with_its_sqlstate() {
        let (code, message) = told(&SessionError::Startup(
            StartupPacketError::UnsupportedVersion { major: 1, minor: 5 },
        ));
        assert_eq!(code, "0A000");
        assert!(
            message.contains("unsupported frontend protocol 1.5"),
            "{message}"
        );
        let (code, _) = told(&SessionError::TooManyClients(10));
        assert_eq!(code, "53300");
        let (code, message) = told(&SessionError::Shutdown);
        assert_eq!(code, "57P01");
        assert_eq!(message, "pgcached: pgcached is shutting down");
    }
}

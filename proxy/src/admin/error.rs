//! Why a console session ended early, and what its client is told.

use std::borrow::Cow;

use super::frames::FrameError;
use crate::auth::LoginError;
use crate::error::{ClientFacing, ErrorKind};
use crate::upstream::UpstreamError;

/// Why a console session ended early. `Display` is for pgcached's log; the client reads
/// [`ClientFacing::client_message`].
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `--admin-users` is empty.
    #[error("the admin console is off")]
    ConsoleOff,
    /// The role logged in but is not in `--admin-users`.
    #[error("role {0:?} is not in --admin-users")]
    NotAdmitted(String),
    /// The client's socket failed or closed.
    #[error("client connection lost: {0}")]
    Client(#[from] std::io::Error),
    /// The client broke the protocol.
    #[error("protocol violation: {0}")]
    ClientProtocol(String),
    /// PostgreSQL could not be reached for authentication.
    #[error(transparent)]
    UpstreamConnect(#[from] UpstreamError),
    /// The PostgreSQL connection failed during authentication.
    #[error("connection to PostgreSQL lost during authentication: {0}")]
    Upstream(std::io::Error),
    /// PostgreSQL broke the protocol.
    #[error("malformed message from PostgreSQL: {0}")]
    UpstreamProtocol(String),
    /// PostgreSQL refused the credentials (its error was relayed).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The login did not finish in time.
    #[error("authentication did not finish in time")]
    Timeout,
    /// The login phase failed (connection lost, malformed messages).
    #[error(transparent)]
    Login(LoginError),
    /// pgcached is shutting down.
    #[error("pgcached is shutting down")]
    Shutdown,
}

impl From<FrameError> for AdminError {
    fn from(error: FrameError) -> AdminError {
        match error {
            FrameError::Io(e) => AdminError::Client(e),
            other => AdminError::ClientProtocol(other.to_string()),
        }
    }
}

impl ClientFacing for AdminError {
    fn kind(&self) -> ErrorKind {
        match self {
            AdminError::ConsoleOff | AdminError::NotAdmitted(_) => ErrorKind::ConsoleRefused,
            AdminError::Client(_) => ErrorKind::ClientLost,
            AdminError::ClientProtocol(_) | AdminError::AuthenticationFailed => {
                ErrorKind::ClientProtocol
            }
            AdminError::UpstreamConnect(_) => ErrorKind::UpstreamUnavailable,
            AdminError::Upstream(_) => ErrorKind::UpstreamLost,
            AdminError::UpstreamProtocol(_) => ErrorKind::UpstreamProtocol,
            AdminError::Timeout => ErrorKind::LoginTimeout,
            AdminError::Login(e) => e.kind(),
            AdminError::Shutdown => ErrorKind::Shutdown,
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        match self {
            AdminError::ConsoleOff => {
                Cow::Borrowed("the admin console is off: start pgcached with --admin-users <role>")
            }
            // The role the client logged in as.
            AdminError::NotAdmitted(role) => Cow::Owned(format!(
                "role \"{role}\" may not use the admin console (see --admin-users)"
            )),
            // What the client itself sent.
            AdminError::ClientProtocol(message) => Cow::Owned(message.clone()),
            AdminError::UpstreamConnect(e) => Cow::Borrowed(e.client_text()),
            AdminError::Upstream(_) => {
                Cow::Borrowed("connection to PostgreSQL lost during authentication")
            }
            AdminError::Login(e) => e.client_message(),
            _ => Cow::Borrowed(self.kind().client_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_upstream_is_told_without_its_address() {
        let error = AdminError::UpstreamConnect(UpstreamError::Connect {
            address: "10.1.2.3:6543".to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
        let frame = crate::error::fatal_response(&error);
        let text = String::from_utf8_lossy(&frame);
        assert!(text.contains("C08006"), "{text}");
        assert!(text.contains("could not reach PostgreSQL"), "{text}");
        assert!(!text.contains("10.1.2.3"), "{text}");
        assert!(!text.contains("6543"), "{text}");
        assert!(error.to_string().contains("10.1.2.3:6543"));
    }

    #[test]
    fn refusals_are_28000() {
        for error in [
            AdminError::ConsoleOff,
            AdminError::NotAdmitted("ops".into()),
        ] {
            assert_eq!(error.kind().sqlstate(), "28000");
        }
    }
}

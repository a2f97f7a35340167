//! One connection to a replica, logged in as a client's role and brought to that client's
//! session state, running cacheable reads one at a time.
//!
//! The session state is the client's fingerprint ([`crate::session::fingerprint`]): the same
//! startup parameters, then the same state-changing statements in the same order. A
//! connection of one fingerprint only ever runs reads (which change no state), so it stays in
//! that state and serves any session of the same role, database and fingerprint.

use bytes::Bytes;
use pgcached_invalidation::wire::{MessageReader, ServerError};
use tokio::io::AsyncWriteExt;

use super::request::{Collected, ReplicaRequest};
use crate::auth::credential::Secret;
use crate::net::Stream;
use crate::session::fingerprint::Replay;
use crate::upstream::own_login::{self, BackendKey, LoginError};
use crate::upstream::Connector;
use crate::wire::startup::CANCEL_REQUEST_CODE;

/// `application_name` of pgcached's connections to replicas.
const APPLICATION_NAME: &str = "pgcached replica reads";

/// Why a replica connection failed; the read goes to the primary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    /// The login was refused or failed.
    #[error("login to the replica failed: {0}")]
    Login(#[from] LoginError),
    /// A statement of the session state failed on the replica.
    #[error("the replica refused the session's state ({}: {})", .0.code, .0.message)]
    Replay(ServerError),
    /// The connection broke.
    #[error("replica connection lost: {0}")]
    Lost(String),
    /// The connection is not idle after a request (inside a block, or failed).
    #[error("the replica connection is not idle after a request")]
    NotIdle,
}

impl ConnectionError {
    /// True when the replica refused the role's login itself (not a network failure).
    pub(crate) fn is_login_refusal(&self) -> bool {
        matches!(
            self,
            ConnectionError::Login(
                LoginError::Server(_)
                    | LoginError::NoPassword
                    | LoginError::Scram(_)
                    | LoginError::UnsupportedMethod(_)
            )
        )
    }
}

/// A logged-in replica connection in a known session state.
pub(crate) struct ReplicaConnection {
    stream: Stream,
    reader: MessageReader,
    key: Option<BackendKey>,
}

impl ReplicaConnection {
    /// Logs in to the replica as `role` on `database` with `secret`, and replays `state`.
    pub(crate) async fn open(
        connector: &Connector,
        role: &str,
        database: &str,
        state: &Replay<'_>,
        secret: Secret<'_>,
    ) -> Result<ReplicaConnection, ConnectionError> {
        let mut parameters = vec![
            ("user", role),
            ("database", database),
            ("application_name", APPLICATION_NAME),
        ];
        parameters.extend(state.parameters.iter().copied());
        let (stream, key) = own_login::login_as(connector, &parameters, role, secret).await?;
        let mut connection = ReplicaConnection {
            stream,
            reader: MessageReader::default(),
            key,
        };
        for statement in &state.statements {
            connection.replay(statement).await?;
        }
        Ok(connection)
    }

    /// Runs one state-changing statement of the session; it must succeed and leave the
    /// connection idle.
    async fn replay(&mut self, statement: &[u8]) -> Result<(), ConnectionError> {
        let mut query = Vec::with_capacity(statement.len() + 6);
        query.push(b'Q');
        query.extend_from_slice(&((statement.len() + 5) as u32).to_be_bytes());
        query.extend_from_slice(statement);
        query.push(0);
        self.send(&query).await?;
        let mut refused = None;
        loop {
            let message = self.next().await?;
            match message.tag {
                b'E' => refused = Some(ServerError::parse(&message.body)),
                b'Z' => {
                    return match (refused, message.body.first()) {
                        (Some(error), _) => Err(ConnectionError::Replay(error)),
                        (None, Some(b'I')) => Ok(()),
                        (None, _) => Err(ConnectionError::NotIdle),
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs `request`; its answer, when fit to store (at most `max` bytes).
    pub(crate) async fn run(
        &mut self,
        request: &ReplicaRequest,
        max: usize,
    ) -> Result<Option<(Bytes, Bytes)>, ConnectionError> {
        self.send(&request.frames()).await?;
        let mut collector = request.collector(max);
        loop {
            let message = self.next().await?;
            if let Collected::Ready(status) =
                collector.accept(message.tag, &message.body, message.cut)
            {
                if status != b'I' {
                    return Err(ConnectionError::NotIdle);
                }
                return Ok(collector.into_result());
            }
        }
    }

    /// The CancelRequest packet that stops this connection's running statement.
    pub(crate) fn cancel_request(&self) -> Option<[u8; 16]> {
        let key = self.key?;
        let mut packet = [0u8; 16];
        packet[..4].copy_from_slice(&16u32.to_be_bytes());
        packet[4..8].copy_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        packet[8..12].copy_from_slice(&key.pid.to_be_bytes());
        packet[12..].copy_from_slice(&key.secret.to_be_bytes());
        Some(packet)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        let lost = |e: std::io::Error| ConnectionError::Lost(e.to_string());
        self.stream.write_all(bytes).await.map_err(lost)?;
        self.stream.flush().await.map_err(lost)
    }

    async fn next(&mut self) -> Result<pgcached_invalidation::wire::Message, ConnectionError> {
        self.reader
            .next(&mut self.stream)
            .await
            .map_err(|e| ConnectionError::Lost(e.to_string()))
    }
}

//! Authentication for the admin console, done by PostgreSQL.
//!
//! pgcached holds no passwords. A console client's StartupMessage is sent to PostgreSQL with its
//! database replaced by a real one, and the login is carried as for any session (trust, md5,
//! SCRAM-SHA-256, with pass-through for TLS clients: [`crate::auth`]). Once PostgreSQL says ReadyForQuery the role is
//! proven; the upstream connection is closed and the console takes over the client. The
//! ParameterStatus messages PostgreSQL sent (server_version, client_encoding, ...) reach the
//! client, so psql behaves as it does against a server.

use tokio::io::AsyncWriteExt;

use super::frames::{read_frame, Frame, FrameError};
use super::AdminError;
use crate::auth::LoginError;
use crate::net::Stream;
use crate::session::SessionContext;
use crate::wire::startup::StartupMessage;

/// Largest message relayed after the login, up to ReadyForQuery.
const MAX_AUTH_FRAME: usize = 64 * 1024;
/// The Terminate message.
const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// Carries the login of `startup` (against `database`) between `client` and a new PostgreSQL
/// connection, as for any session ([`crate::auth::login`]). On success the client has received
/// everything up to, but not including, ReadyForQuery. On failure PostgreSQL's ErrorResponse
/// has been relayed.
pub async fn authenticate(
    client: &mut Stream,
    startup: &StartupMessage,
    context: &SessionContext,
    database: &str,
) -> Result<(), AdminError> {
    let mut upstream = context.connector.connect().await?;
    let login = crate::auth::login(
        client,
        &mut upstream,
        &startup.with_database(database),
        startup.user(),
        context.scram_server.as_ref(),
    )
    .await;
    match login {
        Ok(_) => {}
        Err(LoginError::Refused) => return Err(AdminError::AuthenticationFailed),
        Err(e) => return Err(AdminError::Login(e)),
    }
    loop {
        let frame = read_frame(&mut upstream, MAX_AUTH_FRAME)
            .await
            .map_err(|e| match e {
                FrameError::Io(e) => AdminError::Upstream(e),
                other => AdminError::UpstreamProtocol(other.to_string()),
            })?;
        match frame.tag {
            b'Z' => {
                let _ = upstream.write_all(TERMINATE).await;
                let _ = upstream.shutdown().await;
                return Ok(());
            }
            b'E' => {
                send(client, &frame).await?;
                return Err(AdminError::AuthenticationFailed);
            }
            // ParameterStatus, BackendKeyData, NoticeResponse.
            _ => send(client, &frame).await?,
        }
    }
}

async fn send(client: &mut Stream, frame: &Frame) -> Result<(), AdminError> {
    client.write_all(&frame.bytes).await?;
    client.flush().await?;
    Ok(())
}

//! Authentication for the admin console, done by PostgreSQL.
//!
//! pgcached holds no passwords. A console client's StartupMessage is sent to PostgreSQL with its
//! database replaced by a real one, and the authentication exchange is relayed both ways as for
//! any session (trust, md5, SCRAM-SHA-256, ...). Once PostgreSQL says ReadyForQuery the role is
//! proven; the upstream connection is closed and the console takes over the client. The
//! ParameterStatus messages PostgreSQL sent (server_version, client_encoding, ...) reach the
//! client, so psql behaves as it does against a server.

use tokio::io::AsyncWriteExt;

use super::frames::{read_frame, Frame, FrameError};
use super::AdminError;
use crate::net::Stream;
use crate::upstream::Connector;
use crate::wire::startup::StartupMessage;

/// Largest message relayed during authentication.
const MAX_AUTH_FRAME: usize = 64 * 1024;
/// The Terminate message.
const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// Authentication request codes after which the server expects no reply: AuthenticationOk and
/// AuthenticationSASLFinal.
fn expects_reply(code: i32) -> bool {
    !matches!(code, 0 | 12)
}

/// Relays the authentication of `startup` (against `database`) between `client` and a new
/// PostgreSQL connection. On success the client has received everything up to, but not
/// including, ReadyForQuery. On failure PostgreSQL's ErrorResponse has been relayed.
pub async fn authenticate(
    client: &mut Stream,
    startup: &StartupMessage,
    connector: &Connector,
    database: &str,
) -> Result<(), AdminError> {
    let mut upstream = connector.connect().await?;
    upstream
        .write_all(&startup.with_database(database))
        .await
        .map_err(AdminError::Upstream)?;
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
            b'R' => {
                let code = frame
                    .body()
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(-1);
                send(client, &frame).await?;
                if expects_reply(code) {
                    let reply = read_frame(client, MAX_AUTH_FRAME).await?;
                    if reply.tag != b'p' {
                        return Err(AdminError::ClientProtocol(format!(
                            "expected a password message, got {:?}",
                            reply.tag as char
                        )));
                    }
                    upstream
                        .write_all(&reply.bytes)
                        .await
                        .map_err(AdminError::Upstream)?;
                }
            }
            // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion.
            _ => send(client, &frame).await?,
        }
    }
}

async fn send(client: &mut Stream, frame: &Frame) -> Result<(), AdminError> {
    client.write_all(&frame.bytes).await?;
    client.flush().await?;
    Ok(())
}

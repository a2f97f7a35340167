//! The two-way relay between a client and its PostgreSQL connection.
//!
//! One task drives both directions. Each direction reads into a buffer, cuts it into frames
//! ([`crate::wire::frame`]) and queues whole runs of frames, as the same `Bytes` it read, for the
//! other side; nothing is re-encoded. Reads and writes of both sockets are separate `select!`
//! branches, so the relay always keeps reading one side while the other is slow to drain: no
//! deadlock when both peers write at once, and a direction stops reading only when the queue it
//! feeds is above [`HIGH_WATER`] (memory stays bounded whatever a peer sends).
//!
//! The relay decides nothing: each frame goes to the session's [`SessionMachine`], which queues
//! what to send where (forwarded, answered locally, swallowed) or parks a frame until another
//! session's fill lands; the relay performs that. pgcached writes its own ErrorResponse only at
//! a frame boundary of the server-to-client direction, so a client never sees a message cut in
//! half.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::caching::server::ServerAction;
use super::inbound::Inbound;
use super::machine::{Outboxes, SessionMachine};
use super::outbox::Outbox;
use crate::error::{fatal_response, SessionError};
use crate::net::Stream;
use crate::shutdown::{Phase, PhaseReceiver};
use crate::upstream::fenced::Fenced;
use crate::wire::frontend::FrontendTag;

/// A direction stops reading while the queue it feeds holds more than this many bytes.
pub(crate) const HIGH_WATER: usize = 256 * 1024;
/// How long queued bytes may take to drain once the session is closing.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);
/// The Terminate message, sent upstream when pgcached closes a session itself.
const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// Relays until either side closes; the login phase is over (AuthenticationOk relayed).
/// `machine` decides what each frame leads to; this function only moves bytes.
pub(crate) async fn run(
    client: &mut Stream,
    upstream: Fenced<Stream>,
    machine: &mut SessionMachine,
    phase: &mut PhaseReceiver,
    caching: bool,
) -> Result<(), SessionError> {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut from_client = Inbound::default();
    let mut from_upstream = Inbound::default();
    let mut to_client = Outbox::default();
    let mut to_upstream = Outbox::default();
    let mut closing: Option<(Result<(), SessionError>, tokio::time::Instant)> = None;
    // One pinned future per phase change, rather than a new `changed()` future per iteration.
    let mut phase_changed = Box::pin(phase_change(phase.clone()));
    let mut phase_open = true;

    loop {
        if closing.is_none() {
            let now = *phase.borrow_and_update();
            let idle = machine.is_idle()
                && from_client.is_empty()
                && to_upstream.is_empty()
                && from_upstream.is_empty();
            if now == Phase::Terminating || (now == Phase::Draining && idle) {
                say_fatal(&mut to_client, &from_upstream, &SessionError::Shutdown);
                to_upstream.push(Bytes::from_static(TERMINATE));
                closing = Some((Err(SessionError::Shutdown), deadline()));
            }
        }
        if let Some((_, until)) = &closing {
            if (!to_client.has_work() && !to_upstream.has_work())
                || tokio::time::Instant::now() >= *until
            {
                break;
            }
        }
        let reading = closing.is_none();
        let until = closing.as_ref().map(|(_, until)| *until);
        let parked = machine.parked().is_some();

        tokio::select! {
            // Writes first: a run of frames is written before the next read is prepared, so
            // the read buffer it was cut from is no longer shared and is reused in place
            // instead of a new one being allocated for every read.
            biased;
            pumped = to_client.pump(&mut client_write), if to_client.has_work() => {
                if let Err(e) = to_client.settle(pumped) {
                    if closing.is_none() {
                        closing = Some((Err(SessionError::ClientIo(e)), deadline()));
                    }
                }
            }
            pumped = to_upstream.pump(&mut upstream_write), if to_upstream.has_work() => {
                if let Err(e) = to_upstream.settle(pumped) {
                    if closing.is_none() {
                        let error = SessionError::UpstreamIo(e);
                        say_fatal(&mut to_client, &from_upstream, &error);
                        closing = Some((Err(error), deadline()));
                    }
                }
            }
            // The server's answers before the client's next bytes: a client streaming a long
            // pipeline (asyncpg's executemany) must hear of an error while it still sends, as
            // it would straight from PostgreSQL. Either read stops at its queue's high water,
            // so neither starves the other for long.
            read = read_into(&mut upstream_read, &mut from_upstream.buf),
                if reading && to_client.bytes < HIGH_WATER =>
            {
                match read {
                    Ok(0) => {
                        let conversation = machine.conversation();
                        let result = if conversation.upstream_fatal()
                            || conversation.client_terminated()
                        {
                            Ok(())
                        } else {
                            let error = SessionError::UpstreamClosed;
                            say_fatal(&mut to_client, &from_upstream, &error);
                            Err(error)
                        };
                        to_upstream.clear();
                        closing = Some((result, deadline()));
                    }
                    Ok(_) => {
                        let cut = from_upstream.cut_runs(&mut to_client, |tag, bytes, whole| {
                            machine.server_frame(tag, bytes, whole, &mut to_upstream)
                        });
                        if let Err(bad) = cut {
                            let error = SessionError::UpstreamFrame(bad);
                            say_fatal(&mut to_client, &from_upstream, &error);
                            to_upstream.clear();
                            closing = Some((Err(error), deadline()));
                        } else if machine.begin_failed() && closing.is_none() {
                            let error = SessionError::DeferredBeginFailed;
                            say_fatal(&mut to_client, &from_upstream, &error);
                            to_upstream.clear();
                            closing = Some((Err(error), deadline()));
                        }
                    }
                    Err(e) => {
                        let error = SessionError::UpstreamIo(e);
                        say_fatal(&mut to_client, &from_upstream, &error);
                        to_upstream.clear();
                        closing = Some((Err(error), deadline()));
                    }
                }
            }
            read = read_into(&mut client_read, &mut from_client.buf),
                if reading
                && !parked
                && to_upstream.bytes + machine.held_upstream_bytes() < HIGH_WATER =>
            {
                match read {
                    Ok(0) => {
                        let result = if machine.conversation().client_terminated() {
                            Ok(())
                        } else {
                            Err(SessionError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()))
                        };
                        to_client.clear();
                        closing = Some((result, deadline()));
                    }
                    Ok(_) => {
                        let cut = if caching {
                            from_client.pieces(|piece| {
                                machine.client_piece(
                                    piece,
                                    Outboxes { upstream: &mut to_upstream, client: &mut to_client },
                                )
                            })
                        } else {
                            from_client.cut_runs(&mut to_upstream, |tag, _, _| {
                                machine.relayed_client_frame(FrontendTag::of(tag));
                                ServerAction::Forward
                            })
                        };
                        if let Err(bad) = cut {
                            let error = SessionError::ClientFrame(bad);
                            say_fatal(&mut to_client, &from_upstream, &error);
                            to_upstream.clear();
                            closing = Some((Err(error), deadline()));
                        }
                    }
                    Err(e) => {
                        to_client.clear();
                        closing = Some((Err(SessionError::ClientIo(e)), deadline()));
                    }
                }
            }
            open = &mut phase_changed, if phase_open && closing.is_none() => {
                phase_open = open;
                if open {
                    phase_changed = Box::pin(phase_change(phase.clone()));
                }
            }
            _ = wait_parked(machine), if parked && closing.is_none() => {
                // The other session's fill is done (or the wait timed out): go on.
                machine.resume(Outboxes { upstream: &mut to_upstream, client: &mut to_client });
            }
            _ = sleep_until(until), if until.is_some() => {}
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), upstream_write.shutdown()).await;
    let _ = tokio::time::timeout(Duration::from_millis(500), client_write.flush()).await;
    match closing {
        Some((result, _)) => result,
        None => Ok(()),
    }
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + CLOSE_DRAIN
}

/// Completes when the parked frame's wait is over (never, if nothing is parked).
async fn wait_parked(machine: &mut SessionMachine) {
    match machine.parked() {
        Some(parked) => {
            let _ = parked.wait.as_mut().await;
        }
        None => std::future::pending().await,
    }
}

/// Completes when the shutdown phase changes; false if the sender is gone.
async fn phase_change(mut watch: PhaseReceiver) -> bool {
    watch.changed().await.is_ok()
}

async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// Queues a FATAL ErrorResponse for the client, if the client stream is at a frame boundary.
fn say_fatal(to_client: &mut Outbox, from_upstream: &Inbound, error: &SessionError) {
    if from_upstream.position.at_boundary() {
        to_client.push(fatal_response(error));
    }
}

async fn read_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    super::inbound::make_room(buf);
    reader.read_buf(buf).await
}

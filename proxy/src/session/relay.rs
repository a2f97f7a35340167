//! The two-way relay between a client and its PostgreSQL connection.
//!
//! One task drives both directions. Each direction reads into a buffer, cuts it into frames
//! ([`crate::wire::frame`]) and queues whole runs of frames, as the same `Bytes` it read, for the
//! other side; nothing is re-encoded. Reads and writes of both sockets are separate `select!`
//! branches, so the relay always keeps reading one side while the other is slow to drain: no
//! deadlock when both peers write at once, and a direction stops reading only when the queue it
//! feeds is above [`HIGH_WATER`] (memory stays bounded whatever a peer sends).
//!
//! pgcached writes its own ErrorResponse only at a frame boundary of the server-to-client
//! direction, so a client never sees a message cut in half.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::caching::server::ServerAction;
use super::caching::{CachingSession, Io};
use super::outbox::Outbox;
use super::tracker::{QueryKind, Tracker};
use crate::error::SessionError;
use crate::metrics::ProxyMetrics;
use crate::net::Stream;
use crate::shutdown::{Phase, PhaseReceiver};
use crate::stats::ClientInfo;
use crate::wire::error_response::{self, sqlstate, Severity};
use crate::wire::frame::{self, BadLength, Next, Position};

/// A direction stops reading while the queue it feeds holds more than this many bytes.
pub const HIGH_WATER: usize = 256 * 1024;
/// Free space kept in a read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// How long queued bytes may take to drain once the session is closing.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);
/// The Terminate message, sent upstream when pgcached closes a session itself.
const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// Relays until either side closes; the login phase is over (AuthenticationOk relayed).
pub async fn run(
    client: &mut Stream,
    upstream: Stream,
    metrics: &ProxyMetrics,
    phase: &mut PhaseReceiver,
    mut caching: Option<&mut CachingSession>,
    client_info: &ClientInfo,
) -> Result<(), SessionError> {
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let mut from_client = Inbound::default();
    let mut from_upstream = Inbound::default();
    let mut to_client = Outbox::default();
    let mut to_upstream = Outbox::default();
    let mut tracker = Tracker::default();
    let mut closing: Option<(Result<(), SessionError>, tokio::time::Instant)> = None;
    // One pinned future per phase change, rather than a new `changed()` future per iteration.
    let mut phase_changed = Box::pin(phase_change(phase.clone()));
    let mut phase_open = true;
    // A client frame waiting for another session's fill of the same result, and the pieces the
    // client sent after it (handled in order once the wait is over).
    let mut parked: Option<Parked> = None;
    let mut deferred: VecDeque<Piece> = VecDeque::new();

    loop {
        if closing.is_none() {
            let now = *phase.borrow_and_update();
            let idle = tracker.is_idle()
                && !caching.as_deref().is_some_and(CachingSession::holds_frames)
                && parked.is_none()
                && deferred.is_empty()
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

        tokio::select! {
            read = read_into(&mut client_read, &mut from_client.buf),
                if reading && parked.is_none() && to_upstream.bytes < HIGH_WATER =>
            {
                match read {
                    Ok(0) => {
                        let result = if tracker.client_terminated() {
                            Ok(())
                        } else {
                            Err(SessionError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()))
                        };
                        to_client.clear();
                        closing = Some((result, deadline()));
                    }
                    Ok(_) => {
                        let cut = match caching.as_deref_mut() {
                            Some(caching) => from_client.pieces(|piece| {
                                if parked.is_some() {
                                    deferred.push_back(piece);
                                    return;
                                }
                                let mut io = Io {
                                    upstream: &mut to_upstream,
                                    client: &mut to_client,
                                    tracker: &mut tracker,
                                    metrics,
                                    client_info,
                                };
                                parked = feed(caching, piece, &mut io);
                            }),
                            None => from_client
                                .cut(|tag, _| match tracker.on_client_frame(tag) {
                                    Some(QueryKind::Simple) => {
                                        metrics.queries_simple.increment(1);
                                        metrics.statement_without_cache();
                                        client_info.query(false);
                                    }
                                    Some(QueryKind::Extended) => {
                                        metrics.queries_extended.increment(1);
                                        metrics.statement_without_cache();
                                        client_info.query(false);
                                    }
                                    None => {}
                                })
                                .map(|released| {
                                    if let Some(bytes) = released {
                                        to_upstream.push(bytes);
                                    }
                                }),
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
            read = read_into(&mut upstream_read, &mut from_upstream.buf),
                if reading && to_client.bytes < HIGH_WATER =>
            {
                match read {
                    Ok(0) => {
                        let result = if tracker.upstream_fatal() || tracker.client_terminated() {
                            Ok(())
                        } else {
                            let error = SessionError::UpstreamClosed;
                            say_fatal(&mut to_client, &from_upstream, &error);
                            Err(error)
                        };
                        to_upstream.clear();
                        closing = Some((result, deadline()));
                    }
                    Ok(_) => match from_upstream.cut_filtered(&mut to_client, |tag, bytes, whole| {
                        tracker.on_server_frame(tag, bytes);
                        if tag == b'E' {
                            metrics.upstream_error(bytes);
                        }
                        match caching.as_deref_mut() {
                            Some(caching) => caching.on_server_frame(tag, bytes, whole),
                            None => ServerAction::Forward,
                        }
                    }) {
                        Ok(()) => {}
                        Err(bad) => {
                            let error = SessionError::UpstreamFrame(bad);
                            say_fatal(&mut to_client, &from_upstream, &error);
                            to_upstream.clear();
                            closing = Some((Err(error), deadline()));
                        }
                    },
                    Err(e) => {
                        let error = SessionError::UpstreamIo(e);
                        say_fatal(&mut to_client, &from_upstream, &error);
                        to_upstream.clear();
                        closing = Some((Err(error), deadline()));
                    }
                }
            }
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
            open = &mut phase_changed, if phase_open && closing.is_none() => {
                phase_open = open;
                if open {
                    phase_changed = Box::pin(phase_change(phase.clone()));
                }
            }
            _ = wait_parked(&mut parked), if parked.is_some() && closing.is_none() => {
                // The other session's fill is done (or the wait timed out): try again, then
                // go on with what the client sent meanwhile.
                if let (Some(caching), Some(waiting)) = (caching.as_deref_mut(), parked.take()) {
                    let mut io = Io {
                        upstream: &mut to_upstream,
                        client: &mut to_client,
                        tracker: &mut tracker,
                        metrics,
                        client_info,
                    };
                    caching.retry_client_frame(waiting.frame, &mut io);
                    while parked.is_none() {
                        let Some(piece) = deferred.pop_front() else { break };
                        parked = feed(caching, piece, &mut io);
                    }
                }
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

/// How long a session waits for another session's fill before relaying its own query.
const SINGLE_FLIGHT_WAIT: Duration = Duration::from_secs(2);

/// A client frame parked until another session's fill of the same result ends.
struct Parked {
    frame: Bytes,
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
}

/// Hands one piece of the client's stream to the cache path; returns the frame to park if it
/// must wait for another session's fill.
fn feed(caching: &mut CachingSession, piece: Piece, io: &mut Io<'_>) -> Option<Parked> {
    match piece {
        Piece::Whole(frame) => caching
            .on_client_frame(frame.clone(), io)
            .map(|wait| Parked {
                frame,
                wait: Box::pin(wait.wait(SINGLE_FLIGHT_WAIT)),
            }),
        Piece::StreamStart(tag, bytes) => {
            caching.on_streamed_client_frame(tag, io);
            io.forward(bytes);
            None
        }
        Piece::StreamMore(bytes) => {
            io.upstream.push(bytes);
            None
        }
    }
}

/// Completes when the parked frame's wait is over (never, if nothing is parked).
async fn wait_parked(parked: &mut Option<Parked>) {
    match parked {
        Some(waiting) => {
            let _ = waiting.wait.as_mut().await;
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
        let code = match error {
            SessionError::Shutdown => sqlstate::ADMIN_SHUTDOWN,
            other => other.sqlstate(),
        };
        to_client.push(error_response::encode(
            Severity::Fatal,
            code,
            &error.to_string(),
        ));
    }
}

async fn read_into<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    reader.read_buf(buf).await
}

/// A piece of the client's stream, as handed to the cache path.
enum Piece {
    /// A complete frame.
    Whole(Bytes),
    /// The start of a frame too large to hold (tag, bytes so far).
    StreamStart(u8, Bytes),
    /// More bytes of a streamed frame.
    StreamMore(Bytes),
}

/// Bytes received from one peer and where its frame stream stands.
#[derive(Default)]
struct Inbound {
    /// Received bytes not yet released: at most one incomplete frame.
    buf: BytesMut,
    /// Whether the next byte starts a frame or continues a streamed one.
    position: Position,
}

impl Inbound {
    fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.position.at_boundary()
    }

    /// Hands every complete frame to `on_piece` as its own `Bytes`; a streamed frame comes as its
    /// start and then its further pieces. Used on the client side when caching, where each
    /// request is decided on by itself.
    fn pieces(&mut self, mut on_piece: impl FnMut(Piece)) -> Result<(), BadLength> {
        loop {
            match self.position {
                Position::Streaming { tag, remaining } => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    let take = remaining.min(self.buf.len());
                    on_piece(Piece::StreamMore(self.buf.split_to(take).freeze()));
                    self.position = if take == remaining {
                        Position::Boundary
                    } else {
                        Position::Streaming {
                            tag,
                            remaining: remaining - take,
                        }
                    };
                }
                Position::Boundary => match frame::peek(&self.buf)? {
                    Next::Whole(header) => {
                        on_piece(Piece::Whole(self.buf.split_to(header.total_len).freeze()));
                    }
                    Next::Streamed { header, available } => {
                        let start = self.buf.split_to(available).freeze();
                        self.position = Position::Streaming {
                            tag: header.tag,
                            remaining: header.total_len - available,
                        };
                        on_piece(Piece::StreamStart(header.tag, start));
                    }
                    Next::NeedMore { wanted } => {
                        frame::reserve_for(&mut self.buf, wanted);
                        return Ok(());
                    }
                },
            }
        }
    }

    /// Like [`Inbound::cut`], but `on_frame(tag, bytes, whole)` decides for each frame whether
    /// it is relayed; runs of relayed frames go to `out` as single chunks.
    fn cut_filtered(
        &mut self,
        out: &mut Outbox,
        mut on_frame: impl FnMut(u8, &[u8], bool) -> ServerAction,
    ) -> Result<(), BadLength> {
        let mut ready = 0;
        loop {
            match self.position {
                Position::Streaming { tag, remaining } => {
                    let take = remaining.min(self.buf.len() - ready);
                    ready += take;
                    if take == remaining {
                        self.position = Position::Boundary;
                    } else {
                        self.position = Position::Streaming {
                            tag,
                            remaining: remaining - take,
                        };
                        break;
                    }
                }
                Position::Boundary => match frame::peek(&self.buf[ready..])? {
                    Next::Whole(header) => {
                        let range = ready..ready + header.total_len;
                        match on_frame(header.tag, &self.buf[range], true) {
                            ServerAction::Forward => ready += header.total_len,
                            ServerAction::Drop => {
                                if ready > 0 {
                                    out.push(self.buf.split_to(ready).freeze());
                                    ready = 0;
                                }
                                let _ = self.buf.split_to(header.total_len);
                            }
                        }
                    }
                    Next::Streamed { header, available } => {
                        // Too large to hold back: always relayed.
                        let _ = on_frame(header.tag, &self.buf[ready..ready + available], false);
                        ready += available;
                        self.position = Position::Streaming {
                            tag: header.tag,
                            remaining: header.total_len - available,
                        };
                        break;
                    }
                    Next::NeedMore { wanted } => {
                        if ready > 0 {
                            out.push(self.buf.split_to(ready).freeze());
                        }
                        frame::reserve_for(&mut self.buf, wanted);
                        return Ok(());
                    }
                },
            }
        }
        if ready > 0 {
            out.push(self.buf.split_to(ready).freeze());
        }
        Ok(())
    }

    /// Releases every complete frame (and the received part of a streamed one) as one chunk,
    /// calling `on_frame(tag, frame_bytes)` for each frame that starts in it.
    fn cut(&mut self, mut on_frame: impl FnMut(u8, &[u8])) -> Result<Option<Bytes>, BadLength> {
        let mut ready = 0;
        loop {
            match self.position {
                Position::Streaming { tag, remaining } => {
                    let take = remaining.min(self.buf.len() - ready);
                    ready += take;
                    if take == remaining {
                        self.position = Position::Boundary;
                    } else {
                        self.position = Position::Streaming {
                            tag,
                            remaining: remaining - take,
                        };
                        break;
                    }
                }
                Position::Boundary => match frame::peek(&self.buf[ready..])? {
                    Next::Whole(header) => {
                        on_frame(header.tag, &self.buf[ready..ready + header.total_len]);
                        ready += header.total_len;
                    }
                    Next::Streamed { header, available } => {
                        on_frame(header.tag, &self.buf[ready..ready + available]);
                        ready += available;
                        self.position = Position::Streaming {
                            tag: header.tag,
                            remaining: header.total_len - available,
                        };
                        break;
                    }
                    Next::NeedMore { wanted } => {
                        let released = if ready > 0 {
                            Some(self.buf.split_to(ready).freeze())
                        } else {
                            None
                        };
                        frame::reserve_for(&mut self.buf, wanted);
                        return Ok(released);
                    }
                },
            }
        }
        if ready == 0 {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(ready).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn complete_frames_are_released_together_and_partial_ones_kept() {
        let mut inbound = Inbound::default();
        let a = frame(b'D', b"row one");
        let b = frame(b'D', b"row two");
        let c = frame(b'C', b"SELECT 2\0");
        inbound.buf.extend_from_slice(&a);
        inbound.buf.extend_from_slice(&b);
        inbound.buf.extend_from_slice(&c[..4]);
        let mut tags = Vec::new();
        let released = inbound.cut(|tag, _| tags.push(tag)).expect("valid");
        assert_eq!(released.map(|b| b.len()), Some(a.len() + b.len()));
        assert_eq!(tags, vec![b'D', b'D']);
        inbound.buf.extend_from_slice(&c[4..]);
        let released = inbound.cut(|tag, _| tags.push(tag)).expect("valid");
        assert_eq!(released.as_deref(), Some(&c[..]));
        assert!(inbound.is_empty());
    }

    #[test]
    fn large_frames_pass_through_in_pieces() {
        let mut inbound = Inbound::default();
        let body = vec![7u8; frame::STREAM_THRESHOLD * 2];
        let big = frame(b'd', &body);
        let mut released = 0;
        let mut frames = 0;
        for chunk in big.chunks(100_000) {
            inbound.buf.extend_from_slice(chunk);
            if let Some(bytes) = inbound.cut(|_, _| frames += 1).expect("valid") {
                released += bytes.len();
            }
            assert!(inbound.buf.len() < frame::STREAM_THRESHOLD);
        }
        assert_eq!(released, big.len());
        assert_eq!(frames, 1);
        assert!(inbound.is_empty());
    }

    #[test]
    fn bad_length_is_an_error() {
        let mut inbound = Inbound::default();
        inbound.buf.extend_from_slice(b"Q\0\0\0\x01");
        assert!(inbound.cut(|_, _| {}).is_err());
    }
}

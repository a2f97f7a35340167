//! Bytes received from one peer, cut into frames without copying.
//!
//! Each direction of the relay reads into an [`Inbound`] buffer. Complete frames are released
//! as `Bytes` split off the buffer: either one piece per frame ([`Inbound::pieces`], for the
//! client side of a caching session, where each request is decided on by itself) or whole runs
//! of frames as one chunk ([`Inbound::cut_runs`], where frames are only looked at, and
//! occasionally dropped). A frame larger than [`frame::STREAM_THRESHOLD`] is never held whole:
//! its start is released at once and the rest passes through as it arrives.

use bytes::BytesMut;

use super::caching::server::ServerAction;
use super::machine::ClientPiece;
use super::outbox::Outbox;
use crate::wire::frame::{self, BadLength, Next, Position};

/// Free space a read buffer gets before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Makes room in a read buffer for the next read. Called just before the read, after the
/// frames cut from the buffer were written (the relay writes before it reads): the buffer is
/// then no longer shared and is reused in place, not replaced by a new allocation.
pub(crate) fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
}

/// Bytes received from one peer and where its frame stream stands.
#[derive(Default)]
pub(crate) struct Inbound {
    /// Received bytes not yet released: at most one incomplete frame.
    pub(crate) buf: BytesMut,
    /// Whether the next byte starts a frame or continues a streamed one.
    pub(crate) position: Position,
}

impl Inbound {
    /// True when nothing is buffered and no streamed frame is under way.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.position.at_boundary()
    }

    /// Hands every complete frame to `on_piece` as its own `Bytes`; a streamed frame comes as
    /// its start and then its further pieces.
    pub(crate) fn pieces(
        &mut self,
        mut on_piece: impl FnMut(ClientPiece),
    ) -> Result<(), BadLength> {
        loop {
            match self.position {
                Position::Streaming { tag, remaining } => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    let take = remaining.min(self.buf.len());
                    on_piece(ClientPiece::StreamMore(self.buf.split_to(take).freeze()));
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
                        on_piece(ClientPiece::Whole(
                            self.buf.split_to(header.total_len).freeze(),
                        ));
                    }
                    Next::Streamed { header, available } => {
                        let start = self.buf.split_to(available).freeze();
                        self.position = Position::Streaming {
                            tag: header.tag,
                            remaining: header.total_len - available,
                        };
                        on_piece(ClientPiece::StreamStart(header.tag, start));
                    }
                    Next::NeedMore { wanted } => {
                        frame::reserve_for(&mut self.buf, wanted);
                        return Ok(());
                    }
                },
            }
        }
    }

    /// Releases the complete frames (and the received part of a streamed one) into `out`, runs
    /// of relayed frames as single chunks. `on_frame(tag, bytes, whole)` sees each frame that
    /// starts here (`whole` false for the start of a streamed one, which is always relayed) and
    /// says whether it is relayed.
    pub(crate) fn cut_runs(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        crate::wire::test_frame(tag, body).to_vec()
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
        let mut out = Outbox::default();
        inbound
            .cut_runs(&mut out, |tag, _, _| {
                tags.push(tag);
                ServerAction::Forward
            })
            .expect("valid");
        assert_eq!(out.bytes, a.len() + b.len());
        assert_eq!(tags, vec![b'D', b'D']);
        inbound.buf.extend_from_slice(&c[4..]);
        inbound
            .cut_runs(&mut out, |tag, _, _| {
                tags.push(tag);
                ServerAction::Forward
            })
            .expect("valid");
        assert_eq!(out.bytes, a.len() + b.len() + c.len());
        assert!(inbound.is_empty());
    }

    #[test]
    fn the_read_buffer_is_reused_once_its_frames_are_written() {
        let mut inbound = Inbound::default();
        make_room(&mut inbound.buf);
        let start = inbound.buf.as_ptr() as usize;
        let mut answer = frame(b'D', b"one row of a result");
        answer.extend_from_slice(&frame(b'C', b"SELECT 1\0"));
        answer.extend_from_slice(&frame(b'Z', b"I"));
        // Many round trips: read, cut, queue, write; then room for the next read.
        for _ in 0..2_000 {
            inbound.buf.extend_from_slice(&answer);
            let mut out = Outbox::default();
            inbound
                .cut_runs(&mut out, |_, _, _| ServerAction::Forward)
                .expect("valid");
            assert_eq!(out.bytes, answer.len());
            let written = out.bytes;
            out.advance(written);
            make_room(&mut inbound.buf);
            let at = (inbound.buf.as_ptr() as usize).wrapping_sub(start);
            assert!(at < READ_CHUNK, "a new buffer was allocated");
        }
    }

    #[test]
    fn dropped_frames_are_cut_out_of_a_run() {
        let mut inbound = Inbound::default();
        let keep = frame(b'D', b"keep");
        let drop = frame(b'1', b"");
        inbound.buf.extend_from_slice(&keep);
        inbound.buf.extend_from_slice(&drop);
        inbound.buf.extend_from_slice(&keep);
        let mut out = Outbox::default();
        inbound
            .cut_runs(&mut out, |tag, _, _| {
                if tag == b'1' {
                    ServerAction::Drop
                } else {
                    ServerAction::Forward
                }
            })
            .expect("valid");
        assert_eq!(out.bytes, 2 * keep.len());
    }

    #[test]
    fn large_frames_pass_through_in_pieces() {
        let mut inbound = Inbound::default();
        let body = vec![7u8; frame::STREAM_THRESHOLD * 2];
        let big = frame(b'd', &body);
        let mut released = 0;
        let mut starts = 0;
        for chunk in big.chunks(100_000) {
            inbound.buf.extend_from_slice(chunk);
            inbound
                .pieces(|piece| match piece {
                    ClientPiece::StreamStart(_, bytes) => {
                        starts += 1;
                        released += bytes.len();
                    }
                    ClientPiece::StreamMore(bytes) | ClientPiece::Whole(bytes) => {
                        released += bytes.len()
                    }
                })
                .expect("valid");
            assert!(inbound.buf.len() < frame::STREAM_THRESHOLD);
        }
        assert_eq!(released, big.len());
        assert_eq!(starts, 1);
        assert!(inbound.is_empty());
    }

    #[test]
    fn bad_length_is_an_error() {
        let mut inbound = Inbound::default();
        inbound.buf.extend_from_slice(b"Q\0\0\0\x01");
        assert!(inbound.pieces(|_| {}).is_err());
        let mut inbound = Inbound::default();
        inbound.buf.extend_from_slice(b"Q\0\0\0\x01");
        assert!(inbound
            .cut_runs(&mut Outbox::default(), |_, _, _| ServerAction::Forward)
            .is_err());
    }
}

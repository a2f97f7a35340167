//! Framing of tagged protocol messages (everything after the startup packet).
//!
//! A message is a 1-byte tag, an Int32 length that counts itself but not the tag, and a body.
//! The framer walks a receive buffer frame by frame and tells the caller where each one starts
//! and ends; the caller forwards whole ranges of the buffer untouched. Frames above
//! [`STREAM_THRESHOLD`] are not buffered whole: their header and whatever body bytes have arrived
//! are released at once, and the rest of the body passes through as it arrives. That bounds a
//! session's memory whatever size of message a peer announces.

use bytes::BytesMut;

/// Frames larger than this (header included) are streamed through instead of buffered whole.
pub const STREAM_THRESHOLD: usize = 1024 * 1024;

/// Largest length a peer may announce. PostgreSQL itself refuses messages of 1 GiB or more.
pub const MAX_FRAME_LEN: usize = 0x3fff_ffff;

/// Size of a tag plus a length word.
pub const HEADER_LEN: usize = 5;

/// A frame header found at the start of the unread part of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type byte, e.g. `b'Q'`.
    pub tag: u8,
    /// Total size on the wire: tag + length word + body.
    pub total_len: usize,
}

/// What the framer found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A whole frame of `total_len` bytes is in the buffer.
    Whole(FrameHeader),
    /// A frame larger than [`STREAM_THRESHOLD`] starts here; its header is in the buffer and the
    /// caller may release `available` bytes of it now (header plus body bytes already received).
    Streamed {
        header: FrameHeader,
        available: usize,
    },
    /// More bytes are needed; `wanted` is the total the buffer must hold to make progress.
    NeedMore { wanted: usize },
}

/// A length word that no legal message has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid message length {length} for message type {tag:?}")]
pub struct BadLength {
    /// The tag of the offending frame, as a character when printable.
    pub tag: char,
    /// The announced length.
    pub length: i64,
}

/// Looks at the start of `buf` and reports the next frame.
pub fn peek(buf: &[u8]) -> Result<Next, BadLength> {
    if buf.len() < HEADER_LEN {
        return Ok(Next::NeedMore { wanted: HEADER_LEN });
    }
    let tag = buf[0];
    let length = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if length < 4 || length as usize > MAX_FRAME_LEN {
        return Err(BadLength {
            tag: printable(tag),
            length: i64::from(length),
        });
    }
    let header = FrameHeader {
        tag,
        total_len: 1 + length as usize,
    };
    if buf.len() >= header.total_len {
        return Ok(Next::Whole(header));
    }
    if header.total_len > STREAM_THRESHOLD {
        return Ok(Next::Streamed {
            header,
            available: buf.len(),
        });
    }
    Ok(Next::NeedMore {
        wanted: header.total_len,
    })
}

fn printable(tag: u8) -> char {
    if tag.is_ascii_graphic() {
        tag as char
    } else {
        '?'
    }
}

/// Tracks where a direction of the relay stands in its stream of frames.
///
/// Between frames the relay may inspect, inject or hold back whole messages; inside a streamed
/// frame it may only pass bytes through until the frame's end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The next byte starts a frame.
    #[default]
    Boundary,
    /// Inside a streamed frame with this many body bytes still to pass through.
    Streaming { tag: u8, remaining: usize },
}

impl Position {
    /// True when the next byte starts a new frame.
    pub fn at_boundary(&self) -> bool {
        matches!(self, Position::Boundary)
    }
}

/// Reserves room in `buf` so that the next read can complete a frame of `wanted` bytes, if it
/// has not room enough already. Only then: the frames just split off `buf` still share its
/// allocation until they are written, so reserving now would allocate a new buffer at every
/// read; reserved just before the next read instead, after the writes, the buffer is reused.
pub fn reserve_for(buf: &mut BytesMut, wanted: usize) {
    let missing = wanted.saturating_sub(buf.len());
    if buf.capacity() - buf.len() < missing {
        buf.reserve(missing.max(8 * 1024));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        crate::wire::test_frame(tag, body).to_vec()
    }

    #[test]
    fn whole_frame_is_reported_with_its_size() {
        let f = frame(b'Q', b"select 1\0");
        assert_eq!(
            peek(&f),
            Ok(Next::Whole(FrameHeader {
                tag: b'Q',
                total_len: f.len()
            }))
        );
    }

    #[test]
    fn partial_header_and_partial_body_ask_for_more() {
        let f = frame(b'Q', b"select 1\0");
        assert_eq!(peek(&f[..3]), Ok(Next::NeedMore { wanted: 5 }));
        assert_eq!(peek(&f[..7]), Ok(Next::NeedMore { wanted: f.len() }));
    }

    #[test]
    fn lengths_below_four_or_above_one_gib_are_rejected() {
        let mut f = frame(b'Q', b"");
        f[1..5].copy_from_slice(&3i32.to_be_bytes());
        assert!(peek(&f).is_err());
        f[1..5].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(peek(&f).is_err());
        f[1..5].copy_from_slice(&0x4000_0000i32.to_be_bytes());
        assert!(peek(&f).is_err());
    }

    #[test]
    fn large_frames_are_streamed_before_they_are_complete() {
        let mut f = vec![b'd'];
        f.extend_from_slice(&(4 * 1024 * 1024i32).to_be_bytes());
        f.extend_from_slice(&[0u8; 100]);
        match peek(&f) {
            Ok(Next::Streamed { header, available }) => {
                assert_eq!(header.total_len, 4 * 1024 * 1024 + 1);
                assert_eq!(available, f.len());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

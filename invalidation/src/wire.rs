//! Bytes on a replication connection: framing of backend messages, ErrorResponse fields, and
//! the few frontend messages a replication client sends (Query, CopyData with a standby status
//! update). Decides nothing.
//!
//! A backend message is a tag, an Int32 length that counts itself, and a body. Messages up to
//! [`MAX_BUFFERED`] are read whole. A larger one (a row with a huge value) is not buffered: its
//! first [`PREFIX`] bytes are kept, flagged as cut, and the rest is read and dropped, so a
//! stream's memory stays bounded whatever the rows hold.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest message kept whole.
pub const MAX_BUFFERED: usize = 16 * 1024 * 1024;
/// How much of a larger message is kept (enough for its header and relation name).
pub const PREFIX: usize = 64 * 1024;
/// Largest length PostgreSQL may announce (it refuses messages of 1 GiB or more).
const MAX_LENGTH: usize = 0x3fff_ffff;

/// A WAL position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Reads PostgreSQL's text form, `X/Y` (two hexadecimal halves).
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.trim().split_once('/')?;
        let high = u32::from_str_radix(high, 16).ok()?;
        let low = u32::from_str_radix(low, 16).ok()?;
        Some(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// An ErrorResponse from PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (SQLSTATE {code})")]
pub struct ServerError {
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The SQLSTATE.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The hint, if any.
    pub hint: Option<String>,
}

impl ServerError {
    /// Reads the fields of an ErrorResponse body.
    pub fn parse(body: &[u8]) -> ServerError {
        let mut error = ServerError {
            severity: String::new(),
            code: String::new(),
            message: String::new(),
            hint: None,
        };
        let mut rest = body;
        while let Some((&field, tail)) = rest.split_first() {
            if field == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
            let value = String::from_utf8_lossy(&tail[..end]).into_owned();
            match field {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'H' => error.hint = Some(value),
                _ => {}
            }
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        error
    }
}

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The tag byte.
    pub tag: u8,
    /// The body, or its first [`PREFIX`] bytes when `cut`.
    pub body: Bytes,
    /// True when the message was larger than [`MAX_BUFFERED`] and only a prefix is kept.
    pub cut: bool,
}

/// A stream that broke the framing rules.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A length no message has.
    #[error("invalid message length {length} for message type {tag:#04x}")]
    BadLength {
        /// Message type.
        tag: u8,
        /// Announced length.
        length: i64,
    },
}

/// Reads backend messages from a stream. [`next`](Self::next) is cancel-safe: all progress is
/// kept in the reader, so it can be one branch of a `select!`.
pub struct MessageReader {
    buffer: BytesMut,
    /// A message being cut: its kept prefix and the body bytes still to drop.
    cutting: Option<(u8, Bytes, usize)>,
}

impl Default for MessageReader {
    fn default() -> MessageReader {
        MessageReader {
            buffer: BytesMut::with_capacity(64 * 1024),
            cutting: None,
        }
    }
}

impl MessageReader {
    /// The next message from `stream`.
    pub async fn next<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut S,
    ) -> Result<Message, ReadError> {
        loop {
            if let Some(message) = self.take()? {
                return Ok(message);
            }
            if self.buffer.capacity() - self.buffer.len() < 8192 {
                self.buffer.reserve(64 * 1024);
            }
            if stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(ReadError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "PostgreSQL closed the connection",
                )));
            }
        }
    }

    /// A message out of what was read so far, if one is complete.
    fn take(&mut self) -> Result<Option<Message>, ReadError> {
        if let Some((tag, prefix, left)) = self.cutting.take() {
            let drop = left.min(self.buffer.len());
            self.buffer.advance(drop);
            if drop < left {
                self.cutting = Some((tag, prefix, left - drop));
                return Ok(None);
            }
            return Ok(Some(Message {
                tag,
                body: prefix,
                cut: true,
            }));
        }
        if self.buffer.len() < 5 {
            return Ok(None);
        }
        let tag = self.buffer[0];
        let length = i32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]);
        if length < 4 || length as usize > MAX_LENGTH {
            return Err(ReadError::BadLength {
                tag,
                length: i64::from(length),
            });
        }
        let body_len = length as usize - 4;
        if body_len > MAX_BUFFERED {
            if self.buffer.len() < 5 + PREFIX {
                return Ok(None);
            }
            self.buffer.advance(5);
            let prefix = self.buffer.split_to(PREFIX).freeze();
            self.cutting = Some((tag, prefix, body_len - PREFIX));
            return self.take();
        }
        if self.buffer.len() < 5 + body_len {
            self.buffer.reserve(5 + body_len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(5);
        let body = self.buffer.split_to(body_len).freeze();
        Ok(Some(Message {
            tag,
            body,
            cut: false,
        }))
    }
}

fn tagged(tag: u8, body_len: usize) -> BytesMut {
    let mut message = BytesMut::with_capacity(5 + body_len);
    message.put_u8(tag);
    message.put_i32((4 + body_len) as i32);
    message
}

/// A simple Query.
pub fn query(sql: &str) -> Bytes {
    let mut message = tagged(b'Q', sql.len() + 1);
    message.put_slice(sql.as_bytes());
    message.put_u8(0);
    message.freeze()
}

/// A standby status update (`r`) in a CopyData: everything up to `lsn` was received, flushed
/// and applied; `now_micros` is the client's clock (µs since 2000-01-01).
pub fn standby_status(lsn: Lsn, now_micros: i64) -> Bytes {
    let mut message = tagged(b'd', 34);
    message.put_u8(b'r');
    message.put_u64(lsn.0);
    message.put_u64(lsn.0);
    message.put_u64(lsn.0);
    message.put_i64(now_micros);
    message.put_u8(0);
    message.freeze()
}

/// CopyDone, to end the copy stream from our side.
pub fn copy_done() -> Bytes {
    tagged(b'c', 0).freeze()
}

/// Terminate.
pub fn terminate() -> Bytes {
    tagged(b'X', 0).freeze()
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
    fn positions_read_and_print_alike() {
        let lsn = Lsn::parse("16/B374D848").expect("valid");
        assert_eq!(lsn, Lsn(0x16_B374_D848));
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        for bad in ["", "1", "x/1", "1/", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn messages_are_read_whole_and_huge_ones_cut() {
        let huge: Vec<u8> = (0..MAX_BUFFERED + 10).map(|i| (i % 251) as u8).collect();
        let mut bytes = frame(b'd', b"small");
        bytes.extend(frame(b'd', &huge));
        bytes.extend(frame(b'Z', b"I"));
        let mut stream: &[u8] = &bytes;
        let mut reader = MessageReader::default();
        let first = reader.next(&mut stream).await.expect("first");
        assert_eq!(
            (first.tag, &first.body[..], first.cut),
            (b'd', &b"small"[..], false)
        );
        let second = reader.next(&mut stream).await.expect("second");
        assert!(second.cut);
        assert_eq!(&second.body[..], &huge[..PREFIX]);
        let third = reader.next(&mut stream).await.expect("third");
        assert_eq!((third.tag, &third.body[..]), (b'Z', &b"I"[..]));
        assert!(matches!(
            reader.next(&mut stream).await,
            Err(ReadError::Io(_))
        ));
    }

    #[tokio::test]
    async fn a_bad_length_is_an_error() {
        let mut stream: &[u8] = b"d\0\0\0\x02";
        assert!(matches!(
            MessageReader::default().next(&mut stream).await,
            Err(ReadError::BadLength {
                tag: b'd',
                length: 2
            })
        ));
    }

    #[test]
    fn error_fields_and_frontend_messages() {
        let error = ServerError::parse(
            b"SFATAL\0VFATAL\0C53300\0Mnumber of requested standby connections exceeds max_wal_senders (currently 1)\0\0",
        );
        assert_eq!(error.severity, "FATAL");
        assert_eq!(error.code, "53300");
        assert!(error.message.contains("max_wal_senders"));
        assert_eq!(error.hint, None);
        assert_eq!(&query("SELECT 1")[..], b"Q\0\0\0\x0dSELECT 1\0");
        let status = standby_status(Lsn(0x1_0000_0002), 7);
        assert_eq!(status.len(), 1 + 4 + 34);
        assert_eq!(&status[..6], b"d\0\0\0\x26r");
        assert_eq!(Lsn(0x1_0000_00AB).to_string(), "1/AB");
    }
}

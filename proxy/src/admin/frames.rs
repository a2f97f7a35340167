//! The messages the admin console reads and writes: whole frames from a stream, and the few
//! backend messages a result needs (RowDescription, DataRow, CommandComplete, ReadyForQuery,
//! ErrorResponse, NoticeResponse). Nothing here decides anything.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::wire::error_response::{self, Severity};

/// Largest message the console accepts from a client (its commands are short).
pub const MAX_CLIENT_FRAME: usize = 1024 * 1024;

/// One tagged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type byte.
    pub tag: u8,
    /// The whole message: tag, length word and body.
    pub bytes: Bytes,
}

impl Frame {
    /// The body (after the length word).
    pub fn body(&self) -> &[u8] {
        self.bytes.get(5..).unwrap_or(&[])
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed or the socket failed.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    /// The length word is below 4 or above the limit.
    #[error("message of {0} bytes is out of range for the admin console")]
    Length(usize),
}

/// Reads one whole message of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Frame, FrameError> {
    let mut header = [0u8; 5];
    reader.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=max).contains(&length) {
        return Err(FrameError::Length(length));
    }
    let mut bytes = BytesMut::with_capacity(length + 1);
    bytes.extend_from_slice(&header);
    bytes.resize(length + 1, 0);
    reader.read_exact(&mut bytes[5..]).await?;
    Ok(Frame {
        tag: header[0],
        bytes: bytes.freeze(),
    })
}

/// The type of a result column, so that psql aligns numbers to the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `text`.
    Text,
    /// `int8`.
    Int,
    /// `float8`.
    Float,
}

impl ColumnType {
    fn oid(self) -> u32 {
        match self {
            ColumnType::Text => 25,
            ColumnType::Int => 20,
            ColumnType::Float => 701,
        }
    }

    fn size(self) -> i16 {
        match self {
            ColumnType::Text => -1,
            ColumnType::Int | ColumnType::Float => 8,
        }
    }
}

/// A result the console sends: columns, rows (text format; `None` is NULL) and a command tag.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSet {
    /// Column names and types.
    pub columns: Vec<(&'static str, ColumnType)>,
    /// Rows, one value per column.
    pub rows: Vec<Vec<Option<String>>>,
    /// The CommandComplete tag; `SHOW` when empty.
    pub tag: String,
    /// Notices sent before the result.
    pub notices: Vec<String>,
}

impl ResultSet {
    /// An empty result with these columns.
    pub fn new(columns: &[(&'static str, ColumnType)]) -> ResultSet {
        ResultSet {
            columns: columns.to_vec(),
            ..ResultSet::default()
        }
    }

    /// A command that returns no rows, only a tag.
    pub fn command(tag: String) -> ResultSet {
        ResultSet {
            tag,
            ..ResultSet::default()
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<Option<String>>) {
        self.rows.push(row);
    }

    /// The frames answering the query (without ReadyForQuery).
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::new();
        for notice in &self.notices {
            out.extend_from_slice(&notice_response(notice));
        }
        if !self.columns.is_empty() {
            let mut body = BytesMut::new();
            body.put_i16(self.columns.len() as i16);
            for (name, kind) in &self.columns {
                body.put_slice(name.as_bytes());
                body.put_u8(0);
                body.put_u32(0);
                body.put_i16(0);
                body.put_u32(kind.oid());
                body.put_i16(kind.size());
                body.put_i32(-1);
                body.put_i16(0);
            }
            put_message(&mut out, b'T', &body);
            for row in &self.rows {
                let mut body = BytesMut::new();
                body.put_i16(row.len() as i16);
                for value in row {
                    match value {
                        Some(text) => {
                            body.put_i32(text.len() as i32);
                            body.put_slice(text.as_bytes());
                        }
                        None => body.put_i32(-1),
                    }
                }
                put_message(&mut out, b'D', &body);
            }
        }
        let tag = if self.tag.is_empty() {
            format!("SHOW {}", self.rows.len())
        } else {
            self.tag.clone()
        };
        let mut body = BytesMut::from(tag.as_bytes());
        body.put_u8(0);
        put_message(&mut out, b'C', &body);
        out
    }
}

fn put_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_u32(body.len() as u32 + 4);
    out.put_slice(body);
}

/// ReadyForQuery, idle.
pub const READY: &[u8] = b"Z\0\0\0\x05I";
/// EmptyQueryResponse.
pub const EMPTY_QUERY: &[u8] = b"I\0\0\0\x04";

/// An ErrorResponse with this SQLSTATE.
pub fn error(code: &str, message: &str) -> Bytes {
    error_response::encode(Severity::Error, code, message)
}

/// A FATAL ErrorResponse with this SQLSTATE.
pub fn fatal(code: &str, message: &str) -> Bytes {
    error_response::encode(Severity::Fatal, code, message)
}

/// A NoticeResponse (severity NOTICE).
pub fn notice_response(message: &str) -> Bytes {
    let mut body = BytesMut::new();
    for (field, value) in [
        (b'S', "NOTICE"),
        (b'V', "NOTICE"),
        (b'C', "00000"),
        (b'M', message),
    ] {
        body.put_u8(field);
        body.put_slice(value.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::new();
    put_message(&mut out, b'N', &body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_encodes_description_rows_and_tag() {
        let mut result = ResultSet::new(&[("name", ColumnType::Text), ("n", ColumnType::Int)]);
        result.push(vec![Some("a".to_owned()), None]);
        let bytes = result.encode();
        assert_eq!(bytes[0], b'T');
        let description_len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let row = &bytes[1 + description_len..];
        assert_eq!(row[0], b'D');
        // Two columns: "a" (length 1) and NULL (-1).
        assert_eq!(&row[5..7], &[0, 2]);
        assert_eq!(&row[7..11], &1i32.to_be_bytes());
        assert_eq!(row[11], b'a');
        assert_eq!(&row[12..16], &(-1i32).to_be_bytes());
        let complete = &row[16..];
        assert_eq!(complete[0], b'C');
        assert_eq!(&complete[5..], b"SHOW 1\0");
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_lengths_checked() {
        let mut input: &[u8] = b"Q\0\0\0\x0aSHOW\0\0X\0\0\0\x04";
        let frame = read_frame(&mut input, 64).await.expect("frame");
        assert_eq!(frame.tag, b'Q');
        assert_eq!(frame.body(), b"SHOW\0\0");
        let frame = read_frame(&mut input, 64).await.expect("frame");
        assert_eq!(frame.tag, b'X');
        let mut too_long: &[u8] = b"Q\0\0\x10\0";
        assert!(matches!(
            read_frame(&mut too_long, 64).await,
            Err(FrameError::Length(_))
        ));
        let mut too_short: &[u8] = b"Q\0\0\0\x02";
        assert!(matches!(
            read_frame(&mut too_short, 64).await,
            Err(FrameError::Length(2))
        ));
    }
}

//! The messages the admin console reads and writes: whole frames from a stream, and the few
//! backend messages a result needs (RowDescription, DataRow, CommandComplete, ReadyForQuery,
//! ErrorResponse, NoticeResponse). Nothing here decides anything.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::error_response::{self, Severity};

/// Largest message the console accepts from a client (its commands are short).
pub const MAX_CLIENT_FRAME: usize = 1024 * 1024;

pub use crate::net::read::{read_frame, Frame, FrameError};

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

    /// The frames answering a simple query (without ReadyForQuery): notices, RowDescription,
    /// DataRows, CommandComplete, all in text format.
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode_notices(&mut out);
        if !self.columns.is_empty() {
            self.encode_description(&mut out, &[]);
            self.encode_rows(&mut out, 0, self.rows.len(), &[]);
        }
        self.encode_complete(&mut out);
        out
    }

    /// NoticeResponses for the notices.
    pub fn encode_notices(&self, out: &mut BytesMut) {
        for notice in &self.notices {
            out.extend_from_slice(&notice_response(notice));
        }
    }

    /// RowDescription, with the result formats a Bind asked for (see [`format_of`]), or NoData
    /// for a result without columns.
    pub fn encode_description(&self, out: &mut BytesMut, formats: &[i16]) {
        if self.columns.is_empty() {
            put_message(out, b'n', &[]);
            return;
        }
        let mut body = BytesMut::new();
        body.put_i16(self.columns.len() as i16);
        for (index, (name, kind)) in self.columns.iter().enumerate() {
            body.put_slice(name.as_bytes());
            body.put_u8(0);
            body.put_u32(0);
            body.put_i16(0);
            body.put_u32(kind.oid());
            body.put_i16(kind.size());
            body.put_i32(-1);
            body.put_i16(format_of(formats, index));
        }
        put_message(out, b'T', &body);
    }

    /// DataRows `from..to`, each value in its column's requested format.
    pub fn encode_rows(&self, out: &mut BytesMut, from: usize, to: usize, formats: &[i16]) {
        for row in self.rows.get(from..to).unwrap_or(&[]) {
            let mut body = BytesMut::new();
            body.put_i16(row.len() as i16);
            for (index, value) in row.iter().enumerate() {
                let kind = self.columns.get(index).map_or(ColumnType::Text, |c| c.1);
                match value
                    .as_deref()
                    .and_then(|v| encode_value(v, kind, format_of(formats, index)))
                {
                    Some(bytes) => {
                        body.put_i32(bytes.len() as i32);
                        body.put_slice(&bytes);
                    }
                    None => body.put_i32(-1),
                }
            }
            put_message(out, b'D', &body);
        }
    }

    /// CommandComplete with the result's tag (`SHOW n` by default).
    pub fn encode_complete(&self, out: &mut BytesMut) {
        let tag = if self.tag.is_empty() {
            format!("SHOW {}", self.rows.len())
        } else {
            self.tag.clone()
        };
        let mut body = BytesMut::from(tag.as_bytes());
        body.put_u8(0);
        put_message(out, b'C', &body);
    }
}

/// The format code of column `index` from a Bind's result formats: none means text, one
/// applies to every column, otherwise one per column.
pub fn format_of(formats: &[i16], index: usize) -> i16 {
    match formats {
        [] => 0,
        [only] => *only,
        many => many.get(index).copied().unwrap_or(0),
    }
}

/// A value in text (0) or binary (1) format; `None` (sent as NULL) if it cannot be.
fn encode_value(text: &str, kind: ColumnType, format: i16) -> Option<Vec<u8>> {
    if format == 0 || kind == ColumnType::Text {
        return Some(text.as_bytes().to_vec());
    }
    match kind {
        ColumnType::Int => text.parse::<i64>().ok().map(|v| v.to_be_bytes().to_vec()),
        ColumnType::Float => text
            .parse::<f64>()
            .ok()
            .map(|v| v.to_bits().to_be_bytes().to_vec()),
        ColumnType::Text => Some(text.as_bytes().to_vec()),
    }
}

fn put_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_u32(body.len() as u32 + 4);
    out.put_slice(body);
}

/// An ErrorResponse with this SQLSTATE: a console command that failed, told to an admitted
/// role. A console session that ends is told through [`crate::error::fatal_response`].
pub fn error(code: &str, message: &str) -> Bytes {
    error_response::encode(Severity::Error, code, message)
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

    #[test]
    fn binary_formats_follow_the_column_types() {
        let mut result = ResultSet::new(&[
            ("name", ColumnType::Text),
            ("n", ColumnType::Int),
            ("x", ColumnType::Float),
        ]);
        result.push(vec![
            Some("a".to_owned()),
            Some("7".to_owned()),
            Some("0.5".to_owned()),
        ]);
        let mut out = BytesMut::new();
        result.encode_rows(&mut out, 0, 1, &[1]);
        let body = &out[5..];
        assert_eq!(&body[..2], &[0, 3]);
        assert_eq!(&body[2..6], &1i32.to_be_bytes());
        assert_eq!(body[6], b'a');
        assert_eq!(&body[7..11], &8i32.to_be_bytes());
        assert_eq!(&body[11..19], &7i64.to_be_bytes());
        assert_eq!(&body[19..23], &8i32.to_be_bytes());
        assert_eq!(&body[23..31], &0.5f64.to_bits().to_be_bytes());
        assert_eq!(format_of(&[], 2), 0);
        assert_eq!(format_of(&[1], 2), 1);
        assert_eq!(format_of(&[0, 1], 1), 1);
        let mut description = BytesMut::new();
        ResultSet::command("INVALIDATE 0".to_owned()).encode_description(&mut description, &[]);
        assert_eq!(&description[..], b"n\0\0\0\x04");
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

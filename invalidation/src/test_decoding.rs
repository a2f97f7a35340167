//! Parser of the text lines test_decoding writes (PostgreSQL 10 and later), started with
//! `include-xids '1'`, `include-timestamp '1'` and `skip-empty-xacts '1'`.
//!
//! Each XLogData message carries one line:
//!
//! ```text
//! BEGIN 734
//! table public.orders: INSERT: id[integer]:1 note[text]:'it''s' tags[text[]]:'{a,b}' paid[boolean]:true
//! table "Sales"."order lines": UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 qty[integer]:null
//! table public.nokey: DELETE: (no-tuple-data)
//! table public.a, public.b: TRUNCATE: (no-flags)
//! COMMIT 734 (at 2024-05-01 10:11:12.123456+02)
//! ```
//!
//! Names are printed as `quote_identifier` prints them (quoted only when needed, `"` doubled);
//! values: `null`, `unchanged-toast-datum`, integers, floats and numerics bare, booleans as
//! `true`/`false`, bit strings as `B'0101'`, everything else in single quotes with `'` doubled.
//! An old image lists only its non-NULL columns. Logical messages (`message: ...`) name no
//! table. Anything else is an error: the caller must then treat the transaction's tables as
//! unknown.

use bytes::Bytes;

use crate::change::{Change, ChangeKind, Column, RelationRef, RowImage, Value};

/// One line of test_decoding output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A transaction begins; its transaction id when the line carries it (`include-xids`).
    Begin { xid: Option<u32> },
    /// The transaction commits; commit time in µs since 2000-01-01 UTC when it could be read.
    Commit { time_micros: Option<i64> },
    /// Row changes (several for a TRUNCATE of several tables).
    Changes(Vec<Change>),
    /// A logical message (`pg_logical_emit_message`): no table changed.
    Message,
}

/// A line that is not what test_decoding writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable test_decoding line at byte {at}: {what}")]
pub struct ParseError {
    /// Byte offset where reading failed.
    pub at: usize,
    /// What was expected.
    pub what: &'static str,
}

/// Parses one whole line.
pub fn parse(line: &[u8]) -> Result<Line, ParseError> {
    parse_line(line, true)
}

/// Parses the start of a line too large to keep: the relations and the kind of change are
/// read, the row images are not (they are reported as unknown).
pub fn parse_prefix(prefix: &[u8]) -> Result<Line, ParseError> {
    parse_line(prefix, false)
}

fn parse_line(line: &[u8], complete: bool) -> Result<Line, ParseError> {
    let mut cursor = Cursor { text: line, at: 0 };
    if cursor.eat(b"table ") {
        return table_line(&mut cursor, complete).map(Line::Changes);
    }
    if cursor.eat(b"BEGIN") {
        let xid = if cursor.eat(b" ") {
            Some(cursor.xid()?)
        } else {
            None
        };
        return Ok(Line::Begin { xid });
    }
    if cursor.eat(b"COMMIT") {
        let time_micros = line
            .windows(4)
            .position(|w| w == b"(at ")
            .and_then(|start| {
                let rest = &line[start + 4..];
                let end = rest.iter().position(|b| *b == b')')?;
                std::str::from_utf8(&rest[..end]).ok()
            })
            .and_then(timestamp_micros);
        return Ok(Line::Commit { time_micros });
    }
    if cursor.eat(b"message:") {
        return Ok(Line::Message);
    }
    Err(cursor.error("BEGIN, COMMIT, table or message"))
}

fn table_line(cursor: &mut Cursor<'_>, complete: bool) -> Result<Vec<Change>, ParseError> {
    let mut relations = vec![cursor.qualified_name()?];
    while cursor.eat(b", ") {
        relations.push(cursor.qualified_name()?);
    }
    cursor.expect(b": ", "': ' after the table name")?;
    let kind = if cursor.eat(b"INSERT:") {
        ChangeKind::Insert
    } else if cursor.eat(b"UPDATE:") {
        ChangeKind::Update
    } else if cursor.eat(b"DELETE:") {
        ChangeKind::Delete
    } else if cursor.eat(b"TRUNCATE:") {
        ChangeKind::Truncate
    } else {
        return Err(cursor.error("INSERT, UPDATE, DELETE or TRUNCATE"));
    };
    if kind != ChangeKind::Truncate && relations.len() != 1 {
        return Err(cursor.error("one table for a row change"));
    }
    if kind == ChangeKind::Truncate || !complete {
        return Ok(relations
            .into_iter()
            .map(|name| Change::without_images(RelationRef::Name(name), kind))
            .collect());
    }
    let (old, new) = match kind {
        ChangeKind::Insert => (None, cursor.tuple()?),
        ChangeKind::Delete => (cursor.tuple()?, None),
        _ => {
            let old = if cursor.eat(b" old-key:") {
                let old = cursor.columns()?;
                cursor.expect(b" new-tuple:", "' new-tuple:' after the old key")?;
                Some(old)
            } else {
                None
            };
            (old, cursor.tuple()?)
        }
    };
    if !cursor.done() {
        return Err(cursor.error("end of line"));
    }
    let name = relations.pop().ok_or_else(|| cursor.error("a table"))?;
    Ok(vec![Change {
        relation: RelationRef::Name(name),
        kind,
        old,
        new,
    }])
}

struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.text[self.at..]
    }

    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, literal: &[u8]) -> bool {
        if self.rest().starts_with(literal) {
            self.at += literal.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, literal: &[u8], what: &'static str) -> Result<(), ParseError> {
        if self.eat(literal) {
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn error(&self, what: &'static str) -> ParseError {
        ParseError { at: self.at, what }
    }

    /// A transaction id: decimal digits that fit in 32 bits, and nothing after them.
    fn xid(&mut self) -> Result<u32, ParseError> {
        let digits = self.rest();
        let xid = std::str::from_utf8(digits)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u32>().ok())
            .ok_or_else(|| self.error("a transaction id"))?;
        self.at = self.text.len();
        Ok(xid)
    }

    /// An identifier as printed, quotes kept: `"a ""b"""` or `orders`.
    fn identifier_text(&mut self) -> Result<&'a [u8], ParseError> {
        let start = self.at;
        if self.peek() == Some(b'"') {
            self.at += 1;
            loop {
                match self.peek() {
                    None => return Err(self.error("closing '\"'")),
                    Some(b'"') if self.text.get(self.at + 1) == Some(&b'"') => self.at += 2,
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(_) => self.at += 1,
                }
            }
        } else {
            while let Some(byte) = self.peek() {
                if matches!(byte, b'.' | b':' | b',' | b' ' | b'[' | b'"') {
                    break;
                }
                self.at += 1;
            }
        }
        if self.at == start {
            return Err(self.error("an identifier"));
        }
        Ok(&self.text[start..self.at])
    }

    /// `schema.name` exactly as printed.
    fn qualified_name(&mut self) -> Result<String, ParseError> {
        let start = self.at;
        self.identifier_text()?;
        self.expect(b".", "'.' between schema and table")?;
        self.identifier_text()?;
        std::str::from_utf8(&self.text[start..self.at])
            .map(str::to_owned)
            .map_err(|_| ParseError {
                at: start,
                what: "a UTF-8 table name",
            })
    }

    /// An image after `INSERT:`, `DELETE:` or `new-tuple:`: columns, or `(no-tuple-data)`.
    fn tuple(&mut self) -> Result<Option<RowImage>, ParseError> {
        if self.eat(b" (no-tuple-data)") {
            return Ok(None);
        }
        self.columns().map(Some)
    }

    /// ` name[type]:value` repeated, up to the end or ` new-tuple:`.
    fn columns(&mut self) -> Result<RowImage, ParseError> {
        let mut image = RowImage::default();
        while !self.done() && !self.rest().starts_with(b" new-tuple:") {
            self.expect(b" ", "' ' before a column")?;
            image.columns.push(self.column()?);
        }
        Ok(image)
    }

    fn column(&mut self) -> Result<Column, ParseError> {
        let raw = self.identifier_text()?;
        let name = unquote(raw).ok_or_else(|| self.error("a UTF-8 column name"))?;
        self.expect(b"[", "'[' before the column's type")?;
        self.type_name()?;
        self.expect(b":", "':' before the value")?;
        let value = self.value()?;
        Ok(Column { name, value })
    }

    /// Skips a type name up to its closing `]` (`integer[]`, `"my type"`, `s."t]"`).
    fn type_name(&mut self) -> Result<(), ParseError> {
        let mut depth = 1usize;
        let start = self.at;
        loop {
            match self.peek() {
                None => return Err(self.error("']' after the column's type")),
                Some(b'"') => {
                    self.identifier_text()?;
                }
                Some(b'[') => {
                    depth += 1;
                    self.at += 1;
                }
                Some(b']') => {
                    depth -= 1;
                    self.at += 1;
                    if depth == 0 {
                        if self.at - 1 == start {
                            return Err(self.error("a type name"));
                        }
                        return Ok(());
                    }
                }
                Some(_) => self.at += 1,
            }
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        if self.eat_word(b"null") {
            return Ok(Value::Null);
        }
        if self.eat_word(b"unchanged-toast-datum") {
            return Ok(Value::UnchangedToast);
        }
        if self.eat(b"'") {
            return self.quoted().map(Value::Text);
        }
        if self.eat(b"B'") {
            let start = self.at;
            while let Some(byte) = self.peek() {
                if byte == b'\'' {
                    let bits = Bytes::copy_from_slice(&self.text[start..self.at]);
                    self.at += 1;
                    return Ok(Value::Text(bits));
                }
                if !matches!(byte, b'0' | b'1') {
                    return Err(self.error("a bit string"));
                }
                self.at += 1;
            }
            return Err(self.error("closing ' of a bit string"));
        }
        let start = self.at;
        while self.peek().is_some_and(|b| b != b' ') {
            self.at += 1;
        }
        match &self.text[start..self.at] {
            b"" => Err(self.error("a value")),
            b"true" => Ok(Value::Text(Bytes::from_static(b"t"))),
            b"false" => Ok(Value::Text(Bytes::from_static(b"f"))),
            bare if bare
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')) =>
            {
                Ok(Value::Text(Bytes::copy_from_slice(bare)))
            }
            _ => Err(ParseError {
                at: start,
                what: "a number, a boolean or a quoted value",
            }),
        }
    }

    /// Eats `word` if it is the whole value (followed by a space or the end).
    fn eat_word(&mut self, word: &[u8]) -> bool {
        let rest = self.rest();
        if rest.starts_with(word) && matches!(rest.get(word.len()), None | Some(b' ')) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    /// The rest of a single-quoted value, `''` read as `'`.
    fn quoted(&mut self) -> Result<Bytes, ParseError> {
        let mut value = Vec::new();
        loop {
            let rest = self.rest();
            let Some(quote) = rest.iter().position(|b| *b == b'\'') else {
                return Err(self.error("closing ' of a value"));
            };
            value.extend_from_slice(&rest[..quote]);
            self.at += quote + 1;
            if self.peek() == Some(b'\'') {
                value.push(b'\'');
                self.at += 1;
            } else {
                return Ok(Bytes::from(value));
            }
        }
    }
}

/// An identifier as stored: quotes removed, `""` read as `"`.
fn unquote(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => Some(inner.replace("\"\"", "\"")),
        None => Some(text.to_owned()),
    }
}

/// Microseconds since 2000-01-01 UTC of a timestamp as `timestamptz_to_str` prints it in ISO
/// style: `2024-05-01 10:11:12.123456+02`, `+05:30`, `-08`.
pub fn timestamp_micros(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(' ')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let zone_at = rest.find(['+', '-'])?;
    let (time, zone) = rest.split_at(zone_at);
    let mut time_parts = time.splitn(3, ':');
    let hour: i64 = time_parts.next()?.parse().ok()?;
    let minute: i64 = time_parts.next()?.parse().ok()?;
    let seconds_text = time_parts.next()?;
    let (seconds, fraction) = seconds_text.split_once('.').unwrap_or((seconds_text, ""));
    let second: i64 = seconds.parse().ok()?;
    let micros: i64 = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().chain("000000".chars()).take(6).collect();
        digits.parse().ok()?
    };
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let mut zone_parts = zone[1..].split(':');
    let zone_hours: i64 = zone_parts.next()?.parse().ok()?;
    let zone_minutes: i64 = zone_parts.next().map_or(Some(0), |m| m.parse().ok())?;
    let zone_seconds: i64 = zone_parts.next().map_or(Some(0), |s| s.parse().ok())?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day) - days_from_civil(2000, 1, 1);
    let local = ((days * 24 + hour) * 60 + minute) * 60 + second;
    let offset = sign * ((zone_hours * 60 + zone_minutes) * 60 + zone_seconds);
    Some((local - offset) * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests;

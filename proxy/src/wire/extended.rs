//! Reading the fields of the frontend messages the cache inspects: Query, Parse, Bind,
//! Describe, Execute and Close.
//!
//! Fields are returned as slices of the frame (`Bytes`), never copied or re-encoded; the parts
//! of Bind that decide a result (parameter formats and values, result formats) are returned as
//! one raw slice, which is exactly what a cache key needs. A frame that does not parse yields
//! `None`; the caller then relays it untouched and lets PostgreSQL report the error.

use bytes::Bytes;

/// Parse (`P`): statement name, query text, parameter type OIDs (raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    /// Statement name; empty for the unnamed statement.
    pub name: Bytes,
    /// Query text bytes (no terminator).
    pub sql: Bytes,
    /// Int16 count followed by Int32 OIDs, as sent.
    pub param_types: Bytes,
}

/// Bind (`B`): portal, statement, and everything after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Portal name; empty for the unnamed portal.
    pub portal: Bytes,
    /// Statement name.
    pub statement: Bytes,
    /// Parameter formats, values and result formats, as sent.
    pub arguments: Bytes,
}

/// Describe (`D`) or Close (`C`): target kind (`S` or `P`) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `b'S'` statement or `b'P'` portal.
    pub kind: u8,
    /// Name; empty for the unnamed one.
    pub name: Bytes,
}

/// Execute (`E`): portal and row limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    /// Portal name.
    pub portal: Bytes,
    /// Row limit; 0 means all rows.
    pub max_rows: i32,
}

/// The body of a frame (after tag and length).
fn body(frame: &Bytes) -> Option<Bytes> {
    (frame.len() >= 5).then(|| frame.slice(5..))
}

/// Splits a NUL-terminated string off the front of `rest`.
fn cstring(rest: &mut Bytes) -> Option<Bytes> {
    let end = rest.iter().position(|b| *b == 0)?;
    let value = rest.slice(..end);
    *rest = rest.slice(end + 1..);
    Some(value)
}

/// The query text of a Query (`Q`) frame.
pub fn query_text(frame: &Bytes) -> Option<Bytes> {
    let mut rest = body(frame)?;
    cstring(&mut rest)
}

/// Reads a Parse frame.
pub fn parse(frame: &Bytes) -> Option<Parse> {
    let mut rest = body(frame)?;
    let name = cstring(&mut rest)?;
    let sql = cstring(&mut rest)?;
    if rest.len() < 2 {
        return None;
    }
    let count = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    if rest.len() != 2 + 4 * count {
        return None;
    }
    Some(Parse {
        name,
        sql,
        param_types: rest,
    })
}

/// Reads a Bind frame.
pub fn bind(frame: &Bytes) -> Option<Bind> {
    let mut rest = body(frame)?;
    let portal = cstring(&mut rest)?;
    let statement = cstring(&mut rest)?;
    Some(Bind {
        portal,
        statement,
        arguments: rest,
    })
}

/// Reads a Describe or Close frame.
pub fn target(frame: &Bytes) -> Option<Target> {
    let mut rest = body(frame)?;
    let kind = *rest.first()?;
    if kind != b'S' && kind != b'P' {
        return None;
    }
    rest = rest.slice(1..);
    let name = cstring(&mut rest)?;
    Some(Target { kind, name })
}

/// Reads an Execute frame.
pub fn execute(frame: &Bytes) -> Option<Execute> {
    let mut rest = body(frame)?;
    let portal = cstring(&mut rest)?;
    if rest.len() != 4 {
        return None;
    }
    let max_rows = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    Some(Execute { portal, max_rows })
}

/// What a Bind's arguments hold, beyond the raw bytes: how many parameter values, and the
/// result format codes asked for (empty: all text; one: for every column; else per column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindLayout {
    /// Number of parameter values.
    pub parameters: usize,
    /// Result-column format codes (0 text, 1 binary).
    pub result_formats: Vec<i16>,
}

/// Reads the layout of a Bind's arguments (see [`Bind::arguments`]).
pub fn bind_layout(arguments: &[u8]) -> Option<BindLayout> {
    let mut at = 0usize;
    let int16 = |at: &mut usize| -> Option<i16> {
        let bytes = arguments.get(*at..*at + 2)?;
        *at += 2;
        Some(i16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let formats = usize::try_from(int16(&mut at)?).ok()?;
    at += 2 * formats;
    let parameters = usize::try_from(int16(&mut at)?).ok()?;
    for _ in 0..parameters {
        let bytes = arguments.get(at..at + 4)?;
        let length = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        at += 4 + usize::try_from(length).unwrap_or(0);
    }
    let results = usize::try_from(int16(&mut at)?).ok()?;
    let mut result_formats = Vec::with_capacity(results);
    for _ in 0..results {
        result_formats.push(int16(&mut at)?);
    }
    (at == arguments.len()).then_some(BindLayout {
        parameters,
        result_formats,
    })
}

/// The parameter values of a Bind, with the format of each (0 text, 1 binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindParameters<'a> {
    /// Per parameter: its format code and its value (`None` for SQL NULL).
    pub values: Vec<(i16, Option<&'a [u8]>)>,
}

/// Reads the parameter values of a Bind's arguments (see [`Bind::arguments`]).
pub fn bind_parameters(arguments: &[u8]) -> Option<BindParameters<'_>> {
    let int16 = |at: usize| -> Option<i16> {
        let bytes = arguments.get(at..at + 2)?;
        Some(i16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let format_count = usize::try_from(int16(0)?).ok()?;
    let mut formats = Vec::with_capacity(format_count);
    for i in 0..format_count {
        formats.push(int16(2 + 2 * i)?);
    }
    let mut at = 2 + 2 * format_count;
    let count = usize::try_from(int16(at)?).ok()?;
    at += 2;
    let format_of = |i: usize| match formats.len() {
        0 => Some(0),
        1 => Some(formats[0]),
        n if n == count => Some(formats[i]),
        _ => None,
    };
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let bytes = arguments.get(at..at + 4)?;
        let length = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        at += 4;
        let value = if length < 0 {
            None
        } else {
            let length = usize::try_from(length).ok()?;
            let value = arguments.get(at..at + length)?;
            at += length;
            Some(value)
        };
        values.push((format_of(i)?, value));
    }
    Some(BindParameters { values })
}

/// The declared type OID of each parameter of a Parse (see [`Parse::param_types`]).
pub fn parameter_types(param_types: &[u8]) -> Option<Vec<u32>> {
    let count = usize::from(u16::from_be_bytes([
        *param_types.first()?,
        *param_types.get(1)?,
    ]));
    (0..count)
        .map(|i| {
            let bytes = param_types.get(2 + 4 * i..6 + 4 * i)?;
            Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::test_frame as frame;

    #[test]
    fn messages_are_read() {
        let p = parse(&frame(b'P', b"s1\0SELECT $1\0\0\x01\0\0\0\x17")).expect("parse");
        assert_eq!(&p.name[..], b"s1");
        assert_eq!(&p.sql[..], b"SELECT $1");
        assert_eq!(&p.param_types[..], b"\0\x01\0\0\0\x17");
        let b = bind(&frame(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x011\0\0")).expect("bind");
        assert_eq!(&b.portal[..], b"");
        assert_eq!(&b.statement[..], b"s1");
        assert_eq!(b.arguments.len(), 11);
        assert_eq!(
            bind_layout(&b.arguments),
            Some(BindLayout {
                parameters: 1,
                result_formats: vec![]
            })
        );
        let layout = bind_layout(b"\0\0\0\0\0\x02\0\x01\0\0").expect("layout");
        assert_eq!(layout.parameters, 0);
        assert_eq!(layout.result_formats, vec![1, 0]);
        assert_eq!(
            bind_layout(b"\0\0\0\x01\0\0\0\x09x"),
            None,
            "value cut short"
        );
        let d = target(&frame(b'D', b"P\0")).expect("describe");
        assert_eq!(d.kind, b'P');
        let e = execute(&frame(b'E', b"\0\0\0\0\x05")).expect("execute");
        assert_eq!(e.max_rows, 5);
        assert_eq!(
            query_text(&frame(b'Q', b"SELECT 1\0")).as_deref(),
            Some(&b"SELECT 1"[..])
        );
    }

    #[test]
    fn bind_parameters_and_declared_types_are_read() {
        // Two formats (text, binary), two values ("7", NULL), no result formats.
        let arguments = b"\0\x02\0\0\0\x01\0\x02\0\0\0\x017\xff\xff\xff\xff\0\0";
        let read = bind_parameters(arguments).expect("parameters");
        assert_eq!(read.values, vec![(0, Some(&b"7"[..])), (1, None)]);
        let one_format =
            bind_parameters(b"\0\x01\0\x01\0\x01\0\0\0\x04\0\0\0\x07\0\0").expect("parameters");
        assert_eq!(one_format.values, vec![(1, Some(&[0u8, 0, 0, 7][..]))]);
        assert!(
            bind_parameters(b"\0\0\0\x01\0\0\0\x09x").is_none(),
            "value cut short"
        );
        assert_eq!(
            parameter_types(b"\0\x02\0\0\0\x17\0\0\0\0"),
            Some(vec![23, 0])
        );
        assert_eq!(parameter_types(b"\0\x01\0\0"), None);
    }

    #[test]
    fn malformed_messages_are_none() {
        assert!(parse(&frame(b'P', b"s1\0SELECT")).is_none());
        assert!(parse(&frame(b'P', b"s1\0SELECT\0\0\x02\0\0\0\x17")).is_none());
        assert!(execute(&frame(b'E', b"\0\0\0")).is_none());
        assert!(target(&frame(b'D', b"X\0")).is_none());
        assert!(bind(&frame(b'B', b"no terminator")).is_none());
    }
}

//! Canonical forms of pinned values, computed the same way from a query's constant, a Bind
//! parameter and a replication row image.
//!
//! A read pinned to `id = '007'` and a change whose new row has `id` `7` must land on the same
//! key. That is only sound for types whose equality is identity of one canonical form that
//! pgcached can compute exactly on both sides:
//!
//! - integers (`int2`, `int4`, `int8`): the decimal value;
//! - `text` and `varchar` under a deterministic collation: the bytes (with UTF-8 on both sides,
//!   see [`PinType::Text`]);
//! - `uuid`: the 16 bytes;
//! - `bool`: true or false.
//!
//! Everything else (numeric scale, floats, `char(n)` padding, case-insensitive collations,
//! dates under `DateStyle`, casts pgcached does not model) is not pinned: reads of it depend on
//! the whole table. A value that does not parse as its type is not pinned either.

use crate::sql::pins::Constant;

/// The types whose values can be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinType {
    /// `int2`, `int4`, `int8` (compared as integers whatever the width).
    Integer,
    /// `text`, `varchar` with a deterministic collation. Compared as bytes; only sessions whose
    /// client encoding is UTF-8 pin text (the replication stream's text is UTF-8 too).
    Text,
    /// `uuid`.
    Uuid,
    /// `bool`.
    Bool,
}

/// Type OIDs (`pg_type.oid`) pgcached knows.
pub mod oid {
    /// `bool`.
    pub const BOOL: u32 = 16;
    /// `int8`.
    pub const INT8: u32 = 20;
    /// `int2`.
    pub const INT2: u32 = 21;
    /// `int4`.
    pub const INT4: u32 = 23;
    /// `text`.
    pub const TEXT: u32 = 25;
    /// `unknown` (an untyped literal parameter).
    pub const UNKNOWN: u32 = 705;
    /// `varchar`.
    pub const VARCHAR: u32 = 1043;
    /// `uuid`.
    pub const UUID: u32 = 2950;
}

impl PinType {
    /// The pin type of a column of type `type_oid`, if its equality is exact;
    /// `deterministic` says whether the column's collation is deterministic.
    pub fn of_column(type_oid: u32, deterministic: bool) -> Option<PinType> {
        match type_oid {
            oid::INT2 | oid::INT4 | oid::INT8 => Some(PinType::Integer),
            oid::TEXT | oid::VARCHAR if deterministic => Some(PinType::Text),
            oid::UUID => Some(PinType::Uuid),
            oid::BOOL => Some(PinType::Bool),
            _ => None,
        }
    }

    /// True when a parameter declared with `type_oid` (0: left to the server, which then takes
    /// the column's type) compares with a column of this type as the column's own type does.
    pub fn accepts_parameter_type(self, type_oid: u32) -> bool {
        match self {
            _ if type_oid == 0 => true,
            PinType::Integer => matches!(type_oid, oid::INT2 | oid::INT4 | oid::INT8),
            PinType::Text => matches!(type_oid, oid::TEXT | oid::VARCHAR | oid::UNKNOWN),
            PinType::Uuid => type_oid == oid::UUID,
            PinType::Bool => type_oid == oid::BOOL,
        }
    }

    /// The canonical form of a value in its type's text input or output form (a literal, a
    /// text-format parameter, a row image's value).
    pub fn canonical_text(self, text: &[u8]) -> Option<Vec<u8>> {
        match self {
            PinType::Integer => integer(std::str::from_utf8(text).ok()?.trim()),
            PinType::Text => Some(text.to_vec()),
            PinType::Uuid => uuid(std::str::from_utf8(text).ok()?.trim()),
            PinType::Bool => boolean(std::str::from_utf8(text).ok()?.trim()),
        }
    }

    /// The canonical form of a binary-format parameter declared with `type_oid` (0 meaning the
    /// column's own type).
    pub fn canonical_binary(self, type_oid: u32, bytes: &[u8]) -> Option<Vec<u8>> {
        match self {
            PinType::Integer => {
                let value: i64 = match (type_oid, bytes.len()) {
                    (oid::INT2, 2) | (0, 2) => i16::from_be_bytes(bytes.try_into().ok()?).into(),
                    (oid::INT4, 4) | (0, 4) => i32::from_be_bytes(bytes.try_into().ok()?).into(),
                    (oid::INT8, 8) | (0, 8) => i64::from_be_bytes(bytes.try_into().ok()?),
                    _ => return None,
                };
                Some(value.to_string().into_bytes())
            }
            PinType::Text => Some(bytes.to_vec()),
            PinType::Uuid => (bytes.len() == 16).then(|| bytes.to_vec()),
            PinType::Bool => match bytes {
                [0] => Some(b"f".to_vec()),
                [1] => Some(b"t".to_vec()),
                _ => None,
            },
        }
    }

    /// The canonical form of a query constant (parameters are resolved per execution).
    pub fn canonical_constant(self, constant: &Constant) -> Option<Vec<u8>> {
        match (self, constant) {
            (PinType::Integer, Constant::Integer(text)) => integer(text),
            (_, Constant::String(text)) => self.canonical_text(text.as_bytes()),
            (PinType::Bool, Constant::Boolean(value)) => {
                Some(if *value { b"t".to_vec() } else { b"f".to_vec() })
            }
            _ => None,
        }
    }
}

/// An integer as PostgreSQL's integer input reads it: optional sign, decimal digits (leading
/// zeros allowed). Other forms (hexadecimal, underscores) are left to the whole table.
fn integer(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i128 = text.parse().ok()?;
    let value = i64::try_from(value).ok()?;
    Some(value.to_string().into_bytes())
}

/// A uuid as PostgreSQL's input reads it (hex digits, optional hyphens between groups of four,
/// optional braces), as its 16 bytes.
fn uuid(text: &str) -> Option<Vec<u8>> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => text,
    };
    let mut bytes = Vec::with_capacity(16);
    let mut high: Option<u8> = None;
    let mut since_hyphen = 0;
    for (i, c) in inner.chars().enumerate() {
        if c == '-' {
            // A hyphen may follow any group of four digits, never lead or repeat.
            if i == 0 || since_hyphen % 4 != 0 || since_hyphen == 0 || high.is_some() {
                return None;
            }
            since_hyphen = 0;
            continue;
        }
        let nibble = c.to_digit(16)? as u8;
        since_hyphen += 1;
        match high.take() {
            None => high = Some(nibble),
            Some(h) => bytes.push((h << 4) | nibble),
        }
    }
    (bytes.len() == 16 && high.is_none() && !inner.ends_with('-')).then_some(bytes)
}

/// A boolean as PostgreSQL's input reads it (prefixes of true/false/yes/no, on/off, 1/0).
fn boolean(text: &str) -> Option<Vec<u8>> {
    let lower = text.to_ascii_lowercase();
    let is_prefix = |word: &str, min: usize| lower.len() >= min && word.starts_with(&lower);
    if is_prefix("true", 1) || is_prefix("yes", 1) || lower == "on" || lower == "1" {
        Some(b"t".to_vec())
    } else if is_prefix("false", 1) || is_prefix("no", 1) || lower == "off" || lower == "0" {
        Some(b"f".to_vec())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_of_every_form_and_width_meet() {
        let seven = Some(b"7".to_vec());
        assert_eq!(PinType::Integer.canonical_text(b"7"), seven);
        assert_eq!(PinType::Integer.canonical_text(b" 007 "), seven);
        assert_eq!(PinType::Integer.canonical_text(b"+7"), seven);
        assert_eq!(
            PinType::Integer.canonical_binary(oid::INT2, &7i16.to_be_bytes()),
            seven
        );
        assert_eq!(
            PinType::Integer.canonical_binary(oid::INT8, &7i64.to_be_bytes()),
            seven
        );
        assert_eq!(
            PinType::Integer.canonical_binary(0, &7i32.to_be_bytes()),
            seven
        );
        assert_eq!(
            PinType::Integer.canonical_constant(&Constant::String("7".into())),
            seven
        );
        assert_eq!(PinType::Integer.canonical_text(b"-0"), Some(b"0".to_vec()));
        for bad in [
            &b"7.0"[..],
            b"0x7",
            b"1_000",
            b"",
            b"-",
            b"99999999999999999999",
        ] {
            assert_eq!(PinType::Integer.canonical_text(bad), None, "{bad:?}");
        }
        assert_eq!(PinType::Integer.canonical_binary(oid::INT4, &[0, 7]), None);
    }

    #[test]
    fn uuids_meet_whatever_their_spelling() {
        let canonical = PinType::Uuid
            .canonical_text(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            .expect("uuid");
        assert_eq!(canonical.len(), 16);
        for spelling in [
            &b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"[..],
            b"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            b"a0eebc999c0b4ef8bb6d6bb9bd380a11",
            b"a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert_eq!(
                PinType::Uuid.canonical_text(spelling).as_ref(),
                Some(&canonical),
                "{spelling:?}"
            );
        }
        assert_eq!(
            PinType::Uuid.canonical_binary(oid::UUID, &canonical),
            Some(canonical.clone())
        );
        for bad in [
            &b"a0eebc99"[..],
            b"-a0eebc999c0b4ef8bb6d6bb9bd380a11",
            b"a0eebc99--9c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert_eq!(PinType::Uuid.canonical_text(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn booleans_and_texts_meet_as_postgres_reads_them() {
        for yes in [&b"t"[..], b"true", b"TRUE", b"yes", b"on", b"1", b"tr"] {
            assert_eq!(
                PinType::Bool.canonical_text(yes),
                Some(b"t".to_vec()),
                "{yes:?}"
            );
        }
        for no in [&b"f"[..], b"false", b"no", b"off", b"0"] {
            assert_eq!(
                PinType::Bool.canonical_text(no),
                Some(b"f".to_vec()),
                "{no:?}"
            );
        }
        assert_eq!(PinType::Bool.canonical_text(b"o"), None, "ambiguous");
        assert_eq!(
            PinType::Bool.canonical_constant(&Constant::Boolean(true)),
            Some(b"t".to_vec())
        );
        assert_eq!(
            PinType::Text.canonical_text(b" x "),
            Some(b" x ".to_vec()),
            "spaces matter"
        );
        assert_eq!(
            PinType::Text.canonical_constant(&Constant::Integer("5".into())),
            None
        );
    }

    #[test]
    fn only_types_with_exact_equality_are_pinned() {
        assert_eq!(PinType::of_column(oid::INT8, false), Some(PinType::Integer));
        assert_eq!(PinType::of_column(oid::TEXT, true), Some(PinType::Text));
        assert_eq!(
            PinType::of_column(oid::TEXT, false),
            None,
            "nondeterministic collation"
        );
        assert_eq!(PinType::of_column(1700, true), None, "numeric");
        assert_eq!(PinType::of_column(1042, true), None, "char(n)");
        assert!(PinType::Integer.accepts_parameter_type(oid::INT8));
        assert!(
            !PinType::Integer.accepts_parameter_type(1700),
            "numeric parameter"
        );
        assert!(PinType::Text.accepts_parameter_type(0));
    }
}

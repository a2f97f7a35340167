//! What the shared tier stores: key names and entry bytes.
//!
//! An entry is stored under a name made of a SHA-256 of its full cache key, and its value
//! carries the full key again: a read compares it byte for byte and treats any difference as a
//! miss, so a hash collision, a name reused by another version or a corrupted value can never
//! serve one key's rows (one role's rows) for another. Names live under a namespace made of the
//! PostgreSQL server's system identifier and timeline, since WAL positions and OIDs mean
//! nothing on another server.
//!
//! Value layout, version 1 (integers big-endian):
//! `"PGC1"`, u64 stream position of the stamp, u64 catalog digest of the stamp, u64 fill cost
//! in microseconds, then three length-prefixed (u32) byte strings: the cache key, the response,
//! the meta (RowDescription or empty).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pgcached_cache::{CacheKey, Stamp};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"PGC1";

/// An entry read back from the shared tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// Where the filling pgcached's database stood at its lookup.
    pub stamp: Stamp,
    /// What the fill cost the filling pgcached (lookup to fill), in microseconds.
    pub cost_micros: u64,
    /// The bytes replayed on a hit.
    pub response: Bytes,
    /// The RowDescription or NoData for Describe, or empty.
    pub meta: Bytes,
}

/// Why a stored value is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The value is not an entry of this version (truncated, another format).
    #[error("not a pgcached entry")]
    Undecodable,
    /// The value holds another key: a hash collision or a reused name.
    #[error("the entry holds another key")]
    KeyMismatch,
}

/// The namespace of one PostgreSQL server and timeline.
pub fn namespace(system_id: &str, timeline: u32) -> String {
    let system_id: String = system_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("pgcached:{system_id}:{timeline}")
}

/// The name an entry is stored under.
pub fn entry_name(namespace: &str, key: &CacheKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{namespace}:e:{}", hex(&digest))
}

/// The name of a database's record of change positions. The braces make it one cluster slot.
pub fn positions_name(namespace: &str, database: &str) -> String {
    format!("{namespace}:{{{}}}:pos", hex(database.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A WAL position as the record stores it: 16 hexadecimal digits, so that comparing strings
/// compares positions (in the record's script too).
pub fn position_text(position: u64) -> String {
    format!("{position:016x}")
}

/// Reads [`position_text`].
pub fn parse_position(text: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

/// The value stored for an entry.
pub fn encode(
    key: &CacheKey,
    stamp: Stamp,
    cost_micros: u64,
    response: &[u8],
    meta: &[u8],
) -> Bytes {
    let key = key.as_bytes();
    let mut out = BytesMut::with_capacity(28 + 12 + key.len() + response.len() + meta.len());
    out.put_slice(MAGIC);
    out.put_u64(stamp.position);
    out.put_u64(stamp.catalog);
    out.put_u64(cost_micros);
    for part in [key, response, meta] {
        out.put_u32(part.len() as u32);
        out.put_slice(part);
    }
    out.freeze()
}

/// Reads a stored value for `key`: its entry, if it is one and holds exactly that key.
pub fn decode(key: &CacheKey, value: Bytes) -> Result<SharedEntry, DecodeError> {
    let mut rest = value;
    if rest.len() < 28 || &rest[..4] != MAGIC {
        return Err(DecodeError::Undecodable);
    }
    rest.advance(4);
    let stamp = Stamp {
        position: rest.get_u64(),
        catalog: rest.get_u64(),
    };
    let cost_micros = rest.get_u64();
    let mut part = || -> Result<Bytes, DecodeError> {
        if rest.len() < 4 {
            return Err(DecodeError::Undecodable);
        }
        let len = rest.get_u32() as usize;
        if rest.len() < len {
            return Err(DecodeError::Undecodable);
        }
        Ok(rest.split_to(len))
    };
    let stored_key = part()?;
    let response = part()?;
    let meta = part()?;
    if !rest.is_empty() {
        return Err(DecodeError::Undecodable);
    }
    if stored_key.as_ref() != key.as_bytes() {
        return Err(DecodeError::KeyMismatch);
    }
    Ok(SharedEntry {
        stamp,
        cost_micros,
        response,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: &str) -> CacheKey {
        CacheKey::builder()
            .part(b"app")
            .part(role.as_bytes())
            .part(b"SELECT * FROM secrets")
            .finish()
    }

    #[test]
    fn an_entry_reads_back_for_its_own_key() {
        let stamp = Stamp {
            position: 0x1234,
            catalog: 7,
        };
        let value = encode(&key("alice"), stamp, 90, b"T D C", b"T");
        let entry = decode(&key("alice"), value).expect("decodes");
        assert_eq!(entry.stamp, stamp);
        assert_eq!(entry.cost_micros, 90);
        assert_eq!(entry.response.as_ref(), b"T D C");
        assert_eq!(entry.meta.as_ref(), b"T");
    }

    #[test]
    fn another_keys_entry_under_the_same_name_is_never_served() {
        // As if SHA-256 collided: bob's value found under alice's name.
        let value = encode(&key("bob"), Stamp::default(), 0, b"bob's rows", b"");
        assert_eq!(decode(&key("alice"), value), Err(DecodeError::KeyMismatch));
        // A key that is a prefix of the stored one, and the other way round.
        let value = encode(&key("alice2"), Stamp::default(), 0, b"x", b"");
        assert_eq!(decode(&key("alice"), value), Err(DecodeError::KeyMismatch));
        let value = encode(&key("alic"), Stamp::default(), 0, b"x", b"");
        assert_eq!(decode(&key("alice"), value), Err(DecodeError::KeyMismatch));
    }

    #[test]
    fn truncated_or_foreign_values_are_refused() {
        let value = encode(&key("alice"), Stamp::default(), 0, b"rows", b"meta");
        for cut in [0, 3, 27, 40, value.len() - 1] {
            assert_eq!(
                decode(&key("alice"), value.slice(..cut)),
                Err(DecodeError::Undecodable),
                "{cut}"
            );
        }
        let mut longer = BytesMut::from(value.as_ref());
        longer.put_u8(0);
        assert_eq!(
            decode(&key("alice"), longer.freeze()),
            Err(DecodeError::Undecodable)
        );
        assert_eq!(
            decode(&key("alice"), Bytes::from_static(b"hello")),
            Err(DecodeError::Undecodable)
        );
    }

    #[test]
    fn names_are_stable_and_positions_sort_as_text() {
        assert_eq!(
            entry_name("ns", &key("alice")),
            entry_name("ns", &key("alice"))
        );
        assert_ne!(
            entry_name("ns", &key("alice")),
            entry_name("ns", &key("bob"))
        );
        assert_eq!(namespace("7301/x", 1), "pgcached:7301x:1");
        assert_eq!(positions_name("ns", "app"), "ns:{617070}:pos");
        assert!(position_text(0x1_0000_0000) > position_text(0xffff_ffff));
        assert_eq!(parse_position(position_text(77).as_bytes()), Some(77));
    }
}

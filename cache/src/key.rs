//! Cache keys: the full key material, never a hash alone.
//!
//! A key is the database, the role, the session fingerprint, the statement, its parameters and
//! formats. Two different keys must never be confused (that would serve one role's rows to
//! another), so the key keeps all its bytes and compares them; each part is length-prefixed so
//! that ("ab", "c") and ("a", "bc") differ.
//!
//! A key is hashed once, when it is built, and carries that hash: the store, its index when it
//! grows and the single-flight table each hash the 8-byte digest, not the key's hundred-odd
//! bytes, on every lookup, fill and rehash. Equality still compares every byte, so a digest
//! collision costs a comparison, never a wrong entry. The digest is keyed per process (std's
//! `RandomState`), so clients cannot choose texts that collide.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

/// An owned cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// The digest of `bytes` (compared first: different digests, different keys).
    digest: u64,
    bytes: Bytes,
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

/// The process's keyed hash of key bytes.
fn digest(bytes: &[u8]) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(bytes)
}

impl CacheKey {
    /// Starts a key.
    pub fn builder() -> CacheKeyBuilder {
        CacheKeyBuilder(BytesMut::with_capacity(256))
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The key's bytes (what a shared tier stores beside a result, to compare on read).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// True for the empty key.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Builds a [`CacheKey`] from parts.
pub struct CacheKeyBuilder(BytesMut);

impl CacheKeyBuilder {
    /// Appends one part.
    pub fn part(mut self, bytes: &[u8]) -> CacheKeyBuilder {
        self.0.put_u32(bytes.len() as u32);
        self.0.put_slice(bytes);
        self
    }

    /// The key.
    pub fn finish(self) -> CacheKey {
        let bytes = self.0.freeze();
        CacheKey {
            digest: digest(&bytes),
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_unambiguous() {
        let a = CacheKey::builder().part(b"ab").part(b"c").finish();
        let b = CacheKey::builder().part(b"a").part(b"bc").finish();
        assert_ne!(a, b);
        let c = CacheKey::builder().part(b"ab").part(b"c").finish();
        assert_eq!(a, c);
        assert_eq!(a.digest, c.digest);
        assert_ne!(a.digest, b.digest);
    }
}

//! Cache keys: the full key material, never a hash alone.
//!
//! A key is the database, the role, the session fingerprint, the statement, its parameters and
//! formats. Two different keys must never be confused (that would serve one role's rows to
//! another), so the key keeps all its bytes and compares them; each part is length-prefixed so
//! that ("ab", "c") and ("a", "bc") differ.

use bytes::{BufMut, Bytes, BytesMut};

/// An owned cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Bytes);

impl CacheKey {
    /// Starts a key.
    pub fn builder() -> CacheKeyBuilder {
        CacheKeyBuilder(BytesMut::with_capacity(256))
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The key's bytes (what a shared tier stores beside a result, to compare on read).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for the empty key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        CacheKey(self.0.freeze())
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
    }
}

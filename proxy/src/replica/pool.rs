//! Idle replica connections, kept per (role, database, session state) and bounded per replica.
//!
//! A connection is taken for one read and given back after it. When every connection the
//! replica may have is open, an idle one of another state is closed to make room; when none is
//! idle, the read goes to the primary instead of waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::connection::ReplicaConnection;

/// What a connection is: role, database and fingerprint, as one byte string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey(Arc<[u8]>);

impl PoolKey {
    /// The key of `role` on `database` in the state `fingerprint`.
    pub(crate) fn new(role: &str, database: &str, fingerprint: &[u8]) -> PoolKey {
        let mut bytes = Vec::with_capacity(role.len() + database.len() + fingerprint.len() + 8);
        for part in [role.as_bytes(), database.as_bytes(), fingerprint] {
            bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        PoolKey(bytes.into())
    }
}

/// The connections of one replica.
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Pooled>>>,
    open: Arc<AtomicUsize>,
    max: usize,
}

/// A slot for one connection: counted as open until dropped.
pub(crate) struct Slot {
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection with its slot.
pub(crate) struct Pooled {
    /// The connection.
    pub(crate) connection: ReplicaConnection,
    _slot: Slot,
}

/// What [`Pool::take`] found.
pub(crate) enum Taken {
    /// An idle connection of the key.
    Idle(Pooled),
    /// Room for a new connection, to be opened by the caller.
    Room(Slot),
    /// Every connection is busy.
    Full,
}

impl Pool {
    /// A pool of at most `max` connections.
    pub(crate) fn new(max: usize) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// An idle connection of `key`, or room for one.
    pub(crate) fn take(&self, key: &PoolKey) -> Taken {
        let mut idle = self.idle.lock();
        if let Some(connections) = idle.get_mut(key) {
            if let Some(pooled) = connections.pop() {
                if connections.is_empty() {
                    idle.remove(key);
                }
                return Taken::Idle(pooled);
            }
        }
        if let Some(slot) = self.reserve() {
            return Taken::Room(slot);
        }
        // Make room: close an idle connection of another state.
        let other = idle.keys().next().cloned();
        if let Some(other) = other {
            if let Some(connections) = idle.get_mut(&other) {
                drop(connections.pop());
                if connections.is_empty() {
                    idle.remove(&other);
                }
            }
        }
        match self.reserve() {
            Some(slot) => Taken::Room(slot),
            None => Taken::Full,
        }
    }

    /// Keeps a connection that finished its read cleanly.
    pub(crate) fn give_back(&self, key: PoolKey, pooled: Pooled) {
        self.idle.lock().entry(key).or_default().push(pooled);
    }

    /// A connection opened in `slot`.
    pub(crate) fn pooled(connection: ReplicaConnection, slot: Slot) -> Pooled {
        Pooled {
            connection,
            _slot: slot,
        }
    }

    /// Connections open now, and how many of them are idle.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let idle = self.idle.lock().values().map(Vec::len).sum();
        (self.open.load(Ordering::Acquire), idle)
    }

    /// Closes every idle connection (the replica went away or changed).
    pub(crate) fn clear(&self) {
        self.idle.lock().clear();
    }

    fn reserve(&self) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Slot {
                open: Arc::clone(&self.open),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_parts_apart() {
        assert_ne!(PoolKey::new("ab", "c", b""), PoolKey::new("a", "bc", b""));
        assert_eq!(PoolKey::new("a", "b", b"x"), PoolKey::new("a", "b", b"x"));
    }

    #[test]
    fn slots_are_bounded_and_given_back_when_dropped() {
        let pool = Pool::new(2);
        let key = PoolKey::new("a", "b", b"");
        let Taken::Room(first) = pool.take(&key) else {
            panic!("room for the first");
        };
        let Taken::Room(second) = pool.take(&key) else {
            panic!("room for the second");
        };
        assert!(matches!(pool.take(&key), Taken::Full));
        assert_eq!(pool.counts(), (2, 0));
        drop(first);
        assert!(matches!(pool.take(&key), Taken::Room(_)));
        drop(second);
        assert_eq!(pool.counts().0, 0);
    }
}

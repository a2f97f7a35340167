//! Row keys: a hash of (table, column set, canonical values), the index of a key slot.
//!
//! The same key must come out of a read's pin, a proxied write's pinned rows and a replication
//! row image, so the hash is computed in one place, over length-prefixed parts (so that values
//! `("ab", "c")` and `("a", "bc")` differ), with the standard hasher's fixed keys.

use std::hash::{Hash, Hasher};

use pgcached_cache::{ColumnSetId, KeyHash, TableId};

/// The key of one row of `table` whose columns of `set` have these canonical values (in the
/// set's column order).
pub fn key_hash<V: AsRef<[u8]>>(table: &TableId, set: ColumnSetId, values: &[V]) -> KeyHash {
    // `DefaultHasher::new()` hashes alike in every session of one pgcached.
    let mut hasher = std::hash::DefaultHasher::new();
    table.database.hash(&mut hasher);
    table.oid.hash(&mut hasher);
    set.0.hash(&mut hasher);
    for value in values {
        let value = value.as_ref();
        hasher.write_usize(value.len());
        hasher.write(value);
    }
    KeyHash(hasher.finish())
}

/// Every combination of the columns' values (the cartesian product), or `None` when there
/// would be more than `limit`.
pub fn combinations(columns: &[Vec<Vec<u8>>], limit: usize) -> Option<Vec<Vec<&[u8]>>> {
    let mut count: usize = 1;
    for values in columns {
        count = count.checked_mul(values.len())?;
        if count > limit {
            return None;
        }
    }
    let mut out: Vec<Vec<&[u8]>> = vec![Vec::with_capacity(columns.len())];
    for values in columns {
        let mut next = Vec::with_capacity(out.len() * values.len());
        for prefix in &out {
            for value in values {
                let mut row = prefix.clone();
                row.push(value.as_slice());
                next.push(row);
            }
        }
        out = next;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn table(oid: u32) -> TableId {
        TableId {
            database: Arc::from("app"),
            oid,
        }
    }

    #[test]
    fn keys_differ_by_every_part_and_are_stable() {
        let a = key_hash(&table(1), ColumnSetId(1), &[b"ab".as_slice(), b"c"]);
        assert_eq!(
            a,
            key_hash(&table(1), ColumnSetId(1), &[b"ab".as_slice(), b"c"])
        );
        assert_ne!(
            a,
            key_hash(&table(1), ColumnSetId(1), &[b"a".as_slice(), b"bc"])
        );
        assert_ne!(
            a,
            key_hash(&table(2), ColumnSetId(1), &[b"ab".as_slice(), b"c"])
        );
        assert_ne!(
            a,
            key_hash(&table(1), ColumnSetId(2), &[b"ab".as_slice(), b"c"])
        );
    }

    #[test]
    fn combinations_multiply_and_stop_at_the_limit() {
        let columns = vec![
            vec![b"1".to_vec(), b"2".to_vec()],
            vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()],
        ];
        let all = combinations(&columns, 10).expect("six");
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], vec![b"1".as_slice(), b"x"]);
        assert_eq!(all[5], vec![b"2".as_slice(), b"z"]);
        assert!(combinations(&columns, 5).is_none());
    }
}

//! The in-memory part of a cache hit: build the key (database, role, fingerprint, statement,
//! parameters) and look it up, for an entry depending on two tables.
//!
//! Run: `cargo bench -p pgcached-cache --bench lookup`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pgcached_cache::{
    CacheConfig, CacheKey, Dependencies, Generations, Lookup, ResultCache, TableId,
};

fn key(aid: u32) -> CacheKey {
    CacheKey::builder()
        .part(b"app")
        .part(b"postgres")
        .part(b"pclient_encoding\x00vUTF8")
        .part(b"E")
        .part(b"SELECT abalance FROM pgbench_accounts WHERE aid = $1")
        .part(b"\x00\x00\x00\x01\x00\x00\x00\x00")
        .part(&aid.to_be_bytes())
        .part(b"D")
        .finish()
}

fn lookup_hit(c: &mut Criterion) {
    let cache = ResultCache::new(
        CacheConfig {
            max_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            ttl: None,
        },
        Arc::new(Generations::new()),
    );
    let deps = [
        TableId {
            database: Arc::from("app"),
            oid: 16384,
        },
        TableId {
            database: Arc::from("app"),
            oid: 16390,
        },
    ];
    for aid in 0..1000 {
        if let Lookup::Miss(reservation) = cache.lookup(&key(aid), "app") {
            let guard = reservation.record(&Dependencies {
                tables: &deps,
                rows: &[],
            });
            guard.fill(Bytes::from(vec![b'D'; 100]), Bytes::new());
        }
    }
    let mut aid = 0u32;
    c.bench_function("key + lookup hit (100-byte entry, 2 tables)", |b| {
        b.iter(|| {
            aid = (aid + 1) % 1000;
            match cache.lookup(&key(black_box(aid)), "app") {
                Lookup::Hit(entry) => black_box(entry.response.len()),
                _ => 0,
            }
        })
    });
}

criterion_group!(benches, lookup_hit);
criterion_main!(benches);

//! The in-memory part of a cache miss, as a session does it for a typical small result (one
//! row of pgbench's `-S`): build the key, look it up (a miss), record the dependencies,
//! capture RowDescription, DataRow and CommandComplete as they are relayed, and fill at
//! ReadyForQuery. Each iteration is a new key, as in a miss-heavy load, in a store small
//! enough to be evicting, and again in a store of the default size (256 MiB) that is still
//! growing, as it is for a long while under `pgbench -S` over 1M rows: there every entry also
//! pays its share of the index's growth (each doubling rehashes every key).
//!
//! Times are the thread's CPU time ([`thread_time`]).
//!
//! Run: `cargo bench -p pgcached --bench miss_path`

#[path = "support/thread_time.rs"]
mod thread_time;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pgcached::bench_api::Capture;
use pgcached_cache::{
    CacheConfig, CacheKey, ColumnSetId, Dependencies, Generations, KeyHash, Lookup, ResultCache,
    RowDependency, TableId,
};
use thread_time::ThreadTime;

fn frame(tag: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(tag);
    out.put_u32(4 + body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

/// RowDescription, DataRow and CommandComplete of `SELECT abalance ... WHERE aid = n`.
fn result_frames() -> [Bytes; 3] {
    let mut row_description = BytesMut::new();
    row_description.put_u16(1);
    row_description.put_slice(b"abalance\0");
    row_description.put_u32(16397);
    row_description.put_u16(3);
    row_description.put_u32(23);
    row_description.put_i16(4);
    row_description.put_i32(-1);
    row_description.put_i16(0);
    let mut data_row = BytesMut::new();
    data_row.put_u16(1);
    data_row.put_u32(4);
    data_row.put_slice(b"-123");
    [
        frame(b'T', &row_description),
        frame(b'D', &data_row),
        frame(b'C', b"SELECT 1\0"),
    ]
}

fn key(aid: u64) -> CacheKey {
    let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
    CacheKey::builder()
        .part(b"app")
        .part(b"postgres")
        .part(b"pclient_encoding\x00vUTF8")
        .part(b"Q")
        .part(sql.as_bytes())
        .part(b"")
        .part(b"")
        .part(b"-")
        .finish()
}

fn miss_path(c: &mut Criterion<ThreadTime>) {
    for (name, max_bytes) in [
        (
            "miss: key + lookup + record + capture + fill (1 row, new key each time)",
            16u64 << 20,
        ),
        (
            "miss into a growing 256 MiB store (1 row, new key each time)",
            256u64 << 20,
        ),
    ] {
        let cache = ResultCache::new(
            CacheConfig {
                max_bytes,
                max_entry_bytes: 1 << 20,
                ttl: None,
            },
            Arc::new(Generations::new()),
        );
        let table = TableId {
            database: Arc::from("app"),
            oid: 16397,
        };
        let frames = result_frames();
        let mut aid = 0u64;
        c.bench_function(name, |b| {
            b.iter(|| {
                aid += 1;
                let key = key(black_box(aid));
                let Lookup::Miss(reservation) = cache.lookup(&key, "app") else {
                    return;
                };
                let rows = [RowDependency {
                    table: table.clone(),
                    columns: ColumnSetId(1),
                    keys: vec![KeyHash(aid.wrapping_mul(0x9e37_79b9_7f4a_7c15))],
                }];
                let guard = reservation.record(&Dependencies {
                    tables: &[],
                    rows: &rows,
                });
                let mut capture = Capture::new(guard, 1 << 20, false);
                capture.add(&frames[0], true);
                capture.add(&frames[1], true);
                capture.finish(&frames[2], true);
                if let Some(fill) = capture.into_fill(Bytes::new()) {
                    black_box(fill.guard.fill(fill.response, fill.meta));
                }
            })
        });
    }
}

fn config() -> Criterion<ThreadTime> {
    Criterion::default().with_measurement(ThreadTime)
}

criterion_group! {
    name = benches;
    config = config();
    targets = miss_path
}
criterion_main!(benches);

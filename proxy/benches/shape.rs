//! The shape lexer (`sql::shape::of`, as [`pgcached::bench_api::shape_of`]): every
//! simple-protocol query pays it once to find its classification by shape, and a cacheable
//! miss pays it again for its pinned keys.
//!
//! Times are the thread's CPU time ([`thread_time`]).
//!
//! Run: `cargo bench -p pgcached --bench shape`

#[path = "support/thread_time.rs"]
mod thread_time;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pgcached::bench_api::shape_of;
use thread_time::ThreadTime;

fn shapes(c: &mut Criterion<ThreadTime>) {
    let cases = [
        (
            "pgbench -S (one number)",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 734512;",
        ),
        (
            "strings, numbers and a comment",
            "SELECT o.id, o.total, c.name /* pgcached:ttl=30s */ FROM orders o \
             JOIN customers c ON c.id = o.customer_id \
             WHERE o.status = 'shipped' AND o.region = 'eu-west' AND o.total > 99.5 \
             ORDER BY o.id LIMIT 50",
        ),
        (
            "no literal (no shape)",
            "SELECT id, name, price FROM products WHERE category = $1 ORDER BY name",
        ),
    ];
    for (name, sql) in cases {
        c.bench_function(&format!("shape::of: {name}"), |b| {
            b.iter(|| shape_of(black_box(sql)))
        });
    }
}

fn config() -> Criterion<ThreadTime> {
    Criterion::default().with_measurement(ThreadTime)
}

criterion_group! {
    name = benches;
    config = config();
    targets = shapes
}
criterion_main!(benches);

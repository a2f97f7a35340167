//! Reading through pgcached while something writes straight to PostgreSQL: the first value of
//! a read, waiting until a value shows, and warming a read until it is served from the cache.

use std::time::{Duration, Instant};

use pgcached_cache::ResultCache;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The first column of the first row of `sql`, or `None` without rows; panics on error.
pub async fn value(client: &Client, sql: &str) -> Option<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", crate::clients::error_text(&e)))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
}

/// Reads `sql` until it returns `expected`; returns how long that took. Panics after `limit`.
pub async fn wait_for(client: &Client, sql: &str, expected: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if value(client, sql).await.as_deref() == Some(expected) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{expected:?} not visible through pgcached after {limit:?} ({sql})"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads `sql` until `cache` answers it (its hit count grows); panics after `limit`.
pub async fn until_cached(client: &Client, cache: &ResultCache, sql: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let before = cache.hits();
        value(client, sql).await;
        if cache.hits() > before {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{sql} not served from the cache after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50 and p99 of `delays`, for printing.
pub fn percentiles(delays: &mut [Duration]) -> (Duration, Duration) {
    delays.sort();
    let at = |q: usize| delays[(delays.len() * q / 100).min(delays.len() - 1)];
    (at(50), at(99))
}

//! The change stream over TLS, as managed databases require: with `sslmode=require` and
//! `verify-full` the stream is encrypted and streams, and an external write reaches pgcached's
//! cache as fast as without TLS. Two delays are printed per mode (timing goals live in
//! benchmarks): commit to invalidation (the stream alone), and commit to the new value read
//! through pgcached (which includes a relayed read over the session's own connection, TLS or
//! not).

use std::time::{Duration, Instant};

use pgcached_cache::{ResultCache, TableId};
use pgcached_local_cluster::users::{PGCACHED_PASSWORD, PGCACHED_USER};
use pgcached_local_cluster::{ClusterOptions, LocalCluster, SslFiles};
use pgcached_tests::console::{self, CONSOLE_FLAGS};
use pgcached_tests::external::{percentiles, until_cached, value, wait_for};
use pgcached_tests::proxy::config_with;
use pgcached_tests::{certs, connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

/// Writes timed per mode.
const ROUNDS: usize = 40;

/// Whether each replication connection of pgcached is encrypted, once there is exactly one.
async fn stream_encryption(admin: &Client) -> bool {
    let started = Instant::now();
    loop {
        let rows = admin
            .query(
                "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) \
                 WHERE r.application_name = 'pgcached replication'",
                &[],
            )
            .await
            .expect("pg_stat_replication");
        if rows.len() == 1 {
            return rows[0].get(0);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} replication connections",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the generation of `table` moves past `before`; returns how long that took.
fn until_invalidated(cache: &ResultCache, table: &TableId, before: u64) -> Duration {
    let started = Instant::now();
    let generation = cache.generations().table(table);
    while generation.current() == before {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not invalidated after 1 s"
        );
        std::thread::sleep(Duration::from_micros(50));
    }
    started.elapsed()
}

#[tokio::test]
async fn the_stream_runs_over_tls_as_fast_as_without() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = LocalCluster::start(ClusterOptions {
        ssl: Some(SslFiles {
            cert_pem: certs.server_cert.clone(),
            key_pem: certs.server_key.clone(),
        }),
        ..pgcached_tests::cluster::options()
    })
    .expect("TLS cluster");
    let admin = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("admin");
    admin
        .batch_execute(
            "CREATE TABLE ext (k int PRIMARY KEY, v text); INSERT INTO ext VALUES (1, 'v0');
             GRANT ALL ON ext TO PUBLIC;",
        )
        .await
        .expect("setup");
    let oid: u32 = admin
        .query_one("SELECT 'ext'::regclass::oid", &[])
        .await
        .expect("oid")
        .get(0);
    let table = TableId {
        database: "app".into(),
        oid,
    };
    let port = cluster.port();
    let ca = certs.ca_cert.display().to_string();
    let credentials = format!("{PGCACHED_USER}:{PGCACHED_PASSWORD}");
    let mut flags = vec!["--cache", "on"];
    flags.extend(CONSOLE_FLAGS);
    let mut report = Vec::new();
    let mut version = 0;
    for (mode, upstream, encrypted) in [
        (
            "verify-full",
            format!(
                "postgres://{credentials}@localhost:{port}?sslmode=verify-full&sslrootcert={ca}"
            ),
            true,
        ),
        (
            "require",
            format!("postgres://{credentials}@127.0.0.1:{port}?sslmode=require"),
            true,
        ),
        (
            "disable",
            format!("postgres://{credentials}@127.0.0.1:{port}?sslmode=disable"),
            false,
        ),
    ] {
        let proxy = TestProxy::with_config(config_with(&upstream, &flags, ""));
        let client = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
            .await
            .expect("client");
        let console = console::console(proxy.port()).await;
        console::wait_for_state(&console, "app", "streaming", None, Duration::from_secs(10)).await;
        assert_eq!(stream_encryption(&admin).await, encrypted, "{mode}");
        let cache = proxy.cache.as_ref().expect("cache on");
        let read = "SELECT v FROM ext WHERE k = 1";
        let mut invalidated = Vec::with_capacity(ROUNDS);
        let mut visible = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            until_cached(&client, cache, read, Duration::from_secs(5)).await;
            assert_eq!(
                value(&client, read).await,
                Some(format!("v{version}")),
                "{mode}: the cached value is current"
            );
            version += 1;
            let generation = cache.generations().table(&table).current();
            admin
                .execute(
                    "UPDATE ext SET v = $1 WHERE k = 1",
                    &[&format!("v{version}")],
                )
                .await
                .expect("external write");
            let committed = Instant::now();
            invalidated.push(until_invalidated(cache, &table, generation));
            wait_for(
                &client,
                read,
                &format!("v{version}"),
                Duration::from_secs(1),
            )
            .await;
            visible.push(committed.elapsed());
        }
        let (p50, p99) = percentiles(&mut invalidated);
        let (visible_p50, visible_p99) = percentiles(&mut visible);
        report.push(format!(
            "sslmode={mode}: commit to invalidation p50 {p50:?}, p99 {p99:?}; \
             to the new value read through pgcached p50 {visible_p50:?}, p99 {visible_p99:?} \
             (n = {ROUNDS})"
        ));
        drop(console);
        drop(client);
    }
    for line in report {
        println!("{line}");
    }
}

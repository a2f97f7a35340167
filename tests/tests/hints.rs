//! Per-query control without code changes: `/* pgcached:nocache */` and `/* pgcached:ttl=... */`
//! hints, and the `--cache-deny-tables` / `--cache-allow-tables` lists.
//!
//! Each test runs pgcached with `--replication off` and changes rows straight in PostgreSQL,
//! where pgcached cannot see it: a result served from the cache then keeps the old value, so
//! "was it cached?" and "for how long?" are visible to a client.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::clients::{error_text, first_value};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();

fn cluster() -> &'static LocalCluster {
    CLUSTER.get_or_init(|| {
        let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
        cluster
            .psql(
                "app",
                "CREATE SCHEMA shop;
                 CREATE TABLE hint_items (id int PRIMARY KEY, name text NOT NULL);
                 CREATE TABLE shop.orders (id int PRIMARY KEY, note text NOT NULL);
                 CREATE TABLE sessions (token text PRIMARY KEY, user_name text NOT NULL);
                 INSERT INTO hint_items SELECT g, 'item ' || g FROM generate_series(1, 20) g;
                 INSERT INTO shop.orders SELECT g, 'order ' || g FROM generate_series(1, 20) g;
                 INSERT INTO sessions VALUES ('t1', 'alice');
                 GRANT USAGE ON SCHEMA shop TO PUBLIC;
                 GRANT ALL ON hint_items, shop.orders, sessions TO PUBLIC;",
            )
            .expect("setup");
        cluster
    })
}

/// pgcached that learns nothing of writes made straight to PostgreSQL.
fn blind_proxy(extra: &[&str]) -> TestProxy {
    let mut flags = vec!["--replication", "off"];
    flags.extend_from_slice(extra);
    TestProxy::with_config(caching_config_for(cluster(), &flags))
}

async fn through(proxy: &TestProxy) -> Client {
    connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("connect through pgcached")
}

async fn direct() -> Client {
    connect(&url(Endpoint::direct(cluster()), "postgres", None, "app"))
        .await
        .expect("connect to PostgreSQL")
}

async fn set(direct: &Client, sql: &str) {
    direct
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
}

/// Reads `sql` until a change made behind pgcached is no longer seen, which proves the result
/// is served from the cache. Returns false if it never was.
async fn becomes_cached(
    client: &Client,
    direct: &Client,
    sql: &str,
    reset: &str,
    probe: &str,
) -> bool {
    for _ in 0..30 {
        set(direct, reset).await;
        let before = first_value(client, sql).await;
        first_value(client, sql).await;
        set(direct, probe).await;
        let after = first_value(client, sql).await;
        if after == before {
            set(direct, reset).await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set(direct, reset).await;
    false
}

#[tokio::test]
async fn a_nocache_hint_keeps_a_statement_out_of_the_cache() {
    let proxy = blind_proxy(&[]);
    let client = through(&proxy).await;
    let direct = direct().await;
    let reset = "UPDATE hint_items SET name = 'item 1' WHERE id = 1";
    let probe = "UPDATE hint_items SET name = 'changed' WHERE id = 1";
    // Without the hint the read is cached (the control).
    assert!(
        becomes_cached(
            &client,
            &direct,
            "SELECT name FROM hint_items WHERE id = 1",
            reset,
            probe
        )
        .await,
        "the plain read was never cached"
    );
    let hinted = "SELECT name FROM hint_items WHERE id = 1 /* pgcached:nocache */";
    for _ in 0..5 {
        first_value(&client, hinted).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set(&direct, probe).await;
    assert_eq!(first_value(&client, hinted).await, "changed");
    set(&direct, reset).await;
    assert_eq!(first_value(&client, hinted).await, "item 1");
    // A hint in a string literal is data, not a hint.
    let literal = "SELECT name || '/* pgcached:nocache */' FROM hint_items WHERE id = 2";
    assert!(
        becomes_cached(
            &client,
            &direct,
            literal,
            "UPDATE hint_items SET name = 'item 2' WHERE id = 2",
            "UPDATE hint_items SET name = 'changed' WHERE id = 2",
        )
        .await
    );
}

#[tokio::test]
async fn a_ttl_hint_bounds_how_long_a_result_is_served() {
    let proxy = blind_proxy(&[]);
    let client = through(&proxy).await;
    let direct = direct().await;
    let sql = "SELECT name FROM hint_items WHERE id = 3 /* pgcached:ttl=1s */";
    let reset = "UPDATE hint_items SET name = 'item 3' WHERE id = 3";
    let change = "UPDATE hint_items SET name = 'changed' WHERE id = 3";
    // Until the statement is judged (and between expiries) reads reach PostgreSQL; try until a
    // change made behind pgcached is not seen right away, i.e. the result came from the cache.
    let mut cached_for = None;
    for _ in 0..30 {
        set(&direct, reset).await;
        first_value(&client, sql).await;
        first_value(&client, sql).await;
        set(&direct, change).await;
        let changed_at = Instant::now();
        if first_value(&client, sql).await == "changed" {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        while changed_at.elapsed() < Duration::from_secs(10) {
            if first_value(&client, sql).await == "changed" {
                cached_for = Some(changed_at.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        break;
    }
    set(&direct, reset).await;
    let cached_for = cached_for.expect("the hinted read was cached, then expired");
    assert!(
        cached_for < Duration::from_secs(5),
        "a 1 s TTL served the old result for {cached_for:?}"
    );
}

#[tokio::test]
async fn denied_tables_are_never_cached_and_allowed_tables_are() {
    // Unquoted names fold to lower case, as in SQL.
    let proxy = blind_proxy(&["--cache-deny-tables", "Sessions"]);
    let client = through(&proxy).await;
    let direct = direct().await;
    let sql = "SELECT user_name FROM sessions WHERE token = 't1'";
    for _ in 0..5 {
        assert_eq!(first_value(&client, sql).await, "alice");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set(
        &direct,
        "UPDATE sessions SET user_name = 'bob' WHERE token = 't1'",
    )
    .await;
    assert_eq!(
        first_value(&client, sql).await,
        "bob",
        "a denied table was served from the cache"
    );
    set(
        &direct,
        "UPDATE sessions SET user_name = 'alice' WHERE token = 't1'",
    )
    .await;
    assert!(
        becomes_cached(
            &client,
            &direct,
            "SELECT name FROM hint_items WHERE id = 4",
            "UPDATE hint_items SET name = 'item 4' WHERE id = 4",
            "UPDATE hint_items SET name = 'changed' WHERE id = 4",
        )
        .await,
        "other tables are still cached"
    );

    let allow = blind_proxy(&["--cache-allow-tables", "shop.orders"]);
    let client = through(&allow).await;
    assert!(
        becomes_cached(
            &client,
            &direct,
            "SELECT note FROM shop.orders WHERE id = 5",
            "UPDATE shop.orders SET note = 'order 5' WHERE id = 5",
            "UPDATE shop.orders SET note = 'changed' WHERE id = 5",
        )
        .await,
        "the allowed table was never cached"
    );
    let join = "SELECT o.note, i.name FROM shop.orders o JOIN hint_items i USING (id) WHERE id = 6";
    for _ in 0..5 {
        first_value(&client, join).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    set(
        &direct,
        "UPDATE shop.orders SET note = 'changed' WHERE id = 6",
    )
    .await;
    assert_eq!(
        first_value(&client, join).await,
        "changed",
        "a read of an allowed and a not-allowed table was cached"
    );
    set(
        &direct,
        "UPDATE shop.orders SET note = 'order 6' WHERE id = 6",
    )
    .await;
}

#[test]
fn bad_table_lists_are_refused_at_start() {
    use clap::Parser;
    let cli = pgcached::config::Cli::parse_from(["pgcached", "--cache-deny-tables", "a.b.c"]);
    let error = pgcached::Config::resolve(&cli, &pgcached::config::FileConfig::default())
        .expect_err("refused");
    assert!(error.to_string().contains("a.b.c"), "{error}");
}

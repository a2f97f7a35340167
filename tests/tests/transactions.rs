//! Reads inside transaction blocks against a real PostgreSQL: READ COMMITTED blocks are served
//! from the cache until they write what a read depends on, a block reads its own uncommitted
//! rows and nobody else does, REPEATABLE READ and SERIALIZABLE are never served, wherever their
//! level comes from (BEGIN, SET SESSION CHARACTERISTICS, the startup packet, ALTER ROLE / ALTER
//! DATABASE), and savepoints and rollbacks keep working.
//!
//! "Reaches the server" is measured with pg_stat_statements, emptied at the start of each test;
//! each read carries a comment that names it, and the reads one test counts differ in
//! structure (pg_stat_statements ignores comments and constants).

use std::sync::OnceLock;
use std::time::Duration;

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::clients::error_told;
use pgcached_tests::external::{until_cached, value, wait_for};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::statements::{cluster_with_statement_stats, executions};
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();

/// The tests count executions in one shared cluster and change roles and databases (which
/// drops cached results): they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster() -> &'static LocalCluster {
    CLUSTER.get_or_init(|| {
        cluster_with_statement_stats(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
             CREATE TABLE colors (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO colors VALUES (1, 'red'), (2, 'green');
             CREATE TABLE oncall (name text PRIMARY KEY, on_duty bool NOT NULL);
             INSERT INTO oncall VALUES ('alice', true), ('bob', true);
             GRANT SELECT, INSERT, UPDATE, DELETE ON items, colors, oncall TO PUBLIC;",
        )
    })
}

/// A direct connection, with pg_stat_statements emptied: it counts by statement structure
/// (comments and constants aside), so the reads of earlier tests would count too.
async fn admin() -> Client {
    let admin = connect(&url(Endpoint::direct(cluster()), "postgres", None, "app"))
        .await
        .expect("admin");
    run(&admin, "SELECT pg_stat_statements_reset()").await;
    admin
}

fn caching_proxy() -> TestProxy {
    TestProxy::with_config(caching_config_for(cluster(), &[]))
}

async fn through(proxy: &TestProxy, user: &str) -> Client {
    through_to(proxy, user, None, "app").await
}

async fn through_to(
    proxy: &TestProxy,
    user: &str,
    password: Option<&str>,
    database: &str,
) -> Client {
    connect(&url(
        Endpoint::proxy(proxy.port()),
        user,
        password,
        database,
    ))
    .await
    .expect("connect through pgcached")
}

async fn run(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", error_told(&e)));
}

/// Warms `sql` outside a block until it is a hit.
async fn warm(proxy: &TestProxy, client: &Client, sql: &str) {
    let cache = proxy.cache.as_ref().expect("cache on");
    until_cached(client, cache, sql, Duration::from_secs(10)).await;
}

/// How many of five executions of `sql` inside one `begin …; COMMIT` block reached
/// PostgreSQL; `begin`'s statements (separated by `; `) are sent one by one.
async fn reached_in_block(
    admin: &Client,
    client: &Client,
    begin: &str,
    sql: &str,
    tag: &str,
) -> i64 {
    let before = executions(admin, tag).await;
    for statement in begin.split("; ") {
        run(client, statement).await;
    }
    for _ in 0..5 {
        value(client, sql).await;
    }
    run(client, "COMMIT").await;
    executions(admin, tag).await - before
}

#[tokio::test]
async fn read_committed_blocks_are_served_from_the_cache() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let admin = admin().await;
    let client = through(&proxy, "postgres").await;
    let sql = "SELECT name FROM items WHERE id = 1 /* rc-simple */";
    warm(&proxy, &client, sql).await;
    for begin in [
        "BEGIN",
        "START TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "BEGIN; SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    ] {
        assert_eq!(
            reached_in_block(&admin, &client, begin, sql, "rc-simple").await,
            0,
            "reads after {begin:?} reached PostgreSQL"
        );
    }

    // Extended protocol: tokio-postgres' own transaction, a prepared statement.
    let mut client = through(&proxy, "postgres").await;
    let statement = "SELECT id, name FROM items WHERE id = $1 /* rc-extended */";
    for _ in 0..5 {
        client.query_one(statement, &[&5i32]).await.expect("warm");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = executions(&admin, "rc-extended").await;
    let cache = proxy.cache.as_ref().expect("cache on");
    let hits = cache.hits();
    let transaction = client.transaction().await.expect("begin");
    for _ in 0..5 {
        let row = transaction
            .query_one(statement, &[&5i32])
            .await
            .expect("read");
        assert_eq!(row.get::<_, String>(1), "item 5");
    }
    transaction.commit().await.expect("commit");
    assert_eq!(executions(&admin, "rc-extended").await, before);
    assert!(cache.hits() >= hits + 5, "the block's reads were hits");
}

#[tokio::test]
async fn a_block_reads_its_own_writes_and_nobody_else_does_until_commit() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let writer = through(&proxy, "postgres").await;
    let reader = through(&proxy, "postgres").await;
    let sql = "SELECT name FROM items WHERE id = 2";
    warm(&proxy, &reader, sql).await;
    warm(&proxy, &writer, sql).await;

    run(&writer, "BEGIN").await;
    run(
        &writer,
        "UPDATE items SET name = 'uncommitted' WHERE id = 2",
    )
    .await;
    assert_eq!(value(&writer, sql).await.as_deref(), Some("uncommitted"));
    for _ in 0..3 {
        assert_eq!(value(&reader, sql).await.as_deref(), Some("item 2"));
    }
    run(&writer, "ROLLBACK").await;
    assert_eq!(value(&writer, sql).await.as_deref(), Some("item 2"));
    assert_eq!(value(&reader, sql).await.as_deref(), Some("item 2"));

    run(&writer, "BEGIN").await;
    run(&writer, "UPDATE items SET name = 'committed' WHERE id = 2").await;
    assert_eq!(value(&writer, sql).await.as_deref(), Some("committed"));
    assert_eq!(value(&reader, sql).await.as_deref(), Some("item 2"));
    run(&writer, "COMMIT").await;
    // Read-your-writes for every client of this pgcached: no waiting.
    assert_eq!(value(&reader, sql).await.as_deref(), Some("committed"));
    assert_eq!(value(&writer, sql).await.as_deref(), Some("committed"));
    run(&writer, "UPDATE items SET name = 'item 2' WHERE id = 2").await;
    assert_eq!(value(&reader, sql).await.as_deref(), Some("item 2"));

    // A failed block answers with PostgreSQL's own error until ROLLBACK.
    run(&writer, "BEGIN").await;
    assert!(writer.batch_execute("SELECT 1/0").await.is_err());
    let error = writer.simple_query(sql).await.expect_err("block is failed");
    assert_eq!(error.code().map(|c| c.code()), Some("25P02"));
    run(&writer, "ROLLBACK").await;
    assert_eq!(value(&writer, sql).await.as_deref(), Some("item 2"));
}

#[tokio::test]
async fn a_write_to_one_table_keeps_hits_on_other_tables_in_the_block() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let admin = admin().await;
    let client = through(&proxy, "postgres").await;
    let colors = "SELECT name FROM colors WHERE id = 1 /* unrelated-read */";
    let items = "SELECT name FROM items WHERE id = 3 /* related-read */";
    // The write's text, judged once (a new write text invalidates the whole database until
    // the catalog says what it reaches).
    run(&client, "UPDATE items SET name = 'changed' WHERE id = 3").await;
    run(&client, "UPDATE items SET name = 'item 3' WHERE id = 3").await;
    warm(&proxy, &client, colors).await;
    warm(&proxy, &client, items).await;
    let colors_before = executions(&admin, "unrelated-read").await;
    let items_before = executions(&admin, "related-read").await;

    run(&client, "BEGIN").await;
    run(&client, "UPDATE items SET name = 'changed' WHERE id = 3").await;
    for _ in 0..3 {
        assert_eq!(value(&client, colors).await.as_deref(), Some("red"));
        assert_eq!(value(&client, items).await.as_deref(), Some("changed"));
    }
    run(&client, "ROLLBACK").await;
    assert_eq!(
        executions(&admin, "unrelated-read").await,
        colors_before,
        "reads of a table the block did not write were hits"
    );
    assert_eq!(
        executions(&admin, "related-read").await,
        items_before + 3,
        "reads of the written table reached PostgreSQL"
    );
    assert_eq!(value(&client, items).await.as_deref(), Some("item 3"));
}

#[tokio::test]
async fn repeatable_read_keeps_its_snapshot_after_another_client_refilled() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let admin = admin().await;
    let snapshot = through(&proxy, "postgres").await;
    let other = through(&proxy, "postgres").await;
    let sql = "SELECT name FROM items WHERE id = 4 /* rr-read */";
    warm(&proxy, &other, sql).await;

    run(&snapshot, "BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    assert_eq!(value(&snapshot, sql).await.as_deref(), Some("item 4"));
    run(&admin, "UPDATE items SET name = 'newer' WHERE id = 4").await;
    wait_for(&other, sql, "newer", Duration::from_secs(5)).await;
    warm(&proxy, &other, sql).await;
    let cache = proxy.cache.as_ref().expect("cache on");
    let hits = cache.hits();
    let before = executions(&admin, "rr-read").await;
    for _ in 0..3 {
        assert_eq!(value(&snapshot, sql).await.as_deref(), Some("item 4"));
    }
    assert_eq!(
        cache.hits(),
        hits,
        "nothing was served to the REPEATABLE READ block"
    );
    assert_eq!(executions(&admin, "rr-read").await, before + 3);
    run(&snapshot, "COMMIT").await;
    assert_eq!(value(&snapshot, sql).await.as_deref(), Some("newer"));
    run(&admin, "UPDATE items SET name = 'item 4' WHERE id = 4").await;
}

#[tokio::test]
async fn serializable_conflicts_still_raise_40001() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let first = through(&proxy, "postgres").await;
    let second = through(&proxy, "postgres").await;
    let count = "SELECT count(*) FROM oncall WHERE on_duty";
    warm(&proxy, &first, count).await;
    warm(&proxy, &second, count).await;

    // Write skew: each sees two on duty and takes itself off. One of them must fail.
    run(&first, "BEGIN ISOLATION LEVEL SERIALIZABLE").await;
    run(&second, "BEGIN ISOLATION LEVEL SERIALIZABLE").await;
    assert_eq!(value(&first, count).await.as_deref(), Some("2"));
    assert_eq!(value(&second, count).await.as_deref(), Some("2"));
    run(
        &first,
        "UPDATE oncall SET on_duty = false WHERE name = 'alice'",
    )
    .await;
    let second_update = second
        .batch_execute("UPDATE oncall SET on_duty = false WHERE name = 'bob'")
        .await;
    let first_commit = first.batch_execute("COMMIT").await;
    let second_commit = match second_update {
        Ok(()) => second.batch_execute("COMMIT").await,
        Err(e) => {
            let _ = second.batch_execute("ROLLBACK").await;
            Err(e)
        }
    };
    let failures: Vec<String> = [first_commit, second_commit]
        .into_iter()
        .filter_map(Result::err)
        .map(|e| e.code().map(|c| c.code().to_owned()).unwrap_or_default())
        .collect();
    assert_eq!(
        failures,
        vec!["40001".to_owned()],
        "exactly one serialization failure"
    );
    run(&first, "UPDATE oncall SET on_duty = true").await;
}

#[tokio::test]
async fn defaults_of_roles_databases_sessions_and_startup_packets_are_followed() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    run(
        &admin,
        "DROP ROLE IF EXISTS snapshot_role;
         CREATE ROLE snapshot_role LOGIN PASSWORD 'snapshot_pw';
         GRANT SELECT ON items TO snapshot_role;",
    )
    .await;
    let proxy = caching_proxy();
    let sql = "SELECT name FROM items WHERE id = 6 /* defaults-read */";

    // A role whose default is REPEATABLE READ, set before and after pgcached met it.
    let role = through_to(&proxy, "snapshot_role", Some("snapshot_pw"), "app").await;
    warm(&proxy, &role, sql).await;
    assert_eq!(
        reached_in_block(&admin, &role, "BEGIN", sql, "defaults-read").await,
        0
    );
    run(
        &admin,
        "ALTER ROLE snapshot_role SET default_transaction_isolation = 'repeatable read'",
    )
    .await;
    // The catalog watcher sees the change within about half a second; a new login then
    // inherits the level.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let role = through_to(&proxy, "snapshot_role", Some("snapshot_pw"), "app").await;
    assert_eq!(
        value(&role, "SHOW transaction_isolation").await.as_deref(),
        Some("repeatable read")
    );
    assert_eq!(
        reached_in_block(&admin, &role, "BEGIN", sql, "defaults-read").await,
        5
    );
    run(
        &admin,
        "ALTER ROLE snapshot_role RESET default_transaction_isolation",
    )
    .await;

    // SET SESSION CHARACTERISTICS, and back.
    let session = through(&proxy, "postgres").await;
    warm(&proxy, &session, sql).await;
    run(
        &session,
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    )
    .await;
    assert_eq!(
        reached_in_block(&admin, &session, "BEGIN", sql, "defaults-read").await,
        5
    );
    run(
        &session,
        "SET default_transaction_isolation = 'read committed'",
    )
    .await;
    assert_eq!(
        reached_in_block(&admin, &session, "BEGIN", sql, "defaults-read").await,
        0
    );
    // A block started at a stronger level than the session's default.
    assert_eq!(
        reached_in_block(
            &admin,
            &session,
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            sql,
            "defaults-read"
        )
        .await,
        5
    );

    // The startup packet's options.
    let options = format!(
        "{}&options=-c%20default_transaction_isolation%3Dserializable",
        url(Endpoint::proxy(proxy.port()), "postgres", None, "app")
    );
    let startup = connect(&options).await.expect("connect with options");
    assert_eq!(
        value(&startup, "SHOW default_transaction_isolation")
            .await
            .as_deref(),
        Some("serializable")
    );
    assert_eq!(
        reached_in_block(&admin, &startup, "BEGIN", sql, "defaults-read").await,
        5
    );

    // A database whose default is SERIALIZABLE.
    run(&admin, "DROP DATABASE IF EXISTS strict").await;
    run(&admin, "CREATE DATABASE strict").await;
    let strict_admin = connect(&url(
        Endpoint::direct(cluster()),
        "postgres",
        None,
        "strict",
    ))
    .await
    .expect("strict");
    run(
        &strict_admin,
        "CREATE TABLE things (id int PRIMARY KEY, name text);
         INSERT INTO things VALUES (1, 'one');
         ALTER DATABASE strict SET default_transaction_isolation = 'serializable';",
    )
    .await;
    drop(strict_admin);
    let strict = through_to(&proxy, "postgres", None, "strict").await;
    let things = "SELECT name FROM things WHERE id = 1 /* strict-read */";
    // Judged by the catalog first; then nothing is served, in blocks or out of them (each
    // statement outside a block is a SERIALIZABLE transaction of its own).
    value(&strict, things).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = executions(&admin, "strict-read").await;
    for _ in 0..5 {
        assert_eq!(value(&strict, things).await.as_deref(), Some("one"));
    }
    assert_eq!(executions(&admin, "strict-read").await, before + 5);
    assert_eq!(
        reached_in_block(&admin, &strict, "BEGIN", things, "strict-read").await,
        5
    );
}

#[tokio::test]
async fn savepoints_keep_reads_right() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let client = through(&proxy, "postgres").await;
    let other = through(&proxy, "postgres").await;
    let sql = "SELECT name FROM items WHERE id = 7";
    warm(&proxy, &client, sql).await;

    run(&client, "BEGIN").await;
    assert_eq!(value(&client, sql).await.as_deref(), Some("item 7"));
    run(&client, "SAVEPOINT before_change").await;
    run(&client, "UPDATE items SET name = 'inside' WHERE id = 7").await;
    assert_eq!(value(&client, sql).await.as_deref(), Some("inside"));
    run(&client, "ROLLBACK TO SAVEPOINT before_change").await;
    assert_eq!(value(&client, sql).await.as_deref(), Some("item 7"));
    run(&client, "UPDATE items SET name = 'kept' WHERE id = 7").await;
    run(&client, "RELEASE SAVEPOINT before_change").await;
    assert_eq!(value(&client, sql).await.as_deref(), Some("kept"));
    assert_eq!(value(&other, sql).await.as_deref(), Some("item 7"));
    run(&client, "COMMIT").await;
    assert_eq!(value(&other, sql).await.as_deref(), Some("kept"));
    run(&client, "UPDATE items SET name = 'item 7' WHERE id = 7").await;
    assert_eq!(value(&other, sql).await.as_deref(), Some("item 7"));
}

/// `tag`'s executions after running `block`'s statements (separated by `; `) five times.
async fn reached_by_blocks(admin: &Client, client: &Client, block: &str, tag: &str) -> i64 {
    let before = executions(admin, tag).await;
    for _ in 0..5 {
        for statement in block.split("; ") {
            if statement.starts_with("SELECT") {
                value(client, statement).await;
            } else {
                run(client, statement).await;
            }
        }
    }
    executions(admin, tag).await - before
}

#[tokio::test]
async fn a_block_of_hits_never_reaches_postgresql_and_one_that_needs_it_runs_inside_a_block() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let admin = admin().await;
    let client = through(&proxy, "postgres").await;
    let other = through(&proxy, "postgres").await;
    let sql = "SELECT name FROM items WHERE id = 3 /* deferred-read */";
    warm(&proxy, &client, sql).await;
    warm(&proxy, &other, sql).await;
    let block = format!("BEGIN /* deferred-begin */; {sql}; COMMIT /* deferred-end */");
    for tag in ["deferred-begin", "deferred-read", "deferred-end"] {
        assert_eq!(
            reached_by_blocks(&admin, &client, &block, tag).await,
            0,
            "{tag}: a block of hits is answered by pgcached alone"
        );
    }

    // The first statement that needs PostgreSQL runs inside the block: the same transaction
    // id twice (outside a block, each call would get its own).
    let begins = executions(&admin, "deferred-begin").await;
    run(&client, "BEGIN /* deferred-begin */").await;
    assert_eq!(value(&client, sql).await.as_deref(), Some("item 3"));
    let xid = "SELECT pg_current_xact_id()::text";
    let first = value(&client, xid).await;
    assert_eq!(value(&client, xid).await, first, "one transaction");
    run(&client, "UPDATE items SET name = 'deferred' WHERE id = 3").await;
    assert_eq!(value(&client, sql).await.as_deref(), Some("deferred"));
    assert_eq!(value(&other, sql).await.as_deref(), Some("item 3"));
    run(&client, "ROLLBACK").await;
    assert_eq!(executions(&admin, "deferred-begin").await, begins + 1);
    assert_eq!(value(&client, sql).await.as_deref(), Some("item 3"));
    assert_eq!(value(&other, sql).await.as_deref(), Some("item 3"));
    assert_ne!(value(&client, xid).await, first, "the block is over");

    // A committed block's write is everyone's at once.
    run(&client, "BEGIN").await;
    assert_eq!(value(&client, sql).await.as_deref(), Some("item 3"));
    run(&client, "UPDATE items SET name = 'kept' WHERE id = 3").await;
    run(&client, "COMMIT").await;
    assert_eq!(value(&other, sql).await.as_deref(), Some("kept"));
    run(&client, "UPDATE items SET name = 'item 3' WHERE id = 3").await;

    // With --defer-begin off every BEGIN is relayed.
    let mut config = caching_config_for(cluster(), &[]);
    config.cache.defer_begin = pgcached::config::DeferBegin::Off;
    let relaying = TestProxy::with_config(config);
    let client = through(&relaying, "postgres").await;
    warm(&relaying, &client, sql).await;
    assert_eq!(
        reached_by_blocks(&admin, &client, &block, "deferred-begin").await,
        5
    );
    assert_eq!(
        reached_by_blocks(&admin, &client, &block, "deferred-read").await,
        0,
        "the reads are hits all the same"
    );
}

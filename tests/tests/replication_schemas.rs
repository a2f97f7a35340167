//! pgcached's setup never breaks a write that works without it, on any schema: with the setup
//! README gives (a role with REPLICATION, nothing else), UPDATE and DELETE on tables without a
//! primary key work through pgcached and straight to PostgreSQL, triggers writing such tables
//! work, and reads of them are cached and follow writes made elsewhere. With an operator's
//! publication (`--publication`), only the tables it carries are cached.

use std::time::Duration;

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::console::{self, CONSOLE_FLAGS};
use pgcached_tests::external::{until_cached, value, wait_for};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

const SECOND: Duration = Duration::from_secs(1);

async fn direct(cluster: &LocalCluster) -> Client {
    connect(&url(Endpoint::direct(cluster), "postgres", None, "app"))
        .await
        .expect("direct")
}

async fn through(proxy: &TestProxy) -> Client {
    connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("through pgcached")
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Waits until the catalog watcher has dropped cached results at least `count` times.
async fn wait_for_catalog_invalidations(console: &Client, count: u64) {
    let started = std::time::Instant::now();
    loop {
        let stats = console::rows(console, "SHOW STATS").await;
        let seen = stats
            .iter()
            .find(|row| row["stat"].as_deref() == Some("invalidations_catalog"))
            .and_then(|row| row["value"].as_deref()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if seen >= count as f64 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the catalog watcher did not see the DDL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tables_without_a_primary_key_keep_working_and_are_followed() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = direct(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE nokey (k int, v text);
             INSERT INTO nokey VALUES (1, 'v0'), (2, 'w0');
             CREATE TABLE tally (n int);
             INSERT INTO tally VALUES (0);
             CREATE TABLE orders (id int PRIMARY KEY, amount int);
             CREATE FUNCTION count_order() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN UPDATE tally SET n = n + 1; DELETE FROM nokey WHERE k = 99; RETURN NEW; END $$;
             CREATE TRIGGER counted AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION count_order();
             GRANT ALL ON nokey, tally, orders TO PUBLIC;",
        )
        .await
        .expect("schema");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &CONSOLE_FLAGS));
    let client = through(&proxy).await;
    let console = console::console(proxy.port()).await;
    let streaming =
        console::wait_for_state(&console, "app", "streaming", None, Duration::from_secs(10)).await;
    assert_eq!(streaming["decoding"].as_deref(), Some("test_decoding"));

    // Writes that a FOR ALL TABLES publication would refuse (SQLSTATE 55000), through pgcached
    // and straight to PostgreSQL, while pgcached streams.
    for writer in [&client, &admin] {
        writer
            .execute("UPDATE nokey SET v = v WHERE k = 2", &[])
            .await
            .expect("UPDATE of a table without a key");
        writer
            .execute("DELETE FROM nokey WHERE k = 42", &[])
            .await
            .expect("DELETE from a table without a key");
        writer
            .batch_execute("BEGIN; UPDATE tally SET n = n; COMMIT")
            .await
            .expect("UPDATE in a transaction block");
    }
    for id in [1, 2] {
        client
            .execute("INSERT INTO orders VALUES ($1, 10)", &[&id])
            .await
            .expect("a trigger that updates a table without a key, through pgcached");
    }
    admin
        .execute("INSERT INTO orders VALUES (3, 10)", &[])
        .await
        .expect("the same trigger, straight to PostgreSQL");
    assert_eq!(count(&admin, "SELECT n::bigint FROM tally").await, 3);
    // pgcached created nothing that outlives it.
    assert_eq!(
        count(&admin, "SELECT count(*) FROM pg_publication").await,
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_replication_slots WHERE NOT temporary"
        )
        .await,
        0
    );

    // Reads of the table are cacheable, cached, and see every kind of external write.
    let read = "SELECT string_agg(v, ',' ORDER BY k, v) FROM nokey";
    let explained = console::explain(&console, "app", read).await;
    assert_eq!(
        explained["cacheable"].as_deref(),
        Some("yes"),
        "{explained:?}"
    );
    assert_eq!(explained["tables"].as_deref(), Some("public.nokey"));
    let cache = proxy.cache.as_ref().expect("cache on");
    until_cached(&client, cache, read, Duration::from_secs(5)).await;
    assert_eq!(value(&client, read).await.as_deref(), Some("v0,w0"));
    admin
        .batch_execute("UPDATE nokey SET v = 'v1' WHERE k = 1")
        .await
        .expect("external update");
    wait_for(&client, read, "v1,w0", SECOND).await;
    until_cached(&client, cache, read, SECOND).await;
    admin
        .batch_execute("DELETE FROM nokey WHERE k = 2")
        .await
        .expect("external delete");
    wait_for(&client, read, "v1", SECOND).await;
    until_cached(&client, cache, read, SECOND).await;
    admin
        .batch_execute("INSERT INTO nokey VALUES (3, 'x')")
        .await
        .expect("external insert");
    wait_for(&client, read, "v1,x", SECOND).await;
    until_cached(&client, cache, read, SECOND).await;
    admin
        .batch_execute("TRUNCATE nokey")
        .await
        .expect("external truncate");
    let empty = "SELECT count(*)::text FROM nokey";
    until_cached(&client, cache, empty, Duration::from_secs(5)).await;
    assert_eq!(value(&client, empty).await.as_deref(), Some("0"));
    admin
        .batch_execute("INSERT INTO nokey VALUES (4, 'y'), (5, 'z')")
        .await
        .expect("insert after truncate");
    wait_for(&client, empty, "2", SECOND).await;

    // A trigger's write made elsewhere reaches cached reads of the table it writes.
    let tally = "SELECT n::text FROM tally";
    until_cached(&client, cache, tally, Duration::from_secs(5)).await;
    admin
        .execute("INSERT INTO orders VALUES (4, 10)", &[])
        .await
        .expect("trigger");
    wait_for(&client, tally, "4", SECOND).await;

    // A plain REFRESH MATERIALIZED VIEW made elsewhere reports no row change, yet is seen.
    admin
        .batch_execute(
            "CREATE MATERIALIZED VIEW tally_view AS SELECT n FROM tally;
             GRANT SELECT ON tally_view TO PUBLIC;",
        )
        .await
        .expect("materialized view");
    let view = "SELECT n::text FROM tally_view";
    // The catalog watcher sees the DDL, and a first change after it lets the stream take in
    // the new name; from then on, only the refresh itself can drop the view's cached read.
    wait_for_catalog_invalidations(&console, 1).await;
    admin
        .batch_execute("UPDATE tally SET n = 5")
        .await
        .expect("update");
    wait_for(&client, tally, "5", SECOND).await;
    until_cached(&client, cache, view, Duration::from_secs(5)).await;
    assert_eq!(value(&client, view).await.as_deref(), Some("4"));
    admin
        .batch_execute("UPDATE tally SET n = 40")
        .await
        .expect("update");
    wait_for(&client, tally, "40", SECOND).await;
    assert_eq!(
        value(&client, view).await.as_deref(),
        Some("4"),
        "not refreshed yet, as straight from PostgreSQL"
    );
    admin
        .batch_execute("REFRESH MATERIALIZED VIEW tally_view")
        .await
        .expect("refresh");
    wait_for(&client, view, "40", Duration::from_secs(2)).await;

    // The stream counted those transactions and read their commit times.
    let row = console::replication(&console, "app")
        .await
        .expect("app followed");
    let transactions: u64 = row["transactions"]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("count");
    assert!(transactions >= 6, "{row:?}");
    let lag_ms: f64 = row["lag_ms"]
        .as_deref()
        .expect("a lag from test_decoding's commit time")
        .parse()
        .expect("lag");
    assert!((0.0..10_000.0).contains(&lag_ms), "{row:?}");
}

#[tokio::test]
async fn with_a_publication_only_the_tables_it_carries_are_cached() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = direct(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE carried (id int PRIMARY KEY, v text);
             CREATE TABLE other (id int PRIMARY KEY, v text);
             CREATE TABLE filtered (id int PRIMARY KEY, v text);
             INSERT INTO carried VALUES (1, 'c0'); INSERT INTO other VALUES (1, 'o0');
             INSERT INTO filtered VALUES (1, 'f0');
             CREATE PUBLICATION shop FOR TABLE carried, filtered WHERE (id > 100);
             CREATE PUBLICATION inserts_only FOR TABLE carried WITH (publish = 'insert');
             GRANT ALL ON carried, other, filtered TO PUBLIC;",
        )
        .await
        .expect("schema");
    let mut flags = CONSOLE_FLAGS.to_vec();
    flags.extend(["--publication", "shop"]);
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &flags));
    let client = through(&proxy).await;
    let console = console::console(proxy.port()).await;
    let streaming =
        console::wait_for_state(&console, "app", "streaming", None, Duration::from_secs(10)).await;
    assert_eq!(streaming["decoding"].as_deref(), Some("pgoutput (shop)"));

    let carried = "SELECT v FROM carried WHERE id = 1";
    let other = "SELECT v FROM other WHERE id = 1";
    let filtered = "SELECT v FROM filtered WHERE id = 1";
    assert_eq!(
        console::explain(&console, "app", carried).await["reason"].as_deref(),
        Some("cacheable")
    );
    for sql in [other, filtered] {
        let row = console::explain(&console, "app", sql).await;
        assert_eq!(row["cacheable"].as_deref(), Some("no"), "{sql}: {row:?}");
        assert_eq!(row["reason"].as_deref(), Some("not_published"), "{sql}");
        assert!(
            row["detail"]
                .as_deref()
                .is_some_and(|d| d.contains("ALTER PUBLICATION")),
            "{row:?}"
        );
    }

    // Changes to the published table are seen.
    let cache = proxy.cache.as_ref().expect("cache on");
    until_cached(&client, cache, carried, Duration::from_secs(5)).await;
    admin
        .batch_execute("UPDATE carried SET v = 'c1' WHERE id = 1")
        .await
        .expect("external update");
    wait_for(&client, carried, "c1", SECOND).await;
    // Cached again once the commit's second bump is behind (the read right after it may not
    // fill: a fill in flight across that bump is refused).
    until_cached(&client, cache, carried, Duration::from_secs(5)).await;

    // Reads of the others are relayed every time: an external write shows at once.
    for (table, sql) in [("other", other), ("filtered", filtered)] {
        for _ in 0..4 {
            value(&client, sql).await;
        }
        for round in 0..3 {
            let new = format!("{table} {round}");
            admin
                .execute(&format!("UPDATE {table} SET v = $1 WHERE id = 1"), &[&new])
                .await
                .expect("external update");
            assert_eq!(value(&client, sql).await.as_deref(), Some(new.as_str()));
        }
    }
    let carried_oid: u32 = admin
        .query_one("SELECT 'carried'::regclass::oid", &[])
        .await
        .expect("oid")
        .get(0);
    let entries = cache.entries();
    assert!(!entries.is_empty());
    assert!(
        entries
            .iter()
            .all(|e| e.tables.iter().all(|t| t.oid == carried_oid)),
        "only reads of the carried table were cached"
    );

    // A publication that does not publish every action carries nothing pgcached can rely on,
    // and one that does not exist is a problem that names the fix.
    for (publication, reason_or_problem) in [
        ("inserts_only", "not_published"),
        ("nosuch", "publication_missing"),
    ] {
        let mut flags = CONSOLE_FLAGS.to_vec();
        flags.extend(["--publication", publication]);
        let proxy = TestProxy::with_config(caching_config_for(&cluster, &flags));
        let _client = through(&proxy).await;
        let console = console::console(proxy.port()).await;
        if reason_or_problem == "not_published" {
            let row = console::explain(&console, "app", carried).await;
            assert_eq!(row["reason"].as_deref(), Some("not_published"), "{row:?}");
        } else {
            let row = console::wait_for_state(
                &console,
                "app",
                "unavailable",
                Some("publication_missing"),
                Duration::from_secs(10),
            )
            .await;
            assert!(
                row["detail"]
                    .as_deref()
                    .is_some_and(|d| d.contains("nosuch") && d.contains("--publication")),
                "{row:?}"
            );
        }
    }
}

//! Writes made outside pgcached reach the cache through logical replication: external writes
//! become visible through pgcached within a second, a lost stream is re-established (and
//! nothing stale is served meanwhile), and without logical replication pgcached says so and
//! still invalidates on its own writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgcached_cache::TableId;
use pgcached_local_cluster::{ClusterOptions, LocalCluster};
use pgcached_tests::console::{console, rows, CONSOLE_FLAGS};
use pgcached_tests::external::until_cached;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

async fn value(client: &Client, sql: &str) -> Option<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
}

/// Reads through pgcached until `expected` comes back; returns how long it took.
async fn wait_for(client: &Client, sql: &str, expected: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if value(client, sql).await.as_deref() == Some(expected) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{expected:?} not visible through pgcached after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn setup(cluster: &LocalCluster) -> Client {
    let admin = connect(&url(Endpoint::direct(cluster), "postgres", None, "app"))
        .await
        .expect("admin");
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS ext; CREATE TABLE ext (k int PRIMARY KEY, v text);
             INSERT INTO ext VALUES (1, 'v0'); GRANT ALL ON ext TO PUBLIC;",
        )
        .await
        .expect("setup");
    admin
}

/// Waits until the stream is running, i.e. the read is served from the cache again.
async fn warm(client: &Client, sql: &str) {
    for _ in 0..6 {
        value(client, sql).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn external_writes_are_visible_through_pgcached_within_a_second() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = setup(&cluster).await;
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let reader = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("reader");
    let read = "SELECT v FROM ext WHERE k = 1";
    warm(&reader, read).await;
    let mut delays = Vec::new();
    for i in 1..=20 {
        // Make sure the old value is cached before the external write.
        assert_eq!(value(&reader, read).await, Some(format!("v{}", i - 1)));
        assert_eq!(value(&reader, read).await, Some(format!("v{}", i - 1)));
        admin
            .execute("UPDATE ext SET v = $1 WHERE k = 1", &[&format!("v{i}")])
            .await
            .expect("external write");
        delays.push(wait_for(&reader, read, &format!("v{i}"), Duration::from_secs(1)).await);
    }
    delays.sort();
    println!(
        "external write to visible through pgcached: p50 {:?}, p99 {:?} (n = {})",
        delays[delays.len() / 2],
        delays[delays.len() * 99 / 100],
        delays.len()
    );
    // The last write's new row is cached by a read after the commit's re-bump (a fill in
    // flight across that bump is refused, so the read right after a write may not fill).
    let cache = proxy.cache.as_ref().expect("cache on");
    for _ in 0..50 {
        if !cache.is_empty() {
            break;
        }
        value(&reader, read).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!cache.is_empty(), "reads are cached after the writes");

    // TRUNCATE and INSERT are changes too.
    admin.batch_execute("TRUNCATE ext").await.expect("truncate");
    wait_for(
        &reader,
        "SELECT count(*)::text FROM ext",
        "0",
        Duration::from_secs(1),
    )
    .await;
    admin
        .batch_execute("INSERT INTO ext VALUES (1, 'back')")
        .await
        .expect("insert");
    wait_for(&reader, read, "back", Duration::from_secs(1)).await;
}

/// `cache_hits` from the console's `SHOW STATS`.
async fn cache_hits(console: &Client) -> f64 {
    rows(console, "SHOW STATS")
        .await
        .into_iter()
        .find(|row| row["stat"].as_deref() == Some("cache_hits"))
        .and_then(|row| row["value"].as_deref()?.parse().ok())
        .expect("cache_hits")
}

#[tokio::test]
async fn an_external_write_is_bumped_again_once_visible_and_its_new_row_stays_cached() {
    bumped_again_once_visible(None).await;
}

#[tokio::test]
async fn with_pgoutput_too_an_external_write_is_bumped_again_once_visible() {
    bumped_again_once_visible(Some("ext_changes")).await;
}

/// An external write's counters are bumped by the stream and once more when a snapshot shows
/// the commit visible, never again: the row cached after that stays a hit past the old fixed
/// delays. With `publication`, the stream decodes it with pgoutput (else test_decoding).
async fn bumped_again_once_visible(publication: Option<&str>) {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = setup(&cluster).await;
    let mut flags = CONSOLE_FLAGS.to_vec();
    if let Some(publication) = publication {
        admin
            .batch_execute(&format!("CREATE PUBLICATION {publication} FOR TABLE ext"))
            .await
            .expect("publication");
        flags.extend_from_slice(&["--publication", publication]);
    }
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &flags));
    let reader = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("reader");
    let console = console(proxy.port()).await;
    let read = "SELECT v FROM ext WHERE k = 1";
    warm(&reader, read).await;
    let oid: u32 = admin
        .query_one("SELECT 'ext'::regclass::oid", &[])
        .await
        .expect("oid")
        .get(0);
    let cache = proxy.cache.as_ref().expect("cache on");
    let rows_counter = cache.generations().table(&TableId {
        database: Arc::from("app"),
        oid,
    });
    for i in 1..=3 {
        let before = rows_counter.current();
        admin
            .execute("UPDATE ext SET v = $1 WHERE k = 1", &[&format!("v{i}")])
            .await
            .expect("external write");
        wait_for(&reader, read, &format!("v{i}"), Duration::from_secs(1)).await;
        // The stream's bump, then one more once a snapshot shows the commit visible.
        let deadline = Instant::now() + Duration::from_secs(5);
        while rows_counter.current() < before + 2 {
            assert!(Instant::now() < deadline, "the commit was not bumped again");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Cached again after the last bump: past the old fixed delays (20 ms, 500 ms) the
        // entry is still there and answers.
        assert_eq!(value(&reader, read).await, Some(format!("v{i}")));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            rows_counter.current(),
            before + 2,
            "no re-bump after the commit was seen visible"
        );
        let hits = cache_hits(&console).await;
        assert_eq!(value(&reader, read).await, Some(format!("v{i}")));
        assert_eq!(
            cache_hits(&console).await,
            hits + 1.0,
            "the row cached after the write is still a hit"
        );
    }
}

#[tokio::test]
async fn a_lost_stream_is_reestablished_and_nothing_stale_is_served_meanwhile() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = setup(&cluster).await;
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let reader = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("reader");
    let read = "SELECT v FROM ext WHERE k = 1";
    warm(&reader, read).await;
    let slots = "SELECT count(*) FROM pg_replication_slots WHERE temporary AND active";
    let count: i64 = admin.query_one(slots, &[]).await.expect("slots").get(0);
    assert_eq!(count, 1, "one temporary slot while streaming");
    for round in 0..3 {
        let terminated: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication \
                 WHERE application_name = 'pgcached replication'",
                &[],
            )
            .await
            .expect("terminate walsender")
            .get(0);
        assert_eq!(terminated, 1);
        // A write while the stream is down must still be seen.
        let new = format!("after loss {round}");
        admin
            .execute("UPDATE ext SET v = $1 WHERE k = 1", &[&new])
            .await
            .expect("write");
        wait_for(&reader, read, &new, Duration::from_secs(5)).await;
        // The stream comes back (a new temporary slot) and reads are cached again.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let count: i64 = admin.query_one(slots, &[]).await.expect("slots").get(0);
            if count == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "stream not re-established");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    warm(&reader, read).await;
    let proxy_cache = proxy.cache.as_ref().expect("cache on");
    assert!(!proxy_cache.is_empty());
}

#[tokio::test]
async fn without_logical_replication_pgcached_still_invalidates_its_own_writes() {
    let cluster = LocalCluster::start(ClusterOptions {
        wal_level: "replica".to_owned(),
        ..pgcached_tests::cluster::options()
    })
    .expect("cluster");
    setup(&cluster).await;
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let reader = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("reader");
    let writer = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("writer");
    let read = "SELECT v FROM ext WHERE k = 1";
    warm(&reader, read).await;
    let cache = proxy.cache.as_ref().expect("cache on");
    assert!(
        !cache.is_empty(),
        "caching goes on without replication (auto)"
    );
    for i in 0..5 {
        let new = format!("own write {i}");
        writer
            .execute("UPDATE ext SET v = $1 WHERE k = 1", &[&new])
            .await
            .expect("write");
        assert_eq!(value(&reader, read).await.as_deref(), Some(new.as_str()));
        warm(&reader, read).await;
    }

    // With --replication required, nothing is served from the cache without it.
    let strict =
        TestProxy::with_config(caching_config_for(&cluster, &["--replication", "required"]));
    let client = connect(&url(
        Endpoint::proxy(strict.port()),
        "postgres",
        None,
        "app",
    ))
    .await
    .expect("client");
    warm(&client, read).await;
    let strict_cache = strict.cache.as_ref().expect("cache on");
    assert!(
        strict_cache.is_empty(),
        "nothing cached when replication is required but off"
    );
}

/// Polls until `sql` through `client` fails with `code`; returns how long it took.
async fn wait_for_error(client: &Client, sql: &str, code: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match client.simple_query(sql).await {
            Err(e) if e.code().map(|c| c.code()) == Some(code) => return started.elapsed(),
            _ => {}
        }
        assert!(
            started.elapsed() < limit,
            "{sql} still served after {limit:?} (expected SQLSTATE {code})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn external_revoke_and_rename_stop_cached_results_within_two_seconds() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = setup(&cluster).await;
    admin
        .batch_execute(
            "CREATE ROLE carol LOGIN PASSWORD 'carol_pw';
             CREATE TABLE ledger (id int PRIMARY KEY, amount int);
             INSERT INTO ledger VALUES (1, 100);
             GRANT SELECT ON ledger TO carol;",
        )
        .await
        .expect("setup");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let carol = connect(&url(
        Endpoint::proxy(proxy.port()),
        "carol",
        Some("carol_pw"),
        "app",
    ))
    .await
    .expect("carol");
    let read = "SELECT amount::text FROM ledger WHERE id = 1";
    let cache = proxy.cache.as_ref().expect("cache on");
    until_cached(&carol, cache, read, Duration::from_secs(10)).await;
    assert_eq!(value(&carol, read).await.as_deref(), Some("100"));
    assert!(!cache.is_empty(), "carol's read is cached");

    admin
        .batch_execute("REVOKE SELECT ON ledger FROM carol")
        .await
        .expect("revoke");
    let took = wait_for_error(&carol, read, "42501", Duration::from_secs(2)).await;
    println!("external REVOKE effective through pgcached after {took:?}");

    let postgres = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("postgres");
    let ext = "SELECT v FROM ext WHERE k = 1";
    until_cached(&postgres, cache, ext, Duration::from_secs(10)).await;
    assert_eq!(value(&postgres, ext).await.as_deref(), Some("v0"));
    admin
        .batch_execute("ALTER TABLE ext RENAME TO ext_renamed")
        .await
        .expect("rename");
    let took = wait_for_error(&postgres, ext, "42P01", Duration::from_secs(2)).await;
    println!("external RENAME effective through pgcached after {took:?}");
}

#[tokio::test]
async fn partitions_and_views_are_invalidated_by_changes_to_their_tables() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = setup(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE meas (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
             CREATE TABLE meas_eu PARTITION OF meas FOR VALUES IN ('eu');
             CREATE TABLE meas_us PARTITION OF meas FOR VALUES IN ('us');
             INSERT INTO meas VALUES (1, 'eu', 10), (2, 'us', 20);
             CREATE TABLE va (k int PRIMARY KEY, v text);
             CREATE TABLE vb (k int PRIMARY KEY, w text);
             INSERT INTO va VALUES (1, 'a0'); INSERT INTO vb VALUES (1, 'b0');
             CREATE VIEW combo AS SELECT va.k, va.v, vb.w FROM va JOIN vb USING (k);
             GRANT SELECT ON meas, meas_eu, meas_us, va, vb, combo TO PUBLIC;",
        )
        .await
        .expect("setup");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let reader = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("reader");
    let total = "SELECT sum(v)::text FROM meas";
    let leaf = "SELECT v::text FROM meas_eu WHERE id = 1";
    let view = "SELECT v || '+' || w FROM combo WHERE k = 1";
    for sql in [total, leaf, view] {
        warm(&reader, sql).await;
    }
    let cache = proxy.cache.as_ref().expect("cache on");
    assert!(cache.len() >= 3, "all three reads cached: {}", cache.len());
    let second = Duration::from_secs(1);

    admin
        .batch_execute("UPDATE meas SET v = 11 WHERE id = 1")
        .await
        .expect("update partition");
    wait_for(&reader, total, "31", second).await;
    wait_for(&reader, leaf, "11", second).await;
    admin
        .batch_execute("UPDATE meas_eu SET v = 12 WHERE id = 1")
        .await
        .expect("update leaf directly");
    wait_for(&reader, total, "32", second).await;
    wait_for(&reader, leaf, "12", second).await;

    assert_eq!(value(&reader, view).await.as_deref(), Some("a0+b0"));
    admin
        .batch_execute("UPDATE vb SET w = 'b1' WHERE k = 1")
        .await
        .expect("update second base table");
    wait_for(&reader, view, "a0+b1", second).await;
    warm(&reader, view).await;
    admin
        .batch_execute("UPDATE va SET v = 'a1' WHERE k = 1")
        .await
        .expect("update first base table");
    wait_for(&reader, view, "a1+b1", second).await;
}

#[tokio::test]
async fn reads_of_an_inheritance_parent_see_writes_to_its_children() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = setup(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE animals (id int PRIMARY KEY, n int NOT NULL);
             CREATE TABLE dogs (PRIMARY KEY (id)) INHERITS (animals);
             CREATE TABLE puppies (PRIMARY KEY (id)) INHERITS (dogs);
             INSERT INTO animals VALUES (1, 1);
             INSERT INTO dogs VALUES (2, 10);
             GRANT SELECT ON animals, dogs, puppies TO PUBLIC;",
        )
        .await
        .expect("setup");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let reader = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("reader");
    let total = "SELECT sum(n)::text FROM animals";
    warm(&reader, total).await;
    assert_eq!(value(&reader, total).await.as_deref(), Some("11"));
    let second = Duration::from_secs(1);
    admin
        .batch_execute("INSERT INTO puppies VALUES (3, 100)")
        .await
        .expect("insert into a grandchild");
    wait_for(&reader, total, "111", second).await;
    warm(&reader, total).await;
    admin
        .batch_execute("UPDATE dogs SET n = 20 WHERE id = 2")
        .await
        .expect("update a child");
    wait_for(&reader, total, "121", second).await;
}

/// The number of active replication slots on `database`.
async fn active_slots(admin: &Client, database: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE database = $1 AND active",
            &[&database],
        )
        .await
        .expect("slots")
        .get(0)
}

/// Connects through `proxy` to `database` and waits until pgcached streams it.
async fn followed(proxy: &TestProxy, admin: &Client, database: &str) {
    let client = connect(&url(
        Endpoint::proxy(proxy.port()),
        "postgres",
        None,
        database,
    ))
    .await
    .expect("connect through pgcached");
    client.simple_query("SELECT 1").await.expect("query");
    let started = Instant::now();
    while active_slots(admin, database).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{database} not followed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Test runners and migration tools create a database, use it, and drop it: PostgreSQL refuses
/// while pgcached's stream (an active slot) or control connection is on it, so pgcached lets go
/// of the database first. A DROP that fails for a client still connected fails as it would
/// straight to PostgreSQL, and nothing stale is served to that client afterwards (its database
/// is not followed until a session of it logs in again: nothing of it is served meanwhile).
#[tokio::test]
async fn databases_used_through_pgcached_can_be_dropped_renamed_and_copied_through_it() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = setup(&cluster).await;
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let through = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("connect");

    admin
        .batch_execute("CREATE DATABASE scratch")
        .await
        .expect("create");
    followed(&proxy, &admin, "scratch").await;
    through
        .batch_execute("DROP DATABASE scratch")
        .await
        .expect("DROP DATABASE of a database pgcached followed");

    admin
        .batch_execute("CREATE DATABASE old_name")
        .await
        .expect("create");
    followed(&proxy, &admin, "old_name").await;
    through
        .batch_execute("ALTER DATABASE old_name RENAME TO new_name")
        .await
        .expect("RENAME of a database pgcached followed");
    admin
        .batch_execute("CREATE DATABASE template_src")
        .await
        .expect("create");
    followed(&proxy, &admin, "template_src").await;
    through
        .batch_execute("CREATE DATABASE copied TEMPLATE template_src")
        .await
        .expect("TEMPLATE of a database pgcached followed");
    // Extended protocol too (drivers that prepare every statement).
    through
        .execute("DROP DATABASE IF EXISTS template_src", &[])
        .await
        .expect("DROP DATABASE over the extended protocol");

    // Someone still connected: PostgreSQL's own refusal, and the database is followed again.
    admin
        .batch_execute("CREATE DATABASE busy")
        .await
        .expect("create");
    followed(&proxy, &admin, "busy").await;
    let user = connect(&url(
        Endpoint::proxy(proxy.port()),
        "postgres",
        None,
        "busy",
    ))
    .await
    .expect("connect");
    user.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .expect("setup");
    let error = through
        .batch_execute("DROP DATABASE busy")
        .await
        .expect_err("another client is connected");
    assert_eq!(error.code().map(|c| c.code()), Some("55006"), "{error}");
    assert_eq!(value(&user, "SELECT v FROM t").await.as_deref(), Some("1"));
    let direct = connect(&url(Endpoint::direct(&cluster), "postgres", None, "busy"))
        .await
        .expect("direct");
    direct
        .batch_execute("UPDATE t SET v = 2")
        .await
        .expect("external write");
    assert_eq!(value(&user, "SELECT v FROM t").await.as_deref(), Some("2"));
    drop(direct);
    drop(user);
    // Once everyone has left, the drop goes through.
    tokio::time::sleep(Duration::from_millis(200)).await;
    through
        .batch_execute("DROP DATABASE busy")
        .await
        .expect("DROP DATABASE once its clients left");
    for gone in ["new_name", "copied"] {
        admin
            .batch_execute(&format!("DROP DATABASE {gone}"))
            .await
            .expect("cleanup");
    }
}

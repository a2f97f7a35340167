//! Row-level invalidation against a real PostgreSQL: a write invalidates the cached reads of the
//! rows it changed, and keeps the others; every fallback (a column that cannot be pinned, a
//! table without a primary key, a key column changed, a trigger, a cascade, TRUNCATE) still
//! invalidates everything that may have changed.

use std::time::{Duration, Instant};

use pgcached_cache::ResultCache;
use pgcached_local_cluster::LocalCluster;
use pgcached_tests::clients::first_value;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

const SCHEMA: &str = "
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, name text, score numeric);
INSERT INTO users SELECT g, 'u' || g || '@x', 'user ' || g, g FROM generate_series(1, 20) g;
CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
INSERT INTO pairs SELECT g, 'k' || g, 'v' || g FROM generate_series(1, 10) g;
CREATE TABLE nokey (k int, v text);
INSERT INTO nokey SELECT g, 'v' || g FROM generate_series(1, 10) g;
CREATE TABLE pets (owner int REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE, name text);
INSERT INTO pets SELECT g, 'pet of ' || g FROM generate_series(1, 20) g;
CREATE TABLE watched (id int PRIMARY KEY, v text);
INSERT INTO watched SELECT g, 'w' || g FROM generate_series(1, 10) g;
CREATE TABLE watch_log (id int, v text);
CREATE FUNCTION log_watch() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO watch_log VALUES (NEW.id, NEW.v); RETURN NEW; END $$;
CREATE TRIGGER watch AFTER UPDATE ON watched FOR EACH ROW EXECUTE FUNCTION log_watch();
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
";

struct Setup {
    _cluster: LocalCluster,
    proxy: TestProxy,
    /// Through pgcached.
    client: Client,
    /// Straight to PostgreSQL.
    direct: Client,
}

async fn setup() -> Setup {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let direct = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("direct");
    direct.batch_execute(SCHEMA).await.expect("schema");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let client = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("through pgcached");
    Setup {
        _cluster: cluster,
        proxy,
        client,
        direct,
    }
}

fn cache(setup: &Setup) -> &ResultCache {
    setup.proxy.cache.as_deref().expect("cache on")
}

/// After a write through pgcached: the replication stream reports the same change a moment
/// later and invalidates its rows once more (harmless, but it would drop what a test caches
/// again right away); wait for that.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// Reads `sql` until it is answered from the cache (at most 10 s); returns its value.
async fn cached(setup: &Setup, sql: &str) -> String {
    let started = Instant::now();
    loop {
        let before = cache(setup).hits();
        let value = first_value(&setup.client, sql).await;
        if cache(setup).hits() > before {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{sql} never cached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True when the next read of `sql` is answered from the cache.
async fn is_hit(setup: &Setup, sql: &str) -> bool {
    let before = cache(setup).hits();
    first_value(&setup.client, sql).await;
    cache(setup).hits() > before
}

/// Reads through pgcached until `sql` gives `expected` (an external write reached the cache),
/// at most 5 s.
async fn eventually(setup: &Setup, sql: &str, expected: &str) {
    let started = Instant::now();
    while first_value(&setup.client, sql).await != expected {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{sql} did not become {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs a write once so that pgcached's catalog judges its text (until then a write
/// invalidates its whole database), and waits for the verdict.
async fn judged(setup: &Setup, sql: &str) {
    setup.client.batch_execute(sql).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

const USER_1: &str = "SELECT email FROM users WHERE id = 1";
const USER_2: &str = "SELECT email FROM users WHERE id = 2";
const ALL_USERS: &str = "SELECT count(*)::text FROM users";

#[tokio::test]
async fn a_proxied_write_keeps_the_reads_of_other_rows() {
    let s = setup().await;
    // A prepared statement, executed twice: the first execution lets the catalog judge it.
    let rename = s
        .client
        .prepare("UPDATE users SET name = 'renamed' WHERE id = $1")
        .await
        .expect("prepare");
    s.client.execute(&rename, &[&20i32]).await.expect("update");
    judged(&s, "UPDATE users SET email = 'new1@x' WHERE id = 1").await;
    cached(&s, USER_1).await;
    cached(&s, USER_2).await;
    cached(&s, ALL_USERS).await;
    s.client.execute(&rename, &[&2i32]).await.expect("update");
    assert!(is_hit(&s, USER_1).await, "row 1 was not written");
    assert!(!is_hit(&s, USER_2).await, "row 2 was written");
    assert!(
        !is_hit(&s, ALL_USERS).await,
        "a whole-table read is invalidated"
    );
    settle().await;
    // Simple protocol with an inlined literal, and an IN list.
    cached(&s, USER_2).await;
    // (No function call: a function pgcached has not checked yet keeps the session's later
    // reads to itself.)
    let both = "SELECT email FROM users WHERE id IN (1, 2) ORDER BY id";
    cached(&s, both).await;
    s.client
        .batch_execute("UPDATE users SET email = 'new1@x' WHERE id = 1")
        .await
        .expect("update");
    assert!(is_hit(&s, USER_2).await);
    assert_eq!(first_value(&s.client, USER_1).await, "new1@x");
    assert_eq!(first_value(&s.client, both).await, "new1@x");
}

#[tokio::test]
async fn an_external_write_keeps_the_reads_of_other_rows() {
    let s = setup().await;
    cached(&s, USER_1).await;
    cached(&s, USER_2).await;
    s.direct
        .batch_execute("UPDATE users SET email = 'ext2@x' WHERE id = 2")
        .await
        .expect("external update");
    eventually(&s, USER_2, "ext2@x").await;
    assert!(is_hit(&s, USER_1).await, "row 1 was not written");
    // A key change invalidates the old key and the new one.
    let user_30 = "SELECT coalesce(max(email), 'none') FROM users WHERE id = 30";
    assert_eq!(cached(&s, user_30).await, "none");
    cached(&s, USER_1).await;
    s.direct
        .batch_execute("UPDATE users SET id = 30 WHERE id = 1")
        .await
        .expect("external key change");
    eventually(&s, user_30, "u1@x").await;
    eventually(&s, "SELECT count(*)::text FROM users WHERE id = 1", "0").await;
    let user_1 = "SELECT coalesce(max(email), 'none') FROM users WHERE id = 1";
    assert_eq!(first_value(&s.client, user_1).await, "none");
}

#[tokio::test]
async fn a_pin_on_a_non_key_column_is_invalidated_when_the_value_moves() {
    let s = setup().await;
    let by_email = "SELECT coalesce(max(name), 'none') FROM users WHERE email = 'u3@x'";
    let by_new_email = "SELECT coalesce(max(name), 'none') FROM users WHERE email = 'moved@x'";
    assert_eq!(cached(&s, by_email).await, "user 3");
    assert_eq!(cached(&s, by_new_email).await, "none");
    // Straight to PostgreSQL: the old image has only the key, so the email's old value is
    // unknown and every read pinned by email goes.
    s.direct
        .batch_execute("UPDATE users SET email = 'moved@x' WHERE id = 3")
        .await
        .expect("external update");
    eventually(&s, by_email, "none").await;
    eventually(&s, by_new_email, "user 3").await;
    // Through pgcached.
    let set_email = s
        .client
        .prepare("UPDATE users SET email = $1 WHERE id = $2")
        .await
        .expect("prepare");
    s.client
        .execute(&set_email, &[&"u19@x", &19i32])
        .await
        .expect("update");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cached(&s, by_email).await;
    cached(&s, by_new_email).await;
    s.client
        .execute(&set_email, &[&"u3@x", &3i32])
        .await
        .expect("update");
    assert_eq!(first_value(&s.client, by_email).await, "user 3");
    assert_eq!(first_value(&s.client, by_new_email).await, "none");
}

#[tokio::test]
async fn composite_keys_and_inserts_and_deletes_meet_their_reads() {
    let s = setup().await;
    let pair = "SELECT coalesce(max(v), 'none') FROM pairs WHERE a = 3 AND b = 'k3'";
    let other = "SELECT coalesce(max(v), 'none') FROM pairs WHERE a = 4 AND b = 'k4'";
    let absent = "SELECT coalesce(max(v), 'none') FROM pairs WHERE a = 50 AND b = 'k50'";
    judged(&s, "INSERT INTO pairs VALUES (60, 'k60', 'sixty')").await;
    let delete = s
        .client
        .prepare("DELETE FROM pairs WHERE a = $1 AND b = $2")
        .await
        .expect("prepare");
    s.client
        .execute(&delete, &[&60i32, &"k60"])
        .await
        .expect("delete");
    judged(&s, "INSERT INTO pairs VALUES (50, 'k50', 'fifty')").await;
    s.client
        .batch_execute("DELETE FROM pairs WHERE a = 50")
        .await
        .expect("undo");
    assert_eq!(cached(&s, pair).await, "v3");
    cached(&s, other).await;
    assert_eq!(cached(&s, absent).await, "none");
    s.client
        .batch_execute("INSERT INTO pairs VALUES (50, 'k50', 'fifty')")
        .await
        .expect("insert");
    assert_eq!(first_value(&s.client, absent).await, "fifty");
    assert!(is_hit(&s, other).await);
    settle().await;
    s.client
        .execute(&delete, &[&3i32, &"k3"])
        .await
        .expect("delete");
    assert_eq!(first_value(&s.client, pair).await, "none");
    assert!(is_hit(&s, other).await);
    s.direct
        .batch_execute("DELETE FROM pairs WHERE a = 4")
        .await
        .expect("external delete");
    eventually(&s, other, "none").await;
}

#[tokio::test]
async fn columns_that_cannot_be_pinned_and_tables_without_a_key_are_whole() {
    let s = setup().await;
    judged(&s, "UPDATE users SET name = 'x' WHERE id = 7").await;
    judged(&s, "INSERT INTO nokey VALUES (41, 'forty-one')").await;
    let by_score = "SELECT email FROM users WHERE score = 5";
    cached(&s, by_score).await;
    cached(&s, USER_1).await;
    s.client
        .batch_execute("UPDATE users SET name = 'x' WHERE id = 7")
        .await
        .expect("update");
    assert!(
        !is_hit(&s, by_score).await,
        "a numeric column is not pinned: the read depends on the whole table"
    );
    let no_key = "SELECT coalesce(max(v), 'none') FROM nokey WHERE k = 2";
    let no_key_other = "SELECT coalesce(max(v), 'none') FROM nokey WHERE k = 3";
    assert_eq!(cached(&s, no_key).await, "v2");
    cached(&s, no_key_other).await;
    // No replica identity: an external UPDATE or DELETE carries no old image, so every read
    // pinning the table's rows by that column goes.
    s.direct
        .batch_execute("UPDATE nokey SET k = 20 WHERE k = 2")
        .await
        .expect("external update");
    eventually(&s, no_key, "none").await;
    s.direct
        .batch_execute("DELETE FROM nokey WHERE k = 3")
        .await
        .expect("external delete");
    eventually(&s, no_key_other, "none").await;
    // Through pgcached, on a table without a key: the row's new key is known.
    let no_key_new = "SELECT coalesce(max(v), 'none') FROM nokey WHERE k = 41";
    s.client
        .batch_execute("DELETE FROM nokey WHERE k = 41")
        .await
        .expect("undo");
    assert_eq!(cached(&s, no_key_new).await, "none");
    s.client
        .batch_execute("INSERT INTO nokey VALUES (41, 'forty-one')")
        .await
        .expect("insert");
    assert_eq!(first_value(&s.client, no_key_new).await, "forty-one");
}

#[tokio::test]
async fn cascades_triggers_and_truncate_invalidate_what_they_reach() {
    let s = setup().await;
    let pet = "SELECT count(*)::text FROM pets WHERE owner = 5";
    assert_eq!(cached(&s, pet).await, "1");
    s.client
        .batch_execute("DELETE FROM users WHERE id = 5")
        .await
        .expect("delete with cascade");
    assert_eq!(
        first_value(&s.client, pet).await,
        "0",
        "the cascade's deletion is invalidated at the acknowledgement"
    );
    let log = "SELECT count(*)::text FROM watch_log WHERE id = 4";
    assert_eq!(cached(&s, log).await, "0");
    let watched_other = "SELECT v FROM watched WHERE id = 9";
    cached(&s, watched_other).await;
    s.client
        .batch_execute("UPDATE watched SET v = 'changed' WHERE id = 4")
        .await
        .expect("update with trigger");
    assert_eq!(
        first_value(&s.client, log).await,
        "1",
        "the trigger's insert is invalidated at the acknowledgement"
    );
    cached(&s, USER_2).await;
    s.client
        .batch_execute("TRUNCATE pets")
        .await
        .expect("truncate");
    assert_eq!(
        first_value(&s.client, "SELECT count(*)::text FROM pets").await,
        "0"
    );
    s.direct
        .batch_execute("TRUNCATE pairs")
        .await
        .expect("external truncate");
    eventually(&s, "SELECT count(*)::text FROM pairs", "0").await;
}

#[tokio::test]
async fn explain_cache_shows_what_reads_depend_on_and_what_writes_reach() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let direct = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("direct");
    direct.batch_execute(SCHEMA).await.expect("schema");
    let proxy =
        TestProxy::with_config(caching_config_for(&cluster, &["--admin-users", "postgres"]));
    let console = connect(&url(
        Endpoint::proxy(proxy.port()),
        "postgres",
        None,
        "pgcached",
    ))
    .await
    .expect("console");
    let explain = |sql: &str| format!("EXPLAIN CACHE DATABASE app {sql}");
    let depends_on = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> String {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    row.get("depends_on").map(str::to_owned)
                }
                _ => None,
            })
            .expect("a row")
    };
    let read = depends_on(
        console
            .simple_query(&explain(
                "SELECT * FROM users u JOIN pets p ON p.owner = u.id WHERE u.id = 42",
            ))
            .await
            .expect("explain"),
    );
    assert!(read.contains("public.users rows by key (\"42\")"), "{read}");
    assert!(read.contains("public.pets rows by key (\"42\")"), "{read}");
    let scan = depends_on(
        console
            .simple_query(&explain("SELECT * FROM users WHERE score = 1"))
            .await
            .expect("explain"),
    );
    assert!(scan.contains("public.users: whole table"), "{scan}");
    let write = depends_on(
        console
            .simple_query(&explain("UPDATE users SET name = 'x' WHERE id = 1"))
            .await
            .expect("explain"),
    );
    assert!(write.contains("public.users"), "{write}");
    assert!(
        write.contains("public.pets: whole table (cascade"),
        "{write}"
    );
    let triggered = depends_on(
        console
            .simple_query(&explain("UPDATE watched SET v = 'x' WHERE id = 1"))
            .await
            .expect("explain"),
    );
    assert!(triggered.starts_with("whole database"), "{triggered}");
}

//! Where row-level invalidation must fall back to something wider, and where it must not.
//!
//! `row_level.rs` covers the main paths (keys of proxied and external writes, composite keys,
//! a numeric column, a table without a key, cascades, triggers, TRUNCATE, `EXPLAIN CACHE`). This
//! file adds the cases around them: replica identity FULL against DEFAULT for a change of a
//! pinned non-key column made straight to PostgreSQL, key columns changed through pgcached,
//! floats and nondeterministic collations, a session whose client encoding is not UTF-8, the
//! replication stream lost while writes go on, precision measured by PostgreSQL itself
//! (pg_stat_statements), and `SHOW TABLES` counting writes made through pgcached.
//!
//! Tests that check pgcached's own invalidation at a write's acknowledgement run it with
//! `--replication off`, so that no later invalidation by the stream can hide a miss.

use std::time::{Duration, Instant};

use pgcached_cache::ResultCache;
use pgcached_local_cluster::{ClusterOptions, LocalCluster};
use pgcached_tests::console::{console, explain, rows, CONSOLE_FLAGS};
use pgcached_tests::external::{until_cached, value, wait_for};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, raw, url, Endpoint, TestProxy};
use tokio_postgres::Client;

const LIMIT: Duration = Duration::from_secs(10);

struct Setup {
    cluster: LocalCluster,
    proxy: TestProxy,
    /// Through pgcached.
    client: Client,
    /// Straight to PostgreSQL.
    direct: Client,
}

async fn setup_with(options: ClusterOptions, schema: &str, flags: &[&str]) -> Setup {
    let cluster = LocalCluster::start(options).expect("cluster");
    let direct = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("direct");
    direct.batch_execute(schema).await.expect("schema");
    let mut all = CONSOLE_FLAGS.to_vec();
    all.extend_from_slice(flags);
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &all));
    let client = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("through pgcached");
    Setup {
        cluster,
        proxy,
        client,
        direct,
    }
}

async fn setup(schema: &str, flags: &[&str]) -> Setup {
    setup_with(pgcached_tests::cluster::options(), schema, flags).await
}

impl Setup {
    fn cache(&self) -> &ResultCache {
        self.proxy.cache.as_deref().expect("cache on")
    }

    /// Reads `sql` until it is answered from the cache.
    async fn cached(&self, sql: &str) {
        until_cached(&self.client, self.cache(), sql, LIMIT).await;
    }

    /// True when the next read of `sql` is answered from the cache.
    async fn is_hit(&self, sql: &str) -> bool {
        let before = self.cache().hits();
        value(&self.client, sql).await;
        self.cache().hits() > before
    }

    /// The first value of `sql` through pgcached.
    async fn read(&self, sql: &str) -> Option<String> {
        value(&self.client, sql).await
    }

    /// Runs a write through pgcached once and waits, so that the catalog has judged its text
    /// (until then a write invalidates its whole database).
    async fn judged(&self, sql: &str) {
        self.client.batch_execute(sql).await.expect("write");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// `EXPLAIN CACHE`'s `depends_on` for `sql`.
    async fn depends_on(&self, sql: &str) -> String {
        let console = console(self.proxy.port()).await;
        explain(&console, "app", sql).await["depends_on"]
            .clone()
            .unwrap_or_default()
    }
}

/// After a write through pgcached, the stream reports it again a moment later and invalidates
/// its rows once more; wait for that before caching again.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::test]
async fn a_write_from_a_latin1_session_invalidates_the_utf8_reads_of_its_rows() {
    let s = setup(
        "CREATE TABLE accents (id int PRIMARY KEY, email text NOT NULL UNIQUE, v int NOT NULL);
         INSERT INTO accents VALUES (1, 'Ã©@x', 0), (2, 'plain@x', 0);
         GRANT ALL ON accents TO PUBLIC;",
        &["--replication", "off"],
    )
    .await;
    let read = "SELECT v FROM accents WHERE email = 'Ã©@x'";
    s.cached(read).await;
    // A session whose client encoding is LATIN1 sends Ã© as the two bytes 0xC3 0xA9, which
    // read as UTF-8 are é: a text pgcached can read, naming another value than it seems to.
    let (mut latin1, login) = raw::login_to_with(
        s.proxy.port(),
        "postgres",
        "app",
        &[("client_encoding", "LATIN1")],
    );
    assert!(login.iter().any(|m| m.tag == b'Z'), "login: {login:?}");
    let mut send = |sql: &[u8]| {
        use std::io::Write;
        let mut body = sql.to_vec();
        body.push(0);
        latin1.write_all(&raw::frame(b'Q', &body)).expect("send");
        let answer = raw::read_until_ready(&mut latin1);
        assert!(
            answer.iter().all(|m| m.tag != b'E'),
            "{}: {answer:?}",
            String::from_utf8_lossy(sql)
        );
    };
    // The statement's shape is judged first (until then it invalidates the whole database).
    send(b"UPDATE accents SET v = v + 1 WHERE email = 'plain@x'");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.cached(read).await;
    send(b"UPDATE accents SET v = v + 1 WHERE email = '\xc3\xa9@x'");
    assert_eq!(
        s.read(read).await.as_deref(),
        Some("1"),
        "the LATIN1 session's write is seen by a UTF-8 session's read at once"
    );
}

#[tokio::test]
async fn identity_full_tells_the_old_value_of_a_pinned_column_and_default_does_not() {
    let s = setup(
        "CREATE TABLE tags_default (id int PRIMARY KEY, tag text NOT NULL);
         CREATE TABLE tags_full (id int PRIMARY KEY, tag text NOT NULL);
         ALTER TABLE tags_full REPLICA IDENTITY FULL;
         INSERT INTO tags_default SELECT g, 't' || g FROM generate_series(1, 6) g;
         INSERT INTO tags_full SELECT g, 't' || g FROM generate_series(1, 6) g;
         GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;",
        &[],
    )
    .await;
    for (table, full) in [("tags_full", true), ("tags_default", false)] {
        let by_tag = |tag: &str| {
            format!("SELECT coalesce(max(id), 0)::text FROM {table} WHERE tag = '{tag}'")
        };
        s.cached(&by_tag("t1")).await;
        s.cached(&by_tag("t9")).await;
        s.cached(&by_tag("t3")).await;
        // Straight to PostgreSQL: the row leaves the pinned value t1 for t9.
        s.direct
            .batch_execute(&format!("UPDATE {table} SET tag = 't9' WHERE id = 1"))
            .await
            .expect("external update");
        wait_for(&s.client, &by_tag("t1"), "0", LIMIT).await;
        wait_for(&s.client, &by_tag("t9"), "1", LIMIT).await;
        // With FULL the old row is in the change, so only the keys t1 and t9 moved; with
        // DEFAULT the old tag is unknown and every read pinned by tag went.
        assert_eq!(
            s.is_hit(&by_tag("t3")).await,
            full,
            "{table}: a read of another tag"
        );
    }
}

#[tokio::test]
async fn a_key_changed_through_pgcached_invalidates_its_old_and_new_keys() {
    let s = setup(
        "CREATE TABLE keyed (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO keyed SELECT g, 'v' || g FROM generate_series(1, 5) g;
         CREATE TABLE pairs (a int, b text, v text NOT NULL, PRIMARY KEY (a, b));
         INSERT INTO pairs VALUES (1, 'x', 'one'), (2, 'x', 'two');
         GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;",
        &["--replication", "off"],
    )
    .await;
    let by_id = |id: i32| format!("SELECT coalesce(max(v), 'none') FROM keyed WHERE id = {id}");
    s.judged("UPDATE keyed SET id = 100 WHERE id = 100").await;
    s.cached(&by_id(1)).await;
    s.cached(&by_id(30)).await;
    s.client
        .batch_execute("UPDATE keyed SET id = 30 WHERE id = 1")
        .await
        .expect("key change");
    assert_eq!(s.read(&by_id(1)).await.as_deref(), Some("none"));
    assert_eq!(s.read(&by_id(30)).await.as_deref(), Some("v1"));
    // Prepared, with the new key as a parameter.
    let move_key = s
        .client
        .prepare("UPDATE keyed SET id = $1 WHERE id = $2")
        .await
        .expect("prepare");
    s.client
        .execute(&move_key, &[&100i32, &100i32])
        .await
        .expect("judged");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.cached(&by_id(30)).await;
    s.cached(&by_id(2)).await;
    s.client
        .execute(&move_key, &[&2i32, &30i32])
        .await
        .expect_err("id 2 is taken");
    s.client
        .execute(&move_key, &[&31i32, &30i32])
        .await
        .expect("key change");
    assert_eq!(s.read(&by_id(30)).await.as_deref(), Some("none"));
    assert_eq!(s.read(&by_id(31)).await.as_deref(), Some("v1"));
    // One column of a composite key.
    let pair = |a: i32, b: &str| {
        format!("SELECT coalesce(max(v), 'none') FROM pairs WHERE a = {a} AND b = '{b}'")
    };
    s.judged("UPDATE pairs SET b = 'q' WHERE a = 0 AND b = 'q'")
        .await;
    s.cached(&pair(1, "x")).await;
    s.cached(&pair(1, "y")).await;
    s.client
        .batch_execute("UPDATE pairs SET b = 'y' WHERE a = 1 AND b = 'x'")
        .await
        .expect("key change");
    assert_eq!(s.read(&pair(1, "x")).await.as_deref(), Some("none"));
    assert_eq!(s.read(&pair(1, "y")).await.as_deref(), Some("one"));
}

#[tokio::test]
async fn floats_numerics_and_case_insensitive_texts_are_read_as_whole_tables() {
    let s = setup(
        "CREATE EXTENSION citext;
         CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE TABLE measures (id int PRIMARY KEY, x float8 NOT NULL, n numeric NOT NULL,
                                name text COLLATE ci NOT NULL, mail citext NOT NULL,
                                v int NOT NULL);
         INSERT INTO measures VALUES (1, 1.5, 1.0, 'Alice', 'A@X', 0), (2, 2.5, 2.0, 'Bob', 'B@X', 0);
         GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;",
        &["--replication", "off"],
    )
    .await;
    // Each matches row 1 although its text differs from the stored value.
    let reads = [
        "SELECT v FROM measures WHERE x = '1.50'",
        "SELECT v FROM measures WHERE n = '1.00'",
        "SELECT v FROM measures WHERE name = 'alice'",
        "SELECT v FROM measures WHERE mail = 'a@x'",
    ];
    for read in reads {
        let depends_on = s.depends_on(read).await;
        assert!(
            depends_on.starts_with("public.measures: whole table"),
            "{read}: {depends_on}"
        );
    }
    s.judged("UPDATE measures SET v = v + 1 WHERE id = 2").await;
    let mut expected = 0;
    // Writes that name row 1 by another spelling of its value.
    for write in [
        "UPDATE measures SET v = v + 1 WHERE x = '1.5'",
        "UPDATE measures SET v = v + 1 WHERE n = 1",
        "UPDATE measures SET v = v + 1 WHERE name = 'ALICE'",
        "UPDATE measures SET v = v + 1 WHERE mail = 'A@x'",
    ] {
        s.judged(&write.replace("v + 1", "v")).await; // judged, and changes nothing
        for read in reads {
            s.cached(read).await;
        }
        s.client.batch_execute(write).await.expect("write");
        expected += 1;
        for read in reads {
            assert_eq!(
                s.read(read).await,
                Some(expected.to_string()),
                "{read} after {write}"
            );
        }
    }
}

/// The value of `k` in `values` (the last acknowledged write of each key).
fn last_write(writes: &[(i32, i32, Instant)], k: i32) -> i32 {
    writes
        .iter()
        .rev()
        .find(|(key, _, _)| *key == k)
        .map_or(0, |(_, v, _)| *v)
}

#[tokio::test]
async fn a_stream_lost_while_rows_are_written_leaves_nothing_stale() {
    let s = setup(
        "CREATE TABLE counters (k int PRIMARY KEY, v int NOT NULL);
         INSERT INTO counters SELECT g, 0 FROM generate_series(1, 4) g;
         GRANT ALL ON counters TO PUBLIC;",
        &[],
    )
    .await;
    let read = |k: i32| format!("SELECT v::text FROM counters WHERE k = {k}");
    for k in 1..=4 {
        s.cached(&read(k)).await;
    }
    let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication \
                     WHERE application_name = 'pgcached replication'";
    let writer = connect(&url(Endpoint::direct(&s.cluster), "postgres", None, "app"))
        .await
        .expect("writer");
    let proxied = connect(&url(
        Endpoint::proxy(s.proxy.port()),
        "postgres",
        None,
        "app",
    ))
    .await
    .expect("proxied writer");
    let update = "UPDATE counters SET v = v + 1 WHERE k = $1 RETURNING v";
    let external = writer.prepare(update).await.expect("prepare");
    let through = proxied.prepare(update).await.expect("prepare");
    // Writes straight to PostgreSQL and through pgcached, one row after another, while the
    // walsender is killed twice; reads through pgcached go on meanwhile.
    let started = Instant::now();
    let mut writes: Vec<(i32, i32, Instant)> = Vec::new();
    let mut reads: Vec<(i32, i32, Instant)> = Vec::new();
    let mut killed = 0;
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(4) {
        n += 1;
        let k = n % 4 + 1;
        let (client, statement) = if n % 3 == 0 {
            (&proxied, &through)
        } else {
            (&writer, &external)
        };
        let v: i32 = client
            .query_one(statement, &[&k])
            .await
            .expect("write")
            .get(0);
        writes.push((k, v, Instant::now()));
        // Kill the walsender at 0.3 s and again at 1.8 s (once the stream is back).
        let due = [Duration::from_millis(300), Duration::from_millis(1800)];
        if killed < 2 && started.elapsed() >= due[killed as usize] {
            let count: i64 = s
                .direct
                .query_one(terminate, &[])
                .await
                .expect("terminate walsender")
                .get(0);
            killed += count;
        }
        let began = Instant::now();
        let r = n % 4 + 1;
        let seen: i32 = s
            .read(&read(r))
            .await
            .and_then(|v| v.parse().ok())
            .expect("a value");
        reads.push((r, seen, began));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(killed, 2, "the walsender was terminated twice");
    // No read returned less than a write acknowledged a second before it began.
    for (k, seen, began) in &reads {
        let required = writes
            .iter()
            .filter(|(key, _, acked)| key == k && *acked + Duration::from_secs(1) < *began)
            .map(|(_, v, _)| *v)
            .max()
            .unwrap_or(0);
        assert!(
            *seen >= required,
            "row {k} read {seen}, but {required} was acknowledged over a second before"
        );
    }
    // Once the stream is back, every row reads its last value, and reads are cached again.
    let console = console(s.proxy.port()).await;
    let row =
        pgcached_tests::console::wait_for_state(&console, "app", "streaming", None, LIMIT).await;
    assert!(
        row["reconnects"]
            .as_deref()
            .and_then(|r| r.parse::<u64>().ok())
            >= Some(2),
        "{row:?}"
    );
    for k in 1..=4 {
        let last = last_write(&writes, k).to_string();
        assert_eq!(s.read(&read(k)).await, Some(last.clone()), "row {k}");
        s.cached(&read(k)).await;
        assert_eq!(s.read(&read(k)).await, Some(last), "row {k}, cached");
    }
}

#[tokio::test]
async fn postgres_sees_no_read_of_a_row_that_was_not_written() {
    let s = setup_with(
        ClusterOptions {
            extra_settings: vec![(
                "shared_preload_libraries".to_owned(),
                "'pg_stat_statements'".to_owned(),
            )],
            ..pgcached_tests::cluster::options()
        },
        "CREATE EXTENSION pg_stat_statements;
         CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO items SELECT g, 0 FROM generate_series(1, 10) g;
         GRANT ALL ON items TO PUBLIC;",
        &[],
    )
    .await;
    // pg_stat_statements folds constants, so the reads differ by their column alias.
    let five = "SELECT v AS five FROM items WHERE id = 5";
    let six = "SELECT v AS six FROM items WHERE id = 6";
    let calls = |alias: &'static str| {
        let direct = &s.direct;
        async move {
            direct
                .query_one(
                    "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
                     WHERE query LIKE 'SELECT v AS ' || $1 || ' FROM items%'",
                    &[&alias],
                )
                .await
                .expect("pg_stat_statements")
                .get::<_, i64>(0)
        }
    };
    s.judged("UPDATE items SET v = v + 1 WHERE id = 9").await;
    settle().await;
    s.cached(five).await;
    s.cached(six).await;
    let (five_before, six_before) = (calls("five").await, calls("six").await);
    // Through pgcached, row 5; straight to PostgreSQL, row 7.
    s.client
        .batch_execute("UPDATE items SET v = v + 1 WHERE id = 5")
        .await
        .expect("proxied update");
    s.direct
        .batch_execute("UPDATE items SET v = v + 1 WHERE id = 7")
        .await
        .expect("external update");
    wait_for(
        &s.client,
        "SELECT v::text FROM items WHERE id = 7",
        "1",
        LIMIT,
    )
    .await;
    assert_eq!(s.read(five).await.as_deref(), Some("1"));
    for _ in 0..10 {
        assert_eq!(s.read(six).await.as_deref(), Some("0"));
    }
    assert_eq!(
        calls("six").await,
        six_before,
        "the read of row 6 never reached PostgreSQL"
    );
    assert_eq!(
        calls("five").await,
        five_before + 1,
        "the read of row 5 reached PostgreSQL once after its write"
    );
}

/// `SHOW TABLES`' invalidation count of `table`.
async fn table_invalidations(port: u16, table: &str) -> u64 {
    let console = console(port).await;
    rows(&console, "SHOW TABLES")
        .await
        .into_iter()
        .find(|row| row["table"].as_deref() == Some(table))
        .and_then(|row| row["invalidations"].clone()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn show_tables_counts_writes_made_through_pgcached() {
    let s = setup(
        "CREATE TABLE owners (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO owners SELECT g, 0 FROM generate_series(1, 5) g;
         CREATE TABLE owned (id int PRIMARY KEY,
                             owner int REFERENCES owners (id) ON DELETE CASCADE);
         INSERT INTO owned SELECT g, g FROM generate_series(1, 5) g;
         GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;",
        &["--replication", "off"],
    )
    .await;
    let port = s.proxy.port();
    s.judged("UPDATE owners SET v = v + 1 WHERE id = 1").await;
    let (owners, owned) = (
        table_invalidations(port, "public.owners").await,
        table_invalidations(port, "public.owned").await,
    );
    for id in 1..=3 {
        s.client
            .batch_execute(&format!("UPDATE owners SET v = v + 1 WHERE id = {id}"))
            .await
            .expect("update");
    }
    assert_eq!(
        table_invalidations(port, "public.owners").await,
        owners + 3,
        "each write to the table"
    );
    assert_eq!(
        table_invalidations(port, "public.owned").await,
        owned + 3,
        "each write that may cascade to it"
    );
}

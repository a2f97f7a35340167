//! The result cache against a real PostgreSQL: hits do not reach the server, roles and session
//! state keep their own results, volatile functions are never cached, writes through pgcached
//! are seen at once, and memory stays under `--cache-size`.
//!
//! "Reaches the server" is measured with pg_stat_statements, which counts every execution as it
//! ends. Each test warms its statements first: the first execution of a new statement text is
//! relayed while the catalog is asked about it, the next one fills the cache.

use std::sync::OnceLock;
use std::time::Duration;

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::statements::{cluster_with_statement_stats, executions};
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();

/// The tests of this file share one cluster and count executions in it, while pgcached rightly
/// drops cached results when another test changes the catalog (CREATE ROLE, DROP TABLE, ...):
/// they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A cluster with pg_stat_statements, shared by this binary.
fn cluster() -> &'static LocalCluster {
    CLUSTER.get_or_init(|| {
        cluster_with_statement_stats(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
             GRANT SELECT, UPDATE ON items TO PUBLIC;",
        )
    })
}

async fn admin() -> Client {
    connect(&url(Endpoint::direct(cluster()), "postgres", None, "app"))
        .await
        .expect("admin")
}

fn caching_proxy() -> TestProxy {
    TestProxy::with_config(caching_config_for(cluster(), &[]))
}

async fn through(proxy: &TestProxy, user: &str, password: Option<&str>) -> Client {
    connect(&url(Endpoint::proxy(proxy.port()), user, password, "app"))
        .await
        .expect("connect through pgcached")
}

/// First column of every row of a simple query, as text.
async fn column(client: &Client, sql: &str) -> Vec<Option<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect()
}

/// Runs `sql` a few times, pausing so the catalog can classify it, until it is cached.
/// Reads `sql` until a read is answered from the cache (the catalog has judged it and the
/// database's stream runs), for at most 10 s.
async fn warm(proxy: &TestProxy, client: &Client, sql: &str) {
    let cache = proxy.cache.as_ref().expect("cache on");
    let started = std::time::Instant::now();
    loop {
        let before = cache.hits();
        column(client, sql).await;
        if cache.hits() > before {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{sql} is not served from the cache after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn repeated_reads_are_answered_without_reaching_postgres() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let admin = admin().await;
    let client = through(&proxy, "postgres", None).await;

    // Simple protocol.
    let sql = "SELECT name FROM items WHERE id = 42 /* simple-hit */";
    warm(&proxy, &client, sql).await;
    let before = executions(&admin, "simple-hit").await;
    assert!(before > 0, "pg_stat_statements saw the warm-up executions");
    for _ in 0..20 {
        assert_eq!(column(&client, sql).await, vec![Some("item 42".to_owned())]);
    }
    assert_eq!(
        executions(&admin, "simple-hit").await,
        before,
        "hits reached PostgreSQL"
    );

    // Extended protocol, prepared statement with a parameter (binary results).
    let statement = client
        .prepare("SELECT id, name FROM items WHERE id = $1 /* extended-hit */")
        .await
        .expect("prepare");
    for id in [7i32, 8, 9] {
        for _ in 0..3 {
            client.query_one(&statement, &[&id]).await.expect("warm");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let before = executions(&admin, "extended-hit").await;
    assert!(before > 0, "pg_stat_statements saw the warm-up executions");
    for _ in 0..10 {
        for id in [7i32, 8, 9] {
            let row = client.query_one(&statement, &[&id]).await.expect("query");
            assert_eq!(row.get::<_, i32>(0), id);
            assert_eq!(row.get::<_, String>(1), format!("item {id}"));
        }
    }
    assert_eq!(
        executions(&admin, "extended-hit").await,
        before,
        "prepared hits reached PostgreSQL"
    );

    // Another session of the same role shares the entries.
    let other = through(&proxy, "postgres", None).await;
    let before = executions(&admin, "simple-hit").await;
    assert_eq!(column(&other, sql).await, vec![Some("item 42".to_owned())]);
    assert_eq!(executions(&admin, "simple-hit").await, before);
    let cache = proxy.cache.as_ref().expect("cache on");
    assert!(!cache.is_empty());
}

#[tokio::test]
async fn each_role_gets_only_its_own_rows() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS notes, secrets;
             DROP ROLE IF EXISTS alice; DROP ROLE IF EXISTS bob;
             CREATE ROLE alice LOGIN PASSWORD 'alice_pw';
             CREATE ROLE bob LOGIN PASSWORD 'bob_pw';
             CREATE TABLE notes (owner text, body text);
             INSERT INTO notes VALUES ('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1');
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON notes USING (owner = current_user);
             GRANT SELECT ON notes TO alice, bob;
             CREATE TABLE secrets (s text);
             INSERT INTO secrets VALUES ('top secret');
             GRANT SELECT ON secrets TO alice;",
        )
        .await
        .expect("setup");
    let proxy = caching_proxy();
    let alice = through(&proxy, "alice", Some("alice_pw")).await;
    let bob = through(&proxy, "bob", Some("bob_pw")).await;
    let notes = "SELECT body FROM notes ORDER BY body";
    let secret = "SELECT s FROM secrets";
    for _ in 0..4 {
        assert_eq!(
            column(&alice, notes).await,
            vec![Some("a1".to_owned()), Some("a2".to_owned())]
        );
        assert_eq!(column(&bob, notes).await, vec![Some("b1".to_owned())]);
        assert_eq!(
            column(&alice, secret).await,
            vec![Some("top secret".to_owned())]
        );
        let denied = bob
            .simple_query(secret)
            .await
            .expect_err("bob may not read secrets");
        assert_eq!(denied.code().map(|c| c.code()), Some("42501"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn session_state_changes_results_exactly_as_without_pgcached() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    admin
        .batch_execute(
            "DROP SCHEMA IF EXISTS s1 CASCADE; DROP SCHEMA IF EXISTS s2 CASCADE;
             DROP TABLE IF EXISTS public.t;
             CREATE SCHEMA s1; CREATE SCHEMA s2;
             CREATE TABLE s1.t (v text); INSERT INTO s1.t VALUES ('from s1');
             CREATE TABLE s2.t (v text); INSERT INTO s2.t VALUES ('from s2');
             CREATE TABLE public.t (v text); INSERT INTO public.t VALUES ('from public');
             GRANT USAGE ON SCHEMA s1, s2 TO PUBLIC;
             GRANT SELECT ON s1.t, s2.t, public.t TO PUBLIC;
             DROP TABLE IF EXISTS rls_notes;
             CREATE TABLE rls_notes (owner text);
             INSERT INTO rls_notes VALUES ('scram_user'), ('other');
             ALTER TABLE rls_notes ENABLE ROW LEVEL SECURITY;
             CREATE POLICY own ON rls_notes USING (owner = current_user);
             GRANT SELECT ON rls_notes TO PUBLIC;
             GRANT scram_user TO trust_user;",
        )
        .await
        .expect("setup");
    let proxy = caching_proxy();
    let session = through(&proxy, "postgres", None).await;
    let read = "SELECT v FROM t";
    let expect = |v: &str| vec![Some(v.to_owned())];
    for _ in 0..3 {
        assert_eq!(column(&session, read).await, expect("from public"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    session
        .batch_execute("SET search_path = s1")
        .await
        .expect("set");
    for _ in 0..3 {
        assert_eq!(column(&session, read).await, expect("from s1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    session
        .batch_execute("SET search_path = s2")
        .await
        .expect("set");
    assert_eq!(column(&session, read).await, expect("from s2"));
    column(&session, "SELECT set_config('search_path', 's1', false)").await;
    assert_eq!(column(&session, read).await, expect("from s1"));
    session
        .batch_execute("RESET search_path")
        .await
        .expect("reset");
    assert_eq!(column(&session, read).await, expect("from public"));

    // Another session that never changed its search_path still reads public.t.
    let fresh = through(&proxy, "postgres", None).await;
    assert_eq!(column(&fresh, read).await, expect("from public"));

    // SET ROLE: the row-level policy follows the current role.
    let member = through(&proxy, "trust_user", None).await;
    let count = "SELECT count(*)::text FROM rls_notes";
    for _ in 0..3 {
        assert_eq!(column(&member, count).await, expect("0"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    member
        .batch_execute("SET ROLE scram_user")
        .await
        .expect("set role");
    assert_eq!(column(&member, count).await, expect("1"));
    member
        .batch_execute("RESET ROLE")
        .await
        .expect("reset role");
    assert_eq!(column(&member, count).await, expect("0"));
    column(&member, "SELECT set_config('role', 'scram_user', false)").await;
    assert_eq!(column(&member, count).await, expect("1"));
}

#[tokio::test]
async fn volatile_functions_are_never_served_from_the_cache() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    admin
        .batch_execute("DROP SEQUENCE IF EXISTS cache_seq; CREATE SEQUENCE cache_seq; GRANT ALL ON cache_seq TO PUBLIC;")
        .await
        .expect("setup");
    let proxy = caching_proxy();
    let client = through(&proxy, "postgres", None).await;
    for sql in [
        "SELECT now()::text",
        "SELECT random()::text",
        "SELECT clock_timestamp()::text",
        "SELECT nextval('cache_seq')::text",
        "SELECT 'now'::timestamptz::text",
        "SELECT current_timestamp::text",
        "SELECT now()::text FROM items WHERE id = 1",
    ] {
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(column(&client, sql).await);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let mut distinct = seen.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "{sql} was served from cache: {seen:?}"
        );
    }
}

#[tokio::test]
async fn writes_through_pgcached_are_seen_by_the_next_read() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS kv; CREATE TABLE kv (k int PRIMARY KEY, v text);
             INSERT INTO kv VALUES (1, 'one'); GRANT ALL ON kv TO PUBLIC;",
        )
        .await
        .expect("setup");
    let proxy = caching_proxy();
    let reader = through(&proxy, "postgres", None).await;
    let writer = through(&proxy, "postgres", None).await;
    let read = "SELECT v FROM kv WHERE k = 1";
    warm(&proxy, &reader, read).await;
    assert_eq!(column(&reader, read).await, vec![Some("one".to_owned())]);
    writer
        .batch_execute("UPDATE kv SET v = 'two' WHERE k = 1")
        .await
        .expect("update");
    assert_eq!(column(&reader, read).await, vec![Some("two".to_owned())]);
    warm(&proxy, &reader, read).await;

    // In a transaction block: visible to others at COMMIT, never before it is acknowledged.
    writer.batch_execute("BEGIN").await.expect("begin");
    writer
        .batch_execute("UPDATE kv SET v = 'three' WHERE k = 1")
        .await
        .expect("update");
    assert_eq!(column(&reader, read).await, vec![Some("two".to_owned())]);
    warm(&proxy, &reader, read).await;
    writer.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(column(&reader, read).await, vec![Some("three".to_owned())]);

    // A rolled-back write never shows.
    writer
        .batch_execute("BEGIN; UPDATE kv SET v = 'never' WHERE k = 1; ROLLBACK")
        .await
        .expect("rollback");
    warm(&proxy, &reader, read).await;
    assert_eq!(column(&reader, read).await, vec![Some("three".to_owned())]);

    // Inside its own transaction, a session reads its own uncommitted write.
    writer.batch_execute("BEGIN").await.expect("begin");
    writer
        .batch_execute("UPDATE kv SET v = 'mine' WHERE k = 1")
        .await
        .expect("update");
    assert_eq!(column(&writer, read).await, vec![Some("mine".to_owned())]);
    writer.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(column(&writer, read).await, vec![Some("three".to_owned())]);
}

/// `COMMIT AND CHAIN` commits and opens a new block at once: its ReadyForQuery says "in a
/// block", yet the writes before it are visible to everyone. Without a stream (only pgcached's
/// own invalidation), a read cached while they were uncommitted must not outlive the commit.
#[tokio::test]
async fn commit_and_chain_invalidates_what_the_block_wrote() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS chained; CREATE TABLE chained (k int PRIMARY KEY, v text);
             INSERT INTO chained VALUES (1, 'one'); GRANT ALL ON chained TO PUBLIC;",
        )
        .await
        .expect("setup");
    let proxy = TestProxy::with_config(caching_config_for(cluster(), &["--replication", "off"]));
    let reader = through(&proxy, "postgres", None).await;
    let writer = through(&proxy, "postgres", None).await;
    let read = "SELECT v FROM chained WHERE k = 1";
    warm(&proxy, &reader, read).await;
    for (step, (value, commit)) in [
        ("two", "COMMIT AND CHAIN"),
        ("three", "COMMIT AND NO CHAIN"),
    ]
    .into_iter()
    .enumerate()
    {
        if step == 0 {
            writer.batch_execute("BEGIN").await.expect("begin");
        }
        writer
            .batch_execute(&format!("UPDATE chained SET v = '{value}' WHERE k = 1"))
            .await
            .expect("update");
        // Cached again while the update is not committed: the old value, rightly.
        warm(&proxy, &reader, read).await;
        writer.batch_execute(commit).await.expect(commit);
        assert_eq!(
            column(&reader, read).await,
            vec![Some(value.to_owned())],
            "after {commit}"
        );
    }
}

#[tokio::test]
async fn memory_stays_under_the_cache_size() {
    let _serial = SERIAL.lock().await;
    let limit: u64 = 256 * 1024;
    let proxy = TestProxy::with_config(caching_config_for(cluster(), &["--cache-size", "256KiB"]));
    let client = through(&proxy, "postgres", None).await;
    let cache = proxy.cache.as_ref().expect("cache on");
    // Until the database's stream runs nothing is stored; on a loaded machine that can take
    // longer than the loop below. (A statement of its own structure: pg_stat_statements shows
    // one text per structure, and other tests count theirs by a tag in it.)
    warm(
        &proxy,
        &client,
        "SELECT upper(name) FROM items WHERE id = 2",
    )
    .await;
    for round in 0..2 {
        for i in 0..600 {
            let sql = format!("SELECT repeat('x', 400) || '{i}' FROM items WHERE id = 1");
            column(&client, &sql).await;
            assert!(
                cache.weight_bytes() <= limit,
                "round {round}, query {i}: {} bytes",
                cache.weight_bytes()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(cache.len() > 10, "results were cached: {}", cache.len());
    assert!(cache.evictions() > 0, "the limit forced evictions");
}

#[tokio::test]
async fn concurrent_identical_misses_send_one_query_upstream() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    admin
        .batch_execute(
            "CREATE OR REPLACE FUNCTION slow_square(int) RETURNS int IMMUTABLE LANGUAGE sql \
             AS $$ SELECT $1 * $1 FROM (SELECT pg_sleep(0.4)) s $$;",
        )
        .await
        .expect("setup");
    let proxy = caching_proxy();
    // The first statement has the shape judged (and fills its own entry; waited for until it
    // is a hit, however loaded the machine); the concurrent ones read another value of the
    // same shape, a miss for all six at once.
    let first = through(&proxy, "postgres", None).await;
    warm(
        &proxy,
        &first,
        "SELECT slow_square(id)::text FROM items WHERE id = 5 /* single-flight */",
    )
    .await;
    let sql = "SELECT slow_square(id)::text FROM items WHERE id = 6 /* single-flight */";
    let before = executions(&admin, "single-flight").await;
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(through(&proxy, "postgres", None).await);
    }
    let results = futures_util::future::join_all(sessions.iter().map(|c| column(c, sql))).await;
    for result in results {
        assert_eq!(result, vec![Some("36".to_owned())]);
    }
    assert_eq!(
        executions(&admin, "single-flight").await - before,
        1,
        "six concurrent identical misses reached PostgreSQL more than once"
    );
}

#[tokio::test]
async fn cached_results_of_every_common_type_equal_direct_results() {
    let _serial = SERIAL.lock().await;
    let admin = admin().await;
    let proxy = caching_proxy();
    let cached = through(&proxy, "postgres", None).await;
    let direct = connect(&url(Endpoint::direct(cluster()), "postgres", None, "app"))
        .await
        .expect("direct");
    // Text format (simple protocol).
    let text_sql = "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, \
        12345.678::numeric, true, 'text é ✓', NULL::text, '\\x00ff'::bytea, \
        '2024-02-29 12:34:56'::timestamp, '2024-02-29 12:34:56+02'::timestamptz, \
        '2024-02-29'::date, '12:34:56'::time, '1 day 2 hours'::interval, \
        '2e3b1c4a-9b0f-4e8e-8b1a-1c2d3e4f5a6b'::uuid, '{\"a\": [1, 2]}'::jsonb, \
        ARRAY[1, 2, NULL]::int[], '192.168.0.1/24'::inet, 'NaN'::float8 /* types-text */";
    let expected = simple_rows(&direct, text_sql).await;
    warm(&proxy, &cached, text_sql).await;
    let before = executions(&admin, "types-text").await;
    for _ in 0..3 {
        assert_eq!(simple_rows(&cached, text_sql).await, expected);
    }
    assert_eq!(
        executions(&admin, "types-text").await,
        before,
        "text types not served from cache"
    );

    // Binary format (extended protocol, tokio-postgres asks for binary results).
    let binary_sql = "SELECT $1::int2, $2::int4, $3::int8, $4::float4, $5::float8, $6::bool, \
        $7::text, $8::bytea, length($7::text) /* types-binary */";
    let bytes: Vec<u8> = (0..=255u8).collect();
    let expected = binary_row(&direct, binary_sql, &bytes).await;
    for _ in 0..3 {
        binary_row(&cached, binary_sql, &bytes).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let before = executions(&admin, "types-binary").await;
    for _ in 0..3 {
        assert_eq!(binary_row(&cached, binary_sql, &bytes).await, expected);
    }
    assert_eq!(
        executions(&admin, "types-binary").await,
        before,
        "binary types not served from cache"
    );
}

/// Every column of every row of a simple query, as text.
async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

type BinaryRow = (i16, i32, i64, u32, u64, bool, String, Vec<u8>, i32);

/// One row of typed parameters echoed back in binary format.
async fn binary_row(client: &Client, sql: &str, bytes: &[u8]) -> BinaryRow {
    let bytes = bytes.to_vec();
    let row = client
        .query_one(
            sql,
            &[
                &7i16,
                &8i32,
                &9_000_000_000i64,
                &1.25f32,
                &2.5f64,
                &true,
                &"é ✓",
                &bytes,
            ],
        )
        .await
        .expect("binary types");
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get::<_, f32>(3).to_bits(),
        row.get::<_, f64>(4).to_bits(),
        row.get(5),
        row.get(6),
        row.get(7),
        row.get(8),
    )
}

#[tokio::test]
async fn discard_all_forgets_prepared_statements_as_postgres_does() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let client = through(&proxy, "postgres", None).await;
    let statement = client
        .prepare("SELECT name FROM items WHERE id = $1 /* discard */")
        .await
        .expect("prepare");
    for _ in 0..3 {
        client.query_one(&statement, &[&3i32]).await.expect("warm");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.batch_execute("DISCARD ALL").await.expect("discard");
    let error = client
        .query_one(&statement, &[&3i32])
        .await
        .expect_err("the statement is gone, as it would be without pgcached");
    assert_eq!(error.code().map(|c| c.code()), Some("26000"), "{error:?}");
}

#[tokio::test]
async fn malformed_extended_messages_get_the_servers_answer_through_the_cache_path() {
    let _serial = SERIAL.lock().await;
    use pgcached_tests::raw::{frame, login, read_until_ready};
    use std::io::Write;
    let proxy = caching_proxy();
    let mut answers = Vec::new();
    for port in [cluster().port(), proxy.port()] {
        let (mut stream, _) = login(port, "trust_user");
        // A Parse without its terminators, then a Bind of a statement that does not exist.
        let mut bytes = frame(b'P', b"s1\0SELECT 1");
        bytes.extend_from_slice(&frame(b'S', b""));
        stream.write_all(&bytes).expect("write");
        let first: Vec<_> = read_until_ready(&mut stream)
            .iter()
            .map(|m| (m.tag, m.sqlstate()))
            .collect();
        let mut bytes = frame(b'B', b"\0nope\0\0\0\0\0\0\0");
        bytes.extend_from_slice(&frame(b'E', b"\0\0\0\0\0"));
        bytes.extend_from_slice(&frame(b'S', b""));
        stream.write_all(&bytes).expect("write");
        let second: Vec<_> = read_until_ready(&mut stream)
            .iter()
            .map(|m| (m.tag, m.sqlstate()))
            .collect();
        answers.push((first, second));
    }
    assert!(
        !answers[0].0.is_empty() && !answers[0].1.is_empty(),
        "{answers:?}"
    );
    assert_eq!(answers[0], answers[1]);
    let client = through(&proxy, "postgres", None).await;
    assert_eq!(
        column(&client, "SELECT 'still serving'").await,
        vec![Some("still serving".to_owned())]
    );
}

/// `statements_parsed` from the console's `SHOW STATS`.
async fn statements_parsed(console: &Client) -> f64 {
    pgcached_tests::console::rows(console, "SHOW STATS")
        .await
        .into_iter()
        .find(|row| row["stat"].as_deref() == Some("statements_parsed"))
        .and_then(|row| row["value"].clone())
        .expect("SHOW STATS has statements_parsed")
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn inlined_literals_are_parsed_once_per_shape_and_still_cached_per_value() {
    let _serial = SERIAL.lock().await;
    let proxy = TestProxy::with_config(caching_config_for(
        cluster(),
        &pgcached_tests::console::CONSOLE_FLAGS,
    ));
    let console = pgcached_tests::console::console(proxy.port()).await;
    let client = through(&proxy, "postgres", None).await;
    // pg_stat_statements ignores comments: a text of another test's shape would take over
    // its entry there, so this one reads lower(name).
    let by_id = |id: u32| format!("SELECT lower(name) FROM items WHERE id = {id} /* inlined */");
    let by_name = |id: u32| format!("SELECT id FROM items WHERE name = 'item {id}' /* inlined */");
    // The first texts of each shape are parsed while the catalog judges them.
    warm(&proxy, &client, &by_id(1)).await;
    warm(&proxy, &client, &by_name(1)).await;
    let parsed = statements_parsed(&console).await;

    // A hot set of inlined keys, most of them absent from the table: each text is new.
    const KEYS: u32 = 20_000;
    for id in 2..KEYS {
        let expected = (id <= 100).then(|| format!("item {id}"));
        assert_eq!(
            column(&client, &by_id(id)).await,
            expected.into_iter().map(Some).collect::<Vec<_>>(),
            "{}",
            by_id(id)
        );
        if id % 10 == 0 {
            let expected = (id <= 100).then(|| id.to_string());
            assert_eq!(
                column(&client, &by_name(id)).await,
                expected.into_iter().map(Some).collect::<Vec<_>>(),
                "{}",
                by_name(id)
            );
        }
    }
    assert_eq!(
        statements_parsed(&console).await,
        parsed,
        "texts that differ only in their literals were parsed again"
    );

    // Each value is still its own entry: the second pass over the table's keys is all hits,
    // with each key's own row.
    let cache = proxy.cache.as_ref().expect("cache on");
    let hits = cache.hits();
    for id in 2..=100 {
        assert_eq!(
            column(&client, &by_id(id)).await,
            vec![Some(format!("item {id}"))]
        );
    }
    assert_eq!(
        cache.hits() - hits,
        99,
        "the second pass was answered from the cache"
    );
}

/// A write judged before `DROP TABLE` and `CREATE TABLE` names the table's old OID, a read
/// judged after them the new one. The DDL's acknowledgement makes both be judged again, so the
/// write still invalidates the read it changed (as asyncpg's own test suite does, recreating a
/// table for every test).
#[tokio::test]
async fn a_table_dropped_and_created_again_through_pgcached_keeps_reads_fresh() {
    let _serial = SERIAL.lock().await;
    let proxy = caching_proxy();
    let client = through(&proxy, "postgres", None).await;
    let write = "INSERT INTO recreated VALUES ($1, $1)";
    let read = "SELECT a, b FROM recreated ORDER BY a";
    let create = "CREATE TABLE recreated (a int PRIMARY KEY, b int)";
    client
        .batch_execute("DROP TABLE IF EXISTS recreated")
        .await
        .expect("clean");
    for round in 0..5 {
        client.batch_execute(create).await.expect("create");
        // The write is judged against this table.
        client.execute(write, &[&1i32]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.execute(write, &[&2i32]).await.expect("write");
        client
            .batch_execute(&format!("DROP TABLE recreated; {create}"))
            .await
            .expect("recreate");
        // The read is first judged now, against the new table, and cached.
        for _ in 0..3 {
            client.query(read, &[]).await.expect("read");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        client.execute(write, &[&3i32]).await.expect("write");
        let rows: Vec<(i32, i32)> = client
            .query(read, &[])
            .await
            .expect("read")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(
            rows,
            vec![(3, 3)],
            "round {round}: the acknowledged write is missing"
        );
        client
            .batch_execute("DROP TABLE recreated")
            .await
            .expect("drop");
    }
}

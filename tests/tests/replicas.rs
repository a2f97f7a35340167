//! Read replicas with real servers: a primary and a streaming standby made with
//! `pg_basebackup -R`, pgcached given the standby with `--replica`. A cache miss goes to the
//! standby once it has replayed every change the cache knows of and every write made through
//! pgcached; while its replay is paused, misses go to the primary, so no client ever reads a
//! row older than what it (or anyone) wrote. Logins are repeated on the replica as the client
//! (trust, relayed SCRAM, SCRAM verified by pgcached for TLS clients; md5 stays on the
//! primary), replica connections use TLS as their URL asks, session state is replayed, a shared tier
//! is asked before the replica, a promoted replica is never asked as one, and a replica that
//! stops mid-run costs no client an error.

use std::time::{Duration, Instant};

use pgcached_local_cluster::users::{
    MD5_PASSWORD, MD5_USER, PASSWORD_PASSWORD, PASSWORD_USER, PGCACHED_PASSWORD, PGCACHED_USER,
    SCRAM_PASSWORD, SCRAM_USER, TRUST_USER,
};
use pgcached_local_cluster::LocalCluster;
use pgcached_tests::console::{console, rows, Row, CONSOLE_FLAGS};
use pgcached_tests::external::value;
use pgcached_tests::proxy::config_with;
use pgcached_tests::redis::{available, RedisServer};
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

/// Longest wait for the standby or pgcached to reach a state, on a loaded machine.
const LIMIT: Duration = Duration::from_secs(30);
/// The application name of pgcached's replica connections, as the standby shows it.
const REPLICA_APPLICATION: &str = "pgcached replica reads";

fn start_pair() -> (LocalCluster, LocalCluster) {
    pgcached_tests::cluster::primary_and_standby(
        "CREATE TABLE kv (k int PRIMARY KEY, v text);
         INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g;
         GRANT ALL ON kv TO PUBLIC;
         CREATE SCHEMA other;
         GRANT USAGE ON SCHEMA other TO PUBLIC;
         CREATE TABLE other.kv (k int PRIMARY KEY, v text);
         INSERT INTO other.kv SELECT g, 'other' || g FROM generate_series(1, 100) g;
         GRANT SELECT ON other.kv TO PUBLIC;",
    )
}

/// pgcached in front of `primary`, with `standby` as its replica and the console on.
fn proxy_for(primary: &LocalCluster, standby: &LocalCluster) -> TestProxy {
    proxy_with(primary, standby, &[])
}

/// [`proxy_for`] with more flags.
fn proxy_with(primary: &LocalCluster, standby: &LocalCluster, extra: &[&str]) -> TestProxy {
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@{}:{}/postgres?sslmode=disable",
        primary.host(),
        primary.port()
    );
    proxy_at(&upstream, standby, extra)
}

/// pgcached with this `--upstream`, `standby` as its replica, the console on, and more flags.
fn proxy_at(upstream: &str, standby: &LocalCluster, extra: &[&str]) -> TestProxy {
    let replica = format!(
        "postgres://{}:{}?sslmode=disable",
        standby.host(),
        standby.port()
    );
    let mut flags = vec!["--cache", "on", "--replica", &replica];
    flags.extend_from_slice(&CONSOLE_FLAGS);
    flags.extend_from_slice(extra);
    TestProxy::with_config(config_with(upstream, &flags, ""))
}

/// [`proxy_for`], once the replica is usable and has answered a first miss of a client of
/// `TRUST_USER`: the proxy and that client.
async fn serving(primary: &LocalCluster, standby: &LocalCluster) -> (TestProxy, Client) {
    let proxy = proxy_for(primary, standby);
    until_usable(proxy.port()).await;
    let client = client_as(proxy.port(), TRUST_USER, None).await;
    until_replica_fills(proxy.port(), 1, |k| read_row(&client, k, "v")).await;
    (proxy, client)
}

/// The replica's `SHOW REPLICAS` row.
async fn replica_row(port: u16) -> Row {
    let console = console(port).await;
    rows(&console, "SHOW REPLICAS")
        .await
        .into_iter()
        .next()
        .expect("one replica")
}

fn count(row: &Row, column: &str) -> u64 {
    row[column]
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{column} in {row:?}"))
}

/// Waits until the replica is usable.
async fn until_usable(port: u16) {
    let started = Instant::now();
    loop {
        let row = replica_row(port).await;
        if row["state"].as_deref() == Some("usable") {
            return;
        }
        assert!(started.elapsed() < LIMIT, "replica not usable: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads key `first`, `first + 1`, ... with `read` (each a miss) until the replica has
/// filled one (at start, and after each change, a write's position must be bounded first);
/// returns that key and the replica's new count of fills.
async fn until_replica_fills<F, R>(port: u16, first: i32, read: F) -> (i32, u64)
where
    F: Fn(i32) -> R,
    R: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let mut k = first;
    loop {
        let before = count(&replica_row(port).await, "filled");
        read(k).await;
        let after = count(&replica_row(port).await, "filled");
        if after > before {
            assert_eq!(after, before + 1, "one miss, one fill");
            return (k, after);
        }
        assert!(
            started.elapsed() < LIMIT,
            "the replica never answered: {:?}",
            replica_row(port).await
        );
        k += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads row `k` with a simple Query; it must hold `prefix` followed by `k`. Past the 100
/// rows, `k` reads row `(k - 1) % 100 + 1` with a statement text of its own (another cache
/// key), so a caller counting on misses never runs out of them.
async fn read_row(client: &Client, k: i32, prefix: &str) {
    let sql = row_sql(k);
    assert_eq!(
        value(client, &sql).await,
        Some(format!("{prefix}{}", row_of(k))),
        "{sql}"
    );
}

/// The row key `k` reads ([`read_row`]).
fn row_of(k: i32) -> i32 {
    (k - 1) % 100 + 1
}

/// The statement `k` reads with ([`read_row`]).
fn row_sql(k: i32) -> String {
    let (row, round) = (row_of(k), (k - 1) / 100);
    match round {
        0 => format!("SELECT v FROM kv WHERE k = {row}"),
        _ => format!("SELECT v FROM kv WHERE k = {row} AND {round} = {round}"),
    }
}

/// Pauses the standby's replay and waits until it has actually stopped.
fn pause_replay(standby: &LocalCluster) {
    standby
        .psql("postgres", "SELECT pg_wal_replay_pause()")
        .expect("pause replay");
    let started = Instant::now();
    while standby
        .psql("postgres", "SELECT pg_get_wal_replay_pause_state()")
        .expect("pause state")
        .trim()
        != "paused"
    {
        assert!(started.elapsed() < LIMIT, "replay never paused");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last statement a replica connection of `role` ran on the standby.
fn last_replica_query(standby: &LocalCluster, role: &str) -> String {
    standby
        .psql(
            "postgres",
            &format!(
                "SELECT coalesce(string_agg(query, ' | '), '') FROM pg_stat_activity \
                 WHERE application_name = '{REPLICA_APPLICATION}' AND usename = '{role}'"
            ),
        )
        .expect("standby activity")
        .trim()
        .to_owned()
}

async fn client_as(port: u16, user: &str, password: Option<&str>) -> Client {
    connect(&url(Endpoint::proxy(port), user, password, "app"))
        .await
        .unwrap_or_else(|e| panic!("login as {user}: {e}"))
}

/// Reads `sql` through `client` until it returns `expected` (the change stream's delay),
/// then checks that every read after that does too.
async fn settles_at(client: &Client, sql: &str, expected: Option<&str>) {
    let started = Instant::now();
    while value(client, sql).await.as_deref() != expected {
        assert!(
            started.elapsed() < LIMIT,
            "{sql} never returned {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        assert_eq!(value(client, sql).await.as_deref(), expected, "{sql}");
    }
}

#[tokio::test]
async fn misses_go_to_a_caught_up_replica_and_to_the_primary_while_it_lags() {
    let (primary, standby) = start_pair();
    let proxy = proxy_for(&primary, &standby);
    until_usable(proxy.port()).await;
    let client = client_as(proxy.port(), TRUST_USER, None).await;

    // A simple-protocol miss, answered by the standby, then a hit.
    let (k, filled) = until_replica_fills(proxy.port(), 1, |k| read_row(&client, k, "v")).await;
    assert!(
        last_replica_query(&standby, TRUST_USER).contains(&row_sql(k)),
        "the standby ran the read as the client's role"
    );
    read_row(&client, k, "v").await;
    assert_eq!(
        count(&replica_row(proxy.port()).await, "filled"),
        filled,
        "the repeat is a hit"
    );

    // An extended-protocol miss (a prepared statement with a parameter), then a hit.
    let (k, filled) = until_replica_fills(proxy.port(), 50, |k| {
        let client = &client;
        async move {
            // Past the 100 rows an empty result, cached like any other.
            let row = client
                .query_opt("SELECT v FROM kv WHERE k = $1", &[&k])
                .await
                .expect("extended read");
            assert_eq!(
                row.map(|r| r.get::<_, String>(0)),
                (k <= 100).then(|| format!("v{k}"))
            );
        }
    })
    .await;
    let again = client
        .query_opt("SELECT v FROM kv WHERE k = $1", &[&k])
        .await
        .expect("extended hit");
    assert_eq!(
        again.map(|r| r.get::<_, String>(0)),
        (k <= 100).then(|| format!("v{k}"))
    );
    assert_eq!(count(&replica_row(proxy.port()).await, "filled"), filled);

    // The standby stops replaying; writes straight to the primary must still be seen.
    pause_replay(&standby);
    primary
        .psql(
            "app",
            "UPDATE kv SET v = 'new1' WHERE k = 1; INSERT INTO kv VALUES (1001, 'inserted');",
        )
        .expect("write on the primary");
    settles_at(&client, "SELECT v FROM kv WHERE k = 1", Some("new1")).await;
    // A row the paused standby does not have: read from the primary. (After the stream's
    // re-bumps of the write, which would refuse a stale fill by themselves.)
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        value(&client, "SELECT v FROM kv WHERE k = 1001")
            .await
            .as_deref(),
        Some("inserted")
    );
    let lagging = replica_row(proxy.port()).await;
    assert!(
        lagging["behind_bytes"]
            .as_deref()
            .and_then(|b| b.parse::<u64>().ok())
            .is_some_and(|b| b > 0),
        "the paused standby is behind: {lagging:?}"
    );

    // Replay resumes: misses go to the standby again.
    standby
        .psql("postgres", "SELECT pg_wal_replay_resume()")
        .expect("resume replay");
    until_replica_fills(proxy.port(), 10, |k| read_row(&client, k, "v")).await;
}

#[tokio::test]
async fn a_write_through_pgcached_is_read_back_at_once_whatever_the_replica() {
    let (primary, standby) = start_pair();
    let proxy = proxy_for(&primary, &standby);
    until_usable(proxy.port()).await;
    let writer = client_as(proxy.port(), TRUST_USER, None).await;
    let reader = client_as(proxy.port(), TRUST_USER, None).await;
    assert_eq!(
        value(&reader, "SELECT v FROM kv WHERE k = 5")
            .await
            .as_deref(),
        Some("v5")
    );
    pause_replay(&standby);
    for round in 0..20 {
        let text = format!("w{round}");
        writer
            .execute("UPDATE kv SET v = $1 WHERE k = 5", &[&text])
            .await
            .expect("write");
        writer
            .execute("INSERT INTO kv VALUES ($1, $2)", &[&(2000 + round), &text])
            .await
            .expect("insert");
        // Both sessions see both writes at once: the paused standby has neither.
        for client in [&writer, &reader] {
            assert_eq!(
                value(client, "SELECT v FROM kv WHERE k = 5")
                    .await
                    .as_deref(),
                Some(text.as_str())
            );
            let row = client
                .query_opt("SELECT v FROM kv WHERE k = $1", &[&(2000 + round)])
                .await
                .expect("read");
            assert_eq!(
                row.map(|r| r.get::<_, String>(0)).as_deref(),
                Some(text.as_str())
            );
        }
    }
    standby
        .psql("postgres", "SELECT pg_wal_replay_resume()")
        .expect("resume replay");
}

#[tokio::test]
async fn replicas_are_asked_as_the_client_by_every_login_pgcached_can_repeat() {
    let (primary, standby) = start_pair();
    let proxy = proxy_for(&primary, &standby);
    until_usable(proxy.port()).await;
    // SCRAM relayed (a plain client): the key is recovered with the role's verifier.
    let scram = client_as(proxy.port(), SCRAM_USER, Some(SCRAM_PASSWORD)).await;
    let (k, filled) = until_replica_fills(proxy.port(), 1, |k| read_row(&scram, k, "v")).await;
    assert!(last_replica_query(&standby, SCRAM_USER).contains(&row_sql(k)));

    // md5: the answer is bound to the primary's salt; reads stay on the primary, and work.
    let md5 = client_as(proxy.port(), MD5_USER, Some(MD5_PASSWORD)).await;
    for k in 60..70 {
        let sql = format!("SELECT v FROM kv WHERE k = {k}");
        assert_eq!(value(&md5, &sql).await, Some(format!("v{k}")), "{sql}");
    }
    assert_eq!(count(&replica_row(proxy.port()).await, "filled"), filled);
    assert_eq!(
        last_replica_query(&standby, MD5_USER),
        "",
        "no replica connection as the md5 role"
    );

    // A session state set with SET is replayed on the replica connection.
    let scoped = client_as(proxy.port(), TRUST_USER, None).await;
    scoped
        .batch_execute("SET search_path = other, public")
        .await
        .expect("SET");
    let (k, _) = until_replica_fills(proxy.port(), 70, |k| read_row(&scoped, k, "other")).await;
    assert!(last_replica_query(&standby, TRUST_USER).contains(&row_sql(k)));
    let plain = client_as(proxy.port(), TRUST_USER, None).await;
    // Another state, another entry.
    read_row(&plain, k, "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shared_tier_a_miss_it_does_not_have_goes_to_the_replica() {
    if !available() {
        panic!("redis-server is not installed (scripts/test installs Debian's redis-server)");
    }
    let (primary, standby) = start_pair();
    let mut redis = RedisServer::start();
    let redis_url = redis.url();
    let flags = [
        "--shared-cache",
        redis_url.as_str(),
        "--shared-cache-timeout",
        "2s",
    ];
    let first = proxy_with(&primary, &standby, &flags);
    until_usable(first.port()).await;
    let client = client_as(first.port(), TRUST_USER, None).await;
    // Not in Redis: the replica answers, and the result is published to the tier.
    let (k, _) = until_replica_fills(first.port(), 1, |k| read_row(&client, k, "v")).await;
    let shared = first.shared.as_ref().expect("shared tier").report();
    assert!(shared.misses > 0, "the tier was asked first: {shared:?}");
    // More results filled through the first pgcached (by the replica or the primary).
    for key in k + 1..k + 90 {
        read_row(&client, key, "v").await;
    }
    // Another pgcached finds them in Redis once its stream runs.
    let second = proxy_with(&primary, &standby, &flags);
    until_usable(second.port()).await;
    let other = client_as(second.port(), TRUST_USER, None).await;
    let started = Instant::now();
    let mut key = k;
    while second.shared.as_ref().expect("shared tier").report().hits == 0 {
        assert!(
            key < k + 90 && started.elapsed() < LIMIT,
            "never a shared hit"
        );
        read_row(&other, key, "v").await;
        key += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The tier goes down: misses still go to the replica, and no client sees an error.
    redis.kill();
    until_replica_fills(first.port(), 401, |k| read_row(&client, k, "v")).await;
}

#[tokio::test]
async fn a_promoted_replica_is_never_asked_as_a_replica_and_nothing_stale_is_served() {
    let (mut primary, standby) = start_pair();
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@{}:{},{}:{}/postgres?sslmode=disable&target_session_attrs=primary",
        primary.host(),
        primary.port(),
        standby.host(),
        standby.port()
    );
    let proxy = proxy_at(&upstream, &standby, &[]);
    until_usable(proxy.port()).await;
    let client = client_as(proxy.port(), TRUST_USER, None).await;
    let (k, _) = until_replica_fills(proxy.port(), 1, |k| read_row(&client, k, "v")).await;

    primary.stop();
    standby.promote().expect("promote");
    // Written on the new primary before pgcached noticed: the cached row is stale now.
    standby
        .psql(
            "app",
            &format!("UPDATE kv SET v = 'after' WHERE k = {}", row_of(k)),
        )
        .expect("write on the new primary");
    let started = Instant::now();
    let client = loop {
        if let Ok(client) =
            connect(&url(Endpoint::proxy(proxy.port()), TRUST_USER, None, "app")).await
        {
            if client.simple_query("SELECT 1").await.is_ok() {
                break client;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no session after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        value(&client, &row_sql(k)).await.as_deref(),
        Some("after"),
        "nothing cached before the failover is served after it"
    );
    let started = Instant::now();
    loop {
        let row = replica_row(proxy.port()).await;
        if row["state"].as_deref() == Some("not a standby") {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the promoted replica is still asked: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let filled = count(&replica_row(proxy.port()).await, "filled");
    for key in 80..90 {
        let sql = format!("SELECT v FROM kv WHERE k = {key}");
        assert_eq!(value(&client, &sql).await, Some(format!("v{key}")));
    }
    assert_eq!(
        count(&replica_row(proxy.port()).await, "filled"),
        filled,
        "misses go to the new primary only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_and_comes_back_costs_no_client_an_error() {
    let (primary, mut standby) = start_pair();
    let (proxy, client) = serving(&primary, &standby).await;
    // Reads of keys not read before (misses) while the standby goes away and comes back.
    let reader = {
        let port = proxy.port();
        tokio::spawn(async move {
            let client = client_as(port, TRUST_USER, None).await;
            for round in 0..3 {
                for k in 1..=100 {
                    let sql = format!("SELECT v FROM kv WHERE k = {k} AND {round} = {round}");
                    assert_eq!(value(&client, &sql).await, Some(format!("v{k}")), "{sql}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    standby.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        replica_row(proxy.port()).await["state"].as_deref(),
        Some("down")
    );
    standby.restart().expect("standby back");
    reader.await.expect("every read succeeded");
    until_usable(proxy.port()).await;
    // Keys past 100: statement texts not read before, so misses.
    until_replica_fills(proxy.port(), 401, |k| read_row(&client, k, "v")).await;
}

#[tokio::test]
async fn a_read_too_slow_for_a_replica_is_cancelled_there_and_answered_by_the_primary() {
    let (primary, standby) = start_pair();
    let (proxy, client) = serving(&primary, &standby).await;
    // 10^8 rows: seconds of work, far longer than the second a replica may take.
    let slow = |n: i32| format!("SELECT count(*) FROM kv a, kv b, kv c, generate_series(1, {n}) g");
    let before = replica_row(proxy.port()).await;
    let started = Instant::now();
    assert_eq!(
        value(&client, &slow(100)).await.as_deref(),
        Some("100000000")
    );
    let took = started.elapsed();
    let after = replica_row(proxy.port()).await;
    assert_eq!(
        count(&after, "fell_back"),
        count(&before, "fell_back") + 1,
        "the replica was asked and gave up ({took:?}): {after:?}"
    );
    assert_eq!(count(&after, "filled"), count(&before, "filled"));
    // Its statement was cancelled on the standby, not left running.
    let started = Instant::now();
    loop {
        let running = standby
            .psql(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = \
                     '{REPLICA_APPLICATION}' AND state = 'active'"
                ),
            )
            .expect("standby activity");
        if running.trim() == "0" {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the slow read still runs on the standby"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same statement with other literals (a quick one now) stays on the primary a while.
    assert_eq!(value(&client, &slow(2)).await.as_deref(), Some("2000000"));
    let last = replica_row(proxy.port()).await;
    assert_eq!(count(&last, "fell_back"), count(&after, "fell_back"));
    assert_eq!(count(&last, "filled"), count(&after, "filled"));
}

#[tokio::test]
async fn psycopg3_with_its_defaults_reads_from_the_replica_inside_its_transactions() {
    use pgcached_tests::clients::{expect_success, python, run_with_timeout};
    let (primary, standby) = start_pair();
    let proxy = proxy_for(&primary, &standby);
    until_usable(proxy.port()).await;
    let warm = client_as(proxy.port(), TRUST_USER, None).await;
    until_replica_fills(proxy.port(), 90, |k| read_row(&warm, k, "v")).await;
    let before = count(&replica_row(proxy.port()).await, "filled");
    // Autocommit off (every read in a transaction), server-side binding, prepared after five
    // executions; each key read twice, with a commit after each read.
    let script = format!(
        "import json, psycopg\n\
         conn = psycopg.connect(host='127.0.0.1', port={port}, user='{TRUST_USER}', dbname='app')\n\
         seen = []\n\
         for k in range(1, 41):\n\
         \x20   for _ in range(2):\n\
         \x20       with conn.cursor() as cur:\n\
         \x20           cur.execute('SELECT v FROM kv WHERE k = %s', (k,))\n\
         \x20           seen.append(cur.fetchone()[0])\n\
         \x20       conn.commit()\n\
         print(json.dumps(seen))\n",
        port = proxy.port()
    );
    let output = run_with_timeout(python().arg("-c").arg(&script), 60);
    let seen: Vec<String> =
        serde_json::from_str(expect_success(&output, "psycopg 3").trim()).expect("JSON");
    let expected: Vec<String> = (1..41)
        .flat_map(|k| [format!("v{k}"), format!("v{k}")])
        .collect();
    assert_eq!(seen, expected);
    let filled = count(&replica_row(proxy.port()).await, "filled") - before;
    assert!(
        filled >= 30,
        "{filled} of 40 first reads were answered by the replica"
    );
}

#[tokio::test]
async fn a_replica_configured_otherwise_in_a_setting_that_changes_results_is_not_asked() {
    let (primary, standby) = start_pair();
    let (proxy, client) = serving(&primary, &standby).await;
    // timestamptz values would be written in another time zone by the standby.
    standby
        .psql(
            "postgres",
            "ALTER SYSTEM SET TimeZone = 'Asia/Tokyo'; SELECT pg_reload_conf();",
        )
        .expect("configure the standby");
    let started = Instant::now();
    let row = loop {
        let row = replica_row(proxy.port()).await;
        if row["state"].as_deref() == Some("settings differ") {
            break row;
        }
        assert!(started.elapsed() < LIMIT, "still usable: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        row["problem"]
            .as_deref()
            .is_some_and(|p| p.contains("TimeZone")),
        "{row:?}"
    );
    let filled = count(&row, "filled");
    for k in 50..60 {
        read_row(&client, k, "v").await;
    }
    assert_eq!(count(&replica_row(proxy.port()).await, "filled"), filled);
    standby
        .psql(
            "postgres",
            "ALTER SYSTEM RESET TimeZone; SELECT pg_reload_conf();",
        )
        .expect("configure the standby back");
    until_usable(proxy.port()).await;
    until_replica_fills(proxy.port(), 401, |k| read_row(&client, k, "v")).await;
}

#[tokio::test]
async fn over_tls_a_scram_client_verified_by_pgcached_is_repeated_on_the_replica() {
    let certs = pgcached_tests::certs::make(&["localhost", "127.0.0.1"]);
    let primary = pgcached_tests::certs::tls_cluster(&certs);
    primary
        .psql(
            "app",
            "CREATE TABLE kv (k int PRIMARY KEY, v text);
             INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g;
             GRANT ALL ON kv TO PUBLIC;",
        )
        .expect("setup");
    let standby = LocalCluster::start_standby(&primary).expect("standby");
    let ca = certs.ca_cert.display().to_string();
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        primary.port()
    );
    let replica = format!(
        "postgres://127.0.0.1:{}?sslmode=verify-full&sslrootcert={ca}",
        standby.port()
    );
    let cert = certs.server_cert.display().to_string();
    let key = certs.server_key.display().to_string();
    let mut flags = vec![
        "--cache",
        "on",
        "--replica",
        &replica,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    flags.extend_from_slice(&CONSOLE_FLAGS);
    let proxy = TestProxy::with_config(config_with(&upstream, &flags, ""));
    until_usable(proxy.port()).await;
    // psql over TLS with channel binding required: pgcached verifies SCRAM itself, and the
    // client key the proof revealed logs in to the replica.
    let port = proxy.port();
    let bindir = primary.bindir().to_owned();
    let (k, _) = until_replica_fills(port, 1, |k| {
        let bindir = bindir.clone();
        async move {
            let output = std::process::Command::new(bindir.join("psql"))
                .args(["-X", "-w", "-q", "-A", "-t", "-c"])
                .arg(row_sql(k))
                .arg(format!(
                    "host=127.0.0.1 port={port} dbname=app user={SCRAM_USER} \
                     sslmode=require channel_binding=require"
                ))
                .env("PGPASSWORD", SCRAM_PASSWORD)
                .output()
                .expect("psql");
            assert!(output.status.success(), "{output:?}");
            assert_eq!(
                String::from_utf8_lossy(&output.stdout).trim(),
                format!("v{}", row_of(k))
            );
        }
    })
    .await;
    assert!(last_replica_query(&standby, SCRAM_USER).contains(&row_sql(k)));
    let tls = standby
        .psql(
            "postgres",
            &format!(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = '{REPLICA_APPLICATION}'"
            ),
        )
        .expect("standby TLS");
    assert_eq!(
        tls.trim(),
        "t",
        "replica connections use TLS as the URL asks"
    );
}

#[tokio::test]
async fn an_idle_replica_connection_closed_by_the_replica_is_replaced_for_the_same_read() {
    let (primary, standby) = start_pair();
    let (proxy, client) = serving(&primary, &standby).await;
    // The replica ends pgcached's idle connection (as idle_session_timeout would).
    standby
        .psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = '{REPLICA_APPLICATION}'"
            ),
        )
        .expect("terminate");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = replica_row(proxy.port()).await;
    read_row(&client, 77, "v").await;
    let after = replica_row(proxy.port()).await;
    assert_eq!(
        count(&after, "filled"),
        count(&before, "filled") + 1,
        "the miss was answered by the replica on a new connection: {after:?}"
    );
    assert_eq!(count(&after, "fell_back"), count(&before, "fell_back"));
}

#[tokio::test]
async fn a_password_login_is_repeated_and_each_role_reads_only_what_it_may() {
    let (primary, standby) = start_pair();
    primary
        .psql(
            "app",
            &format!(
                "CREATE TABLE secret (k int PRIMARY KEY, v text);
                 INSERT INTO secret VALUES (1, 'only for {PASSWORD_USER}');
                 GRANT SELECT ON secret TO {PASSWORD_USER};"
            ),
        )
        .expect("setup");
    let (proxy, _) = serving(&primary, &standby).await;
    // The `password` method: the password the client sent logs in to the replica.
    let allowed = client_as(proxy.port(), PASSWORD_USER, Some(PASSWORD_PASSWORD)).await;
    until_replica_fills(proxy.port(), 1, |k| read_row(&allowed, k, "v")).await;
    // Each text is its own miss, until the replica has answered one.
    let secret = |i: i32| format!("SELECT v FROM secret WHERE k = 1 AND {i} = {i}");
    let before = count(&replica_row(proxy.port()).await, "filled");
    let mut i = 0;
    while count(&replica_row(proxy.port()).await, "filled") == before {
        assert!(i < 200, "the replica never answered a read of secret");
        i += 1;
        assert_eq!(
            value(&allowed, &secret(i)).await,
            Some(format!("only for {PASSWORD_USER}"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(last_replica_query(&standby, PASSWORD_USER).contains(&secret(i)));
    // Another role gets PostgreSQL's refusal, never the cached or replica-read rows, whoever
    // read them first (entries and replica connections are per role).
    let denied = client_as(proxy.port(), TRUST_USER, None).await;
    for j in [i, i, 0] {
        let error = denied
            .simple_query(&secret(j))
            .await
            .expect_err("not granted");
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{error}"
        );
    }
}

//! Upstream failover with real servers: a primary and a streaming standby made with
//! `pg_basebackup -R`, pgcached given both hosts. A host that does not qualify is skipped at
//! start; when the primary stops and the standby is promoted, clients that reconnect are served
//! by the new primary, and nothing cached before the failover is served after it.

use std::time::{Duration, Instant};

use pgcached_local_cluster::users::{PGCACHED_PASSWORD, PGCACHED_USER};
use pgcached_local_cluster::LocalCluster;
use pgcached_tests::console::{console, rows, CONSOLE_FLAGS};
use pgcached_tests::external::{until_cached, value, wait_for};
use pgcached_tests::proxy::config_with;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

/// How long a failover may take to be noticed and served (promotion, the monitor's checks,
/// the stream's reconnect backoff), on a loaded machine.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

fn start_pair() -> (LocalCluster, LocalCluster) {
    pgcached_tests::cluster::primary_and_standby(
        "CREATE TABLE kv (k int PRIMARY KEY, v text);
         INSERT INTO kv VALUES (1, 'a0'), (2, 'b0');
         GRANT ALL ON kv TO PUBLIC;",
    )
}

/// pgcached in front of `hosts` (`host:port` each), caching, with the console on.
fn proxy_for(hosts: &[String], attrs: &str) -> TestProxy {
    proxy_with(hosts, attrs, &[])
}

/// [`proxy_for`] with more flags.
fn proxy_with(hosts: &[String], attrs: &str, extra: &[&str]) -> TestProxy {
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@{}/postgres?sslmode=disable&target_session_attrs={attrs}",
        hosts.join(",")
    );
    let mut flags = vec!["--cache", "on"];
    flags.extend_from_slice(&CONSOLE_FLAGS);
    flags.extend_from_slice(extra);
    TestProxy::with_config(config_with(&upstream, &flags, ""))
}

fn address(cluster: &LocalCluster) -> String {
    format!("{}:{}", cluster.host(), cluster.port())
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A client through pgcached, retried until pgcached connects it to a server that answers.
async fn reconnect(port: u16, limit: Duration) -> Client {
    let started = Instant::now();
    loop {
        if let Ok(client) = connect(&url(Endpoint::proxy(port), "postgres", None, "app")).await {
            if client.simple_query("SELECT 1").await.is_ok() {
                return client;
            }
        }
        assert!(
            started.elapsed() < limit,
            "no session through pgcached after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the standby has replayed everything the primary wrote so far.
fn wait_replayed(primary: &LocalCluster, standby: &LocalCluster) {
    let target = primary
        .psql("postgres", "SELECT pg_current_wal_lsn()")
        .expect("primary position");
    let started = Instant::now();
    loop {
        let caught_up = standby
            .psql(
                "postgres",
                &format!(
                    "SELECT pg_last_wal_replay_lsn() >= '{}'::pg_lsn",
                    target.trim()
                ),
            )
            .expect("standby position");
        if caught_up.trim() == "t" {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "standby did not catch up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `SHOW UPSTREAM` row of the current host.
async fn current_upstream(port: u16) -> (String, String, String) {
    let console = console(port).await;
    let current = rows(&console, "SHOW UPSTREAM")
        .await
        .into_iter()
        .find(|row| row["current"].as_deref() == Some("yes"))
        .expect("a current host");
    let get = |name: &str| current[name].clone().unwrap_or_default();
    (get("host"), get("role"), get("timeline"))
}

#[tokio::test]
async fn hosts_that_do_not_qualify_are_skipped_at_start() {
    let (primary, standby) = start_pair();
    let hosts = [
        format!("127.0.0.1:{}", closed_port()),
        address(&standby),
        address(&primary),
    ];
    let proxy = proxy_for(&hosts, "read-write");
    let client = reconnect(proxy.port(), Duration::from_secs(20)).await;
    assert_eq!(
        value(&client, "SELECT pg_is_in_recovery()::text")
            .await
            .as_deref(),
        Some("false"),
        "sessions go to the primary, not to the standby listed before it"
    );
    client
        .execute("UPDATE kv SET v = 'a1' WHERE k = 1", &[])
        .await
        .expect("a write succeeds: the session is on the primary");
    let (host, role, _) = current_upstream(proxy.port()).await;
    assert_eq!(host, address(&primary));
    assert_eq!(role, "primary");

    // With `any` (libpq's default) the first host that answers is used, a standby included.
    let any = proxy_for(&hosts[1..], "any");
    let client = reconnect(any.port(), Duration::from_secs(20)).await;
    assert_eq!(
        value(&client, "SELECT pg_is_in_recovery()::text")
            .await
            .as_deref(),
        Some("true")
    );
}

#[tokio::test]
async fn after_a_failover_clients_are_served_by_the_new_primary_and_nothing_stale() {
    let (mut primary, standby) = start_pair();
    let proxy = proxy_for(&[address(&primary), address(&standby)], "primary");
    let cache = proxy.cache.clone().expect("caching on");
    let client = reconnect(proxy.port(), Duration::from_secs(20)).await;
    let (read_a, read_b) = (
        "SELECT v FROM kv WHERE k = 1",
        "SELECT v FROM kv WHERE k = 2",
    );
    until_cached(&client, &cache, read_b, Duration::from_secs(20)).await;
    // A write through pgcached, then its result cached.
    client
        .execute("UPDATE kv SET v = 'a1' WHERE k = 1", &[])
        .await
        .expect("write");
    assert_eq!(value(&client, read_a).await.as_deref(), Some("a1"));
    until_cached(&client, &cache, read_a, Duration::from_secs(20)).await;
    assert_eq!(value(&client, read_b).await.as_deref(), Some("b0"));
    wait_replayed(&primary, &standby);

    primary.stop();
    let lost = client.simple_query(read_b).await;
    assert!(
        lost.is_err() || client.is_closed(),
        "a session on the stopped primary fails, as it would straight to PostgreSQL"
    );
    standby.promote().expect("promote");
    // Written on the new primary before pgcached noticed anything: the cached b0 is stale now.
    standby
        .psql("app", "UPDATE kv SET v = 'b1' WHERE k = 2")
        .expect("write on the new primary");

    let client = reconnect(proxy.port(), FAILOVER_LIMIT).await;
    assert_eq!(
        value(&client, "SELECT pg_is_in_recovery()::text")
            .await
            .as_deref(),
        Some("false")
    );
    assert_eq!(
        value(&client, read_b).await.as_deref(),
        Some("b1"),
        "a result cached before the failover is not served after it"
    );
    assert_eq!(
        value(&client, read_a).await.as_deref(),
        Some("a1"),
        "the write acknowledged before the failover was replicated"
    );
    // A row written through pgcached on the new primary is seen at once.
    client
        .execute("INSERT INTO kv VALUES (3, 'c0')", &[])
        .await
        .expect("write on the new primary through pgcached");
    assert_eq!(
        value(&client, "SELECT v FROM kv WHERE k = 3")
            .await
            .as_deref(),
        Some("c0")
    );
    // The change stream follows the new primary: reads are cached again, and a write made
    // straight to it reaches the cache.
    until_cached(&client, &cache, read_b, FAILOVER_LIMIT).await;
    standby
        .psql("app", "UPDATE kv SET v = 'b2' WHERE k = 2")
        .expect("external write on the new primary");
    wait_for(&client, read_b, "b2", Duration::from_secs(10)).await;

    let (host, role, timeline) = current_upstream(proxy.port()).await;
    assert_eq!(host, address(&standby));
    assert_eq!(role, "primary");
    assert_eq!(timeline, "2", "the promotion started timeline 2");
    let console = console(proxy.port()).await;
    let stats = rows(&console, "SHOW UPSTREAM").await;
    assert_eq!(stats.len(), 2);
}

#[tokio::test]
async fn after_a_failover_no_result_of_the_old_server_comes_from_the_shared_tier() {
    assert!(
        pgcached_tests::redis::available(),
        "redis-server is not installed (scripts/test installs Debian's redis-server)"
    );
    let (mut primary, standby) = start_pair();
    let redis = pgcached_tests::redis::RedisServer::start();
    let redis_url = redis.url();
    let hosts = [address(&primary), address(&standby)];
    let shared = ["--shared-cache", redis_url.as_str()];
    let (a, b) = (
        proxy_with(&hosts, "primary", &shared),
        proxy_with(&hosts, "primary", &shared),
    );
    let read = "SELECT v FROM kv WHERE k = 2";
    for proxy in [&a, &b] {
        let client = reconnect(proxy.port(), Duration::from_secs(20)).await;
        let cache = proxy.cache.clone().expect("caching on");
        until_cached(&client, &cache, read, Duration::from_secs(20)).await;
        assert_eq!(value(&client, read).await.as_deref(), Some("b0"));
    }
    let published = a.shared.as_ref().expect("shared tier").report().written;
    assert!(published > 0, "A published its results");
    wait_replayed(&primary, &standby);

    primary.stop();
    standby.promote().expect("promote");
    standby
        .psql("app", "UPDATE kv SET v = 'b1' WHERE k = 2")
        .expect("write on the new primary");
    // Both pgcacheds come back on the new primary; each serves only what it read there, from
    // memory or from the shared tier (whose results of the old timeline are never read).
    let clients = [
        reconnect(a.port(), FAILOVER_LIMIT).await,
        reconnect(b.port(), FAILOVER_LIMIT).await,
    ];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        for client in &clients {
            assert_eq!(
                value(client, read).await.as_deref(),
                Some("b1"),
                "a result of the old server was served after the failover"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (proxy, client) in [(&a, &clients[0]), (&b, &clients[1])] {
        let cache = proxy.cache.clone().expect("caching on");
        until_cached(client, &cache, read, FAILOVER_LIMIT).await;
        assert_eq!(value(client, read).await.as_deref(), Some("b1"));
    }
}

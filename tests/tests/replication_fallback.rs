//! Where no change stream can work, staleness is bounded and the reason is plain: with
//! `wal_level = replica`, `--replication auto` serves a cached result for at most
//! `--cache-ttl-unreplicated` after it was read (so an external write shows within that),
//! `0` caches nothing, and `SHOW REPLICATION` names `wal_level`. Exhausted `max_wal_senders`
//! or `max_replication_slots` and a role without REPLICATION are named the same way, and with
//! `--replication required` nothing is served from the cache meanwhile.

use std::time::{Duration, Instant};

use pgcached::upstream::own_login::{login, Login};
use pgcached::upstream::{Connector, UpstreamUrl};
use pgcached_local_cluster::users::PGCACHED_USER;
use pgcached_local_cluster::{ClusterOptions, LocalCluster};
use pgcached_tests::console::{self, CONSOLE_FLAGS};
use pgcached_tests::external::{until_cached, value, wait_for};
use pgcached_tests::proxy::{caching_config_for, config_with};
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

async fn direct(cluster: &LocalCluster) -> Client {
    let admin = connect(&url(Endpoint::direct(cluster), "postgres", None, "app"))
        .await
        .expect("direct");
    admin
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS ext (k int PRIMARY KEY, v text);
             INSERT INTO ext VALUES (1, 'v0') ON CONFLICT DO NOTHING;
             GRANT ALL ON ext TO PUBLIC;",
        )
        .await
        .expect("setup");
    admin
}

async fn through(proxy: &TestProxy) -> Client {
    connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("through pgcached")
}

fn proxy(cluster: &LocalCluster, extra: &[&str]) -> TestProxy {
    let mut flags = CONSOLE_FLAGS.to_vec();
    flags.extend_from_slice(extra);
    TestProxy::with_config(caching_config_for(cluster, &flags))
}

const READ: &str = "SELECT v FROM ext WHERE k = 1";
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn without_logical_decoding_cached_results_live_at_most_the_bound() {
    let cluster = LocalCluster::start(ClusterOptions {
        wal_level: "replica".to_owned(),
        ..pgcached_tests::cluster::options()
    })
    .expect("cluster");
    let admin = direct(&cluster).await;
    let bound = Duration::from_millis(300);
    let proxy = proxy(&cluster, &["--cache-ttl-unreplicated", "300ms"]);
    let client = through(&proxy).await;
    let console = console::console(proxy.port()).await;
    let row =
        console::wait_for_state(&console, "app", "unavailable", Some("wal_level"), LIMIT).await;
    let detail = row["detail"].clone().unwrap_or_default();
    assert!(
        detail.contains("wal_level is replica") && detail.contains("wal_level = logical"),
        "{detail}"
    );
    assert!(
        row["cache"].as_deref().is_some_and(|c| c.contains("300ms")),
        "{row:?}"
    );
    let explained = console::explain(&console, "app", READ).await;
    assert_eq!(explained["cacheable"].as_deref(), Some("yes"));
    assert!(
        explained["ttl"]
            .as_deref()
            .is_some_and(|t| t.contains("300ms")),
        "{explained:?}"
    );

    let cache = proxy.cache.as_ref().expect("cache on");
    for round in 1..=3 {
        until_cached(&client, cache, READ, LIMIT).await;
        let new = format!("v{round}");
        admin
            .execute("UPDATE ext SET v = $1 WHERE k = 1", &[&new])
            .await
            .expect("external write");
        let written = Instant::now();
        // Read for a while: a read that starts more than the bound after the write sees it.
        let mut stale_hits = 0;
        while written.elapsed() < bound * 3 {
            let started = Instant::now();
            let seen = value(&client, READ).await;
            if seen.as_deref() != Some(new.as_str()) {
                assert!(
                    started < written + bound,
                    "round {round}: {seen:?} served {:?} after the write (bound {bound:?})",
                    started - written
                );
                stale_hits += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("round {round}: {stale_hits} reads within the bound still showed the old value");
    }

    // 0: nothing is cached for the database.
    let none = self::proxy(&cluster, &["--cache-ttl-unreplicated", "0"]);
    let client = through(&none).await;
    let console = console::console(none.port()).await;
    let row =
        console::wait_for_state(&console, "app", "unavailable", Some("wal_level"), LIMIT).await;
    assert!(
        row["cache"]
            .as_deref()
            .is_some_and(|c| c.contains("nothing cached")),
        "{row:?}"
    );
    for _ in 0..10 {
        value(&client, READ).await;
    }
    let cache = none.cache.as_ref().expect("cache on");
    assert!(cache.is_empty(), "nothing cached with 0");
    assert_eq!(cache.hits(), 0);
    let explained = console::explain(&console, "app", READ).await;
    assert_eq!(
        explained["reason"].as_deref(),
        Some("no_change_feed"),
        "{explained:?}"
    );
}

/// Reads `READ` a few times through `proxy` and checks nothing was served from its cache.
async fn nothing_served_from_the_cache(proxy: &TestProxy, client: &Client, admin: &Client) {
    let cache = proxy.cache.as_ref().expect("cache on");
    for round in 0..5 {
        let new = format!("required {round}");
        admin
            .execute("UPDATE ext SET v = $1 WHERE k = 1", &[&new])
            .await
            .expect("external write");
        assert_eq!(value(client, READ).await.as_deref(), Some(new.as_str()));
        assert_eq!(value(client, READ).await.as_deref(), Some(new.as_str()));
    }
    assert_eq!(cache.hits(), 0, "nothing served from the cache");
}

/// Holds a replication connection open (it occupies a WAL sender).
async fn hold_wal_sender(cluster: &LocalCluster) -> pgcached::net::Stream {
    let connector = Connector::unmonitored(
        UpstreamUrl::parse(&format!(
            "postgres://127.0.0.1:{}/app?sslmode=disable",
            cluster.port()
        ))
        .expect("url"),
    )
    .expect("connector");
    login(
        &connector,
        Login {
            user: "postgres",
            password: None,
            database: "app",
            application_name: "wal sender hog",
            replication: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("occupy the WAL sender: {e}"))
}

#[tokio::test]
async fn exhausted_wal_senders_are_named_and_the_stream_starts_once_one_is_free() {
    let cluster = LocalCluster::start(ClusterOptions {
        extra_settings: vec![("max_wal_senders".to_owned(), "1".to_owned())],
        ..pgcached_tests::cluster::options()
    })
    .expect("cluster");
    let admin = direct(&cluster).await;
    let hog = hold_wal_sender(&cluster).await;
    let proxy = proxy(&cluster, &["--replication", "required"]);
    let client = through(&proxy).await;
    let console = console::console(proxy.port()).await;
    let row = console::wait_for_state(
        &console,
        "app",
        "unavailable",
        Some("max_wal_senders"),
        LIMIT,
    )
    .await;
    assert!(
        row["detail"]
            .as_deref()
            .is_some_and(|d| d.contains("raise max_wal_senders")),
        "{row:?}"
    );
    assert!(
        row["cache"]
            .as_deref()
            .is_some_and(|c| c.contains("--replication required")),
        "{row:?}"
    );
    nothing_served_from_the_cache(&proxy, &client, &admin).await;
    drop(hog);
    console::wait_for_state(&console, "app", "streaming", None, Duration::from_secs(20)).await;
    let cache = proxy.cache.as_ref().expect("cache on");
    until_cached(&client, cache, READ, LIMIT).await;
    admin
        .batch_execute("UPDATE ext SET v = 'seen' WHERE k = 1")
        .await
        .expect("write");
    wait_for(&client, READ, "seen", Duration::from_secs(1)).await;
}

#[tokio::test]
async fn exhausted_replication_slots_are_named() {
    let cluster = LocalCluster::start(ClusterOptions {
        extra_settings: vec![("max_replication_slots".to_owned(), "1".to_owned())],
        ..pgcached_tests::cluster::options()
    })
    .expect("cluster");
    let admin = direct(&cluster).await;
    admin
        .batch_execute("SELECT pg_create_logical_replication_slot('hog', 'test_decoding')")
        .await
        .expect("occupy the slot");
    let proxy = proxy(&cluster, &["--replication", "required"]);
    let client = through(&proxy).await;
    let console = console::console(proxy.port()).await;
    let row = console::wait_for_state(
        &console,
        "app",
        "unavailable",
        Some("max_replication_slots"),
        LIMIT,
    )
    .await;
    assert!(
        row["detail"]
            .as_deref()
            .is_some_and(|d| d.contains("raise max_replication_slots")),
        "{row:?}"
    );
    nothing_served_from_the_cache(&proxy, &client, &admin).await;
    admin
        .batch_execute("SELECT pg_drop_replication_slot('hog')")
        .await
        .expect("free the slot");
    console::wait_for_state(&console, "app", "streaming", None, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_role_without_replication_is_named() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = direct(&cluster).await;
    admin
        .batch_execute(&format!("ALTER ROLE {PGCACHED_USER} NOREPLICATION"))
        .await
        .expect("take REPLICATION away");
    let required = proxy(&cluster, &["--replication", "required"]);
    let client = through(&required).await;
    let console = console::console(required.port()).await;
    let row = console::wait_for_state(
        &console,
        "app",
        "unavailable",
        Some("replication_role"),
        LIMIT,
    )
    .await;
    assert!(
        row["detail"]
            .as_deref()
            .is_some_and(|d| d.contains("ALTER ROLE") && d.contains("REPLICATION")),
        "{row:?}"
    );
    nothing_served_from_the_cache(&required, &client, &admin).await;
    let explained = console::explain(&console, "app", READ).await;
    assert_eq!(
        explained["reason"].as_deref(),
        Some("replication_down"),
        "{explained:?}"
    );

    // Without a user in --upstream there is no stream to try; the problem says so.
    let upstream = format!("postgres://127.0.0.1:{}?sslmode=disable", cluster.port());
    let mut flags = vec!["--cache", "on"];
    flags.extend(CONSOLE_FLAGS);
    let anonymous = TestProxy::with_config(config_with(&upstream, &flags, ""));
    let _client = through(&anonymous).await;
    let console = console::console(anonymous.port()).await;
    let row = console::wait_for_state(&console, "app", "unavailable", Some("no_user"), LIMIT).await;
    assert!(
        row["detail"]
            .as_deref()
            .is_some_and(|d| d.contains("--upstream") && d.contains("REPLICATION")),
        "{row:?}"
    );
}

//! The shared tier with real servers: three pgcacheds in front of one PostgreSQL share one
//! `redis-server`. A result filled through one is served by the others from Redis without
//! reaching PostgreSQL (simple and extended protocol); a restarted pgcached serves what the
//! others filled as soon as its stream runs; a Redis killed and started again costs no client
//! an error; `SHOW SHARED CACHE` tells the state.

use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::console::{console, rows, CONSOLE_FLAGS};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::redis::{available, RedisServer};
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

/// A pgcached sharing `redis`. Lookups and writes may take up to 2 s here (20 ms by default):
/// on a loaded test machine a slow Redis reply must not turn a shared hit into a miss, which
/// these tests would read as a wrong answer.
fn proxy(cluster: &LocalCluster, redis: &str) -> TestProxy {
    let mut flags = vec!["--shared-cache", redis, "--shared-cache-timeout", "2s"];
    flags.extend_from_slice(&CONSOLE_FLAGS);
    TestProxy::with_config(caching_config_for(cluster, &flags))
}

async fn client(proxy: &TestProxy) -> Client {
    connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("through pgcached")
}

async fn name_of(client: &Client, id: i32) -> String {
    let rows = client
        .simple_query(&format!("SELECT name FROM items WHERE id = {id}"))
        .await
        .expect("read");
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

fn shared_hits(proxy: &TestProxy) -> u64 {
    proxy.shared.as_ref().expect("shared tier").report().hits
}

fn hits(proxy: &TestProxy) -> u64 {
    proxy.cache.as_ref().expect("cache").hits()
}

/// Reads row 1 through `proxy` until it is a hit of its own memory: its stream runs, its
/// catalog digest is read and the statement's shape is classified.
async fn warm(proxy: &TestProxy, client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = hits(proxy);
        name_of(client, 1).await;
        if hits(proxy) > before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pgcached never served row 1 from memory"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `proxy` has written `count` entries to the shared tier.
async fn written(proxy: &TestProxy, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.shared.as_ref().expect("shared").report().written < count {
        assert!(
            Instant::now() < deadline,
            "entries were not written: {:?}",
            proxy.shared.as_ref().expect("shared").report()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn read(client: &Client, statement: &tokio_postgres::Statement, id: i32) -> String {
    client
        .query_one(statement, &[&id])
        .await
        .expect("read")
        .get::<_, String>(0)
}

async fn setup(cluster: &LocalCluster) {
    let admin = connect(&url(Endpoint::direct(cluster), "postgres", None, "app"))
        .await
        .expect("admin");
    admin
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
             GRANT ALL ON items TO PUBLIC;
             CREATE TABLE ticks (n int);",
        )
        .await
        .expect("setup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_filled_through_one_pgcached_are_served_by_the_others_and_after_a_restart() {
    if !available() {
        panic!("redis-server is not installed (scripts/test installs Debian's redis-server)");
    }
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    setup(&cluster).await;
    let redis = RedisServer::start();
    let a = proxy(&cluster, &redis.url());
    let mut b = proxy(&cluster, &redis.url());
    let c = proxy(&cluster, &redis.url());
    let (ca, cb, cc) = (client(&a).await, client(&b).await, client(&c).await);
    for (p, cl) in [(&a, &ca), (&b, &cb), (&c, &cc)] {
        warm(p, cl).await;
    }
    let base = a.shared.as_ref().expect("shared").report().written;

    // Simple protocol: filled through A, a hit through B and C from Redis.
    assert_eq!(name_of(&ca, 2).await, "item 2");
    written(&a, base + 1).await;
    for (p, cl) in [(&b, &cb), (&c, &cc)] {
        let (shared_before, hits_before) = (shared_hits(p), hits(p));
        assert_eq!(name_of(cl, 2).await, "item 2");
        assert_eq!(
            shared_hits(p),
            shared_before + 1,
            "served from the shared tier: {:?}",
            p.shared.as_ref().expect("shared").report()
        );
        assert_eq!(
            hits(p),
            hits_before + 1,
            "answered from memory, not PostgreSQL"
        );
    }

    // Extended protocol (a prepared statement).
    let statement = "SELECT name FROM items WHERE id = $1";
    let (pa, pb) = (
        ca.prepare(statement).await.expect("prepare"),
        cb.prepare(statement).await.expect("prepare"),
    );
    // Let each classify the statement (its first execution is relayed).
    for (p, cl, st) in [(&a, &ca, &pa), (&b, &cb, &pb)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let before = hits(p);
            read(cl, st, 1).await;
            if hits(p) > before {
                break;
            }
            assert!(Instant::now() < deadline, "prepared read never a hit");
        }
    }
    let base = a.shared.as_ref().expect("shared").report().written;
    assert_eq!(read(&ca, &pa, 3).await, "item 3");
    written(&a, base + 1).await;
    let shared_before = shared_hits(&b);
    assert_eq!(read(&cb, &pb, 3).await, "item 3");
    assert_eq!(
        shared_hits(&b),
        shared_before + 1,
        "prepared read from the shared tier"
    );

    // A write through A: B must not serve the old result (within its stream's delay).
    ca.batch_execute("UPDATE items SET name = 'renamed' WHERE id = 2")
        .await
        .expect("update");
    let deadline = Instant::now() + Duration::from_secs(2);
    while name_of(&cb, 2).await != "renamed" {
        assert!(Instant::now() < deadline, "B kept serving the old row 2");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A result stamped at or before the update's end would (rightly) be refused: the stream
    // may report a commit before it is visible, so such a stamp does not prove the result
    // reflects it. A later commit elsewhere moves the WAL on; let A's stream pass it first.
    let direct = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("direct");
    direct
        .batch_execute("INSERT INTO ticks VALUES (1)")
        .await
        .expect("a later commit");
    let lsn: String = direct
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);
    let lsn = pgcached_invalidation::Lsn::parse(&lsn).expect("an LSN").0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let standing = a
        .cache
        .as_ref()
        .expect("cache")
        .generations()
        .positions()
        .standing("app");
    while standing.applied() < lsn {
        assert!(Instant::now() < deadline, "A's stream did not pass {lsn:X}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Warm restart: B again, with an empty memory, serves what A filled from Redis.
    b.shutdown();
    drop(cb);
    let base = a.shared.as_ref().expect("shared").report().written;
    assert_eq!(name_of(&ca, 4).await, "item 4");
    written(&a, base + 1).await;
    let restarted = Instant::now();
    b = proxy(&cluster, &redis.url());
    let cb = client(&b).await;
    // Its first read of the shape is judged by the catalog (relayed); wait for its floor.
    name_of(&cb, 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = b.shared.as_ref().expect("shared").report();
        if report
            .databases
            .iter()
            .any(|(db, live, _, _, floor)| db == "app" && *live && *floor == "loaded")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted pgcached's floor never loaded: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = hits(&b);
        name_of(&cb, 5).await;
        if hits(&b) > before {
            break;
        }
        assert!(Instant::now() < deadline, "shape never classified");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shared_before = shared_hits(&b);
    assert_eq!(name_of(&cb, 4).await, "item 4");
    assert_eq!(
        shared_hits(&b),
        shared_before + 1,
        "the restarted pgcached served A's result from Redis: {:?}",
        b.shared.as_ref().expect("shared").report()
    );
    println!(
        "shared cache: restarted pgcached served a shared hit {:?} after it started",
        restarted.elapsed()
    );
    // Row 2 changed before B restarted: the shared entry filled before the change is not
    // served, whatever B refills.
    assert_eq!(name_of(&cb, 2).await, "renamed");

    let console = console(c.port()).await;
    let shown = rows(&console, "SHOW SHARED CACHE").await;
    let value = |name: &str| {
        shown
            .iter()
            .find(|r| r.get("name").cloned().flatten().as_deref() == Some(name))
            .and_then(|r| r.get("value").cloned().flatten())
    };
    assert_eq!(value("state").as_deref(), Some("up"));
    assert!(value("hits").is_some_and(|h| h.parse::<u64>().unwrap_or(0) >= 1));
    assert!(value("url").is_some_and(|u| u.starts_with("redis://127.0.0.1:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_killed_mid_run_costs_no_client_errors() {
    if !available() {
        panic!("redis-server is not installed (scripts/test installs Debian's redis-server)");
    }
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    setup(&cluster).await;
    let mut redis = RedisServer::start();
    let proxies = [proxy(&cluster, &redis.url()), proxy(&cluster, &redis.url())];
    let mut clients = Vec::new();
    for p in &proxies {
        let cl = client(p).await;
        warm(p, &cl).await;
        clients.push(cl);
    }
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for (n, cl) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut reads = 0u64;
            let mut id = n as i32;
            while Instant::now() < deadline {
                id = id % 100 + 1;
                // A new key each time (the shape is the same): every read is a miss of
                // memory, looked up in the tier.
                let rows = cl
                    .simple_query(&format!(
                        "SELECT name, {reads} AS round FROM items WHERE id = {id}"
                    ))
                    .await
                    .expect("no client error while Redis is away");
                assert!(rows.len() >= 2, "a row and its command tag");
                reads += 1;
            }
            reads
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    redis.restart();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("reader");
    }
    assert!(total > 100, "{total} reads");
    for p in &proxies {
        let report = p.shared.as_ref().expect("shared").report();
        assert!(
            report.health.outages >= 1,
            "the outage was noticed: {report:?}"
        );
    }
    // Back: the tier is used again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxies
        .iter()
        .any(|p| p.shared.as_ref().expect("shared").report().health.state != "up")
    {
        assert!(Instant::now() < deadline, "the tier did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("shared cache: {total} reads while Redis was killed and restarted, none failed");
}

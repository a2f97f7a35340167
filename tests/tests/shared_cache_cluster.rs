//! The shared tier on a Redis cluster: three `redis-server` nodes joined with
//! `redis-cli --cluster create` on loopback, two pgcacheds with `--shared-cache
//! redis+cluster://…`. A result filled through one is served by the other from the cluster,
//! and the record of change positions (a Lua script on one slot) is written there. A node
//! killed mid-run (its slots then have no server) costs no client errors: reads of those
//! slots go to PostgreSQL.

use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::redis::{available, RedisCluster};
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

async fn name_of(client: &Client, id: i32) -> String {
    client
        .simple_query(&format!("SELECT name FROM items WHERE id = {id}"))
        .await
        .expect("read")
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_shares_results_between_pgcacheds() {
    if !available() {
        panic!("redis-server is not installed (scripts/test installs Debian's redis-server)");
    }
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("admin")
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
             GRANT ALL ON items TO PUBLIC;",
        )
        .await
        .expect("setup");
    let mut redis = RedisCluster::start();
    let proxies: Vec<TestProxy> = (0..2)
        .map(|_| {
            TestProxy::with_config(caching_config_for(
                &cluster,
                &["--shared-cache", &redis.url()],
            ))
        })
        .collect();
    let mut clients = Vec::new();
    for p in &proxies {
        let client = connect(&url(Endpoint::proxy(p.port()), "postgres", None, "app"))
            .await
            .expect("through pgcached");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let before = p.cache.as_ref().expect("cache").hits();
            name_of(&client, 1).await;
            let up = p.shared.as_ref().expect("shared").report().health.state == "up";
            if up && p.cache.as_ref().expect("cache").hits() > before {
                break;
            }
            assert!(Instant::now() < deadline, "pgcached never warmed up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clients.push(client);
    }
    let (a, b) = (&proxies[0], &proxies[1]);
    let written = a.shared.as_ref().expect("shared").report().written;
    for id in 2..12 {
        assert_eq!(name_of(&clients[0], id).await, format!("item {id}"));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.shared.as_ref().expect("shared").report().written < written + 10 {
        assert!(Instant::now() < deadline, "not written to the cluster");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = b.shared.as_ref().expect("shared").report().hits;
    for id in 2..12 {
        assert_eq!(name_of(&clients[1], id).await, format!("item {id}"));
    }
    let report = b.shared.as_ref().expect("shared").report();
    assert_eq!(
        report.hits,
        before + 10,
        "ten results from the cluster: {report:?}"
    );
    let holding = redis.nodes.iter().filter(|n| keys_on(n.port) > 0).count();
    assert!(
        holding >= 2,
        "entries on {holding} of 3 nodes: not spread over the slots"
    );
    // The record of positions is written on the cluster too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b
        .shared
        .as_ref()
        .expect("shared")
        .report()
        .databases
        .iter()
        .any(|(db, _, _, recorded, _)| db == "app" && *recorded > 0)
    {
        assert!(
            Instant::now() < deadline,
            "no position recorded on the cluster"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One node killed mid-run: its slots have no server; every read still succeeds.
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for (n, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut reads = 0u64;
            let mut id = n as i32;
            while Instant::now() < deadline {
                id = id % 50 + 1;
                let rows = client
                    .simple_query(&format!(
                        "SELECT name, {reads} AS round FROM items WHERE id = {id}"
                    ))
                    .await
                    .expect("no client error while a node is away");
                let name = rows.iter().find_map(|m| match m {
                    SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                });
                assert_eq!(name, Some(format!("item {id}")));
                reads += 1;
            }
            reads
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    redis.nodes[1].kill();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("reader");
    }
    assert!(total > 50, "{total} reads");
    let errors: u64 = proxies
        .iter()
        .map(|p| p.shared.as_ref().expect("shared").report().errors)
        .sum();
    assert!(
        errors > 0,
        "the killed node was never asked: the test proves nothing"
    );
    println!("redis cluster: {total} reads with a node killed mid-run, none failed; {errors} calls to the tier failed");
}

/// How many keys the node on `port` holds.
fn keys_on(port: u16) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "dbsize"])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

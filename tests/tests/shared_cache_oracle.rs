//! A randomized oracle for the shared tier: three pgcacheds share one `redis-server`; writers
//! change a few hot rows through every pgcached and straight to PostgreSQL, readers read them
//! through every pgcached. Every committed value of a row is larger than the one before, so:
//!
//! - read your writes: a read through the pgcached a write went through, begun after its
//!   acknowledgement, never returns an older value;
//! - every other write shows through every pgcached within 1 s (each one's own stream delay,
//!   far below that), and the delay from a write through one pgcached to its visibility
//!   through another is measured and printed (p50, p99);
//! - a rolled-back write never shows.
//!
//! The run is bounded in time; it also checks that the shared tier served reads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::random::Random;
use pgcached_tests::redis::{available, RedisServer};
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

const KEYS: i32 = 4;
const RUN_FOR: Duration = Duration::from_secs(10);
const ROLLED_BACK: i64 = 1_000_000;
/// No proxy, the direct writer.
const DIRECT: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Write {
    key: i32,
    value: i64,
    acked: Instant,
    via: usize,
}

#[derive(Clone, Copy)]
struct Read {
    key: i32,
    value: i64,
    began: Instant,
    via: usize,
}

#[derive(Default)]
struct Log {
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<Read>>,
}

async fn update(client: &Client, key: i32, delta: i64) -> i64 {
    client
        .query_one(
            "UPDATE oracle SET v = v + $2 WHERE k = $1 RETURNING v",
            &[&key, &delta],
        )
        .await
        .expect("update")
        .get(0)
}

async fn writer(client: Client, log: Arc<Log>, via: usize, seed: u64, deadline: Instant) {
    let mut random = Random::new(seed);
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        match random.below(3) {
            0 if via != DIRECT => {
                client.batch_execute("BEGIN").await.expect("begin");
                update(&client, key, ROLLED_BACK).await;
                client.batch_execute("ROLLBACK").await.expect("rollback");
            }
            1 if via != DIRECT => {
                client.batch_execute("BEGIN").await.expect("begin");
                let value = update(&client, key, 1).await;
                client.batch_execute("COMMIT").await.expect("commit");
                log.writes.lock().expect("log").push(Write {
                    key,
                    value,
                    acked: Instant::now(),
                    via,
                });
            }
            _ => {
                let value = update(&client, key, 1).await;
                log.writes.lock().expect("log").push(Write {
                    key,
                    value,
                    acked: Instant::now(),
                    via,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(20 + random.below(40))).await;
    }
}

async fn reader(client: Client, log: Arc<Log>, via: usize, seed: u64, deadline: Instant) {
    let mut random = Random::new(seed);
    let prepared = client
        .prepare("SELECT v FROM oracle WHERE k = $1")
        .await
        .expect("prepare");
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        let began = Instant::now();
        let value: i64 = if random.below(2) == 0 {
            client
                .query_one(&prepared, &[&key])
                .await
                .expect("read")
                .get(0)
        } else {
            client
                .simple_query(&format!("SELECT v FROM oracle WHERE k = {key}"))
                .await
                .expect("read")
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get(0).and_then(|v| v.parse().ok())
                    }
                    _ => None,
                })
                .expect("a row")
        };
        log.reads.lock().expect("log").push(Read {
            key,
            value,
            began,
            via,
        });
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pgcacheds_sharing_redis_serve_no_stale_row() {
    if !available() {
        panic!("redis-server is not installed (scripts/test installs Debian's redis-server)");
    }
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let direct_url = url(Endpoint::direct(&cluster), "postgres", None, "app");
    connect(&direct_url)
        .await
        .expect("admin")
        .batch_execute(&format!(
            "CREATE TABLE oracle (k int PRIMARY KEY, v bigint NOT NULL);
             INSERT INTO oracle SELECT g, 0 FROM generate_series(1, {KEYS}) g;
             GRANT ALL ON oracle TO PUBLIC;"
        ))
        .await
        .expect("setup");
    let redis = RedisServer::start();
    let proxies: Vec<TestProxy> = (0..3)
        .map(|_| {
            TestProxy::with_config(caching_config_for(
                &cluster,
                &["--shared-cache", &redis.url()],
            ))
        })
        .collect();
    let urls: Vec<String> = proxies
        .iter()
        .map(|p| url(Endpoint::proxy(p.port()), "postgres", None, "app"))
        .collect();
    let through = |n: usize| connect(&urls[n]);
    for n in 0..3 {
        let warm = through(n).await.expect("warm");
        for _ in 0..5 {
            warm.simple_query("SELECT v FROM oracle WHERE k = 1")
                .await
                .expect("warm");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let log = Arc::new(Log::default());
    let deadline = Instant::now() + RUN_FOR;
    let mut tasks = Vec::new();
    for n in 0..3 {
        let client = through(n).await.expect("writer");
        tasks.push(tokio::spawn(writer(
            client,
            Arc::clone(&log),
            n,
            7 + n as u64,
            deadline,
        )));
        for seed in [1u64, 2] {
            let client = through(n).await.expect("reader");
            tasks.push(tokio::spawn(reader(
                client,
                Arc::clone(&log),
                n,
                seed * 31 + n as u64,
                deadline,
            )));
        }
    }
    let client = connect(&direct_url).await.expect("external");
    tasks.push(tokio::spawn(writer(
        client,
        Arc::clone(&log),
        DIRECT,
        99,
        deadline,
    )));
    for task in tasks {
        task.await.expect("task");
    }

    let writes = log.writes.lock().expect("log").clone();
    let reads = log.reads.lock().expect("log").clone();
    assert!(
        writes.len() > 100 && reads.len() > 1000,
        "{} writes, {} reads",
        writes.len(),
        reads.len()
    );
    for read in &reads {
        assert!(read.value < ROLLED_BACK, "a rolled-back write was read");
    }
    let mut across = Vec::new();
    let mut external = Vec::new();
    let mut stale_beyond_bound = 0;
    for write in &writes {
        for via in 0..3 {
            let later = reads
                .iter()
                .filter(|r| r.key == write.key && r.via == via && r.began > write.acked);
            let mut seen = None;
            for read in later {
                if read.value >= write.value {
                    seen.get_or_insert(read.began.duration_since(write.acked));
                } else if via == write.via {
                    panic!(
                        "read your writes violated through pgcached {via}: row {} read {} after \
                         {} was acknowledged",
                        write.key, read.value, write.value
                    );
                } else if read.began > write.acked + Duration::from_secs(1) {
                    stale_beyond_bound += 1;
                }
            }
            if let Some(delay) = seen {
                if via != write.via {
                    if write.via == DIRECT {
                        external.push(delay);
                    } else {
                        across.push(delay);
                    }
                }
            }
        }
    }
    assert_eq!(stale_beyond_bound, 0, "reads older than 1 s after a commit");
    across.sort();
    external.sort();
    assert!(!across.is_empty() && !external.is_empty());
    let shared_hits: u64 = proxies
        .iter()
        .map(|p| p.shared.as_ref().expect("shared").report().hits)
        .sum();
    let hits: u64 = proxies
        .iter()
        .map(|p| p.cache.as_ref().expect("cache").hits())
        .sum();
    println!(
        "shared oracle: {} writes, {} reads, {hits} memory hits of which {shared_hits} came from \
         Redis; write through one pgcached -> visible through another: p50 {:?}, p99 {:?} \
         (n = {}); straight to PostgreSQL -> visible: p50 {:?}, p99 {:?} (n = {})",
        writes.len(),
        reads.len(),
        percentile(&across, 50),
        percentile(&across, 99),
        across.len(),
        percentile(&external, 50),
        percentile(&external, 99),
        external.len()
    );
    assert!(shared_hits > 0, "the shared tier served nothing");
    assert!(
        hits > reads.len() as u64 / 20,
        "{hits} hits of {} reads",
        reads.len()
    );
}

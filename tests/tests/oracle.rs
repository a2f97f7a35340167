//! A randomized, concurrent oracle for the cache's correctness invariants.
//!
//! Writers change a few hot rows through pgcached (autocommit, explicit transactions that commit
//! or roll back, pipelined batches) and straight to PostgreSQL; readers read them through
//! pgcached (simple and extended protocol). Every committed value of a row is larger than the
//! one before, so the checks are simple:
//!
//! - read your writes: a read that began after a write through pgcached was acknowledged never
//!   returns an older value of that row;
//! - a rolled-back write (it adds 1,000,000) never shows;
//! - a write made straight to PostgreSQL is visible through pgcached within 1 s.
//!
//! It runs for a bounded time and prints the measured delay for external writes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

const KEYS: i32 = 4;
const RUN_FOR: Duration = Duration::from_secs(12);
const ROLLED_BACK: i64 = 1_000_000;

/// A committed write: row, value, when its acknowledgement was received, and whether it went
/// through pgcached.
#[derive(Clone, Copy)]
struct Write {
    key: i32,
    value: i64,
    acked: Instant,
    proxied: bool,
}

/// A read through pgcached: row, value, when it began.
#[derive(Clone, Copy)]
struct Read {
    key: i32,
    value: i64,
    began: Instant,
}

struct Log {
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<Read>>,
}

/// A small deterministic generator (xorshift), seeded per task.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
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

async fn proxied_writer(client: Client, log: Arc<Log>, seed: u64, deadline: Instant) {
    let mut random = Random(seed);
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        match random.below(4) {
            0 => {
                let value = update(&client, key, 1).await;
                log.writes.lock().expect("log").push(Write {
                    key,
                    value,
                    acked: Instant::now(),
                    proxied: true,
                });
            }
            1 => {
                client.batch_execute("BEGIN").await.expect("begin");
                let value = update(&client, key, 1).await;
                client.batch_execute("COMMIT").await.expect("commit");
                log.writes.lock().expect("log").push(Write {
                    key,
                    value,
                    acked: Instant::now(),
                    proxied: true,
                });
            }
            2 => {
                client.batch_execute("BEGIN").await.expect("begin");
                update(&client, key, ROLLED_BACK).await;
                client.batch_execute("ROLLBACK").await.expect("rollback");
            }
            _ => {
                // Two updates pipelined on one connection (one batch each, sent together).
                let other = key % KEYS + 1;
                let (a, b) = tokio::join!(update(&client, key, 1), update(&client, other, 1));
                let acked = Instant::now();
                let mut writes = log.writes.lock().expect("log");
                writes.push(Write {
                    key,
                    value: a,
                    acked,
                    proxied: true,
                });
                writes.push(Write {
                    key: other,
                    value: b,
                    acked,
                    proxied: true,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(random.below(15))).await;
    }
}

async fn external_writer(client: Client, log: Arc<Log>, deadline: Instant) {
    let mut random = Random(99);
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        let value = update(&client, key, 1).await;
        log.writes.lock().expect("log").push(Write {
            key,
            value,
            acked: Instant::now(),
            proxied: false,
        });
        tokio::time::sleep(Duration::from_millis(20 + random.below(30))).await;
    }
}

async fn reader(client: Client, log: Arc<Log>, seed: u64, deadline: Instant) {
    let mut random = Random(seed);
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
            let rows = client
                .simple_query(&format!("SELECT v FROM oracle WHERE k = {key}"))
                .await
                .expect("read");
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get(0).and_then(|v| v.parse().ok())
                    }
                    _ => None,
                })
                .expect("a row")
        };
        log.reads
            .lock()
            .expect("log")
            .push(Read { key, value, began });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_and_writes_keep_the_invariants() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("admin");
    admin
        .batch_execute(&format!(
            "CREATE TABLE oracle (k int PRIMARY KEY, v bigint NOT NULL);
             INSERT INTO oracle SELECT g, 0 FROM generate_series(1, {KEYS}) g;
             GRANT ALL ON oracle TO PUBLIC;"
        ))
        .await
        .expect("setup");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let through = || connect_proxy(proxy.port());
    // Let the replication stream start before the run.
    let warm = through().await;
    for _ in 0..5 {
        warm.simple_query("SELECT v FROM oracle WHERE k = 1")
            .await
            .expect("warm");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let log = Arc::new(Log {
        writes: Mutex::new(Vec::new()),
        reads: Mutex::new(Vec::new()),
    });
    let deadline = Instant::now() + RUN_FOR;
    let mut tasks = Vec::new();
    for seed in [1u64, 2] {
        tasks.push(tokio::spawn(proxied_writer(
            through().await,
            Arc::clone(&log),
            seed,
            deadline,
        )));
    }
    tasks.push(tokio::spawn(external_writer(
        connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
            .await
            .expect("external"),
        Arc::clone(&log),
        deadline,
    )));
    for seed in [11u64, 12, 13] {
        tasks.push(tokio::spawn(reader(
            through().await,
            Arc::clone(&log),
            seed,
            deadline,
        )));
    }
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
    let mut external_delays = Vec::new();
    for read in &reads {
        assert!(
            read.value < ROLLED_BACK,
            "a rolled-back write was read: {}",
            read.value
        );
    }
    for write in &writes {
        let later = reads
            .iter()
            .filter(|r| r.key == write.key && r.began > write.acked);
        if write.proxied {
            for read in later {
                assert!(
                    read.value >= write.value,
                    "read your writes violated: row {} read {} after a write of {} was acknowledged",
                    write.key,
                    read.value,
                    write.value
                );
            }
        } else {
            let limit = write.acked + Duration::from_secs(1);
            let mut seen = None;
            for read in later {
                if read.value >= write.value {
                    seen.get_or_insert(read.began.duration_since(write.acked));
                } else {
                    assert!(
                        read.began < limit,
                        "external write of {} to row {} not visible after 1 s",
                        write.value,
                        write.key
                    );
                }
            }
            if let Some(delay) = seen {
                external_delays.push(delay);
            }
        }
    }
    external_delays.sort();
    if !external_delays.is_empty() {
        println!(
            "oracle: {} writes, {} reads; external write visible after p50 {:?}, p99 {:?} (n = {})",
            writes.len(),
            reads.len(),
            external_delays[external_delays.len() / 2],
            external_delays[external_delays.len() * 99 / 100],
            external_delays.len()
        );
    }
    // The oracle means something only if reads were answered from the cache.
    let cache = proxy.cache.as_ref().expect("cache on");
    assert!(
        cache.hits() > reads.len() as u64 / 20,
        "only {} of {} reads were cache hits",
        cache.hits(),
        reads.len()
    );
    println!(
        "oracle: {} of {} reads were cache hits",
        cache.hits(),
        reads.len()
    );
}

async fn connect_proxy(port: u16) -> Client {
    connect(&url(Endpoint::proxy(port), "postgres", None, "app"))
        .await
        .expect("through pgcached")
}

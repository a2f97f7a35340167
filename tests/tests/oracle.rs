//! A randomized, concurrent oracle for the cache's correctness invariants.
//!
//! Writers change a few hot rows through pgcached (autocommit, explicit transactions that commit
//! or roll back, pipelined batches) and straight to PostgreSQL; readers read them through
//! pgcached (simple and extended protocol, and extended with a row limit of one as asyncpg's
//! `fetchrow` sends it). Every committed value of a row is larger than the
//! one before, so the checks are simple:
//!
//! - read your writes: a read that began after a write through pgcached was acknowledged never
//!   returns an older value of that row;
//! - a rolled-back write (it adds 1,000,000) never shows;
//! - a write made straight to PostgreSQL is visible through pgcached within 1 s;
//! - inside transaction blocks through pgcached (READ COMMITTED and REPEATABLE READ, reads
//!   before and after a write of their own, committed or rolled back): a block reads its own
//!   write exactly; in READ COMMITTED each read obeys the rules above; in REPEATABLE READ every
//!   read of a row returns the same value, and never one whose write was sent after the
//!   block's first read had returned (too new for its snapshot).
//!
//! It runs for a bounded time and prints the measured delay for external writes. A second run
//! adds a streaming standby as `--replica`, so misses are answered by a server that replays
//! behind the primary, under the same checks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::console::{console, rows, CONSOLE_FLAGS};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::random::Random;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const KEYS: i32 = 4;
const RUN_FOR: Duration = Duration::from_secs(12);
const ROLLED_BACK: i64 = 1_000_000;

/// A committed write: row, value, when it was sent and when its acknowledgement (of the
/// COMMIT, in a block) was received, and whether it went through pgcached.
#[derive(Clone, Copy)]
struct Write {
    key: i32,
    value: i64,
    sent: Instant,
    acked: Instant,
    proxied: bool,
}

/// One REPEATABLE READ block's reads of rows it did not write: (row, value), and when its
/// first read had returned (its snapshot was taken by then).
struct SnapshotReads {
    reads: Vec<(i32, i64)>,
    snapshot_by: Instant,
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
    snapshots: Mutex<Vec<SnapshotReads>>,
    block_reads: std::sync::atomic::AtomicUsize,
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
    let mut random = Random::new(seed);
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        let sent = Instant::now();
        match random.below(4) {
            0 => {
                let value = update(&client, key, 1).await;
                log.writes.lock().expect("log").push(Write {
                    key,
                    value,
                    sent,
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
                    sent,
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
                    sent,
                    acked,
                    proxied: true,
                });
                writes.push(Write {
                    key: other,
                    value: b,
                    sent,
                    acked,
                    proxied: true,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(random.below(15))).await;
    }
}

async fn external_writer(client: Client, log: Arc<Log>, deadline: Instant) {
    let mut random = Random::new(99);
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        let sent = Instant::now();
        let value = update(&client, key, 1).await;
        log.writes.lock().expect("log").push(Write {
            key,
            value,
            sent,
            acked: Instant::now(),
            proxied: false,
        });
        tokio::time::sleep(Duration::from_millis(20 + random.below(30))).await;
    }
}

/// A row's value through `client`, by the simple protocol (`simple`) or a prepared statement.
async fn read_value(
    client: &Client,
    prepared: &tokio_postgres::Statement,
    key: i32,
    simple: bool,
) -> i64 {
    if simple {
        let rows = client
            .simple_query(&format!("SELECT v FROM oracle WHERE k = {key}"))
            .await
            .expect("read");
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
                _ => None,
            })
            .expect("a row")
    } else {
        client
            .query_one(prepared, &[&key])
            .await
            .expect("read")
            .get(0)
    }
}

/// Transaction blocks through pgcached: reads, maybe a write of one row (then reads of it and
/// of others), COMMIT or ROLLBACK; READ COMMITTED or REPEATABLE READ.
async fn block_worker(client: Client, log: Arc<Log>, seed: u64, deadline: Instant) {
    let mut random = Random::new(seed);
    let prepared = client
        .prepare("SELECT v FROM oracle WHERE k = $1")
        .await
        .expect("prepare");
    while Instant::now() < deadline {
        let repeatable = random.below(2) == 0;
        client
            .batch_execute(if repeatable {
                "BEGIN ISOLATION LEVEL REPEATABLE READ"
            } else {
                "BEGIN"
            })
            .await
            .expect("begin");
        let mut snapshot = SnapshotReads {
            reads: Vec::new(),
            snapshot_by: Instant::now(),
        };
        let mut seen: Vec<(i32, i64)> = Vec::new();
        let mut rc_reads = Vec::new();
        let mut own: Option<(i32, i64, Instant)> = None;
        let mut aborted = false;
        let steps = 2 + random.below(5);
        for step in 0..steps {
            let key = random.below(KEYS as u64) as i32 + 1;
            if own.is_none() && step > 0 && random.below(3) == 0 {
                let sent = Instant::now();
                match client
                    .query_one(
                        "UPDATE oracle SET v = v + 1 WHERE k = $1 RETURNING v",
                        &[&key],
                    )
                    .await
                {
                    Ok(row) => own = Some((key, row.get(0), sent)),
                    Err(e)
                        if repeatable && e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) =>
                    {
                        // Another writer changed the row after this block's snapshot.
                        aborted = true;
                        break;
                    }
                    Err(e) => panic!("update in a block: {e}"),
                }
                continue;
            }
            let began = Instant::now();
            let value = read_value(&client, &prepared, key, random.below(2) == 0).await;
            log.block_reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if step == 0 {
                snapshot.snapshot_by = Instant::now();
            }
            match own {
                Some((written, expected, _)) if written == key => {
                    assert_eq!(
                        value, expected,
                        "a block did not read its own write of row {key}"
                    );
                    continue;
                }
                _ => {}
            }
            if repeatable {
                if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                    assert_eq!(
                        *first, value,
                        "REPEATABLE READ saw row {key} change within its block"
                    );
                }
                seen.push((key, value));
                snapshot.reads.push((key, value));
            } else {
                rc_reads.push(Read { key, value, began });
            }
        }
        let commit = !aborted && random.below(3) != 0;
        client
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .await
            .expect("end");
        let acked = Instant::now();
        log.reads.lock().expect("log").extend(rc_reads);
        if repeatable {
            log.snapshots.lock().expect("log").push(snapshot);
        }
        if let (true, Some((key, value, sent))) = (commit, own) {
            log.writes.lock().expect("log").push(Write {
                key,
                value,
                sent,
                acked,
                proxied: true,
            });
        }
        tokio::time::sleep(Duration::from_millis(random.below(10))).await;
    }
}

/// Reads through pgcached as asyncpg's `fetchrow` does: Parse, Bind, Execute with a row limit
/// of one, Sync, on a raw connection (blocking: run it on a thread of its own).
fn limited_reader(port: u16, log: Arc<Log>, seed: u64, deadline: Instant) {
    use pgcached_tests::raw::{frame, read_until_ready};
    use std::io::Write as _;
    let (mut stream, _) = pgcached_tests::raw::login_to(port, "postgres", "app");
    let mut random = Random::new(seed);
    let sql = b"SELECT v FROM oracle WHERE k = $1\0";
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        let text = key.to_string();
        let mut parse = vec![0];
        parse.extend_from_slice(sql);
        parse.extend_from_slice(&[0, 1, 0, 0, 0, 23]);
        let mut bind = vec![0, 0, 0, 0, 0, 1];
        bind.extend_from_slice(&(text.len() as i32).to_be_bytes());
        bind.extend_from_slice(text.as_bytes());
        bind.extend_from_slice(&[0, 0]);
        let mut request = frame(b'P', &parse);
        request.extend(frame(b'B', &bind));
        request.extend(frame(b'E', &[0, 0, 0, 0, 1]));
        request.extend(frame(b'S', b""));
        let began = Instant::now();
        stream.write_all(&request).expect("limited read");
        let answer = read_until_ready(&mut stream);
        let row = answer
            .iter()
            .find(|m| m.tag == b'D')
            .unwrap_or_else(|| panic!("no row: {answer:?}"));
        assert!(
            answer.iter().any(|m| m.tag == b's'),
            "one row of a limit of one ends with PortalSuspended: {answer:?}"
        );
        let value = String::from_utf8_lossy(row.body.get(6..).unwrap_or_default())
            .parse()
            .expect("a number");
        log.reads
            .lock()
            .expect("log")
            .push(Read { key, value, began });
    }
}

async fn reader(client: Client, log: Arc<Log>, seed: u64, deadline: Instant) {
    let mut random = Random::new(seed);
    let prepared = client
        .prepare("SELECT v FROM oracle WHERE k = $1")
        .await
        .expect("prepare");
    while Instant::now() < deadline {
        let key = random.below(KEYS as u64) as i32 + 1;
        let began = Instant::now();
        let value = read_value(&client, &prepared, key, random.below(2) != 0).await;
        log.reads
            .lock()
            .expect("log")
            .push(Read { key, value, began });
    }
}

/// A cluster with the oracle's table.
async fn oracle_cluster() -> LocalCluster {
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
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_and_writes_keep_the_invariants() {
    let cluster = oracle_cluster().await;
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    run(&cluster, &proxy).await;
}

/// The same with a streaming standby as `--replica`: misses it answers must keep every
/// invariant too (read your writes above all, while it replays behind the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_answered_by_a_replica_keep_the_invariants() {
    let cluster = oracle_cluster().await;
    let standby = LocalCluster::start_standby(&cluster).expect("standby");
    // Replay behind the primary, as across a network: what a miss must see is often not
    // replayed yet.
    standby
        .psql(
            "postgres",
            "ALTER SYSTEM SET recovery_min_apply_delay = '5ms'; SELECT pg_reload_conf();",
        )
        .expect("apply delay");
    let replica = format!(
        "postgres://{}:{}?sslmode=disable",
        standby.host(),
        standby.port()
    );
    let mut flags = vec!["--replica", replica.as_str()];
    flags.extend_from_slice(&CONSOLE_FLAGS);
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &flags));
    run(&cluster, &proxy).await;
    let console = console(proxy.port()).await;
    let row = rows(&console, "SHOW REPLICAS")
        .await
        .into_iter()
        .next()
        .expect("one replica");
    let filled: u64 = row["filled"]
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("filled");
    println!("oracle: the replica filled {filled} misses: {row:?}");
    assert!(
        filled > 20,
        "the oracle means something here only if the replica answered misses: {row:?}"
    );
}

/// Runs the oracle's workers through `proxy` (in front of `cluster`) and checks the log.
async fn run(cluster: &LocalCluster, proxy: &TestProxy) {
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
        snapshots: Mutex::new(Vec::new()),
        block_reads: std::sync::atomic::AtomicUsize::new(0),
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
        connect(&url(Endpoint::direct(cluster), "postgres", None, "app"))
            .await
            .expect("external"),
        Arc::clone(&log),
        deadline,
    )));
    for seed in [21u64, 22] {
        tasks.push(tokio::spawn(block_worker(
            through().await,
            Arc::clone(&log),
            seed,
            deadline,
        )));
    }
    for seed in [11u64, 12, 13] {
        tasks.push(tokio::spawn(reader(
            through().await,
            Arc::clone(&log),
            seed,
            deadline,
        )));
    }
    let limited = {
        let (log, port) = (Arc::clone(&log), proxy.port());
        tokio::task::spawn_blocking(move || limited_reader(port, log, 31, deadline))
    };
    for task in tasks {
        task.await.expect("task");
    }
    limited.await.expect("limited reader");

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
    // Snapshots: no read of a REPEATABLE READ block shows a write sent after its snapshot.
    let snapshots = log.snapshots.lock().expect("log");
    for block in snapshots.iter() {
        for (key, value) in &block.reads {
            if let Some(write) = writes.iter().find(|w| w.key == *key && w.value == *value) {
                assert!(
                    write.sent < block.snapshot_by,
                    "REPEATABLE READ read {value} of row {key}, written after its snapshot"
                );
            }
        }
    }
    let block_reads = log.block_reads.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        snapshots.len() > 20 && block_reads > 200,
        "{} REPEATABLE READ blocks, {block_reads} reads in blocks",
        snapshots.len()
    );
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
        "oracle: {} of {} reads were cache hits; {block_reads} reads in blocks, {} REPEATABLE READ blocks",
        cache.hits(),
        reads.len(),
        snapshots.len()
    );
}

async fn connect_proxy(port: u16) -> Client {
    connect(&url(Endpoint::proxy(port), "postgres", None, "app"))
        .await
        .expect("through pgcached")
}

//! A randomized, concurrent oracle for row-level invalidation.
//!
//! Five groups of tables, each exercising a different way rows are pinned or invalidated:
//! `people` (primary key, a unique non-key `email`, a non-unique `team`) with `pets`, whose owner
//! references a person `ON DELETE CASCADE ON UPDATE CASCADE`; `pairs` (a composite key); `loose`
//! (no primary key, so no replica identity); `wide` (`REPLICA IDENTITY FULL`, read by a non-key
//! `tag`); `events`, whose trigger writes `totals`, which reads read.
//!
//! Writers go through pgcached and straight to PostgreSQL: updates, inserts, deletes, key
//! changes (`UPDATE ... SET id = ...`), changes of pinned non-key columns, cascades, in
//! autocommit (simple protocol with literals and prepared statements), explicit transactions that
//! commit or roll back, savepoints, `COMMIT AND CHAIN`, pipelined batches (several
//! statements in flight on one connection), and several writes in one request (a multi-statement
//! Query, or extended-protocol executions before one Sync), which commit together or, when the
//! request ends with a failing statement, not at all. Every write gives the rows it touches a new version
//! from one sequence, so any two committed states of a row differ. Writes to one group are
//! serialized by a lock held until the new state has been read back straight from PostgreSQL,
//! which gives each group an exact history of committed states ([`pgcached_tests::history`]).
//!
//! Readers read through pgcached, in the simple protocol with inlined literals and with prepared
//! statements, sometimes pipelined: by primary key, by the unique email, by team, by the
//! composite key (also with `IN (...)` on one of its columns), with `IN (...)`, by a join on the pinned column, by a non-key column of a table
//! without a key and of one with identity FULL, and unpinned (a range, a count). Each writer also
//! reads, through pgcached, what its statements name just before they commit (so that the old
//! answers are cached) and what they changed just after the acknowledgement.
//!
//! The check ([`pgcached_tests::history::check`]): a read that began after a proxied write's
//! acknowledgement never returns an answer that write replaced; rolled-back writes never show;
//! a write made straight to PostgreSQL shows within [`BOUND`]. After each external write, its
//! writer waits through pgcached for one of the reads it changed; those delays are printed
//! (p50/p99).
//!
//! Two runs: one with the replication stream and external writes, one with `--replication off`,
//! where only the invalidation at each acknowledgement keeps reads fresh (with a stream, its
//! bump a few milliseconds later would hide a write the acknowledgement failed to invalidate).
//! Each is bounded ([`Setup::run_for`]); the seed is printed and can be set with
//! `PGCACHED_ORACLE_SEED` to repeat a run's choices (the interleaving still varies).

mod batch;
mod model;
mod reads;
mod writer;
mod writes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::external::{percentiles, until_cached};
use pgcached_tests::history::{check, Observation, Source, State, Step};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::Client;

use model::{read_back, Group, SCHEMA};
use pgcached_tests::random::{seed, Random};
use reads::{answer, reader, Query};
use writer::{Conn, Writer};

/// How soon a write made straight to PostgreSQL must show through pgcached.
pub(crate) const BOUND: Duration = Duration::from_secs(2);

/// One group's current state (its lock serializes writes) and its history.
pub(crate) struct GroupLog {
    pub(crate) current: tokio::sync::Mutex<Arc<State>>,
    pub(crate) steps: Mutex<Vec<Step>>,
}

/// What every task shares.
pub(crate) struct Run {
    pub(crate) groups: Vec<GroupLog>,
    pub(crate) reads: Mutex<Vec<Observation<Query>>>,
    /// Commit-to-visible delays of external writes, as their writer waited for them.
    pub(crate) delays: Mutex<Vec<Duration>>,
    /// External writes not visible through pgcached within [`BOUND`].
    pub(crate) late: Mutex<Vec<String>>,
    /// How many writes of each mode ran.
    pub(crate) modes: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) deadline: Instant,
}

impl Run {
    pub(crate) fn group(&self, group: Group) -> &GroupLog {
        &self.groups[group.index()]
    }

    pub(crate) fn count(&self, mode: &'static str) {
        *self.modes.lock().expect("modes").entry(mode).or_default() += 1;
    }

    pub(crate) fn observe(&self, observation: Observation<Query>) {
        self.reads.lock().expect("reads").push(observation);
    }
}

async fn through(proxy: &TestProxy) -> Client {
    connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("through pgcached")
}

async fn direct(cluster: &LocalCluster) -> Client {
    connect(&url(Endpoint::direct(cluster), "postgres", None, "app"))
        .await
        .expect("straight to PostgreSQL")
}

/// How an oracle run is set up.
struct Setup {
    /// Names the run in what it prints.
    pub(crate) name: &'static str,
    /// pgcached's flags besides `--cache on`.
    pub(crate) flags: &'static [&'static str],
    /// Whether a writer also writes straight to PostgreSQL.
    pub(crate) external: bool,
    /// How long writers and readers run.
    pub(crate) run_for: Duration,
}

/// With the replication stream (test_decoding): writes through pgcached and straight to
/// PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stream_no_read_is_stale() {
    oracle(Setup {
        name: "stream",
        flags: &["--admin-users", "postgres"],
        external: true,
        run_for: Duration::from_secs(12),
    })
    .await;
}

/// Without a stream (`--replication off`): only pgcached's own invalidation at each
/// acknowledgement keeps reads fresh, so a write it fails to invalidate stays visible (with a
/// stream, the stream's bump a few milliseconds later would hide it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_proxied_writes_alone_no_read_is_stale() {
    oracle(Setup {
        name: "no stream",
        flags: &["--replication", "off", "--admin-users", "postgres"],
        external: false,
        run_for: Duration::from_secs(10),
    })
    .await;
}

async fn oracle(setup: Setup) {
    let name = setup.name;
    let seed = seed();
    println!("oracle_rows ({name}): seed {seed} (PGCACHED_ORACLE_SEED={seed} repeats its choices)");
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let admin = direct(&cluster).await;
    admin.batch_execute(SCHEMA).await.expect("schema");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, setup.flags));
    let cache = proxy.cache.clone().expect("cache on");
    // Reads are served from the cache once the replication stream runs (if there is one).
    let warm = through(&proxy).await;
    until_cached(
        &warm,
        &cache,
        "SELECT v FROM events WHERE id = 1",
        Duration::from_secs(10),
    )
    .await;

    let epoch = Instant::now();
    let mut groups = Vec::new();
    for group in Group::ALL {
        let state = read_back(&admin, group).await;
        groups.push(GroupLog {
            current: tokio::sync::Mutex::new(Arc::clone(&state)),
            steps: Mutex::new(vec![Step {
                state,
                started: epoch,
                acked: epoch,
                source: Source::Initial,
                what: "initial rows".into(),
            }]),
        });
    }
    let run = Arc::new(Run {
        groups,
        reads: Mutex::new(Vec::new()),
        delays: Mutex::new(Vec::new()),
        late: Mutex::new(Vec::new()),
        modes: Mutex::new(BTreeMap::new()),
        deadline: epoch + setup.run_for,
    });
    let hits_before = cache.hits();
    let mut tasks = Vec::new();
    for n in 0..3u64 {
        let writer = Writer {
            run: Arc::clone(&run),
            conn: Conn::new(through(&proxy).await),
            raw: batch::RawConn::login(proxy.port()),
            direct: direct(&cluster).await,
            observer: through(&proxy).await,
            external: false,
            random: Random::new(seed.wrapping_add(n)),
        };
        tasks.push(tokio::spawn(writer.run()));
    }
    if setup.external {
        let external = Writer {
            run: Arc::clone(&run),
            conn: Conn::new(direct(&cluster).await),
            raw: batch::RawConn::login(cluster.port()),
            direct: direct(&cluster).await,
            observer: through(&proxy).await,
            external: true,
            random: Random::new(seed.wrapping_add(10)),
        };
        tasks.push(tokio::spawn(external.run()));
    }
    for n in 0..4u64 {
        tasks.push(tokio::spawn(reader(
            Arc::clone(&run),
            through(&proxy).await,
            seed.wrapping_add(20 + n),
        )));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let hits = cache.hits() - hits_before;
    let console = pgcached_tests::console::console(proxy.port()).await;
    let stats: Vec<String> = pgcached_tests::console::rows(&console, "SHOW STATS")
        .await
        .into_iter()
        .filter(|row| {
            row["stat"]
                .as_deref()
                .is_some_and(|stat| stat == "cache_hit_ratio" || stat.starts_with("invalidations_"))
        })
        .filter_map(|row| {
            Some(format!(
                "{}={}",
                row["stat"].clone()?,
                row["value"].clone()?
            ))
        })
        .collect();
    println!("oracle_rows ({name}): {}", stats.join(" "));

    let reads = std::mem::take(&mut *run.reads.lock().expect("reads"));
    let mut violations = Vec::new();
    let mut proxied = 0;
    let mut external = 0;
    for group in Group::ALL {
        let steps = run.group(group).steps.lock().expect("steps").clone();
        proxied += steps.iter().filter(|s| s.source == Source::Proxied).count();
        external += steps
            .iter()
            .filter(|s| s.source == Source::External)
            .count();
        let of_group: Vec<Observation<Query>> = reads
            .iter()
            .filter(|r| r.query.kind.group() == group)
            .cloned()
            .collect();
        println!(
            "oracle_rows ({name}): {group:?}: {} committed writes, {} reads",
            steps.len() - 1,
            of_group.len()
        );
        violations.extend(check(&steps, &of_group, answer, BOUND, epoch));
    }
    let mut delays = run.delays.lock().expect("delays").clone();
    let modes = run.modes.lock().expect("modes").clone();
    println!(
        "oracle_rows ({name}): {proxied} proxied and {external} external committed writes ({modes:?}); \
         {} reads, {hits} cache hits",
        reads.len()
    );
    if !delays.is_empty() {
        let (p50, p99) = percentiles(&mut delays);
        println!(
            "oracle_rows ({name}): an external write showed through pgcached after p50 {p50:?}, p99 {p99:?} \
             (n = {})",
            delays.len()
        );
    }
    let late = run.late.lock().expect("late").clone();
    assert!(
        violations.is_empty() && late.is_empty(),
        "seed {seed}: {} violations, {} late external writes:\n{}",
        violations.len(),
        late.len(),
        violations
            .iter()
            .chain(&late)
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The oracle means something only if it wrote, read, and read from the cache.
    assert!(
        proxied > 60 && (external > 15 || !setup.external) && reads.len() > 1500,
        "seed {seed}: too little ran: {proxied} proxied, {external} external writes, {} reads",
        reads.len()
    );
    assert!(
        hits > reads.len() as u64 / 10,
        "seed {seed}: only {hits} of {} reads were cache hits",
        reads.len()
    );
}

//! Drivers and ORMs with their default transaction handling, through pgcached with the cache on:
//! what they read is what PostgreSQL answers, and their repeated primary-key reads are served
//! from the cache even though each one runs inside a transaction block.
//!
//! Most drivers an application uses wrap every unit of work in a transaction: psycopg 2 and 3
//! (autocommit off), SQLAlchemy's `Session` and `engine.connect()`, Django with
//! `ATOMIC_REQUESTS`, pgjdbc with autocommit off, Ruby pg's `transaction`, postgres.js's
//! `sql.begin`, sqlx's `pool.begin()`. Each driver here runs the workload of
//! `tests/clients/tx_workload.py` (the non-Python clients follow it too), on its own table,
//! once straight to PostgreSQL and once through pgcached, in two phases:
//!
//! - reads: [`ITERATIONS`] reads by primary key of three keys in turn, each committed. The
//!   console's `SHOW STATS` around the run through pgcached must count at least [`MIN_HITS`]
//!   cache hits: READ COMMITTED blocks that have written nothing are answered from the cache.
//! - writes: connection A updates a key in a transaction and reads its own write; connection B
//!   reads the old value until A commits, then both read the new one; an update rolled back is
//!   seen by nobody afterwards, a fresh connection included.
//!
//! Both transcripts must equal the expected one (and so each other). The hit count is asserted
//! last, after every correctness check, for every driver.
//!
//! The isolation tests (psycopg 3, `tests/clients/tx_isolation.py`) hold pgcached to
//! PostgreSQL's semantics where the cache must stay out of the way: a REPEATABLE READ snapshot
//! keeps reading the old row after the cache was refilled with the new one; two SERIALIZABLE
//! transactions in a write skew still fail with SQLSTATE 40001, although their reads were
//! cached before they began; a role whose `default_transaction_isolation` is serializable
//! (`ALTER ROLE ... SET`) gets no hit inside its transactions.
//!
//! `scripts/test` installs the drivers (pip: psycopg2-binary, SQLAlchemy, Django; Debian:
//! ruby-pg, libpostgresql-jdbc-java; npm: postgres; sqlx is a dev-dependency of this crate).

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::clients::{
    client_script, error_text, expect_success, python, run_with_timeout,
};
use pgcached_tests::console::{console, rows, CONSOLE_FLAGS};
use pgcached_tests::external::until_cached;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, shared_cluster, url, Endpoint, TestProxy};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

/// Debian's pgjdbc.
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Reads of the reads phase (the clients loop this many times).
const ITERATIONS: u64 = 200;
/// Cache hits the reads phase must get through pgcached: half of its reads.
const MIN_HITS: u64 = ITERATIONS / 2;
/// The keys the reads phase reads in turn, and their values.
const READ_ROWS: [(i32, &str); 3] = [(1, "one"), (2, "two"), (3, "three")];
/// The key the writes phase updates, its value before, after the commit, and in the rollback.
const KEY: i32 = 2;
const INITIAL: &str = "two";
const COMMITTED: &str = "two-committed";
const ROLLED_BACK: &str = "two-rolled-back";

/// Each driver's table (one each, so that tests running side by side do not invalidate each
/// other's reads).
const DRIVER_TABLES: [&str; 11] = [
    "tx_psycopg2",
    "tx_psycopg3",
    "tx_sa_orm_psycopg",
    "tx_sa_orm_asyncpg",
    "tx_sa_core",
    "tx_django",
    "tx_jdbc_autocommit",
    "tx_jdbc_manual",
    "tx_ruby_pg",
    "tx_postgres_js",
    "tx_sqlx",
];

/// The role of the serializable-by-default test (tx_isolation.py logs in with it).
const SERIALIZABLE_ROLE: &str = "tx_serializable_user";
const SERIALIZABLE_PASSWORD: &str = "tx_serializable_secret";

/// Everything this file reads, created before any pgcached starts (catalog changes made while
/// another test's pgcached runs would drop its cached results and blur its hit count).
fn schema() -> String {
    let mut sql = String::from(
        "CREATE TABLE tx_probe (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO tx_probe VALUES (1, 'probe');
         CREATE TABLE tx_pipelined (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO tx_pipelined VALUES (1, 'one');
         CREATE TABLE iso_rr (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO iso_rr VALUES (1, 'old'), (2, 'other');
         CREATE TABLE iso_ssi (id int PRIMARY KEY, on_call bool NOT NULL);
         INSERT INTO iso_ssi VALUES (1, true), (2, true);
         CREATE TABLE iso_role (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO iso_role VALUES (1, 'one'), (2, 'two'), (3, 'three');\n",
    );
    for table in DRIVER_TABLES {
        sql.push_str(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v text NOT NULL);
             INSERT INTO {table} VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');\n"
        ));
    }
    sql.push_str(&format!(
        "CREATE ROLE {SERIALIZABLE_ROLE} LOGIN PASSWORD '{SERIALIZABLE_PASSWORD}';
         ALTER ROLE {SERIALIZABLE_ROLE} SET default_transaction_isolation = 'serializable';
         GRANT SELECT ON iso_role TO {SERIALIZABLE_ROLE};\n"
    ));
    sql
}

/// The shared cluster, with [`schema`] created once.
fn cluster() -> &'static LocalCluster {
    static READY: OnceLock<()> = OnceLock::new();
    let cluster = shared_cluster();
    READY.get_or_init(|| {
        cluster
            .psql("app", &schema())
            .unwrap_or_else(|e| panic!("schema: {e}"));
    });
    cluster
}

/// A caching pgcached with its console, whose change stream for `app` runs.
struct Stack {
    cluster: &'static LocalCluster,
    proxy: TestProxy,
    runtime: Runtime,
    console: tokio_postgres::Client,
}

impl Stack {
    fn start() -> Stack {
        let cluster = cluster();
        let proxy = TestProxy::with_config(caching_config_for(cluster, &CONSOLE_FLAGS));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        let console = runtime.block_on(async {
            // Until a read is a hit, the database's stream may still be starting (and every
            // read is relayed): wait for it here, not inside a driver's run.
            let app = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
                .await
                .expect("connect through pgcached");
            let cache = proxy.cache.as_ref().expect("cache on");
            until_cached(
                &app,
                cache,
                "SELECT v FROM tx_probe WHERE id = 1",
                Duration::from_secs(10),
            )
            .await;
            console(proxy.port()).await
        });
        Stack {
            cluster,
            proxy,
            runtime,
            console,
        }
    }

    fn direct(&self) -> u16 {
        self.cluster.port()
    }

    fn through(&self) -> u16 {
        self.proxy.port()
    }

    /// Runs `sql` on port `port` (through pgcached it invalidates at once, as any write does).
    fn execute(&self, port: u16, sql: &str) {
        self.runtime.block_on(async {
            let endpoint = Endpoint {
                host: "127.0.0.1",
                port,
            };
            let client = connect(&url(endpoint, "postgres", None, "app"))
                .await
                .expect("connect for a reset");
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
        });
    }

    /// `SHOW STATS` as stat → value.
    fn stats(&self) -> HashMap<String, f64> {
        self.runtime.block_on(async {
            rows(&self.console, "SHOW STATS")
                .await
                .into_iter()
                .map(|row| {
                    let stat = row["stat"].clone().expect("stat");
                    let value = row["value"]
                        .as_deref()
                        .and_then(|v| v.parse().ok())
                        .expect("numeric stat");
                    (stat, value)
                })
                .collect()
        })
    }
}

/// What changed between two `SHOW STATS`, for the counters that explain a hit count.
struct StatsDelta(HashMap<String, f64>);

impl StatsDelta {
    const SHOWN: [&'static str; 7] = [
        "cache_hits",
        "cache_misses",
        "cache_fills",
        "queries_read_cached",
        "queries_read_uncacheable",
        "queries_write",
        "queries_other",
    ];

    fn between(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> StatsDelta {
        StatsDelta(
            Self::SHOWN
                .iter()
                .map(|stat| {
                    let delta = after.get(*stat).copied().unwrap_or(0.0)
                        - before.get(*stat).copied().unwrap_or(0.0);
                    ((*stat).to_owned(), delta)
                })
                .collect(),
        )
    }

    fn get(&self, stat: &str) -> u64 {
        self.0[stat] as u64
    }
}

impl std::fmt::Display for StatsDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = Self::SHOWN
            .iter()
            .map(|stat| format!("{stat} +{}", self.0[*stat]))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A phase of the workload, or both in one run (their transcripts merged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reads,
    Writes,
    All,
}

impl Phase {
    fn arg(self) -> &'static str {
        match self {
            Phase::Reads => "reads",
            Phase::Writes => "writes",
            Phase::All => "all",
        }
    }

    fn reads(self) -> bool {
        self != Phase::Writes
    }

    fn writes(self) -> bool {
        self != Phase::Reads
    }
}

/// `a` with the fields of `b` added.
fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The reads phase's transcript.
fn expected_reads() -> Value {
    let values: Vec<&str> = (0..ITERATIONS as usize)
        .map(|i| READ_ROWS[i % READ_ROWS.len()].1)
        .collect();
    json!({ "reads": values })
}

/// The writes phase's transcript: read-your-own-writes inside A's block, B isolated from it
/// until the commit, the rollback seen by nobody.
fn expected_writes() -> Value {
    json!({
        "b_before": [INITIAL, INITIAL, INITIAL],
        "a_before_write": INITIAL,
        "updated": 1,
        "a_own_write": COMMITTED,
        "b_during": INITIAL,
        "a_after_commit": COMMITTED,
        "b_after_commit": COMMITTED,
        "rolled_back_updated": 1,
        "a_own_rollback": ROLLED_BACK,
        "b_during_rollback": COMMITTED,
        "a_after_rollback": COMMITTED,
        "b_after_rollback": COMMITTED,
        "c_after_rollback": COMMITTED,
    })
}

/// A client program in `tests/clients/`.
enum Program {
    /// A Python script and its mode argument.
    Python(&'static str, Option<&'static str>),
    /// A Node.js script.
    Node(&'static str),
    /// A Ruby script.
    Ruby(&'static str),
    /// TxJdbc.java (run from source with pgjdbc on the class path) and its mode argument.
    Jdbc(&'static str),
}

impl Program {
    /// Runs one phase against `port`; returns the transcript it printed.
    fn run(&self, port: u16, phase: Phase, table: &str) -> Value {
        let (mut command, mode) = match self {
            Program::Python(script, mode) => {
                let mut c = python();
                c.arg(client_script(script));
                (c, *mode)
            }
            Program::Node(script) => {
                let mut c = Command::new("node");
                c.arg(client_script(script));
                (c, None)
            }
            Program::Ruby(script) => {
                let mut c = Command::new("ruby");
                c.arg(client_script(script));
                (c, None)
            }
            Program::Jdbc(mode) => {
                let mut c = Command::new("java");
                c.arg("-cp")
                    .arg(PGJDBC_JAR)
                    .arg(client_script("TxJdbc.java"));
                (c, Some(*mode))
            }
        };
        command
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(phase.arg())
            .arg(table)
            .args(mode);
        let what = format!("{table} {}", phase.arg());
        let output = run_with_timeout(&mut command, 60);
        let stdout = expect_success(&output, &what);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}):\n{stdout}"))
    }
}

/// Runs the workload for one driver straight to PostgreSQL (both phases in one run) and
/// through pgcached (one run per phase, so that `SHOW STATS` brackets the reads phase alone),
/// and checks the transcripts, then the hits of the reads phase.
fn check(driver: &str, table: &str, run: impl Fn(u16, Phase) -> Value) {
    let started = Instant::now();
    let stack = Stack::start();
    let reset = format!("UPDATE {table} SET v = '{INITIAL}' WHERE id = {KEY}");

    stack.execute(stack.direct(), &reset);
    let direct = run(stack.direct(), Phase::All);
    stack.execute(stack.through(), &reset);
    let before = stack.stats();
    let reads = run(stack.through(), Phase::Reads);
    let during_reads = StatsDelta::between(&before, &stack.stats());
    let writes = run(stack.through(), Phase::Writes);

    assert_eq!(
        direct,
        merged(expected_reads(), expected_writes()),
        "{driver}: straight to PostgreSQL"
    );
    assert_eq!(
        merged(reads, writes),
        direct,
        "{driver}: through pgcached differs"
    );

    let hits = during_reads.get("cache_hits");
    println!(
        "{driver}: {hits} of {ITERATIONS} reads in transactions were cache hits ({during_reads}); {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        hits >= MIN_HITS,
        "{driver}: {hits} of {ITERATIONS} repeated primary-key reads in the driver's \
         transactions were served from the cache, want at least {MIN_HITS}. SHOW STATS over \
         the reads: {during_reads}"
    );
}

#[test]
fn psycopg2_transactions_read_correctly_and_hit_the_cache() {
    let program = Program::Python("tx_psycopg.py", Some("psycopg2"));
    check("psycopg2", "tx_psycopg2", |port, phase| {
        program.run(port, phase, "tx_psycopg2")
    });
}

#[test]
fn psycopg3_transactions_read_correctly_and_hit_the_cache() {
    let program = Program::Python("tx_psycopg.py", Some("psycopg3"));
    check("psycopg 3", "tx_psycopg3", |port, phase| {
        program.run(port, phase, "tx_psycopg3")
    });
}

#[test]
fn sqlalchemy_orm_over_psycopg_reads_correctly_and_hits_the_cache() {
    let program = Program::Python("tx_sqlalchemy.py", Some("orm-psycopg"));
    check(
        "SQLAlchemy ORM (psycopg)",
        "tx_sa_orm_psycopg",
        |port, phase| program.run(port, phase, "tx_sa_orm_psycopg"),
    );
}

#[test]
fn sqlalchemy_orm_over_asyncpg_reads_correctly_and_hits_the_cache() {
    let program = Program::Python("tx_sqlalchemy.py", Some("orm-asyncpg"));
    check(
        "SQLAlchemy ORM (asyncpg)",
        "tx_sa_orm_asyncpg",
        |port, phase| program.run(port, phase, "tx_sa_orm_asyncpg"),
    );
}

#[test]
fn sqlalchemy_connect_loop_reads_correctly_and_hits_the_cache() {
    let program = Program::Python("tx_sqlalchemy.py", Some("core-psycopg"));
    check(
        "SQLAlchemy engine.connect()",
        "tx_sa_core",
        |port, phase| program.run(port, phase, "tx_sa_core"),
    );
}

#[test]
fn django_atomic_requests_read_correctly_and_hit_the_cache() {
    let program = Program::Python("tx_django.py", None);
    check("Django", "tx_django", |port, phase| {
        program.run(port, phase, "tx_django")
    });
}

#[test]
fn pgjdbc_autocommit_reads_correctly_and_hits_the_cache() {
    let program = Program::Jdbc("autocommit");
    check(
        "pgjdbc (autocommit)",
        "tx_jdbc_autocommit",
        |port, phase| program.run(port, phase, "tx_jdbc_autocommit"),
    );
}

#[test]
fn pgjdbc_manual_commit_reads_correctly_and_hits_the_cache() {
    let program = Program::Jdbc("manual");
    check(
        "pgjdbc (autocommit off)",
        "tx_jdbc_manual",
        |port, phase| program.run(port, phase, "tx_jdbc_manual"),
    );
}

#[test]
fn ruby_pg_transactions_read_correctly_and_hit_the_cache() {
    let program = Program::Ruby("tx_ruby_pg.rb");
    check("Ruby pg", "tx_ruby_pg", |port, phase| {
        program.run(port, phase, "tx_ruby_pg")
    });
}

#[test]
fn postgres_js_transactions_read_correctly_and_hit_the_cache() {
    let program = Program::Node("tx_postgres_js.js");
    check("postgres.js", "tx_postgres_js", |port, phase| {
        program.run(port, phase, "tx_postgres_js")
    });
}

/// sqlx with its defaults: a pool (up to 10 connections), statements prepared and kept per
/// connection, `pool.begin()` for each unit of work. Connection B is the pool outside A's
/// transaction, C a connection of its own.
mod sqlx_workload {
    use super::*;
    use sqlx::{Connection, PgConnection, PgPool};

    fn url(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/app?sslmode=disable")
    }

    async fn read<'c, E>(executor: E, table: &str, key: i32) -> String
    where
        E: sqlx::PgExecutor<'c>,
    {
        sqlx::query_scalar(&format!("SELECT v FROM {table} WHERE id = $1"))
            .bind(key)
            .fetch_one(executor)
            .await
            .expect("sqlx read")
    }

    async fn update(tx: &mut PgConnection, table: &str, value: &str) -> u64 {
        sqlx::query(&format!("UPDATE {table} SET v = $1 WHERE id = $2"))
            .bind(value)
            .bind(KEY)
            .execute(tx)
            .await
            .expect("sqlx update")
            .rows_affected()
    }

    /// One unit of work on the pool: begin, read, commit.
    async fn unit(pool: &PgPool, table: &str, key: i32) -> String {
        let mut tx = pool.begin().await.expect("begin");
        let value = read(&mut *tx, table, key).await;
        tx.commit().await.expect("commit");
        value
    }

    async fn reads(pool: &PgPool, table: &str) -> Value {
        let mut values = Vec::new();
        for i in 0..ITERATIONS as usize {
            values.push(unit(pool, table, READ_ROWS[i % READ_ROWS.len()].0).await);
        }
        json!({ "reads": values })
    }

    async fn writes(pool: &PgPool, port: u16, table: &str) -> Value {
        let mut b_before = Vec::new();
        for _ in 0..3 {
            b_before.push(unit(pool, table, KEY).await);
        }
        let mut a = pool.begin().await.expect("begin");
        let a_before_write = read(&mut *a, table, KEY).await;
        let updated = update(&mut a, table, COMMITTED).await;
        let a_own_write = read(&mut *a, table, KEY).await;
        let b_during = unit(pool, table, KEY).await;
        a.commit().await.expect("commit");
        let a_after_commit = unit(pool, table, KEY).await;
        let b_after_commit = unit(pool, table, KEY).await;
        let mut a = pool.begin().await.expect("begin");
        let rolled_back_updated = update(&mut a, table, ROLLED_BACK).await;
        let a_own_rollback = read(&mut *a, table, KEY).await;
        let b_during_rollback = unit(pool, table, KEY).await;
        a.rollback().await.expect("rollback");
        let a_after_rollback = unit(pool, table, KEY).await;
        let b_after_rollback = unit(pool, table, KEY).await;
        let mut c = PgConnection::connect(&url(port)).await.expect("connect");
        let mut tx = c.begin().await.expect("begin");
        let c_after_rollback = read(&mut *tx, table, KEY).await;
        tx.commit().await.expect("commit");
        c.close().await.expect("close");
        json!({
            "b_before": b_before,
            "a_before_write": a_before_write,
            "updated": updated,
            "a_own_write": a_own_write,
            "b_during": b_during,
            "a_after_commit": a_after_commit,
            "b_after_commit": b_after_commit,
            "rolled_back_updated": rolled_back_updated,
            "a_own_rollback": a_own_rollback,
            "b_during_rollback": b_during_rollback,
            "a_after_rollback": a_after_rollback,
            "b_after_rollback": b_after_rollback,
            "c_after_rollback": c_after_rollback,
        })
    }

    /// Runs one phase against `port`, within 60 s.
    pub fn run(runtime: &Runtime, port: u16, phase: Phase, table: &str) -> Value {
        runtime.block_on(async {
            let work = async {
                let pool = PgPool::connect(&url(port)).await.expect("sqlx pool");
                let mut out = json!({});
                if phase.reads() {
                    out = merged(out, reads(&pool, table).await);
                }
                if phase.writes() {
                    out = merged(out, writes(&pool, port, table).await);
                }
                pool.close().await;
                out
            };
            tokio::time::timeout(Duration::from_secs(60), work)
                .await
                .unwrap_or_else(|_| panic!("sqlx {} did not finish in 60 s", phase.arg()))
        })
    }
}

#[test]
fn sqlx_transactions_read_correctly_and_hit_the_cache() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("sqlx runtime");
    check("sqlx", "tx_sqlx", |port, phase| {
        sqlx_workload::run(&runtime, port, phase, "tx_sqlx")
    });
}

/// Runs a scenario of tx_isolation.py straight to PostgreSQL and through pgcached (after `reset`
/// on each); returns the transcript through pgcached (equal to the direct one) and the cache
/// hits it counted where the scenario measures them.
fn isolation(scenario: &str, reset: &str) -> (Value, u64) {
    let started = Instant::now();
    let stack = Stack::start();
    let run = |port: u16, pgcached: bool| -> Value {
        let mut command = python();
        command
            .arg(client_script("tx_isolation.py"))
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(scenario);
        if pgcached {
            command.arg("--pgcached");
        }
        let output = run_with_timeout(&mut command, 60);
        let stdout = expect_success(&output, scenario);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{scenario} printed no JSON ({e}):\n{stdout}"))
    };
    stack.execute(stack.direct(), reset);
    let direct = run(stack.direct(), false);
    stack.execute(stack.through(), reset);
    let mut through = run(stack.through(), true);
    let hits = through
        .as_object_mut()
        .and_then(|out| out.remove("hits"))
        .and_then(|hits| hits.as_u64())
        .unwrap_or_else(|| panic!("{scenario}: no hit count in {through}"));
    assert_eq!(through, direct, "{scenario}: through pgcached differs");
    println!(
        "{scenario}: {hits} hits where none may be; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    (through, hits)
}

#[test]
fn repeatable_read_keeps_its_snapshot_after_the_cache_is_refilled() {
    let (out, hits) = isolation(
        "repeatable-read",
        "UPDATE iso_rr SET v = 'old' WHERE id = 1",
    );
    assert_eq!(
        out,
        json!({
            "warm": "old",
            "rr_first": "old",
            "rr_isolation": "repeatable read",
            "updated": 1,
            "refilled": "new",
            "rr_again": ["old", "old", "old", "old", "old"],
            "watcher_after_rr": ["new", "new", "new"],
            "rr_after_commit": "new",
        })
    );
    assert_eq!(
        hits, 0,
        "reads of a REPEATABLE READ block were served from the cache"
    );
}

#[test]
fn serializable_write_skew_still_fails_with_40001() {
    let (out, hits) = isolation(
        "write-skew",
        "UPDATE iso_ssi SET on_call = true WHERE id IN (1, 2)",
    );
    assert_eq!(out["t1_reads"], json!([true, true]), "{out}");
    assert_eq!(out["t2_reads"], json!([true, true]), "{out}");
    let failures = ["t1_update", "t2_update", "t1_commit", "t2_commit"]
        .iter()
        .filter(|step| out[**step]["sqlstate"] == "40001")
        .count();
    assert_eq!(
        failures, 1,
        "one transaction of the write skew fails with 40001: {out}"
    );
    let still_on_call = out["after"]
        .as_array()
        .map(|rows| rows.iter().filter(|on| **on == json!(true)).count());
    assert_eq!(still_on_call, Some(1), "{out}");
    assert_eq!(
        hits, 0,
        "reads of SERIALIZABLE blocks were served from the cache"
    );
}

#[test]
fn serializable_by_role_default_is_never_served_from_the_cache() {
    let (out, hits) = isolation("role", "UPDATE iso_role SET v = 'two' WHERE id = 2");
    let values = |n: usize| -> Value {
        (0..n)
            .map(|i| Value::from(READ_ROWS[i % READ_ROWS.len()].1))
            .collect()
    };
    assert_eq!(out["isolation"], "serializable", "{out}");
    assert_eq!(out["serializable_isolation"], "serializable", "{out}");
    assert_eq!(out["read_committed"], values(30), "{out}");
    assert_eq!(out["serializable"], values(60), "{out}");
    assert_eq!(
        hits, 0,
        "reads of {SERIALIZABLE_ROLE}'s SERIALIZABLE blocks were served from the cache"
    );
}

/// The frames of a raw client sending unnamed statements, as pgjdbc does before a statement is
/// prepared by name.
mod unnamed {
    use pgcached_tests::raw::{frame, read_until_ready, Message};
    use std::io::Write;
    use std::net::TcpStream;

    fn parse(sql: &str, types: &[u32]) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(sql.as_bytes());
        body.push(0);
        body.extend_from_slice(&(types.len() as i16).to_be_bytes());
        for oid in types {
            body.extend_from_slice(&oid.to_be_bytes());
        }
        frame(b'P', &body)
    }

    fn bind(values: &[&str]) -> Vec<u8> {
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for value in values {
            body.extend_from_slice(&(value.len() as i32).to_be_bytes());
            body.extend_from_slice(value.as_bytes());
        }
        body.extend_from_slice(&[0, 0]);
        frame(b'B', &body)
    }

    /// Parse, Bind, (Describe portal, when `describe`) and Execute of `sql` with text `values`
    /// (of type int4).
    pub fn statement(sql: &str, values: &[&str], describe: bool) -> Vec<u8> {
        let mut frames = parse(sql, &vec![23; values.len()]);
        frames.extend(bind(values));
        if describe {
            frames.extend(frame(b'D', b"P\0"));
        }
        frames.extend(frame(b'E', &[0, 0, 0, 0, 0]));
        frames
    }

    /// Sends `statements` as one batch (one Sync); returns the answer up to ReadyForQuery, one
    /// line per message (errors with their text, rows and tags with their contents).
    pub fn batch(stream: &mut TcpStream, statements: &[Vec<u8>]) -> Vec<String> {
        let mut bytes = statements.concat();
        bytes.extend(frame(b'S', b""));
        stream.write_all(&bytes).expect("write the batch");
        read_until_ready(stream).iter().map(line).collect()
    }

    fn line(message: &Message) -> String {
        let text = |body: &[u8]| String::from_utf8_lossy(body).into_owned();
        match message.tag {
            b'E' | b'N' => format!(
                "{} {}",
                message.tag as char,
                message.field(b'M').unwrap_or_default()
            ),
            b'C' => format!("C {}", text(&message.body[..message.body.len() - 1])),
            b'D' => format!("D {}", text(message.body.get(6..).unwrap_or_default())),
            tag => (tag as char).to_string(),
        }
    }
}

/// pgjdbc with autocommit off sends its `BEGIN` in the same batch as the first statement of the
/// transaction, both unnamed: Parse/Bind/Execute of `BEGIN`, then Parse/Bind/Describe/Execute
/// of the statement, one Sync. Through pgcached the server must run them in that order, and
/// `BEGIN` must reach it even when the statement's result is cached: with a parameter the
/// answers are as straight; without one (and cached), the transaction is open, so that its
/// update is rolled back.
#[test]
fn begin_pipelined_with_an_unnamed_statement_opens_the_transaction() {
    use unnamed::{batch, statement};

    let stack = Stack::start();
    let mut transcripts = Vec::new();
    for port in [stack.direct(), stack.through()] {
        let (mut stream, _) = pgcached_tests::raw::login_to(port, "postgres", "app");
        let select = "SELECT v FROM tx_pipelined WHERE id = $1";
        let select_one = "SELECT v FROM tx_pipelined WHERE id = 1";
        let mut transcript = Vec::new();
        for statements in [
            vec![statement(
                "UPDATE tx_pipelined SET v = 'one' WHERE id = 1",
                &[],
                false,
            )],
            vec![
                statement("BEGIN", &[], false),
                statement(select, &["1"], true),
            ],
            vec![statement("COMMIT", &[], false)],
            // Cached: the next batch's read can be answered from the cache.
            vec![statement(select_one, &[], true)],
            vec![statement(select_one, &[], true)],
            vec![
                statement("BEGIN", &[], false),
                statement(select_one, &[], true),
            ],
            vec![statement(
                "UPDATE tx_pipelined SET v = 'rolled back' WHERE id = 1",
                &[],
                false,
            )],
            vec![statement("ROLLBACK", &[], false)],
            vec![statement(select, &["1"], true)],
        ] {
            transcript.push(batch(&mut stream, &statements));
        }
        transcripts.push(transcript);
    }
    let lines = |lines: &[&str]| -> Vec<String> { lines.iter().map(|l| (*l).to_owned()).collect() };
    let read = ["1", "2", "T", "D one", "C SELECT 1", "Z"];
    let begin_and_read = [
        "1",
        "2",
        "C BEGIN",
        "1",
        "2",
        "T",
        "D one",
        "C SELECT 1",
        "Z",
    ];
    assert_eq!(
        transcripts[0],
        [
            lines(&["1", "2", "C UPDATE 1", "Z"]),
            lines(&begin_and_read),
            lines(&["1", "2", "C COMMIT", "Z"]),
            lines(&read),
            lines(&read),
            lines(&begin_and_read),
            lines(&["1", "2", "C UPDATE 1", "Z"]),
            lines(&["1", "2", "C ROLLBACK", "Z"]),
            lines(&read),
        ],
        "straight to PostgreSQL"
    );
    assert_eq!(transcripts[1], transcripts[0], "through pgcached");
}

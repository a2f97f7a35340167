//! A writer task: writes in every mode, reading each new committed state back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use pgcached_tests::clients::error_text;
use pgcached_tests::history::{Source, State, Step};
use tokio_postgres::{Client, Statement};

use crate::batch::{RawConn, DIVISION_BY_ZERO, FAILING};
use crate::model::{read_back, sql_params, Group, Param};
use crate::reads::{answer, observe, probes, wait_visible, Query};
use crate::writes::{write_for, Write};
use crate::Run;
use pgcached_tests::random::Random;

/// A connection with its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    pub(crate) fn new(client: Client) -> Conn {
        Conn {
            client,
            prepared: HashMap::new(),
        }
    }

    pub(crate) async fn statement(&mut self, sql: &'static str) -> Statement {
        if let Some(statement) = self.prepared.get(sql) {
            return statement.clone();
        }
        let statement = self
            .client
            .prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("prepare {sql}: {}", error_text(&e)));
        self.prepared.insert(sql, statement.clone());
        statement
    }

    /// Runs a write, in the simple protocol with literals or as a prepared statement.
    pub(crate) async fn write(&mut self, write: &Write, simple: bool) {
        let outcome = if simple {
            self.client.batch_execute(&write.text()).await
        } else {
            let statement = self.statement(write.sql).await;
            self.client
                .execute(&statement, &sql_params(&write.params))
                .await
                .map(|_| ())
        };
        if let Err(e) = outcome {
            panic!("{}: {}", write.text(), error_text(&e));
        }
    }

    pub(crate) async fn control(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
    }
}

/// How a writer writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    Autocommit,
    Commit,
    Rollback,
    Savepoint,
    Chain,
    Pipeline,
    /// Several writes in one simple Query message (one implicit transaction).
    Batch,
    /// Several extended-protocol executions before one Sync (one implicit transaction).
    ExtendedBatch,
}

impl Mode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::Autocommit => "autocommit",
            Mode::Commit => "commit",
            Mode::Rollback => "rollback",
            Mode::Savepoint => "savepoint",
            Mode::Chain => "commit and chain",
            Mode::Pipeline => "pipeline",
            Mode::Batch => "multi-statement query",
            Mode::ExtendedBatch => "executions before one sync",
        }
    }
}

pub(crate) struct Writer {
    pub(crate) run: Arc<Run>,
    pub(crate) conn: Conn,
    /// To where `conn` goes, frame by frame (for [`Mode::ExtendedBatch`]).
    pub(crate) raw: RawConn,
    /// Straight to PostgreSQL: reads committed states back.
    pub(crate) direct: Client,
    /// Through pgcached: reads what a write will change before it commits (so that the old
    /// answers are cached) and after (they must be gone).
    pub(crate) observer: Client,
    /// Writes straight to PostgreSQL (else through pgcached).
    pub(crate) external: bool,
    pub(crate) random: Random,
}

impl Writer {
    pub(crate) fn source(&self) -> Source {
        if self.external {
            Source::External
        } else {
            Source::Proxied
        }
    }

    /// Reads through pgcached up to four pinned reads of `group` that name one of `params`
    /// (the values the coming writes name), so that their answers are cached before the
    /// writes commit; returns them.
    pub(crate) async fn read_before(&mut self, group: Group, params: &[Param]) -> Vec<Query> {
        let mut named: Vec<Query> = probes(group)
            .into_iter()
            .filter(|q| q.params.iter().any(|p| params.contains(p)))
            .collect();
        while named.len() > 4 {
            let drop = self.random.below(named.len() as u64) as usize;
            named.remove(drop);
        }
        for query in &named {
            observe(&self.run, &self.observer, query, "simple, before a write").await;
        }
        named
    }

    /// Records a new committed state of `group`.
    pub(crate) async fn committed(
        &mut self,
        group: Group,
        current: &mut Arc<State>,
        started: Instant,
        acked: Instant,
        what: String,
    ) {
        let state = read_back(&self.direct, group).await;
        self.run
            .group(group)
            .steps
            .lock()
            .expect("steps")
            .push(Step {
                state: Arc::clone(&state),
                started,
                acked,
                source: self.source(),
                what,
            });
        let before = std::mem::replace(current, state);
        let mut changed: Vec<Query> = probes(group)
            .into_iter()
            .filter(|q| answer(q, &before) != answer(q, current))
            .collect();
        if self.external {
            if !changed.is_empty() {
                let query = self.random.pick(&changed);
                let expected = answer(&query, current);
                wait_visible(&self.run, &self.observer, &query, &expected, acked).await;
            }
            return;
        }
        // Read your writes: the answers this write changed, right after its acknowledgement.
        while changed.len() > 3 {
            let drop = self.random.below(changed.len() as u64) as usize;
            changed.remove(drop);
        }
        for query in &changed {
            observe(&self.run, &self.observer, query, "simple, after a write").await;
        }
    }

    pub(crate) async fn run(mut self) {
        // Weighted: `COMMIT AND CHAIN` invalidates the whole database, so it is rare.
        let modes: &[Mode] = if self.external {
            &[
                Mode::Autocommit,
                Mode::Autocommit,
                Mode::Commit,
                Mode::Rollback,
                Mode::Batch,
                Mode::ExtendedBatch,
            ]
        } else {
            &[
                Mode::Autocommit,
                Mode::Autocommit,
                Mode::Autocommit,
                Mode::Autocommit,
                Mode::Commit,
                Mode::Commit,
                Mode::Rollback,
                Mode::Rollback,
                Mode::Savepoint,
                Mode::Autocommit,
                Mode::Autocommit,
                Mode::Commit,
                Mode::Pipeline,
                Mode::Pipeline,
                Mode::Pipeline,
                Mode::Chain,
                Mode::Batch,
                Mode::Batch,
                Mode::ExtendedBatch,
                Mode::ExtendedBatch,
            ]
        };
        while Instant::now() < self.run.deadline {
            let mode = self.random.pick(modes);
            self.run.count(mode.label());
            match mode {
                Mode::Pipeline => self.pipeline().await,
                mode => {
                    let group = Group::weighted(&mut self.random);
                    self.block(group, mode).await;
                }
            }
            let pause = 6 + self.random.below(24);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// One write or transaction block on `group`.
    pub(crate) async fn block(&mut self, group: Group, mode: Mode) {
        let run = Arc::clone(&self.run);
        let mut current = run.group(group).current.lock().await;
        let simple = self.random.chance(2);
        let first = write_for(group, &current, &mut self.random, false);
        match mode {
            Mode::Autocommit => {
                self.read_before(group, &first.params).await;
                let started = Instant::now();
                self.conn.write(&first, simple).await;
                let acked = Instant::now();
                let how = if simple { "simple" } else { "prepared" };
                let what = format!("autocommit ({how}): {}", first.text());
                self.committed(group, &mut current, started, acked, what)
                    .await;
            }
            Mode::Commit | Mode::Rollback | Mode::Savepoint => {
                self.conn.control("BEGIN").await;
                let mut what = vec![first.text()];
                let mut named = first.params.clone();
                self.conn.write(&first, simple).await;
                let more = self.random.below(3);
                for n in 0..more {
                    self.pause_in_block().await;
                    if matches!(mode, Mode::Savepoint) && n == 0 {
                        self.conn.control("SAVEPOINT s").await;
                    }
                    let next = write_for(group, &current, &mut self.random, true);
                    let simple = self.random.chance(2);
                    self.conn.write(&next, simple).await;
                    named.extend(next.params.iter().cloned());
                    if matches!(mode, Mode::Savepoint) && n == 0 {
                        if self.random.chance(2) {
                            self.conn.control("ROLLBACK TO SAVEPOINT s").await;
                        } else {
                            self.conn.control("RELEASE SAVEPOINT s").await;
                            what.push(next.text());
                        }
                    } else {
                        what.push(next.text());
                    }
                }
                self.pause_in_block().await;
                // Cached now, while the block's writes are not committed: the old answers.
                let read = self.read_before(group, &named).await;
                if matches!(mode, Mode::Rollback) {
                    self.conn.control("ROLLBACK").await;
                    for query in &read {
                        observe(&self.run, &self.observer, query, "simple, after a rollback").await;
                    }
                    return;
                }
                let started = Instant::now();
                self.conn.control("COMMIT").await;
                let acked = Instant::now();
                let what = format!("{}: {}", mode.label(), what.join("; "));
                self.committed(group, &mut current, started, acked, what)
                    .await;
            }
            Mode::Chain => {
                self.conn.control("BEGIN").await;
                self.conn.write(&first, simple).await;
                self.pause_in_block().await;
                self.read_before(group, &first.params).await;
                let started = Instant::now();
                self.conn.control("COMMIT AND CHAIN").await;
                let acked = Instant::now();
                let what = format!("commit and chain: {}", first.text());
                self.committed(group, &mut current, started, acked, what)
                    .await;
                // The chained block: its write is chosen against the state just committed.
                self.pause_in_block().await;
                let next = write_for(group, &current, &mut self.random, false);
                let simple = self.random.chance(2);
                self.conn.write(&next, simple).await;
                self.pause_in_block().await;
                self.read_before(group, &next.params).await;
                let started = Instant::now();
                self.conn.control("COMMIT").await;
                let acked = Instant::now();
                let what = format!("chained block: {}", next.text());
                self.committed(group, &mut current, started, acked, what)
                    .await;
            }
            Mode::Batch | Mode::ExtendedBatch => self.batch(group, mode, first, current).await,
            Mode::Pipeline => unreachable!("pipelines span groups"),
        }
    }

    /// Two or three writes to `group` in one request, one time in four ending with a statement
    /// that fails (so that none of them commits).
    pub(crate) async fn batch(
        &mut self,
        group: Group,
        mode: Mode,
        first: Write,
        mut current: tokio::sync::MutexGuard<'_, Arc<State>>,
    ) {
        let mut writes = vec![first];
        for _ in 0..1 + self.random.below(2) {
            writes.push(write_for(group, &current, &mut self.random, true));
        }
        let fail = self.random.chance(4);
        let named: Vec<Param> = writes.iter().flat_map(|w| w.params.clone()).collect();
        let read = self.read_before(group, &named).await;
        let mut what: Vec<String> = writes.iter().map(Write::text).collect();
        let started = Instant::now();
        let error = match mode {
            Mode::Batch => {
                if fail {
                    what.push(FAILING.to_owned());
                }
                let sql = what.join("; ");
                match self.conn.client.batch_execute(&sql).await {
                    Ok(()) => None,
                    Err(e) => Some(
                        e.code()
                            .map(|c| c.code().to_owned())
                            .unwrap_or_else(|| panic!("{sql}: {}", error_text(&e))),
                    ),
                }
            }
            _ => self.raw.extended(&writes, fail).await,
        };
        let acked = Instant::now();
        let what = format!("{}: {}", mode.label(), what.join("; "));
        if fail {
            assert_eq!(error.as_deref(), Some(DIVISION_BY_ZERO), "{what}");
            for query in &read {
                observe(
                    &self.run,
                    &self.observer,
                    query,
                    "simple, after a failed batch",
                )
                .await;
            }
            return;
        }
        assert_eq!(error, None, "{what}");
        self.committed(group, &mut current, started, acked, what)
            .await;
    }

    /// A pause inside a transaction block, so that readers read in between.
    pub(crate) async fn pause_in_block(&mut self) {
        let pause = self.random.below(6);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }

    /// Two or three autocommit writes in flight together on this connection, one per group
    /// (each group's new state is then exactly the one after its write).
    pub(crate) async fn pipeline(&mut self) {
        let count = 2 + self.random.below(2) as usize;
        let mut groups: Vec<Group> = Vec::with_capacity(count);
        while groups.len() < count {
            let group = Group::weighted(&mut self.random);
            if !groups.contains(&group) {
                groups.push(group);
            }
        }
        // Locks are taken in one order, so that two pipelines never wait for each other.
        groups.sort();
        let run = Arc::clone(&self.run);
        let mut guards = Vec::with_capacity(groups.len());
        for group in &groups {
            guards.push(run.group(*group).current.lock().await);
        }
        let simple = self.random.chance(3);
        let mut writes = Vec::with_capacity(groups.len());
        for (group, guard) in groups.iter().zip(&guards) {
            let write = write_for(*group, guard, &mut self.random, false);
            let statement = self.conn.statement(write.sql).await;
            writes.push((write, statement));
        }
        let client = &self.conn.client;
        let started = Instant::now();
        let acks = join_all(writes.iter().map(|(write, statement)| async move {
            let outcome = if simple {
                client.batch_execute(&write.text()).await
            } else {
                client
                    .execute(statement, &sql_params(&write.params))
                    .await
                    .map(|_| ())
            };
            if let Err(e) = outcome {
                panic!("{}: {}", write.text(), error_text(&e));
            }
            Instant::now()
        }))
        .await;
        for ((group, guard), ((write, _), acked)) in groups
            .iter()
            .zip(guards.iter_mut())
            .zip(writes.iter().zip(acks))
        {
            let what = format!("pipeline: {}", write.text());
            self.committed(*group, guard, started, acked, what).await;
        }
    }
}

//! A streamed commit is bumped again as soon as PostgreSQL shows it visible to new snapshots.
//!
//! The stream can report a commit before the committing backend has made it visible
//! ([`super::rebump`] explains the race): a read looked up after the stream's bump may still
//! take a snapshot without the commit, and its fill would be stored. Rather than bumping the
//! commit's counters again after fixed delays (which also drops the entries filled correctly
//! in between, one or two extra misses per written row), pgcached asks the database for a
//! snapshot (`pg_current_snapshot()` on its control connection) and bumps once that snapshot
//! no longer lists the transaction as running. Every snapshot taken after that one sees the
//! commit, so a fill that starts after the answer is right, and the one re-bump, made when the
//! answer arrives, drops or refuses every fill that started before it.
//!
//! One check answers for every commit reported before it was sent, and checks are at least
//! [`CHECK_SPACING`] apart, so a steady stream of writes costs PostgreSQL at most a few hundred
//! trivial queries a second. A commit still running in the snapshot is checked again; while
//! every waiting commit has been found running, the spacing doubles up to [`MAX_SPACING`], and
//! a commit reported since is checked after [`CHECK_SPACING`] again. Until its re-bump, a fill
//! that ran on a snapshot without the commit may be served: that is at most the spacing and a
//! round trip after the commit became visible (before, the row it has is what PostgreSQL
//! itself answers). A check that fails (no
//! control connection, a timeout) hands its commits to the fixed delays of
//! [`super::rebump::Rebumps`], as for a plugin that reports no transaction id, and so do the
//! commits of the next [`FAILURE_PAUSE`]: a server that cannot answer is not asked once per
//! commit. PostgreSQL before 13 has no `pg_current_snapshot()`; its older name,
//! `txid_current_snapshot()`, prints the same, and is used once the new one is missing.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use parking_lot::Mutex;
use pgcached_cache::Generations;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;

use super::rebump::{Bumped, Rebumps};
use crate::metrics::registry::REPLICATION_REBUMPS_TOTAL;
use crate::upstream::control::{ControlConnections, ControlError};

/// Least time between two checks.
pub(crate) const CHECK_SPACING: Duration = Duration::from_millis(2);
/// Most time between two checks while some commit is still running.
const MAX_SPACING: Duration = Duration::from_millis(100);
/// How long one check may take before its commits go to the fixed delays.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an idle task looks whether its queue still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Most commits waiting; past this, the oldest go to the fixed delays.
const MAX_WAITING: usize = 100_000;
/// After a failed check, how long commits go to the fixed delays without asking.
const FAILURE_PAUSE: Duration = Duration::from_secs(10);
/// SQLSTATE of a function that does not exist.
const UNDEFINED_FUNCTION: &str = "42883";

/// Which transactions a snapshot still sees as running, as `pg_current_snapshot()` prints it
/// (`xmin:xmax:xip,...`, 64-bit transaction ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    xmin: u64,
    xmax: u64,
    running: Vec<u64>,
}

impl Snapshot {
    /// Reads `pg_current_snapshot()`'s text form; `None` when it is not that.
    pub(crate) fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.trim().split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let list = parts.next()?;
        if parts.next().is_some() || xmin > xmax {
            return None;
        }
        let running = if list.is_empty() {
            Vec::new()
        } else {
            list.split(',')
                .map(|xid| xid.parse().ok())
                .collect::<Option<Vec<u64>>>()?
        };
        Some(Snapshot {
            xmin,
            xmax,
            running,
        })
    }

    /// True when the transaction with this 32-bit id (as the stream reports it) had ended
    /// when the snapshot was taken. The stream reports only transactions that started before
    /// the snapshot, so the id is the most recent one below `xmax` with these low 32 bits.
    pub(crate) fn has_ended(&self, xid: u32) -> bool {
        let behind = u64::from((self.xmax as u32).wrapping_sub(xid));
        if behind == 0 || behind > self.xmax {
            // Not assigned yet when the snapshot was taken (or not a transaction of this
            // server): not known to have ended.
            return false;
        }
        let full = self.xmax - behind;
        full < self.xmin || !self.running.contains(&full)
    }
}

/// Why no snapshot could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("pg_current_snapshot(): {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("pg_current_snapshot() returned {0:?}")]
    Unreadable(String),
}

type SnapshotFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Snapshot, SnapshotError>> + Send + 'a>>;

/// Where snapshots come from (PostgreSQL through the control connections; tests choose).
pub(crate) trait SnapshotSource: Send + Sync {
    /// A snapshot of `database`'s server, taken now.
    fn snapshot<'a>(&'a self, database: &'a str) -> SnapshotFuture<'a>;
}

/// Snapshots read on pgcached's control connection of each database.
pub(crate) struct ControlSnapshots {
    control: Arc<ControlConnections>,
    /// The server has no `pg_current_snapshot()` (before PostgreSQL 13).
    older_name: AtomicBool,
}

impl ControlSnapshots {
    pub(crate) fn new(control: Arc<ControlConnections>) -> ControlSnapshots {
        ControlSnapshots {
            control,
            older_name: AtomicBool::new(false),
        }
    }
}

impl SnapshotSource for ControlSnapshots {
    fn snapshot<'a>(&'a self, database: &'a str) -> SnapshotFuture<'a> {
        Box::pin(async move {
            let client = self.control.client(database).await?;
            let older = self.older_name.load(Ordering::Relaxed);
            let sql = if older {
                "SELECT txid_current_snapshot()"
            } else {
                "SELECT pg_current_snapshot()"
            };
            let messages = match client.simple_query(sql).await {
                Err(e)
                    if !older && e.code().map(|code| code.code()) == Some(UNDEFINED_FUNCTION) =>
                {
                    self.older_name.store(true, Ordering::Relaxed);
                    client
                        .simple_query("SELECT txid_current_snapshot()")
                        .await?
                }
                result => result?,
            };
            let text = messages.iter().find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            });
            let text = text.unwrap_or_default();
            Snapshot::parse(text).ok_or_else(|| SnapshotError::Unreadable(text.to_owned()))
        })
    }
}

/// A commit waiting to be seen ended.
struct Waiting {
    database: Arc<str>,
    xid: u32,
    bumped: Bumped,
    /// Checks that still found it running.
    running_checks: u32,
}

/// The commits waiting for a snapshot that shows them ended, and the task that checks.
pub(crate) struct Visibility {
    generations: Arc<Generations>,
    source: Arc<dyn SnapshotSource>,
    /// Where commits go when no check can tell.
    fallback: Arc<Rebumps>,
    waiting: Mutex<Vec<Waiting>>,
    wake: Arc<Notify>,
    /// Until when commits go to the fixed delays without a check (after a failed one).
    paused_until: Mutex<Option<Instant>>,
}

impl Visibility {
    /// Starts the checking task on the current runtime; `None` without one (then every commit
    /// takes the fixed delays).
    pub(crate) fn start(
        generations: Arc<Generations>,
        source: Arc<dyn SnapshotSource>,
        fallback: Arc<Rebumps>,
    ) -> Option<Arc<Visibility>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let visibility = Arc::new(Visibility {
            generations,
            source,
            fallback,
            waiting: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            paused_until: Mutex::new(None),
        });
        let weak = Arc::downgrade(&visibility);
        let wake = Arc::clone(&visibility.wake);
        runtime.spawn(async move {
            // The next check comes a spacing after the last one began ([`Visibility::spacing`]);
            // after a quiet spell the first commit is checked at once.
            let mut last_check: Option<Instant> = None;
            loop {
                let Some(visibility) = weak.upgrade() else {
                    return;
                };
                let spacing = visibility.spacing();
                drop(visibility);
                let Some(spacing) = spacing else {
                    // A commit queued meanwhile left a permit: this returns at once then.
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_CHECK) => {}
                    }
                    continue;
                };
                if let Some(last) = last_check {
                    tokio::time::sleep_until(last + spacing).await;
                }
                let Some(visibility) = weak.upgrade() else {
                    return;
                };
                last_check = Some(Instant::now());
                visibility.check_once().await;
            }
        });
        Some(visibility)
    }

    /// Queues `bumped` (applied just now) until a snapshot shows transaction `xid` ended.
    pub(crate) fn schedule(&self, database: Arc<str>, xid: u32, bumped: Bumped) {
        let overflow = {
            let mut waiting = self.waiting.lock();
            waiting.push(Waiting {
                database,
                xid,
                bumped,
                running_checks: 0,
            });
            let excess = waiting.len().saturating_sub(MAX_WAITING);
            waiting.drain(..excess).collect::<Vec<_>>()
        };
        for oldest in overflow {
            self.fallback.schedule(oldest.bumped);
        }
        self.wake.notify_one();
    }

    /// How long after the last check the next one comes: [`CHECK_SPACING`] while a commit
    /// has not been checked yet, doubling (up to [`MAX_SPACING`]) with the checks that found
    /// every waiting commit still running; `None` when nothing waits.
    fn spacing(&self) -> Option<Duration> {
        let fewest = self.waiting.lock().iter().map(|w| w.running_checks).min()?;
        Some(
            CHECK_SPACING
                .saturating_mul(1 << fewest.min(16))
                .min(MAX_SPACING),
        )
    }

    /// Checks every commit waiting now.
    async fn check_once(&self) {
        let batch = std::mem::take(&mut *self.waiting.lock());
        if batch.is_empty() {
            return;
        }
        let mut by_database: BTreeMap<Arc<str>, Vec<Waiting>> = BTreeMap::new();
        for waiting in batch {
            by_database
                .entry(Arc::clone(&waiting.database))
                .or_default()
                .push(waiting);
        }
        let paused = self
            .paused_until
            .lock()
            .is_some_and(|until| Instant::now() < until);
        let mut still_running = Vec::new();
        for (database, commits) in by_database {
            if paused {
                for commit in commits {
                    self.fallback.schedule(commit.bumped);
                }
                continue;
            }
            let snapshot =
                tokio::time::timeout(CHECK_TIMEOUT, self.source.snapshot(&database)).await;
            match snapshot {
                Ok(Ok(snapshot)) => {
                    for commit in commits {
                        if snapshot.has_ended(commit.xid) {
                            commit.bumped.apply(&self.generations);
                            counter!(REPLICATION_REBUMPS_TOTAL, "after" => "visible").increment(1);
                        } else {
                            still_running.push(Waiting {
                                running_checks: commit.running_checks.saturating_add(1),
                                ..commit
                            });
                        }
                    }
                }
                failed => {
                    let reason = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    debug!(%database, %reason, "no snapshot; commits re-bumped after fixed delays");
                    *self.paused_until.lock() = Some(Instant::now() + FAILURE_PAUSE);
                    for commit in commits {
                        self.fallback.schedule(commit.bumped);
                    }
                }
            }
        }
        if !still_running.is_empty() {
            let mut waiting = self.waiting.lock();
            let newer = std::mem::take(&mut *waiting);
            *waiting = still_running;
            waiting.extend(newer);
        }
    }
}

#[cfg(test)]
mod tests;

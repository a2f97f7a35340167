//! A streamed commit's counters are bumped again shortly after the stream reported it.
//!
//! PostgreSQL flushes a commit's WAL record before the committing backend makes the
//! transaction visible to other snapshots, and a walsender may decode and send the record in
//! between. So a read can be looked up after the stream's bump (its fill guard records the
//! bumped counters) and still take a snapshot that does not see the commit: its result is the
//! old row, and its fill would be stored, stale until the row changes again. The window is
//! normally microseconds; a stalled committing backend can stretch it.
//!
//! Bumping the same counters again after [`DELAYS`] closes it for every commit visible by
//! then: a fill in flight across the second bump is refused, and an entry stored before it is
//! dropped by it. Writes made through pgcached are not concerned (their acknowledgement, after
//! which pgcached bumps, comes after visibility). A commit still invisible after the last
//! delay is not covered here.
//!
//! This is the fallback: a commit whose transaction id the stream reports is bumped again as
//! soon as a snapshot shows it visible, however long that takes ([`super::visibility`]), and
//! comes here only when no snapshot can be read (or the plugin reports no id).
//!
//! One task per process runs the queue; bumps are atomic adds, so a re-bump costs a few
//! nanoseconds per counter, plus the misses of entries filled correctly in between.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use parking_lot::Mutex;
use pgcached_cache::Generations;
use tokio::time::Instant;

use crate::metrics::registry::REPLICATION_REBUMPS_TOTAL;
use crate::pins::writes::Bump;

/// How long after the stream's bump each re-bump comes.
pub(crate) const DELAYS: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(500)];

/// How often an idle queue's task looks whether the queue still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Most commits waiting; past this, the oldest are re-bumped at once.
const MAX_PENDING: usize = 100_000;

/// What one commit bumped.
#[derive(Debug, Clone)]
pub(crate) struct Bumped {
    /// The database, when the commit bumped it whole.
    pub(crate) database: Option<Arc<str>>,
    /// Its other bumps.
    pub(crate) bumps: Vec<Bump>,
}

impl Bumped {
    pub(crate) fn apply(&self, generations: &Generations) {
        if let Some(database) = &self.database {
            generations.bump_database(database);
        }
        for bump in &self.bumps {
            bump.apply(generations);
        }
    }
}

/// The commits waiting for their re-bumps, in the order they are due.
pub(crate) struct Rebumps {
    generations: Arc<Generations>,
    queue: Mutex<VecDeque<(Instant, usize, Arc<Bumped>)>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Rebumps {
    /// A queue over `generations`, with its task started on the current runtime (without one,
    /// as in some unit tests, [`Rebumps::run_due`] runs it by hand).
    pub(crate) fn start(generations: Arc<Generations>) -> Arc<Rebumps> {
        let rebumps = Arc::new(Rebumps {
            generations,
            queue: Mutex::new(VecDeque::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // The task holds the queue only while it runs it, and ends once it is dropped.
            let weak = Arc::downgrade(&rebumps);
            let wake = Arc::clone(&rebumps.wake);
            runtime.spawn(async move {
                while let Some(rebumps) = weak.upgrade() {
                    let now = Instant::now();
                    let next = rebumps.run_due(now).unwrap_or(now + IDLE_CHECK);
                    drop(rebumps);
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = wake.notified() => {}
                    }
                }
            });
        }
        rebumps
    }

    /// Queues `bumped` (applied just now) for its re-bumps.
    pub(crate) fn schedule(&self, bumped: Bumped) {
        let bumped = Arc::new(bumped);
        let now = Instant::now();
        {
            let mut queue = self.queue.lock();
            while queue.len() >= MAX_PENDING {
                if let Some((_, _, oldest)) = queue.pop_front() {
                    oldest.apply(&self.generations);
                }
            }
            queue.push_back((now + DELAYS[0], 0, bumped));
        }
        self.wake.notify_one();
    }

    /// Applies every re-bump due at `now`, queues the next delay of each; returns when the
    /// next one is due.
    pub(crate) fn run_due(&self, now: Instant) -> Option<Instant> {
        let mut queue = self.queue.lock();
        let mut later = Vec::new();
        while let Some((due, _, _)) = queue.front() {
            if *due > now {
                break;
            }
            let Some((due, step, bumped)) = queue.pop_front() else {
                break;
            };
            bumped.apply(&self.generations);
            counter!(REPLICATION_REBUMPS_TOTAL, "after" => "delay").increment(1);
            if let Some(next) = DELAYS.get(step + 1) {
                later.push((due - DELAYS[step] + *next, step + 1, bumped));
            }
        }
        for entry in later {
            // Later delays are due after everything queued at the first one: keep the order.
            let at = queue.partition_point(|(due, _, _)| *due <= entry.0);
            queue.insert(at, entry);
        }
        queue.front().map(|(due, _, _)| *due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgcached_cache::TableId;

    fn table() -> TableId {
        TableId {
            database: Arc::from("app"),
            oid: 7,
        }
    }

    #[test]
    fn a_commit_is_bumped_again_after_each_delay() {
        let generations = Arc::new(Generations::new());
        let rebumps = Rebumps::start(Arc::clone(&generations));
        let whole = generations.whole_table(&table());
        let database = generations.database("app");
        let start = whole.current();
        let db_start = database.current();
        let t0 = Instant::now();
        rebumps.schedule(Bumped {
            database: Some(Arc::from("app")),
            bumps: vec![Bump::Table(table())],
        });
        let due = rebumps.run_due(t0).expect("queued");
        assert!(due >= t0 + DELAYS[0], "nothing due yet");
        assert_eq!(whole.current(), start);
        let next = rebumps.run_due(t0 + DELAYS[0] + Duration::from_millis(1));
        assert_eq!(whole.current(), start + 1, "first re-bump");
        assert_eq!(database.current(), db_start + 1);
        let next = next.expect("a second re-bump is queued");
        assert!(next >= t0 + DELAYS[1] - Duration::from_millis(1));
        assert_eq!(rebumps.run_due(next), None, "no more after the last delay");
        assert_eq!(whole.current(), start + 2, "second re-bump");
    }
}

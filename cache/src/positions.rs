//! WAL positions: how far each database's change stream has got, and bounds on the positions
//! of changes made through this pgcached.
//!
//! Generations say *that* something changed; positions say *when*, on PostgreSQL's own clock
//! (the WAL position, LSN), which every pgcached in front of the same server shares. A result
//! filled by one pgcached is stamped with its stream's position at the lookup ([`Stamp`]):
//! every transaction committed up to there had been reported before the query was sent, so the
//! result reflects it. Another pgcached may serve that result while nothing it depends on has
//! changed after the stamp, as far as that pgcached knows (ARCHITECTURE.md, "The shared tier").
//!
//! Each counter of [`crate::Generations`] keeps, beside its count, the position of the last
//! change the stream reported for it, and the *ticket* of the last change made through this
//! pgcached (a proxied write, an `INVALIDATE`): such a change is acknowledged before its
//! position is known. Tickets are numbered in the order they are taken; [`Positions::resolve`]
//! records that every ticket up to some number belongs to a change committed at or before a
//! WAL position read afterwards (`pg_current_wal_insert_lsn()`), which bounds it from above.
//!
//! Per database, a [`Standing`]: the stream's position, where its coverage starts (the slot's
//! consistent point; unknown while no stream runs), and the catalog digest the watcher last
//! read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// Resolutions kept; an older ticket is bounded by the oldest one kept (a later, so larger,
/// position: safe, only less precise).
const RESOLUTIONS_KEPT: usize = 1024;

/// No position (no stream, no digest).
const NONE: u64 = u64::MAX;

/// What a fill records about where its database stood at the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// The stream's position: every transaction committed up to it had been reported before
    /// the lookup, so the result reflects it.
    pub position: u64,
    /// A hash of the catalog digest the watcher had read (0: none read yet).
    pub catalog: u64,
}

/// The last known change of everything a result depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastChange {
    /// No change after this position is known.
    At(u64),
    /// A change made through this pgcached is not bounded yet.
    Unresolved,
}

/// Where one database stands.
#[derive(Debug)]
pub struct Standing {
    applied: AtomicU64,
    since: AtomicU64,
    catalog: AtomicU64,
}

impl Default for Standing {
    fn default() -> Standing {
        Standing {
            applied: AtomicU64::new(0),
            since: AtomicU64::new(NONE),
            catalog: AtomicU64::new(0),
        }
    }
}

impl Standing {
    /// Every commit up to this position was reported before now.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Where the running stream's coverage starts: every commit after it is reported. `None`
    /// while no stream runs.
    pub fn since(&self) -> Option<u64> {
        match self.since.load(Ordering::Acquire) {
            NONE => None,
            since => Some(since),
        }
    }

    /// The catalog digest's hash the watcher last read (0: none).
    pub fn catalog(&self) -> u64 {
        self.catalog.load(Ordering::Acquire)
    }
}

/// Every database's standing, and the tickets of changes made through this pgcached.
#[derive(Debug, Default)]
pub struct Positions {
    tickets: AtomicU64,
    /// `(ticket, position)`: every change with a ticket up to `ticket` committed at or before
    /// `position`. Both increase along the queue.
    resolutions: Mutex<VecDeque<(u64, u64)>>,
    databases: RwLock<HashMap<Arc<str>, Arc<Standing>>>,
    taken: Notify,
}

impl Positions {
    /// The standing of `database` (created on first use).
    pub fn standing(&self, database: &str) -> Arc<Standing> {
        if let Some(standing) = self.databases.read().get(database) {
            return Arc::clone(standing);
        }
        Arc::clone(
            self.databases
                .write()
                .entry(Arc::from(database))
                .or_default(),
        )
    }

    /// What a lookup in `database` records now.
    pub fn stamp(&self, database: &str) -> Stamp {
        let standing = self.standing(database);
        Stamp {
            position: standing.applied(),
            catalog: standing.catalog(),
        }
    }

    /// A stream of `database` started: it reports every commit after `since`, and every commit
    /// up to `since` happened before now.
    pub fn stream_started(&self, database: &str, since: u64) {
        let standing = self.standing(database);
        standing.applied.fetch_max(since, Ordering::AcqRel);
        standing.since.store(since, Ordering::Release);
    }

    /// The stream of `database` stopped: nothing after its last position is known.
    pub fn stream_stopped(&self, database: &str) {
        self.standing(database).since.store(NONE, Ordering::Release);
    }

    /// PostgreSQL is another server: no stream runs, and no position read from the old one
    /// counts (the next stream's start sets them again).
    pub fn server_changed(&self) {
        for standing in self.databases.read().values() {
            standing.since.store(NONE, Ordering::Release);
            standing.applied.store(0, Ordering::Release);
        }
    }

    /// Every commit of `database` up to `position` has been applied.
    pub fn advance(&self, database: &str, position: u64) {
        self.standing(database)
            .applied
            .fetch_max(position, Ordering::AcqRel);
    }

    /// The watcher read the catalog of `database` (`None`: it could not).
    pub fn set_catalog(&self, database: &str, digest: Option<u64>) {
        self.standing(database)
            .catalog
            .store(digest.unwrap_or(0), Ordering::Release);
    }

    /// A ticket for a change made through this pgcached, acknowledged now.
    pub(crate) fn take_ticket(&self) -> u64 {
        let ticket = self.tickets.fetch_add(1, Ordering::AcqRel) + 1;
        self.taken.notify_one();
        ticket
    }

    /// The newest ticket not yet bounded, if any.
    pub fn unresolved(&self) -> Option<u64> {
        let last = self.tickets.load(Ordering::Acquire);
        let resolved = self.resolutions.lock().back().map_or(0, |(t, _)| *t);
        (last > resolved).then_some(last)
    }

    /// An upper bound of the positions of every change made through this pgcached so far (0:
    /// none), or `None` while the newest one is not resolved.
    pub fn own_changes_bound(&self) -> Option<u64> {
        self.bound(self.tickets.load(Ordering::Acquire))
    }

    /// Every ticket up to `ticket` belongs to a change committed at or before `position`
    /// (read after the ticket was taken).
    pub fn resolve(&self, ticket: u64, position: u64) {
        let mut resolutions = self.resolutions.lock();
        if resolutions.back().is_some_and(|(t, _)| *t >= ticket) {
            return;
        }
        resolutions.push_back((ticket, position));
        while resolutions.len() > RESOLUTIONS_KEPT {
            resolutions.pop_front();
        }
    }

    /// An upper bound of the position of the change with this ticket (0: no ticket), or `None`
    /// while it is not resolved.
    pub fn bound(&self, ticket: u64) -> Option<u64> {
        if ticket == 0 {
            return Some(0);
        }
        let resolutions = self.resolutions.lock();
        let first = resolutions.partition_point(|(t, _)| *t < ticket);
        resolutions.get(first).map(|(_, position)| *position)
    }

    /// Completes when a ticket is taken (for the task that resolves them).
    pub async fn ticket_taken(&self) {
        self.taken.notified().await;
    }

    /// The databases with a standing.
    pub fn databases(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.databases.read().keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_bounded_by_the_first_resolution_after_them() {
        let p = Positions::default();
        assert_eq!(p.unresolved(), None);
        let a = p.take_ticket();
        let b = p.take_ticket();
        assert_eq!(p.unresolved(), Some(b));
        assert_eq!(p.bound(a), None, "unresolved");
        p.resolve(a, 100);
        assert_eq!(p.bound(a), Some(100));
        assert_eq!(p.bound(b), None);
        p.resolve(b, 250);
        assert_eq!(p.bound(b), Some(250));
        assert_eq!(p.bound(a), Some(100), "the earliest bound that covers it");
        assert_eq!(p.bound(0), Some(0));
        assert_eq!(p.unresolved(), None);
        p.resolve(a, 50);
        assert_eq!(p.bound(b), Some(250), "an older resolution changes nothing");
    }

    #[test]
    fn own_changes_are_bounded_once_the_newest_is_resolved() {
        let p = Positions::default();
        assert_eq!(p.own_changes_bound(), Some(0), "no change yet");
        let a = p.take_ticket();
        assert_eq!(p.own_changes_bound(), None);
        p.resolve(a, 100);
        assert_eq!(p.own_changes_bound(), Some(100));
        let b = p.take_ticket();
        assert_eq!(p.own_changes_bound(), None, "the newest is not bounded yet");
        p.resolve(b, 180);
        assert_eq!(p.own_changes_bound(), Some(180));
    }

    #[test]
    fn old_tickets_get_a_later_bound_once_theirs_is_forgotten() {
        let p = Positions::default();
        let first = p.take_ticket();
        p.resolve(first, 10);
        for position in 0..RESOLUTIONS_KEPT as u64 + 5 {
            let ticket = p.take_ticket();
            p.resolve(ticket, 20 + position);
        }
        let bound = p.bound(first).expect("bounded");
        assert!(bound > 10, "a later position bounds it too: {bound}");
    }

    #[test]
    fn a_stream_sets_where_its_coverage_starts() {
        let p = Positions::default();
        assert_eq!(p.standing("app").since(), None);
        p.stream_started("app", 500);
        assert_eq!(p.standing("app").since(), Some(500));
        assert_eq!(p.stamp("app").position, 500);
        p.advance("app", 700);
        p.advance("app", 600);
        assert_eq!(p.stamp("app").position, 700, "never goes back");
        p.set_catalog("app", Some(9));
        assert_eq!(p.stamp("app").catalog, 9);
        p.stream_stopped("app");
        assert_eq!(p.standing("app").since(), None);
        assert_eq!(p.stamp("app").position, 700);
        p.stream_started("app", 800);
        p.server_changed();
        assert_eq!(p.standing("app").since(), None);
        assert_eq!(
            p.stamp("app").position,
            0,
            "the old server's positions are forgotten"
        );
        p.stream_started("app", 300);
        assert_eq!(p.stamp("app").position, 300, "the new server's clock");
    }
}

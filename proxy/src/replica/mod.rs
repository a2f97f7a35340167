//! Read replicas (`--replica`): cacheable-read misses answered by a streaming standby once it
//! has replayed everything the answer must show.
//!
//! A miss is a fill like any other: the session parks on the fill's flight, a task here runs
//! the read on a replica and fills the cache through the same guard (so a change that arrives
//! meanwhile still refuses the fill), and the session's retry answers from the cache. When the
//! replica cannot answer (lagging, down, a connection problem, an answer a capture would not
//! keep), the guard is dropped and the retry relays the read to the primary as without
//! replicas. The client never sees a replica's error.
//!
//! **How far a replica must have replayed.** A result filled now must reflect every change
//! the cache already knows of on what the read depends on, else it would outlive the
//! invalidation that should have removed it. At the lookup the guard records the read's
//! dependencies (tables, row keys, the database), and with each counter the position of its
//! last change: the change stream's commit position for changes made elsewhere, and for a
//! write acknowledged through pgcached an upper bound read afterwards
//! (`pg_current_wal_insert_lsn()`, [`pgcached_cache::Positions::resolve`]). The replica must
//! have replayed past the newest of them ([`FillGuard::last_change`]) and past the start of
//! the database's stream (changes before it are not in the counters). Until a write made
//! through pgcached is bounded, misses that depend on it go to the primary, so a client that
//! wrote and reads again (or any other client) always sees the write.
//!
//! The replica's replay position ([`monitor`]) only grows, and a standby's snapshot taken after
//! it includes every transaction whose commit record was replayed; so a read sent once the
//! position passed that bound sees every change the cache knows of on its dependencies. A
//! change it does not know of yet is reported by the stream later and invalidates the entry,
//! exactly as for a result read from the primary; so a replica adds no staleness beyond the
//! stream's own delay. Without a running stream for the database, a private session state, or
//! a login pgcached cannot repeat, reads go to the primary.
//!
//! **Slow reads.** A client's cancel request reaches the primary backend whose key it holds,
//! not a replica connection; so a replica has [`FETCH_TIMEOUT`] for a miss, after which its
//! statement is cancelled there and the read relayed to the primary. The statement (its label)
//! then stays on the primary for [`SLOW_FOR`].
//!
//! Layout:
//! - this file: the replicas and the routing decision.
//! - [`fill`]: the task that runs a miss on a replica and fills the cache with its answer.
//! - [`monitor`]: each replica's replay position, lag and identity, checked continuously.
//! - [`pool`]: idle connections per role, database and session state.
//! - [`connection`]: one connection: login as the client's role, its state replayed, reads.
//! - [`request`]: a miss as the replica runs it, and its answer as the cache stores it.

pub(crate) mod connection;
mod fill;
pub(crate) mod monitor;
pub(crate) mod pool;
pub(crate) mod request;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::counter;
use parking_lot::Mutex;
use pgcached_cache::{FillGuard, FillWait, Generations, LastChange};

use crate::auth::credential::Credential;
use crate::auth::Verifiers;
use crate::metrics::registry::REPLICA_ROUTES_TOTAL;
use crate::session::fingerprint::Fingerprint;
use crate::upstream::control::ControlConnections;
use crate::upstream::primary::Upstreams;
use crate::upstream::url::UpstreamUrl;
use crate::upstream::Connector;
use fill::Read;
use pool::{Pool, PoolKey};
pub(crate) use request::ReplicaRequest;

/// The longest a replica may take to answer one miss (login included); then its statement is
/// cancelled and the read goes to the primary, where the client's own cancel request reaches
/// it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a statement that took longer than [`FETCH_TIMEOUT`] on a replica reads from the
/// primary only.
const SLOW_FOR: Duration = Duration::from_secs(600);
/// Slow statements remembered at most; past this the memory starts over.
const MAX_SLOW: usize = 10_000;
/// How long a role whose login a replica refused reads from the primary only.
const REFUSED_FOR: Duration = Duration::from_secs(30);

/// Why a miss went to the primary rather than a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrimaryReason {
    /// The session's login left nothing pgcached can present (md5, a SCRAM exchange without
    /// the auth query's verifier).
    NoCredential,
    /// The session's state is not known (its fingerprint is private).
    PrivateState,
    /// The database has no running change stream.
    NoStream,
    /// A change the read depends on, made through pgcached, has no bound on its position yet.
    OwnWriteUnbounded,
    /// No usable replica has replayed the read's dependencies' last change.
    Lagging,
    /// No replica is usable (down, not a standby of this primary).
    Unavailable,
    /// A replica refused this role's login recently.
    LoginRefused,
    /// The statement took longer than a replica may take, recently.
    Slow,
}

impl PrimaryReason {
    /// Every reason, in the order the console lists them.
    pub(crate) const ALL: [PrimaryReason; 8] = [
        PrimaryReason::Lagging,
        PrimaryReason::OwnWriteUnbounded,
        PrimaryReason::Unavailable,
        PrimaryReason::NoStream,
        PrimaryReason::NoCredential,
        PrimaryReason::PrivateState,
        PrimaryReason::LoginRefused,
        PrimaryReason::Slow,
    ];

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            PrimaryReason::NoCredential => "no_credential",
            PrimaryReason::PrivateState => "private_state",
            PrimaryReason::NoStream => "no_stream",
            PrimaryReason::OwnWriteUnbounded => "own_write_unbounded",
            PrimaryReason::Lagging => "lagging",
            PrimaryReason::Unavailable => "unavailable",
            PrimaryReason::LoginRefused => "login_refused",
            PrimaryReason::Slow => "slow",
        }
    }
}

/// What a session's login lets pgcached do on replicas.
pub(crate) struct ReplicaLogin {
    /// The role.
    pub(crate) role: String,
    /// The database.
    pub(crate) database: String,
    /// What the login left to present.
    pub(crate) credential: Credential,
}

/// Where a miss goes.
pub(crate) enum Routed {
    /// A replica answers it: wait, then look up again.
    Waiting(FillWait),
    /// The primary answers it (the guard back; the reason was counted).
    Primary(FillGuard),
}

/// One replica.
pub(crate) struct Replica {
    /// `host:port`, as metrics and the console name it.
    pub(crate) address: String,
    url: UpstreamUrl,
    connector: Connector,
    /// Its replay position while usable; 0 while not.
    usable_at: AtomicU64,
    /// What the last check found, for the console.
    pub(crate) status: Mutex<monitor::Status>,
    pool: Pool,
    /// Roles whose login it refused, until when.
    refused: Mutex<HashMap<(String, String), Instant>>,
    /// Reads it answered, by outcome.
    pub(crate) totals: Totals,
}

/// A replica's read counts.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    /// Misses it filled.
    pub(crate) filled: AtomicU64,
    /// Misses it could not fill (any other outcome).
    pub(crate) fell_back: AtomicU64,
}

/// The replicas of one pgcached.
pub struct Replicas {
    replicas: Vec<Arc<Replica>>,
    generations: Arc<Generations>,
    upstreams: Arc<Upstreams>,
    /// pgcached's own connections to the primary (its settings, compared with each replica's).
    control: Arc<ControlConnections>,
    verifiers: Option<Arc<Verifiers>>,
    next: AtomicUsize,
    max_entry: usize,
    /// Misses sent to the primary, by reason (in [`PrimaryReason::ALL`]'s order), for the
    /// console.
    primary_reads: [AtomicU64; PrimaryReason::ALL.len()],
    /// Statements (by label) that took too long on a replica, until when they stay on the
    /// primary.
    slow: Mutex<HashMap<Arc<str>, Instant>>,
}

impl Replicas {
    /// Replicas at `urls`, each with at most `pool_size` connections; the monitors start.
    pub fn start(
        urls: &[UpstreamUrl],
        pool_size: usize,
        generations: Arc<Generations>,
        control: Arc<ControlConnections>,
        verifiers: Option<Arc<Verifiers>>,
        max_entry: usize,
    ) -> Result<Arc<Replicas>, crate::tls::TlsConfigError> {
        let upstreams = Arc::clone(control.upstreams());
        let mut replicas = Vec::with_capacity(urls.len());
        for url in urls {
            replicas.push(Arc::new(Replica {
                address: url.address(),
                url: url.clone(),
                connector: Connector::unmonitored(url.clone())?,
                usable_at: AtomicU64::new(0),
                status: Mutex::new(monitor::Status::default()),
                pool: Pool::new(pool_size),
                refused: Mutex::new(HashMap::new()),
                totals: Totals::default(),
            }));
        }
        let replicas = Arc::new(Replicas {
            replicas,
            generations,
            upstreams,
            control,
            verifiers,
            next: AtomicUsize::new(0),
            max_entry,
            primary_reads: Default::default(),
            slow: Mutex::new(HashMap::new()),
        });
        for replica in &replicas.replicas {
            tokio::spawn(monitor::run(Arc::clone(replica), Arc::clone(&replicas)));
        }
        Ok(replicas)
    }

    /// The replicas, for the console.
    pub(crate) fn all(&self) -> &[Arc<Replica>] {
        &self.replicas
    }

    /// The newest WAL position pgcached knows of: its streams' and its own writes' bounds.
    pub(crate) fn newest_known_position(&self) -> u64 {
        let positions = self.generations.positions();
        let streams = positions
            .databases()
            .iter()
            .map(|database| positions.standing(database).applied())
            .max()
            .unwrap_or(0);
        streams.max(positions.own_changes_bound().unwrap_or(0))
    }

    /// Misses sent to the primary so far, by reason.
    pub(crate) fn primary_reads(&self) -> Vec<(&'static str, u64)> {
        PrimaryReason::ALL
            .iter()
            .zip(&self.primary_reads)
            .map(|(reason, count)| (reason.label(), count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    /// Sends the miss of `guard` to a replica that has replayed far enough, or gives the guard
    /// back for the primary.
    pub(crate) fn route(
        self: &Arc<Self>,
        guard: FillGuard,
        request: ReplicaRequest,
        label: &Arc<str>,
        login: &Arc<ReplicaLogin>,
        fingerprint: &Fingerprint,
    ) -> Routed {
        match self.choose(&guard, label, login, fingerprint) {
            Ok(replica) => match guard.wait() {
                Some(wait) => {
                    counter!(REPLICA_ROUTES_TOTAL, "route" => "replica").increment(1);
                    let replicas = Arc::clone(self);
                    let login = Arc::clone(login);
                    let key = PoolKey::new(&login.role, &login.database, fingerprint.as_bytes());
                    let state = fingerprint.clone();
                    let label = Arc::clone(label);
                    tokio::spawn(async move {
                        let read = Read {
                            request,
                            label,
                            login,
                            key,
                            state,
                        };
                        replicas.answer(replica, guard, read).await
                    });
                    Routed::Waiting(wait)
                }
                None => self.primary(guard, PrimaryReason::Unavailable),
            },
            Err(reason) => self.primary(guard, reason),
        }
    }

    fn primary(&self, guard: FillGuard, reason: PrimaryReason) -> Routed {
        counter!(REPLICA_ROUTES_TOTAL, "route" => reason.label()).increment(1);
        if let Some(index) = PrimaryReason::ALL.iter().position(|r| *r == reason) {
            self.primary_reads[index].fetch_add(1, Ordering::Relaxed);
        }
        Routed::Primary(guard)
    }

    /// The replica to ask, or why none.
    fn choose(
        &self,
        guard: &FillGuard,
        label: &Arc<str>,
        login: &ReplicaLogin,
        fingerprint: &Fingerprint,
    ) -> Result<Arc<Replica>, PrimaryReason> {
        if fingerprint.is_private() {
            return Err(PrimaryReason::PrivateState);
        }
        {
            let slow = self.slow.lock();
            if !slow.is_empty() && slow.get(label).is_some_and(|until| Instant::now() < *until) {
                return Err(PrimaryReason::Slow);
            }
        }
        if !login.credential.is_usable(self.verifiers.as_deref()) {
            return Err(PrimaryReason::NoCredential);
        }
        let since = self
            .generations
            .positions()
            .standing(guard.database())
            .since()
            .ok_or(PrimaryReason::NoStream)?;
        let need = match guard.last_change() {
            LastChange::At(position) => position.max(since),
            LastChange::Unresolved => return Err(PrimaryReason::OwnWriteUnbounded),
        };
        let positions: Vec<u64> = self
            .replicas
            .iter()
            .map(|r| r.usable_at.load(Ordering::Acquire))
            .collect();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let index = pick(&positions, need, start).ok_or_else(|| {
            if positions.iter().any(|p| *p > 0) {
                PrimaryReason::Lagging
            } else {
                PrimaryReason::Unavailable
            }
        })?;
        let replica = &self.replicas[index];
        let refused = {
            let refused = replica.refused.lock();
            !refused.is_empty()
                && refused
                    .get(&(login.role.clone(), login.database.clone()))
                    .is_some_and(|until| Instant::now() < *until)
        };
        if refused {
            return Err(PrimaryReason::LoginRefused);
        }
        Ok(Arc::clone(replica))
    }
}
/// The replica to ask among `positions` (each replica's usable replay position, 0 when not
/// usable) for a read that needs `need`: the first, from `start` round, that has replayed it.
fn pick(positions: &[u64], need: u64, start: usize) -> Option<usize> {
    let count = positions.len();
    (0..count)
        .map(|i| (start + i) % count)
        .find(|&i| positions[i] > 0 && positions[i] >= need)
}

impl Replica {
    /// Its check connection's URL (pgcached's own credentials).
    pub(crate) fn url(&self) -> &UpstreamUrl {
        &self.url
    }

    /// Sets what the last check found usable: its replay position, or 0.
    pub(crate) fn set_usable_at(&self, position: u64) {
        let before = self.usable_at.swap(position, Ordering::AcqRel);
        if position == 0 && before != 0 {
            self.pool.clear();
        }
    }

    /// Connections open and idle.
    pub(crate) fn connections(&self) -> (usize, usize) {
        self.pool.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_picked_only_once_it_has_replayed_what_is_needed() {
        assert_eq!(pick(&[100, 300], 200, 0), Some(1));
        assert_eq!(pick(&[100, 300], 400, 0), None, "both lag");
        assert_eq!(pick(&[0, 0], 0, 0), None, "none usable, even for nothing");
        assert_eq!(pick(&[500, 500], 200, 0), Some(0));
        assert_eq!(pick(&[500, 500], 200, 1), Some(1), "round robin");
        assert_eq!(pick(&[], 0, 3), None);
    }

    #[test]
    fn reasons_have_distinct_labels() {
        let labels: std::collections::HashSet<_> =
            PrimaryReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), PrimaryReason::ALL.len());
    }
}

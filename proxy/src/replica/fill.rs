//! The task that answers one miss on a replica: a pooled connection of the session's role and
//! state (or a new one, logged in and brought to that state), the read within
//! [`FETCH_TIMEOUT`], and the fill through the session's guard. Every way it can fail ends in
//! the guard being dropped, so the parked session relays the read to the primary.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use metrics::counter;
use pgcached_cache::{FillGuard, FillOutcome};
use tracing::{debug, info};

use super::connection::{ConnectionError, ReplicaConnection};
use super::pool::{Pool, PoolKey, Taken};
use super::{
    Replica, ReplicaLogin, ReplicaRequest, Replicas, FETCH_TIMEOUT, MAX_SLOW, REFUSED_FOR, SLOW_FOR,
};
use crate::metrics::registry::REPLICA_READS_TOTAL;
use crate::session::fingerprint::Fingerprint;

/// How a replica's attempt at a miss ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadOutcome {
    /// Its answer filled the cache.
    Filled,
    /// It answered, but not with something the cache keeps (an error, a notice, too large).
    Unfit,
    /// A change arrived meanwhile: the answer was not stored.
    Stale,
    /// Every connection to it was busy.
    Busy,
    /// It took longer than [`FETCH_TIMEOUT`]: its statement was cancelled.
    Slow,
    /// The connection, login or session state failed.
    Failed,
}

impl ReadOutcome {
    fn label(self) -> &'static str {
        match self {
            ReadOutcome::Filled => "filled",
            ReadOutcome::Unfit => "unfit",
            ReadOutcome::Stale => "stale",
            ReadOutcome::Busy => "busy",
            ReadOutcome::Slow => "slow",
            ReadOutcome::Failed => "failed",
        }
    }
}

impl Replicas {
    /// Runs the miss on `replica` and fills the cache with its answer.
    pub(super) async fn answer(&self, replica: Arc<Replica>, guard: FillGuard, read: Read) {
        let outcome = match self.run(&replica, &read).await {
            Ok(Some((response, meta))) => match guard.fill(response, meta) {
                FillOutcome::Stored => ReadOutcome::Filled,
                FillOutcome::Stale | FillOutcome::Expired => ReadOutcome::Stale,
                FillOutcome::TooLarge => ReadOutcome::Unfit,
            },
            Ok(None) => ReadOutcome::Unfit,
            Err(Failure::Busy) => ReadOutcome::Busy,
            Err(Failure::UnknownState) => ReadOutcome::Failed,
            Err(Failure::Slow) => {
                let mut slow = self.slow.lock();
                if slow.len() >= MAX_SLOW {
                    slow.clear();
                }
                slow.insert(Arc::clone(&read.label), Instant::now() + SLOW_FOR);
                ReadOutcome::Slow
            }
            Err(Failure::Connection(error)) => {
                let login = &read.login;
                if error.is_login_refusal() {
                    info!(
                        replica = %replica.address,
                        role = %login.role,
                        database = %login.database,
                        "{error}; this role reads from the primary for {}s",
                        REFUSED_FOR.as_secs()
                    );
                    replica.refused.lock().insert(
                        (login.role.clone(), login.database.clone()),
                        Instant::now() + REFUSED_FOR,
                    );
                } else {
                    debug!(replica = %replica.address, "{error}");
                }
                ReadOutcome::Failed
            }
        };
        let totals = &replica.totals;
        match outcome {
            ReadOutcome::Filled => totals.filled.fetch_add(1, Ordering::Relaxed),
            _ => totals.fell_back.fetch_add(1, Ordering::Relaxed),
        };
        counter!(
            REPLICA_READS_TOTAL,
            "replica" => replica.address.clone(),
            "outcome" => outcome.label()
        )
        .increment(1);
    }

    /// A connection of the session's role and state (pooled or new), then the read, all
    /// within [`FETCH_TIMEOUT`]; a statement still running then is cancelled.
    async fn run(&self, replica: &Replica, read: &Read) -> Result<Option<(Bytes, Bytes)>, Failure> {
        let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
        let mut attempt = self.attempt(replica, read, deadline).await;
        // An idle connection the replica closed meanwhile (a restart, idle_session_timeout):
        // once more on a new one; a read may run twice.
        if let Err(Attempt::IdleLost) = attempt {
            attempt = self.attempt(replica, read, deadline).await;
        }
        attempt.map_err(|failed| match failed {
            Attempt::Failed(failure) => failure,
            Attempt::IdleLost => Failure::Connection(ConnectionError::Lost(
                "the replica closed two connections in a row".to_owned(),
            )),
        })
    }

    /// One try on a pooled or new connection, until `deadline`.
    async fn attempt(
        &self,
        replica: &Replica,
        read: &Read,
        deadline: tokio::time::Instant,
    ) -> Result<Option<(Bytes, Bytes)>, Attempt> {
        let (mut pooled, idle) = match replica.pool.take(&read.key) {
            Taken::Idle(pooled) => (pooled, true),
            Taken::Full => return Err(Attempt::Failed(Failure::Busy)),
            Taken::Room(slot) => {
                let opened = tokio::time::timeout_at(deadline, self.open(replica, read))
                    .await
                    .map_err(|_| Attempt::Failed(Failure::Slow))?
                    .map_err(Attempt::Failed)?;
                (Pool::pooled(opened, slot), false)
            }
        };
        let cancel = pooled.connection.cancel_request();
        match tokio::time::timeout_at(
            deadline,
            pooled.connection.run(&read.request, self.max_entry),
        )
        .await
        {
            Ok(Ok(answer)) => {
                replica.pool.give_back(read.key.clone(), pooled);
                Ok(answer)
            }
            Ok(Err(ConnectionError::Lost(_))) if idle => Err(Attempt::IdleLost),
            Ok(Err(error)) => Err(Attempt::Failed(Failure::Connection(error))),
            Err(_) => {
                if let Some(packet) = cancel {
                    let connector = replica.connector.clone();
                    tokio::spawn(async move {
                        let _ = crate::upstream::forward_cancel(&connector, &packet).await;
                    });
                }
                Err(Attempt::Failed(Failure::Slow))
            }
        }
    }

    async fn open(&self, replica: &Replica, read: &Read) -> Result<ReplicaConnection, Failure> {
        let login = &read.login;
        let replay = read.state.replay().ok_or(Failure::UnknownState)?;
        let resolved = login
            .credential
            .resolve(&login.role, self.verifiers.as_deref())
            .await
            .ok_or(Failure::Connection(ConnectionError::Login(
                crate::upstream::own_login::LoginError::NoPassword,
            )))?;
        ReplicaConnection::open(
            &replica.connector,
            &login.role,
            &login.database,
            &replay,
            resolved.secret(),
        )
        .await
        .map_err(Failure::Connection)
    }
}

/// One miss handed to a replica.
pub(super) struct Read {
    /// The miss.
    pub(super) request: ReplicaRequest,
    /// The statement without its literals (what [`Replicas::slow`] remembers).
    pub(super) label: Arc<str>,
    /// Who asks.
    pub(super) login: Arc<ReplicaLogin>,
    /// The pool the connection comes from: role, database, state.
    pub(super) key: PoolKey,
    /// The session state to replay on a new connection.
    pub(super) state: Fingerprint,
}

/// How one try ended when it did not answer.
enum Attempt {
    /// An idle connection turned out closed: worth one more try.
    IdleLost,
    /// Anything else.
    Failed(Failure),
}

/// Why a replica did not answer.
enum Failure {
    /// It took longer than [`FETCH_TIMEOUT`].
    Slow,
    /// No connection free.
    Busy,
    /// The session's state cannot be replayed (it turned private).
    UnknownState,
    /// The connection failed.
    Connection(ConnectionError),
}

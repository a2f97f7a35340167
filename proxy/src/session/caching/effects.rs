//! What a relayed statement does to its session, and the cache key of a read.
//!
//! A statement that changes session state (`SET`, `RESET`, `SET ROLE`, `DISCARD`, ...) is
//! folded into the session's fingerprint, so later reads share entries only with sessions in
//! the same state. One whose effect on the session cannot be known (`set_config`, `DO`, a
//! function not yet checked, temporary objects) makes the fingerprint private. A write, or
//! anything that may write, adds to its request's [`WriteScope`], applied when PostgreSQL
//! acknowledges it ([`super::writes`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use pgcached_cache::{CacheKey, Dependencies, Entry, FillGuard, FillWait, Lookup};

use super::expect::Expect;
use super::transaction::TxEffect;
use super::writes::{OwnedValues, PendingWrite, WriteScope};
use super::CachePath;
use crate::bypass::BypassReason;
use crate::classify::{CacheableRead, Class, Protocol, WriteClass};
use crate::pins::reads::{row_dependencies, ExecutionValues, ReadParameters};
use crate::replica::{ReplicaRequest, Routed};
use crate::shared_cache::{Fallback, Fetch};
use crate::sql::transaction::mentions_isolation;
use crate::sql::IsolationSetting;
use crate::stats::QueryKind as StatementKind;
use crate::wire::backend::TransactionStatus;

/// Whether a read of a held batch can be answered here.
pub(crate) enum Answerable {
    /// In memory.
    Hit(Arc<Entry>),
    /// Being filled (by another session, or from the shared tier): wait, then look again.
    Wait(FillWait),
    /// Not without PostgreSQL.
    No,
}

/// A held batch's miss, kept from the attempt to answer the batch locally for the capture of
/// its relay ([`CachePath::take_kept_miss`]).
pub(crate) struct KeptMiss {
    key: CacheKey,
    kept: Kept,
}

/// What was kept of a miss.
enum Kept {
    /// The flight, dependencies not recorded yet.
    Reservation(pgcached_cache::Reservation),
    /// The guard, dependencies recorded (it came back from the shared tier or a replica).
    Guard(FillGuard),
}

/// What a counted lookup found.
pub(crate) enum Found {
    /// A current entry.
    Hit(Arc<Entry>),
    /// A miss: relay and fill through this guard (already told the read's TTL and label).
    Miss(FillGuard),
    /// Another session is filling the key.
    Wait(FillWait),
    /// Not to be looked up now (the reason was counted): relay uncached.
    Relay,
}

/// Which protocol a key is for: a simple Query or an extended Execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyProtocol {
    /// Simple Query.
    Simple,
    /// Extended protocol, an Execute with this row limit (0: all rows). A limited result is
    /// its first rows and PortalSuspended, a different answer from the whole one.
    Extended(u32),
}

/// True for `DISCARD ALL`, `DISCARD PLANS`, `DEALLOCATE ...`: statements that make the server
/// forget prepared statements.
fn drops_prepared_statements(sql: &[u8]) -> bool {
    let text = sql.trim_ascii_start();
    let starts =
        |word: &[u8]| text.len() >= word.len() && text[..word.len()].eq_ignore_ascii_case(word);
    starts(b"deallocate") || starts(b"discard")
}

/// What a statement of unknown reach may write: the whole database, and its catalog when the
/// text may change it (DDL, `DO`, a `SELECT … INTO`).
fn unknown_writes(sql: &[u8]) -> WriteScope {
    if crate::sql::catalog_change::may_change_catalog(&String::from_utf8_lossy(sql)) {
        WriteScope::Catalog
    } else {
        WriteScope::Database
    }
}

/// The kind counted for a statement relayed without a cache lookup.
pub(crate) fn statement_kind(class: &Class) -> StatementKind {
    match class {
        Class::Cacheable(_)
        | Class::Classifying { .. }
        | Class::Uncacheable(_)
        | Class::CallsVolatile { .. } => StatementKind::ReadUncacheable,
        Class::Write(_) => StatementKind::Write,
        Class::SessionState(_)
        | Class::TempObjects
        | Class::TransactionControl(_)
        | Class::Other => StatementKind::Other,
    }
}

impl CachePath {
    /// The class of a statement text that arrived by `protocol`.
    pub(crate) fn classify(&self, sql: &Bytes, protocol: Protocol) -> Class {
        match std::str::from_utf8(sql) {
            Ok(text) => self
                .backend
                .classify
                .classify(&self.database, text, protocol),
            Err(_) => Class::Other,
        }
    }

    /// Applies what a statement about to be relayed does to the session; `values` are where
    /// its parameters come from (its Bind, or its literals).
    pub(crate) fn apply_effects(&mut self, class: &Class, sql: &[u8], values: OwnedValues) {
        if drops_prepared_statements(sql) {
            // DISCARD ALL / DEALLOCATE: the server forgets prepared statements; so do we, so
            // that a later Bind of one reaches the server and gets its error.
            self.statements.clear();
        }
        match class {
            Class::SessionState(setting) => {
                // A statement that only sets the isolation level changes no result: the level
                // decides whether anything is served at all (`transaction_allows`).
                if !matches!(
                    setting,
                    IsolationSetting::Current(_) | IsolationSetting::Default(Some(_))
                ) {
                    self.fingerprint.fold(sql);
                }
                if *setting != IsolationSetting::Untouched {
                    self.request_tx.push(TxEffect::Setting(*setting));
                }
            }
            Class::TransactionControl(step) => self.request_tx.push(TxEffect::Step(*step)),
            Class::TempObjects => self.fingerprint.make_private(),
            Class::CallsVolatile {
                may_change_session,
                may_change_isolation,
            } => {
                if *may_change_session {
                    // A function pgcached does not know may change settings or write any
                    // table.
                    self.fingerprint.make_private();
                    self.add_writes(unknown_writes(sql));
                }
                if *may_change_isolation {
                    self.request_tx
                        .push(TxEffect::Setting(IsolationSetting::Unknown));
                }
            }
            Class::Other => {
                self.fingerprint.make_private();
                self.add_writes(unknown_writes(sql));
                self.request_tx.push(TxEffect::Opaque {
                    names_isolation: mentions_isolation(&String::from_utf8_lossy(sql)),
                });
            }
            Class::Write(WriteClass::Database | WriteClass::Judging) => {
                self.add_writes(unknown_writes(sql))
            }
            Class::Write(WriteClass::Known(effect)) => {
                self.add_writes(WriteScope::Writes(vec![PendingWrite {
                    effect: Arc::clone(effect),
                    values,
                    utf8: self.utf8_client,
                }]))
            }
            Class::Classifying {
                calls_functions: true,
            } => {
                // Not judged yet: its functions may be user-defined.
                self.fingerprint.make_private();
                self.add_writes(unknown_writes(sql));
                self.request_tx
                    .push(TxEffect::Setting(IsolationSetting::Unknown));
            }
            Class::Cacheable(_) | Class::Classifying { .. } | Class::Uncacheable(_) => {}
        }
    }

    /// Whether the transaction state lets a read executed now (after the request's statements
    /// so far) be answered from the cache or fill it; else why not. It must run at READ
    /// COMMITTED, where each statement takes a new snapshot, and, inside a block, read no
    /// table the block has written (its uncommitted rows would show). Writes of requests still
    /// in flight, or earlier in this one, are acknowledged before the read's fill and bump
    /// what they reach, which refuses the fill.
    pub(crate) fn transaction_allows(&self, read: &CacheableRead) -> Result<(), BypassReason> {
        if self.transactions.status() == TransactionStatus::Failed {
            return Err(BypassReason::InTransaction);
        }
        if self.expect.iter().any(Expect::changes_transactions) {
            return Err(BypassReason::Pipelined);
        }
        let prediction = self.transactions.predict(&self.request_tx);
        if !prediction.level.is_read_committed() {
            return Err(BypassReason::Isolation);
        }
        if prediction.in_block && self.transaction_writes.reaches(&read.tables) {
            return Err(BypassReason::OwnWrites);
        }
        Ok(())
    }

    /// The request being built may write `scope` too.
    fn add_writes(&mut self, scope: WriteScope) {
        let current = std::mem::take(&mut self.request_writes);
        self.request_writes = current.join(scope);
    }

    /// Looks up a read and counts what was found; a fill in flight elsewhere is waited for
    /// only when `may_wait`. `values` are the execution's parameters, for the read's pins.
    pub(crate) fn look_up(
        &self,
        key: &CacheKey,
        read: &CacheableRead,
        may_wait: bool,
        values: ExecutionValues<'_>,
        request: impl FnOnce() -> ReplicaRequest,
    ) -> Found {
        let metrics = &self.backend.metrics;
        match self.backend.store.lookup(key, &self.database) {
            Lookup::Hit(entry) => Found::Hit(entry),
            Lookup::Miss(reservation) => {
                let guard = self.guard(reservation, read, values);
                if !may_wait {
                    metrics.miss();
                    return Found::Miss(guard);
                }
                // The shared tier first: it fills this pgcached's memory, and the retry finds
                // the result there (or misses again, without asking twice). Then a replica,
                // the same way: after the tier found nothing, or when it cannot help now.
                match self.elsewhere(guard, &read.label, request) {
                    Routed::Waiting(wait) => Found::Wait(wait),
                    Routed::Primary(guard) => {
                        metrics.miss();
                        Found::Miss(guard)
                    }
                }
            }
            Lookup::Wait(wait) if may_wait => Found::Wait(wait),
            Lookup::Wait(_) => {
                metrics.bypass(BypassReason::FillInFlight);
                Found::Relay
            }
            Lookup::Bypass(reason) => {
                metrics.bypass(reason.into());
                Found::Relay
            }
        }
    }

    /// The guard of a miss: its dependencies recorded, told the read's TTL and label.
    fn guard(
        &self,
        reservation: pgcached_cache::Reservation,
        read: &CacheableRead,
        values: ExecutionValues<'_>,
    ) -> FillGuard {
        let mut guard = self.record(reservation, read, values);
        if let Some(ttl) = read.ttl {
            guard.set_ttl(ttl);
        }
        guard.set_label(Arc::clone(&read.label), Arc::clone(&read.tables));
        guard
    }

    /// A lookup for answering a held batch locally: like the store's, except that a miss
    /// the session may wait for is looked up in the shared tier (and comes back as a wait).
    pub(crate) fn look_up_to_answer(
        &self,
        key: &CacheKey,
        read: &CacheableRead,
        may_wait: bool,
        values: ExecutionValues<'_>,
        request: impl FnOnce() -> ReplicaRequest,
    ) -> Answerable {
        match self.backend.store.lookup(key, &self.database) {
            Lookup::Hit(entry) => Answerable::Hit(entry),
            Lookup::Wait(wait) if may_wait => Answerable::Wait(wait),
            Lookup::Miss(reservation) if may_wait => {
                if self.backend.shared.is_none() && self.replica_login.is_none() {
                    self.keep_miss(key, Kept::Reservation(reservation));
                    return Answerable::No;
                }
                let guard = self.guard(reservation, read, values);
                match self.elsewhere(guard, &read.label, request) {
                    Routed::Waiting(wait) => Answerable::Wait(wait),
                    Routed::Primary(guard) => {
                        self.keep_miss(key, Kept::Guard(guard));
                        Answerable::No
                    }
                }
            }
            Lookup::Miss(reservation) => {
                self.keep_miss(key, Kept::Reservation(reservation));
                Answerable::No
            }
            Lookup::Wait(_) | Lookup::Bypass(_) => Answerable::No,
        }
    }

    fn keep_miss(&self, key: &CacheKey, kept: Kept) {
        *self.kept_miss.borrow_mut() = Some(KeptMiss {
            key: key.clone(),
            kept,
        });
    }

    /// Drops the kept miss, if any (its flight ends): the batch went another way.
    pub(crate) fn forget_kept_miss(&self) {
        self.kept_miss.borrow_mut().take();
    }

    /// The kept miss of `key` as a guard, counted as a miss; `None` otherwise (a kept miss of
    /// another key stays kept for its own Execute).
    pub(crate) fn take_kept_miss(
        &self,
        key: &CacheKey,
        read: &CacheableRead,
        values: ExecutionValues<'_>,
    ) -> Option<FillGuard> {
        let mut slot = self.kept_miss.borrow_mut();
        if slot.as_ref().is_none_or(|kept| kept.key != *key) {
            return None;
        }
        let kept = slot.take()?;
        drop(slot);
        self.backend.metrics.miss();
        Some(match kept.kept {
            Kept::Reservation(reservation) => self.guard(reservation, read, values),
            Kept::Guard(guard) => guard,
        })
    }

    /// A miss answered without the session's own connection, when it can be: by the shared
    /// tier, else (or when the tier finds nothing) by a read replica ([`crate::replica`]). The
    /// wait for that answer, or the guard back for the primary.
    fn elsewhere(
        &self,
        guard: FillGuard,
        label: &Arc<str>,
        request: impl FnOnce() -> ReplicaRequest,
    ) -> Routed {
        let request = self.replica_login.is_some().then(request);
        let guard = match &self.backend.shared {
            Some(shared) => {
                let fallback = request
                    .clone()
                    .and_then(|r| self.replica_fallback(r, label));
                match shared.fetch(guard, fallback) {
                    Fetch::Waiting(wait) => return Routed::Waiting(wait),
                    Fetch::Declined(guard) => guard,
                }
            }
            None => guard,
        };
        let (Some(replicas), Some(login), Some(request)) =
            (&self.backend.replicas, &self.replica_login, request)
        else {
            return Routed::Primary(guard);
        };
        let routed = replicas.route(guard, request, label, login, &self.fingerprint);
        if let Routed::Waiting(_) = routed {
            // Counted as the miss it is; the retry's hit is its answer.
            self.backend.metrics.miss();
            self.replica_answers
                .set(Some(Arc::new(AtomicBool::new(true))));
        }
        routed
    }

    /// What the shared tier does with a miss it has no result for: sends it to a replica,
    /// counted as a miss then.
    fn replica_fallback(&self, request: ReplicaRequest, label: &Arc<str>) -> Option<Fallback> {
        let replicas = Arc::clone(self.backend.replicas.as_ref()?);
        let login = Arc::clone(self.replica_login.as_ref()?);
        let fingerprint = self.fingerprint.clone();
        let metrics = self.backend.metrics.clone();
        let label = Arc::clone(label);
        let answered = Arc::new(AtomicBool::new(false));
        self.replica_answers.set(Some(Arc::clone(&answered)));
        Some(Box::new(move |guard| {
            if let Routed::Waiting(_) = replicas.route(guard, request, &label, &login, &fingerprint)
            {
                metrics.miss();
                answered.store(true, Ordering::Release);
            }
        }))
    }

    /// True (once) when the hit being answered is a replica's answer to this frame's miss,
    /// which was counted as the miss it is.
    pub(crate) fn answered_by_replica(&self) -> bool {
        self.replica_answers
            .take()
            .is_some_and(|answered| answered.load(Ordering::Acquire))
    }

    /// Records a miss's dependencies: whole tables, and the keys of its pins for this
    /// execution (a pin that cannot be made exact depends on its whole table).
    fn record(
        &self,
        reservation: pgcached_cache::Reservation,
        read: &CacheableRead,
        values: ExecutionValues<'_>,
    ) -> FillGuard {
        if read.pins.is_empty() {
            return reservation.record(&Dependencies {
                tables: &read.whole,
                rows: &[],
            });
        }
        let read_parameters = ReadParameters::read(values);
        let (rows, fallback) = row_dependencies(
            &read.pins,
            read_parameters.as_ref().map(ReadParameters::view),
            self.utf8_client,
        );
        if fallback.is_empty() {
            return reservation.record(&Dependencies {
                tables: &read.whole,
                rows: &rows,
            });
        }
        let tables: Vec<_> = read.whole.iter().cloned().chain(fallback).collect();
        reservation.record(&Dependencies {
            tables: &tables,
            rows: &rows,
        })
    }

    /// The full key of a read: database, role, session state, protocol (and row limit),
    /// statement, parameter types, the Bind's arguments (values, formats, result formats), and
    /// whether the portal was described.
    pub(crate) fn key(
        &self,
        protocol: KeyProtocol,
        sql: &[u8],
        param_types: &[u8],
        arguments: &[u8],
        described: bool,
    ) -> CacheKey {
        let limit;
        CacheKey::builder()
            .part(self.database.as_bytes())
            .part(&self.role)
            .part(self.fingerprint.as_bytes())
            .part(match protocol {
                KeyProtocol::Simple => b"Q",
                KeyProtocol::Extended(0) => b"E",
                KeyProtocol::Extended(rows) => {
                    limit = [b"E".as_slice(), &rows.to_be_bytes()].concat();
                    &limit
                }
            })
            .part(sql)
            .part(param_types)
            .part(arguments)
            .part(if described { b"D" } else { b"-" })
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_forget_prepared_statements_are_recognised() {
        assert!(drops_prepared_statements(b"  DISCARD ALL"));
        assert!(drops_prepared_statements(b"deallocate s1"));
        assert!(!drops_prepared_statements(b"SELECT 'discard'"));
    }
}

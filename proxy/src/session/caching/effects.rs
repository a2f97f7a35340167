//! What a relayed statement does to its session, and the cache key of a read.
//!
//! A statement that changes session state (`SET`, `RESET`, `SET ROLE`, `DISCARD`, ...) is
//! folded into the session's fingerprint, so later reads share entries only with sessions in
//! the same state. One whose effect on the session cannot be known (`set_config`, `DO`, a
//! function not yet checked, temporary objects) makes the fingerprint private. A write, or
//! anything that may write, gives its request a [`WriteScope`], invalidated when PostgreSQL
//! acknowledges it.

use std::sync::Arc;

use bytes::Bytes;
use pgcached_cache::{CacheKey, Dependencies, Entry, FillGuard, FillWait, Lookup};

use super::CachePath;
use crate::classify::{CacheableRead, Class};
use crate::stats::QueryKind as StatementKind;

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

/// What a request may have written, to be invalidated when PostgreSQL acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteScope {
    /// Nothing.
    Nothing,
    /// Anything in the database (its tables are not tracked).
    Database,
}

impl WriteScope {
    /// True unless nothing was written.
    pub(crate) fn writes(self) -> bool {
        self != WriteScope::Nothing
    }

    /// The wider of two scopes.
    pub(crate) fn join(self, other: WriteScope) -> WriteScope {
        if self.writes() || other.writes() {
            WriteScope::Database
        } else {
            WriteScope::Nothing
        }
    }
}

/// Which protocol a key is for: a simple Query or an extended Execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyProtocol {
    /// Simple Query.
    Simple,
    /// Extended protocol.
    Extended,
}

/// True for `DISCARD ALL`, `DISCARD PLANS`, `DEALLOCATE ...`: statements that make the server
/// forget prepared statements.
fn drops_prepared_statements(sql: &[u8]) -> bool {
    let text = sql.trim_ascii_start();
    let starts =
        |word: &[u8]| text.len() >= word.len() && text[..word.len()].eq_ignore_ascii_case(word);
    starts(b"deallocate") || starts(b"discard")
}

/// The kind counted for a statement relayed without a cache lookup.
pub(crate) fn statement_kind(class: &Class) -> StatementKind {
    match class {
        Class::Cacheable(_)
        | Class::Classifying { .. }
        | Class::Uncacheable(_)
        | Class::CallsVolatile => StatementKind::ReadUncacheable,
        Class::Write => StatementKind::Write,
        Class::SessionState | Class::TempObjects | Class::TransactionControl | Class::Other => {
            StatementKind::Other
        }
    }
}

impl CachePath {
    /// The class of a statement text.
    pub(crate) fn classify(&self, sql: &Bytes) -> Class {
        match std::str::from_utf8(sql) {
            Ok(text) => self.backend.classify.classify(&self.database, text),
            Err(_) => Class::Other,
        }
    }

    /// Applies what a statement about to be relayed does to the session.
    pub(crate) fn apply_effects(&mut self, class: &Class, sql: &[u8]) {
        if drops_prepared_statements(sql) {
            // DISCARD ALL / DEALLOCATE: the server forgets prepared statements; so do we, so
            // that a later Bind of one reaches the server and gets its error.
            self.statements.clear();
        }
        match class {
            Class::SessionState => self.fingerprint.fold(sql),
            Class::TempObjects | Class::CallsVolatile => self.fingerprint.make_private(),
            Class::Other => {
                self.fingerprint.make_private();
                self.request_writes = WriteScope::Database;
            }
            Class::Write => self.request_writes = WriteScope::Database,
            Class::Classifying {
                calls_functions: true,
            } => self.fingerprint.make_private(),
            Class::Cacheable(_)
            | Class::Classifying { .. }
            | Class::Uncacheable(_)
            | Class::TransactionControl => {}
        }
    }

    /// Looks up a read and counts what was found; a fill in flight elsewhere is waited for
    /// only when `may_wait`.
    pub(crate) fn look_up(&self, key: &CacheKey, read: &CacheableRead, may_wait: bool) -> Found {
        let metrics = &self.backend.metrics;
        match self.backend.store.lookup(key, &self.database) {
            Lookup::Hit(entry) => Found::Hit(entry),
            Lookup::Miss(reservation) => {
                metrics.miss();
                let mut guard = reservation.record(&Dependencies {
                    tables: &read.tables,
                    rows: &[],
                });
                if let Some(ttl) = read.ttl {
                    guard.set_ttl(ttl);
                }
                guard.set_label(Arc::clone(&read.label), Arc::clone(&read.tables));
                Found::Miss(guard)
            }
            Lookup::Wait(wait) if may_wait => Found::Wait(wait),
            Lookup::Wait(_) => {
                metrics.bypass("fill_in_flight");
                Found::Relay
            }
            Lookup::Bypass(reason) => {
                metrics.bypass(reason.0);
                Found::Relay
            }
        }
    }

    /// The full key of a read: database, role, session state, protocol, statement, parameter
    /// types, the Bind's arguments (values, formats, result formats), and whether the portal was
    /// described.
    pub(crate) fn key(
        &self,
        protocol: KeyProtocol,
        sql: &[u8],
        param_types: &[u8],
        arguments: &[u8],
        described: bool,
    ) -> CacheKey {
        CacheKey::builder()
            .part(self.database.as_bytes())
            .part(&self.role)
            .part(self.fingerprint.as_bytes())
            .part(match protocol {
                KeyProtocol::Simple => b"Q",
                KeyProtocol::Extended => b"E",
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

    #[test]
    fn scopes_join_to_the_wider() {
        assert_eq!(
            WriteScope::Nothing.join(WriteScope::Database),
            WriteScope::Database
        );
        assert!(!WriteScope::Nothing.join(WriteScope::Nothing).writes());
    }
}

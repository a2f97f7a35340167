//! What a session's writes invalidate, and when.
//!
//! A request that may write carries a [`WriteScope`]: nothing, the whole database (its reach is
//! unknown), or the writes it relayed with their parameters. The ReadyForQuery that acknowledges
//! the request applies the scope, before it reaches the client, so no later read of any client
//! sees a result from before the write; in a transaction block the scopes of its steps are kept
//! and applied again when the block ends. The bumps of a known write are computed at that moment
//! ([`crate::pins::writes::bumps`]), against the column sets registered then.

use std::sync::Arc;

use bytes::Bytes;

use super::CachePath;
use crate::pins::reads::{ExecutionValues, ReadParameters};
use crate::pins::writes::{bumps, Bump, Encoding, WriteEffect};
use crate::stats::InvalidationSource;

/// Most writes one request or transaction block keeps apart; past this it invalidates its
/// whole database.
const MAX_PENDING_WRITES: usize = 256;

/// A write relayed, waiting for its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) struct PendingWrite {
    /// What it changes.
    pub(crate) effect: Arc<WriteEffect>,
    /// Where its parameter values come from.
    pub(crate) values: OwnedValues,
    /// The session's client encoding was UTF-8 when the write was sent (it must still be at
    /// the acknowledgement for text values to be keys).
    pub(crate) utf8: bool,
}

/// An execution's parameter values, kept until its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) enum OwnedValues {
    /// The Bind's arguments and the statement's declared types.
    Bind(Bytes, Bytes),
    /// The simple query's text (its literals, for a statement classified by shape).
    Literals(Bytes),
}

impl OwnedValues {
    /// The values as the pins read them.
    pub(crate) fn borrowed(&self) -> ExecutionValues<'_> {
        match self {
            OwnedValues::Bind(arguments, types) => ExecutionValues::Bind { arguments, types },
            OwnedValues::Literals(sql) => match std::str::from_utf8(sql) {
                Ok(text) => ExecutionValues::Literals(text),
                Err(_) => ExecutionValues::Nothing,
            },
        }
    }
}

/// What a request (or a transaction block) may have written.
#[derive(Debug, Clone, Default)]
pub(crate) enum WriteScope {
    /// Nothing.
    #[default]
    Nothing,
    /// Anything in the database.
    Database,
    /// Anything in the database, and its catalog: classifications judged before are
    /// forgotten too ([`crate::sql::catalog_change`]).
    Catalog,
    /// These writes.
    Writes(Vec<PendingWrite>),
}

impl WriteScope {
    /// True unless nothing was written.
    pub(crate) fn writes(&self) -> bool {
        !matches!(self, WriteScope::Nothing)
    }

    /// True when these writes may have changed rows of any of `tables`.
    pub(crate) fn reaches(&self, tables: &[pgcached_cache::TableId]) -> bool {
        match self {
            WriteScope::Nothing => false,
            WriteScope::Database | WriteScope::Catalog => true,
            WriteScope::Writes(writes) => writes.iter().any(|write| {
                tables.contains(&write.effect.target)
                    || write
                        .effect
                        .whole
                        .iter()
                        .any(|table| tables.contains(table))
            }),
        }
    }

    /// Both scopes.
    pub(crate) fn join(self, other: WriteScope) -> WriteScope {
        match (self, other) {
            (WriteScope::Nothing, other) | (other, WriteScope::Nothing) => other,
            (WriteScope::Catalog, _) | (_, WriteScope::Catalog) => WriteScope::Catalog,
            (WriteScope::Database, _) | (_, WriteScope::Database) => WriteScope::Database,
            (WriteScope::Writes(mut a), WriteScope::Writes(b)) => {
                if a.len() + b.len() > MAX_PENDING_WRITES {
                    WriteScope::Database
                } else {
                    a.extend(b);
                    WriteScope::Writes(a)
                }
            }
        }
    }
}

impl CachePath {
    /// Applies a scope: PostgreSQL acknowledged (or may have committed) its writes.
    pub(crate) fn invalidate(&self, scope: &WriteScope) {
        match scope {
            WriteScope::Nothing => {}
            WriteScope::Database => self.invalidate_database(),
            WriteScope::Catalog => {
                // Forgotten first: a statement judged from now on reads the new catalog, and
                // one judged before fills nothing past the bump that follows.
                self.backend.classify.catalog_changed(&self.database);
                self.invalidate_database();
            }
            WriteScope::Writes(writes) => {
                let generations = self.backend.store.generations();
                let metrics = &self.backend.metrics;
                for write in writes {
                    let parameters = ReadParameters::read(write.values.borrowed());
                    let encoding = if write.utf8 && self.utf8_client {
                        Encoding::Utf8
                    } else {
                        Encoding::Other
                    };
                    let bumps = bumps(
                        &write.effect,
                        &self.backend.registry,
                        parameters.as_ref().map(ReadParameters::view),
                        encoding,
                    );
                    for bump in &bumps {
                        bump.apply(generations);
                        match bump {
                            Bump::Table(table) | Bump::Rows(table) => {
                                metrics.table_invalidated(table)
                            }
                            Bump::ColumnSet(..) | Bump::Key(_) => {}
                        }
                    }
                    metrics.invalidated(InvalidationSource::Proxy, &bumps);
                }
                metrics.invalidation(InvalidationSource::Proxy, writes.len() as u64);
            }
        }
    }

    /// The tables a write in this session touched are unknown here: the database is bumped.
    pub(crate) fn invalidate_database(&self) {
        self.backend
            .store
            .generations()
            .bump_database(&self.database);
        self.backend
            .metrics
            .invalidation(InvalidationSource::Proxy, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_join_to_the_wider_and_writes_add_up() {
        assert!(matches!(
            WriteScope::Nothing.join(WriteScope::Database),
            WriteScope::Database
        ));
        assert!(!WriteScope::Nothing.join(WriteScope::Nothing).writes());
        assert!(matches!(
            WriteScope::Database.join(WriteScope::Catalog),
            WriteScope::Catalog
        ));
        assert!(matches!(
            WriteScope::Catalog.join(WriteScope::Nothing),
            WriteScope::Catalog
        ));
        let effect = Arc::new(WriteEffect {
            target: pgcached_cache::TableId {
                database: Arc::from("app"),
                oid: 1,
            },
            facts: None,
            whole: vec![],
            rows: crate::pins::writes::RowsWritten::Unknown,
        });
        let one = || {
            WriteScope::Writes(vec![PendingWrite {
                effect: Arc::clone(&effect),
                values: OwnedValues::Literals(Bytes::new()),
                utf8: true,
            }])
        };
        match one().join(one()) {
            WriteScope::Writes(writes) => assert_eq!(writes.len(), 2),
            other => panic!("{other:?}"),
        }
        let mut many = WriteScope::Nothing;
        for _ in 0..=MAX_PENDING_WRITES {
            many = many.join(one());
        }
        assert!(matches!(many, WriteScope::Database), "bounded");
    }
}

//! What the server is expected to answer next, in order.
//!
//! Every frame relayed upstream that the server answers gets an entry here, so that each frame
//! coming back can be attributed to the request it answers: a DataRow to the Execute whose
//! result is being captured, a ParseComplete to a Parse that pgcached injected itself (and must
//! swallow), a ReadyForQuery to the end of a request.

use std::time::Instant;

use super::capture::Capture;
use super::transaction::TxEffect;
use super::writes::WriteScope;

/// Which path a relayed query took, for `pgcached_query_duration_seconds{path}` (hits are
/// timed where they are answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryPath {
    /// Cacheable, not in the cache: relayed and captured.
    Miss,
    /// Not cacheable (or not now): relayed.
    Passthrough,
}

/// One expected answer.
pub(crate) enum Expect {
    /// A simple Query or FunctionCall: everything up to ReadyForQuery.
    Simple {
        /// The result being captured, if the query is a cache miss.
        capture: Option<Capture>,
        /// When the query was relayed.
        started: Instant,
        /// Miss or passthrough.
        path: QueryPath,
        /// What the request may write: its ReadyForQuery invalidates it.
        writes: WriteScope,
        /// What it does to the transaction state, applied at its ReadyForQuery.
        tx: Vec<TxEffect>,
        /// PostgreSQL answered it with an error.
        failed: bool,
    },
    /// ParseComplete; `swallow` when pgcached injected the Parse itself.
    Parse { swallow: bool },
    /// BindComplete; `swallow` when pgcached injected the Bind itself.
    Bind { swallow: bool },
    /// ParameterDescription then RowDescription or NoData.
    DescribeStatement,
    /// RowDescription or NoData for a portal.
    DescribePortal,
    /// The rows and CommandComplete of an Execute.
    Execute { capture: Option<Capture> },
    /// CloseComplete.
    Close,
    /// ReadyForQuery ending an extended-protocol batch.
    Sync {
        /// When the batch started.
        started: Instant,
        /// Whether any Execute was a miss.
        path: QueryPath,
        /// What the batch may write.
        writes: WriteScope,
        /// What it does to the transaction state, applied at its ReadyForQuery.
        tx: Vec<TxEffect>,
        /// PostgreSQL answered it with an error.
        failed: bool,
    },
}

impl Expect {
    /// True for the expectation a ReadyForQuery answers.
    pub(crate) fn ends_request(&self) -> bool {
        matches!(self, Expect::Simple { .. } | Expect::Sync { .. })
    }

    /// True for a request whose statements change the transaction state.
    pub(crate) fn changes_transactions(&self) -> bool {
        matches!(self, Expect::Simple { tx, .. } | Expect::Sync { tx, .. } if !tx.is_empty())
    }
}

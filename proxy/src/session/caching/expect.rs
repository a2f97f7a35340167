//! What the server is expected to answer next, in order.
//!
//! Every frame relayed upstream that the server answers gets an entry here, so that each frame
//! coming back can be attributed to the request it answers: a DataRow to the Execute whose
//! result is being captured, a ParseComplete to a Parse that pgcached injected itself (and must
//! swallow), a ReadyForQuery to the end of a batch.

use std::time::Instant;

use bytes::Bytes;

use super::capture::Capture;

/// Which path a query took, for `pgcached_query_duration_seconds{path}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryPath {
    /// Answered from the cache.
    Hit,
    /// Cacheable, not in the cache: relayed and captured.
    Miss,
    /// Not cacheable (or not now): relayed.
    Passthrough,
}

/// One expected answer.
pub enum Expect {
    /// A simple Query or FunctionCall: everything up to ReadyForQuery.
    Simple {
        /// The result being captured, if the query is a cache miss.
        capture: Option<Capture>,
        /// When the query was relayed.
        started: Instant,
        /// Miss or passthrough.
        path: QueryPath,
        /// The request may write: its ReadyForQuery bumps the database's generation.
        wrote: bool,
    },
    /// ParseComplete; `swallow` when pgcached injected the Parse itself.
    Parse { swallow: bool },
    /// BindComplete.
    Bind,
    /// ParameterDescription then RowDescription or NoData.
    DescribeStatement,
    /// RowDescription or NoData for a portal.
    DescribePortal,
    /// The rows and CommandComplete of an Execute.
    Execute { capture: Option<Capture> },
    /// CloseComplete.
    Close,
    /// ReadyForQuery ending an extended-protocol batch; `wrote` if the batch may write.
    Sync {
        started: Instant,
        path: QueryPath,
        wrote: bool,
    },
}

/// The RowDescription or NoData most recently answered to a Describe of a portal.
pub type RowDescription = Option<Bytes>;

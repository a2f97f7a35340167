//! Why a statement is relayed without a cache lookup: one enum owns the metric label and the
//! explanation `EXPLAIN CACHE` gives.
//!
//! Reasons are found in several places (the statement's syntax, the catalog's verdict, the hints
//! and table rules, the session's state at that moment, the database's change feed), but a
//! reason is one thing: the label `pgcached_cache_bypass_total{reason}` counts it under, and the
//! sentence an operator reads. Keeping both on one variant means a new reason cannot be counted
//! without being explained, and `docs/METRICS.md` is checked against [`BypassReason::ALL`].

use pgcached_cache::FeedRefusal;

/// Why a statement is relayed uncached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BypassReason {
    // Classification.
    /// The catalog has not judged the statement yet.
    Classifying,
    /// Calls a function that is not IMMUTABLE.
    VolatileFunction,
    /// Changes session state (SET, RESET, SET ROLE, DISCARD, ...).
    SessionState,
    /// Creates temporary objects.
    TemporaryObjects,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...
    TransactionControl,
    /// Writes data or changes the schema.
    Write,
    /// Not a single read pgcached understands (CALL, DO, unparsable, ...).
    NotARead,

    // Hints, rules and the catalog's availability.
    /// A `/* pgcached:nocache */` hint.
    NocacheHint,
    /// A `pgcached:` hint that cannot be read.
    InvalidHint,
    /// Reads a table of `--cache-deny-tables`.
    TableDenied,
    /// Reads a table outside `--cache-allow-tables`.
    TableNotAllowed,
    /// The catalog cannot be read.
    CatalogUnavailable,

    // What the catalog says about the relations read.
    /// A relation the catalog does not know (yet).
    UnknownRelation,
    /// A system catalog (pg_catalog, information_schema).
    SystemCatalog,
    /// A temporary table.
    TemporaryTable,
    /// An unlogged table.
    UnloggedTable,
    /// A relation whose persistence is not one PostgreSQL documents.
    UnknownPersistence,
    /// A relation of a kind pgcached does not cache.
    UnsupportedRelation,
    /// A foreign table.
    ForeignTable,
    /// A sequence.
    Sequence,
    /// A view calling a function that is not IMMUTABLE.
    ViewCallsVolatileFunction,
    /// A view over an unlogged or temporary table.
    ViewOverUnloggedOrTemporary,
    /// Views nested too deeply to expand.
    ViewTooDeep,

    // The statement's syntax.
    /// FOR UPDATE / FOR SHARE.
    LockingClause,
    /// A time literal ('now', 'today', ...).
    TimeLiteral,
    /// A name form pgcached cannot resolve.
    UnsupportedName,
    /// SELECT INTO (creates a table).
    SelectInto,
    /// A WITH clause that modifies data.
    DataModifyingCte,
    /// Several statements in one string.
    MultiStatement,
    /// An empty statement.
    Empty,
    /// COPY TO.
    CopyTo,
    /// SHOW.
    Show,
    /// EXPLAIN.
    Explain,
    /// LISTEN / NOTIFY / UNLISTEN.
    ListenNotify,

    // The session's state when the read arrives.
    /// Inside a failed transaction block.
    InTransaction,
    /// Runs at REPEATABLE READ or SERIALIZABLE, or at a level not known.
    Isolation,
    /// Inside a block that wrote a table the read depends on.
    OwnWrites,
    /// Behind other requests still in flight.
    Pipelined,
    /// An Execute of a portal the session cannot trace to a statement.
    UnknownStatement,
    /// An Execute with a row limit inside a transaction block, where the portal outlives Sync
    /// and may be read on in parts.
    RowLimit,
    /// An Execute of a portal already executed since its Bind: its rows go on where they
    /// stopped, so they are not the statement's result.
    PortalResumed,
    /// A batch where some reads are hits and others are not: relayed whole.
    BatchNotAllHits,
    /// Another session is filling the same key and this one cannot wait.
    FillInFlight,

    // The database's change feed.
    /// A table the read depends on is not carried by `--publication`.
    NotPublished,
    /// The database's change stream is starting or lost.
    ReplicationDown,
    /// No change stream can work and `--cache-ttl-unreplicated` is 0.
    NoChangeFeed,

    /// `--cache off`.
    CacheOff,
}

impl BypassReason {
    /// Every reason.
    pub const ALL: [BypassReason; 47] = [
        BypassReason::Classifying,
        BypassReason::VolatileFunction,
        BypassReason::SessionState,
        BypassReason::TemporaryObjects,
        BypassReason::TransactionControl,
        BypassReason::Write,
        BypassReason::NotARead,
        BypassReason::NocacheHint,
        BypassReason::InvalidHint,
        BypassReason::TableDenied,
        BypassReason::TableNotAllowed,
        BypassReason::CatalogUnavailable,
        BypassReason::UnknownRelation,
        BypassReason::SystemCatalog,
        BypassReason::TemporaryTable,
        BypassReason::UnloggedTable,
        BypassReason::UnknownPersistence,
        BypassReason::UnsupportedRelation,
        BypassReason::ForeignTable,
        BypassReason::Sequence,
        BypassReason::ViewCallsVolatileFunction,
        BypassReason::ViewOverUnloggedOrTemporary,
        BypassReason::ViewTooDeep,
        BypassReason::LockingClause,
        BypassReason::TimeLiteral,
        BypassReason::UnsupportedName,
        BypassReason::SelectInto,
        BypassReason::DataModifyingCte,
        BypassReason::MultiStatement,
        BypassReason::Empty,
        BypassReason::CopyTo,
        BypassReason::Show,
        BypassReason::Explain,
        BypassReason::ListenNotify,
        BypassReason::InTransaction,
        BypassReason::Isolation,
        BypassReason::OwnWrites,
        BypassReason::Pipelined,
        BypassReason::UnknownStatement,
        BypassReason::RowLimit,
        BypassReason::PortalResumed,
        BypassReason::BatchNotAllHits,
        BypassReason::FillInFlight,
        BypassReason::NotPublished,
        BypassReason::ReplicationDown,
        BypassReason::NoChangeFeed,
        BypassReason::CacheOff,
    ];

    /// The `reason` label of `pgcached_cache_bypass_total`.
    pub fn label(self) -> &'static str {
        use BypassReason::*;
        match self {
            Classifying => "classifying",
            VolatileFunction => "volatile_function",
            SessionState => "session_state",
            TemporaryObjects => "temporary_objects",
            TransactionControl => "transaction_control",
            Write => "write",
            NotARead => "not_a_read",
            NocacheHint => "nocache_hint",
            InvalidHint => "invalid_hint",
            TableDenied => "table_denied",
            TableNotAllowed => "table_not_allowed",
            CatalogUnavailable => "catalog_unavailable",
            UnknownRelation => "unknown_relation",
            SystemCatalog => "system_catalog",
            TemporaryTable => "temporary_table",
            UnloggedTable => "unlogged_table",
            UnknownPersistence => "unknown_persistence",
            UnsupportedRelation => "unsupported_relation",
            ForeignTable => "foreign_table",
            Sequence => "sequence",
            ViewCallsVolatileFunction => "view_calls_volatile_function",
            ViewOverUnloggedOrTemporary => "view_over_unlogged_or_temporary",
            ViewTooDeep => "view_too_deep",
            LockingClause => "locking_clause",
            TimeLiteral => "time_literal",
            UnsupportedName => "unsupported_name",
            SelectInto => "select_into",
            DataModifyingCte => "data_modifying_cte",
            MultiStatement => "multi_statement",
            Empty => "empty",
            CopyTo => "copy_to",
            Show => "show",
            Explain => "explain",
            ListenNotify => "listen_notify",
            InTransaction => "in_transaction",
            Isolation => "isolation",
            OwnWrites => "own_writes",
            Pipelined => "pipelined",
            UnknownStatement => "unknown_statement",
            RowLimit => "row_limit",
            PortalResumed => "portal_resumed",
            BatchNotAllHits => "batch_not_all_hits",
            FillInFlight => "fill_in_flight",
            NotPublished => "not_published",
            ReplicationDown => "replication_down",
            NoChangeFeed => "no_change_feed",
            CacheOff => "cache_off",
        }
    }

    /// What the reason means for the person asking (`EXPLAIN CACHE`'s `detail`).
    pub fn explain(self) -> &'static str {
        use BypassReason::*;
        match self {
            Classifying => "not judged yet: relayed while the catalog is asked, cached from a later execution",
            VolatileFunction => "calls a function that is not IMMUTABLE (pg_proc.provolatile): its result may change without any write",
            SessionState => "changes session state (SET, RESET, SET ROLE, DISCARD ...): relayed, and later reads of the session are keyed by the new state",
            TemporaryObjects => "creates temporary objects: the session's reads are kept apart from everyone else's",
            TransactionControl => "transaction control: relayed",
            Write => "writes data or changes the schema: relayed, and what it can change (depends_on) is invalidated when PostgreSQL acknowledges it",
            NotARead => "not a single read pgcached understands (CALL, DO, several statements ...): relayed",
            NocacheHint => "the statement carries a /* pgcached:nocache */ hint",
            InvalidHint => "a pgcached: hint in its comments cannot be read (use pgcached:nocache or pgcached:ttl=30s); not cached until it is fixed",
            TableDenied => "reads a table listed in --cache-deny-tables",
            TableNotAllowed => "reads a table not listed in --cache-allow-tables",
            CatalogUnavailable => "pgcached cannot read the catalog (check the credentials in --upstream): nothing is cached until it can",
            UnknownRelation => "names a relation the catalog does not know (yet)",
            SystemCatalog => "reads a system catalog (pg_catalog, information_schema): its rows change without logical replication",
            TemporaryTable => "reads a temporary table",
            UnloggedTable => "reads an unlogged table: its changes are not in the replication stream",
            UnknownPersistence | UnsupportedRelation => "reads a relation of a kind pgcached does not cache",
            ForeignTable => "reads a foreign table: its rows change outside this database",
            Sequence => "reads a sequence",
            ViewCallsVolatileFunction => "reads a view that calls a function that is not IMMUTABLE",
            ViewOverUnloggedOrTemporary => "reads a view over an unlogged or temporary table",
            ViewTooDeep => "reads views nested too deeply to expand",
            LockingClause => "has a locking clause (FOR UPDATE / FOR SHARE)",
            TimeLiteral => "uses a time literal ('now', 'today' ...) whose value changes",
            UnsupportedName => "uses a name form pgcached cannot resolve",
            SelectInto => "SELECT INTO creates a table: a write",
            DataModifyingCte => "a WITH clause modifies data: a write",
            MultiStatement => "several statements in one string",
            Empty => "an empty statement",
            CopyTo => "COPY TO is streamed, not cached",
            Show => "SHOW reads session settings, not tables",
            Explain => "EXPLAIN output depends on planner state",
            ListenNotify => "LISTEN/NOTIFY is session signalling",
            InTransaction => "inside a failed transaction block: PostgreSQL refuses every statement until ROLLBACK",
            Isolation => "runs at REPEATABLE READ or SERIALIZABLE (whose snapshot must hold), or at an isolation level pgcached does not know (after a procedure call, a DO block, set_config, ...): relayed",
            OwnWrites => "inside a transaction block that wrote a table this read depends on: it may see the block's uncommitted rows, so it is relayed and not cached",
            Pipelined => "sent behind other requests still in flight: relayed in order",
            UnknownStatement => "executes a portal pgcached cannot trace to its statement",
            RowLimit => "executes a portal with a row limit inside a transaction block, where it may be read on in parts: relayed",
            PortalResumed => "executes a portal already executed since its Bind: its rows go on where they stopped",
            BatchNotAllHits => "part of a batch whose other reads are not all in the cache: the batch is relayed whole",
            FillInFlight => "another session is computing the same result right now",
            NotPublished => "reads a table whose changes the publication named by --publication does not carry (not in it, a row filter, or an action among insert/update/delete/truncate not published), so writes made elsewhere would never be seen: add the table to the publication (ALTER PUBLICATION ... ADD TABLE ...), or run without --publication to follow every table with test_decoding",
            ReplicationDown => "the database's change stream is not running right now (starting, or lost and reconnecting): nothing is served from the cache until it is back (SHOW REPLICATION says why)",
            NoChangeFeed => "the database has no working change stream (SHOW REPLICATION says what to fix) and --cache-ttl-unreplicated is 0: nothing is cached for it until the stream works",
            CacheOff => "caching is off (--cache off)",
        }
    }
}

impl From<FeedRefusal> for BypassReason {
    fn from(refusal: FeedRefusal) -> BypassReason {
        match refusal {
            FeedRefusal::ReplicationDown => BypassReason::ReplicationDown,
            FeedRefusal::NoChangeFeed => BypassReason::NoChangeFeed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case_and_documented() {
        let metrics_doc = include_str!("../../docs/METRICS.md");
        let bypass_row = metrics_doc
            .lines()
            .find(|line| line.starts_with("| `pgcached_cache_bypass_total`"))
            .expect("docs/METRICS.md has the bypass counter");
        let documented: std::collections::HashSet<&str> = bypass_row
            .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for reason in BypassReason::ALL {
            let label = reason.label();
            assert!(
                label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{label}"
            );
            assert!(!reason.explain().is_empty());
            seen.insert(label);
            assert!(
                documented.contains(label),
                "docs/METRICS.md does not list the bypass reason {label}"
            );
        }
        assert_eq!(seen.len(), 47, "every variant has its own label");
    }
}

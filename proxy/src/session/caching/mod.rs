//! The cache path of a session: a state machine, driven by client and server frames, that
//! decides whether a read is answered from the cache, relayed and captured, or just relayed. It
//! touches no socket: frames come in decoded ([`FrontendMessage`]), bytes go out through
//! [`Outputs`] (the relay's outboxes), and a lookup that must wait for another session's fill
//! comes back as [`Step::Park`].
//!
//! States ([`Batch`], [`Mode`]):
//!
//! - `Following`: the conversation is modelled; every request sent upstream has its
//!   [`Expect`]ations, so each answer is attributed to its request.
//!   - `Batch::Idle → Batch::Holding` at an extended-protocol message when the session may
//!     answer locally (idle, outside a transaction block, nothing in flight); the batch is held
//!     until Sync.
//!   - `Batch::Idle → Batch::Streaming` when it may not: every message goes upstream at once.
//!   - `Batch::Holding → Batch::Idle` at Sync: answered locally when every Execute is a hit,
//!     else relayed whole with each cacheable Execute captured.
//!   - `Batch::Holding → Batch::Streaming` at Flush, at a message that is not part of a batch,
//!     or when the held bytes pass [`batch::MAX_HELD_BYTES`].
//!   - `Batch::Streaming → Batch::Idle` at Sync.
//! - `Following → Lost` when a frame cannot be read or an answer matches no expectation; from
//!   then on everything is relayed and every ReadyForQuery invalidates the database (any
//!   request may have written). `Lost` is final.
//!
//! Layout:
//! - this file: the state, the seam ([`CacheBackend`], [`Classify`]) and the client-side
//!   dispatch.
//! - [`simple`]: the simple Query path.
//! - [`batch`]: holding, answering and relaying extended-protocol batches.
//! - [`statements`]: prepared statements and portals as the client sees them.
//! - [`local_block`]: READ COMMITTED blocks begun (and, when they only read cached results,
//!   ended) without PostgreSQL.
//! - [`effects`]: what a relayed statement does to the session (state, privacy, writes), cache
//!   keys, and a miss's dependencies.
//! - [`writes`]: what a session's writes invalidate, applied at their acknowledgement.
//! - [`server`]: attributing server frames to requests ([`expect`]), captures
//!   ([`capture`]), fills and invalidation at ReadyForQuery.

pub(crate) mod batch;
pub(crate) mod capture;
pub(crate) mod effects;
pub(crate) mod expect;
pub(crate) mod local_block;
pub(crate) mod server;
pub(crate) mod simple;
pub(crate) mod statements;
pub(crate) mod transaction;
pub(crate) mod writes;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use pgcached_cache::{FillWait, ResultCache};

use super::begin_gate::{BeginGate, Sent};
use super::conversation::Conversation;
use super::fingerprint::Fingerprint;
use super::outbox::Outbox;
use crate::cache_metrics::CacheMetrics;
use crate::classify::{Class, Classifier, Protocol};
use crate::metrics::ProxyMetrics;
use crate::stats::{ClientInfo, QueryKind as StatementKind};
use crate::wire::frontend::{Frontend, FrontendMessage, FrontendTag};
use batch::Batch;
use capture::PendingFill;
use expect::{Expect, QueryPath};
use statements::Statements;
use transaction::{Transactions, TxEffect};
use writes::WriteScope;

/// What all sessions share for caching (the admin console reads it too).
pub struct CacheShared {
    /// The result store.
    pub cache: Arc<ResultCache>,
    /// Statement classification.
    pub classifier: Arc<Classifier>,
    /// Cache metric handles.
    pub metrics: CacheMetrics,
    /// Largest result captured.
    pub max_entry: usize,
    /// A READ COMMITTED BEGIN is answered here and sent with its block's first statement that
    /// needs PostgreSQL (`--defer-begin`).
    pub defer_begin: bool,
    /// Streams of writes made outside pgcached.
    pub replication: Arc<crate::replication::Replication>,
    /// Watchers of DDL and privilege changes made outside pgcached.
    pub watchers: Arc<crate::catalog::watcher::CatalogWatchers>,
    /// The shared tier, if any.
    pub shared: Option<Arc<crate::shared_cache::SharedCache>>,
    /// Read replicas misses may go to, if any.
    pub replicas: Option<Arc<crate::replica::Replicas>>,
    /// What is closed of a database before a client drops or renames it.
    pub(crate) release: Arc<crate::release::DatabaseRelease>,
}

impl CacheShared {
    /// What a session's cache path uses of it.
    pub(crate) fn backend(&self) -> CacheBackend {
        CacheBackend {
            store: Arc::clone(&self.cache),
            classify: Arc::new(Arc::clone(&self.classifier)),
            metrics: self.metrics.clone(),
            max_entry: self.max_entry,
            defer_begin: self.defer_begin,
            registry: Arc::clone(self.classifier.registry()),
            shared: self.shared.clone(),
            replicas: self.replicas.clone(),
            release: Some(Arc::clone(&self.release)),
        }
    }

    /// Starts following `database` (its replication stream and catalog watcher), once a
    /// session of it has logged in.
    pub(crate) fn follow(&self, database: &str) {
        self.replication.ensure(database);
        self.watchers.ensure(database);
    }
}

/// A future the relay awaits for a parked frame.
pub(crate) type WaitFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Statement classification as the cache path sees it.
pub(crate) trait Classify: Send + Sync {
    /// The class of `sql` in `database`, as it arrived by `protocol` (never waits; a statement
    /// being judged comes back as [`Class::Classifying`]).
    fn classify(&self, database: &Arc<str>, sql: &str, protocol: Protocol) -> Class;

    /// Completes once none of `statements` is being judged (unbounded: the caller bounds it).
    fn until_judged(&self, database: &Arc<str>, statements: Vec<(String, Protocol)>) -> WaitFuture;

    /// A statement that may have changed `database`'s catalog was acknowledged: what was
    /// judged before is forgotten.
    fn catalog_changed(&self, database: &str);
}

impl Classify for Arc<Classifier> {
    fn classify(&self, database: &Arc<str>, sql: &str, protocol: Protocol) -> Class {
        Classifier::classify(self, database, sql, protocol)
    }

    fn until_judged(&self, database: &Arc<str>, statements: Vec<(String, Protocol)>) -> WaitFuture {
        Box::pin(Arc::clone(self).until_judged(Arc::clone(database), statements))
    }

    fn catalog_changed(&self, database: &str) {
        Classifier::catalog_changed(self, database);
    }
}

/// What the cache path reaches outside itself: the store, classification and metrics. Unit
/// tests build one with a classification of their own and a real in-memory store.
#[derive(Clone)]
pub(crate) struct CacheBackend {
    /// The result store.
    pub(crate) store: Arc<ResultCache>,
    /// How statements are classified.
    pub(crate) classify: Arc<dyn Classify>,
    /// Cache metric handles.
    pub(crate) metrics: CacheMetrics,
    /// Largest result captured.
    pub(crate) max_entry: usize,
    /// A READ COMMITTED BEGIN may be answered here ([`super::begin_gate`]).
    pub(crate) defer_begin: bool,
    /// The column sets reads pin rows by (what a write's acknowledgement must bump).
    pub(crate) registry: Arc<crate::pins::PinRegistry>,
    /// The shared tier a miss is looked up in first, if any.
    pub(crate) shared: Option<Arc<crate::shared_cache::SharedCache>>,
    /// Read replicas a miss may go to, if any.
    pub(crate) replicas: Option<Arc<crate::replica::Replicas>>,
    /// Closes pgcached's own connections to a database a statement drops or renames.
    pub(crate) release: Option<Arc<crate::release::DatabaseRelease>>,
}

/// Where the cache path writes, and what it updates as frames go upstream.
pub(crate) struct Outputs<'a> {
    /// Frames for PostgreSQL.
    pub(crate) upstream: &'a mut Outbox,
    /// Frames for the client.
    pub(crate) client: &'a mut Outbox,
    /// The conversation, which must see every frame relayed upstream.
    pub(crate) conversation: &'a mut Conversation,
    /// Relay metrics (queries relayed by protocol).
    pub(crate) metrics: &'a ProxyMetrics,
    /// The session, as `SHOW CLIENTS` lists it.
    pub(crate) client_info: &'a ClientInfo,
    /// The session's deferred BEGIN, which every frame for PostgreSQL passes.
    pub(crate) gate: &'a mut BeginGate,
}

impl Outputs<'_> {
    /// Relays a frame (or the start of one) upstream, counting the queries it carries.
    pub(crate) fn forward(&mut self, tag: FrontendTag, frame: Bytes) {
        self.conversation.sent(tag);
        match tag {
            FrontendTag::Query => {
                self.metrics.queries_simple.increment(1);
                self.client_info.query(false);
            }
            FrontendTag::Execute => {
                self.metrics.queries_extended.increment(1);
                self.client_info.query(false);
            }
            _ => {}
        }
        if self.gate.send(Some(tag), frame, self.upstream) == Sent::BeginFirst {
            self.conversation.sent(FrontendTag::Query);
        }
    }

    /// Relays more bytes of a frame too large to hold, whose start went with [`Self::forward`].
    pub(crate) fn forward_more(&mut self, bytes: Bytes) {
        if self.gate.send(None, bytes, self.upstream) == Sent::BeginFirst {
            self.conversation.sent(FrontendTag::Query);
        }
    }

    /// Answers the client directly.
    pub(crate) fn answer(&mut self, bytes: Bytes) {
        self.client.push(bytes);
    }
}

/// What handling a client frame led to.
#[must_use]
pub(crate) enum Step {
    /// Done: the frame was answered, held or relayed.
    Done,
    /// Wait (bounded), then hand this frame back with [`CachePath::retry`].
    Park(Wait, FrontendMessage),
}

/// What a parked frame waits for.
pub(crate) enum Wait {
    /// The catalog's verdict on its statements, for at most `limit`; then it is handled as
    /// [`Attempt::Judged`].
    Judged {
        /// Completes when no statement is being judged any more.
        verdict: WaitFuture,
        /// The longest wait ([`crate::classify::limit_for`]).
        limit: std::time::Duration,
    },
    /// Another session's fill of its result; then it is handled as [`Attempt::Filled`].
    Fill(FillWait),
    /// pgcached letting go of the database the statement drops or renames
    /// ([`crate::release`]); then it is handled as [`Attempt::Released`].
    Released(WaitFuture),
}

impl Wait {
    /// How the frame is handled when the wait is over.
    pub(crate) fn retry_as(&self) -> Attempt {
        match self {
            Wait::Judged { .. } => Attempt::Judged,
            Wait::Fill(_) => Attempt::Filled,
            Wait::Released(_) => Attempt::Released,
        }
    }
}

/// Which time a client frame is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// As it arrived.
    First,
    /// After waiting for its statements' verdict: not handled before.
    Judged,
    /// After waiting for another session's fill: its effects were applied and it was counted.
    Filled,
    /// After pgcached let go of the database it drops or renames: not handled before.
    Released,
}

impl Attempt {
    /// Statements being judged may be waited for.
    pub(crate) fn may_wait_for_verdict(self) -> bool {
        self == Attempt::First
    }

    /// The frame's effects are applied and its statement counted now.
    pub(crate) fn applies_effects(self) -> bool {
        self != Attempt::Filled
    }

    /// A fill in flight elsewhere may be waited for.
    pub(crate) fn may_wait_for_fill(self) -> bool {
        self != Attempt::Filled
    }
}

/// Whether the cache path still models the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every request's answers are attributed to it.
    Following,
    /// Lost track (a frame it cannot read, an answer it did not expect): relay only, and
    /// invalidate the database at every ReadyForQuery.
    Lost,
}

/// The cache path state of one session.
pub(crate) struct CachePath {
    backend: CacheBackend,
    database: Arc<str>,
    role: Bytes,
    fingerprint: Fingerprint,
    mode: Mode,
    statements: Statements,
    batch: Batch,
    /// Answers expected from the server, in order.
    expect: VecDeque<Expect>,
    /// Complete captures waiting for ReadyForQuery.
    fills: Vec<PendingFill>,
    /// What the request being built (a simple query about to be relayed, or the extended batch
    /// up to its Sync) may write; it goes with that request's expectation, so that the very
    /// ReadyForQuery acknowledging the write invalidates, even when requests are pipelined.
    request_writes: WriteScope,
    /// What the current transaction block has written (invalidated again when it ends).
    transaction_writes: WriteScope,
    /// The transaction state as acknowledged: in a block or not, at which level.
    transactions: Transactions,
    /// What the request being built does to the transaction state, in order; it goes with the
    /// request's expectation like `request_writes`.
    request_tx: Vec<TxEffect>,
    /// The RowDescription or NoData last answered to a Describe of a portal.
    row_description: Option<Bytes>,
    /// The login's ReadyForQuery (which answers no request) has been seen.
    started: bool,
    /// The session's client encoding is UTF-8 (as the replication stream's text is): text
    /// values can be pinned.
    utf8_client: bool,
    /// What the session's login lets pgcached do on replicas (with `--replica`).
    replica_login: Option<Arc<crate::replica::ReplicaLogin>>,
    /// The frame parked now may wait for a replica's answer (set once a replica took it):
    /// its hit is then the miss's answer.
    replica_answers: std::cell::Cell<Option<Arc<std::sync::atomic::AtomicBool>>>,
    /// The miss that kept a held batch from being answered locally, kept for the capture of
    /// the same Execute when the batch is relayed right after: looked up once, not twice.
    kept_miss: std::cell::RefCell<Option<effects::KeptMiss>>,
}

impl CachePath {
    /// The cache path of a session of `role` on `database`, with its startup fingerprint and
    /// transaction state.
    pub(crate) fn new(
        backend: CacheBackend,
        database: &str,
        role: &str,
        fingerprint: Fingerprint,
        transactions: Transactions,
    ) -> CachePath {
        CachePath {
            backend,
            database: Arc::from(database),
            role: Bytes::copy_from_slice(role.as_bytes()),
            fingerprint,
            mode: Mode::Following,
            statements: Statements::default(),
            batch: Batch::Idle,
            expect: VecDeque::new(),
            fills: Vec::new(),
            request_writes: WriteScope::Nothing,
            transaction_writes: WriteScope::Nothing,
            transactions,
            request_tx: Vec::new(),
            row_description: None,
            started: false,
            utf8_client: false,
            replica_login: None,
            replica_answers: std::cell::Cell::new(None),
            kept_miss: std::cell::RefCell::new(None),
        }
    }

    /// Lets misses go to replicas, logging in there with what the session's login left.
    pub(crate) fn with_replica_login(mut self, login: crate::replica::ReplicaLogin) -> CachePath {
        if self.backend.replicas.is_some() {
            self.replica_login = Some(Arc::new(login));
        }
        self
    }

    /// The session is over. A write whose acknowledgement never came back may still have
    /// committed (the client or PostgreSQL went away after the commit): invalidate as if it had.
    pub(crate) fn end(&mut self) {
        if self.mode == Mode::Lost {
            self.invalidate_database();
            return;
        }
        let mut unacknowledged = std::mem::take(&mut self.request_writes)
            .join(std::mem::take(&mut self.transaction_writes));
        for expect in std::mem::take(&mut self.expect) {
            if let Expect::Simple { writes, .. } | Expect::Sync { writes, .. } = expect {
                unacknowledged = unacknowledged.join(writes);
            }
        }
        self.invalidate(&unacknowledged);
    }

    /// True when client frames are held back, waiting for the batch's Sync.
    pub(crate) fn holds_frames(&self) -> bool {
        self.batch.is_holding()
    }

    /// For a Query or Parse that drops, renames or copies another database: pgcached letting
    /// go of that database, to be waited for before the statement is sent.
    fn release_for(&self, frame: &FrontendMessage) -> Option<WaitFuture> {
        let sql = match &frame.message {
            Frontend::Query { sql } => sql,
            Frontend::Parse(parse) => &parse.sql,
            _ => return None,
        };
        let release = self.backend.release.as_ref()?;
        let database = crate::sql::database_ddl::database_to_free(std::str::from_utf8(sql).ok()?)?;
        if *database == *self.database {
            // PostgreSQL refuses it from a session of that database anyway.
            return None;
        }
        let release = Arc::clone(release);
        let from = Arc::clone(&self.database);
        Some(Box::pin(
            async move { release.release(database, from).await },
        ))
    }

    /// Handles one complete frame from the client.
    pub(crate) fn client_frame(&mut self, frame: FrontendMessage, out: &mut Outputs<'_>) -> Step {
        self.handle(frame, out, Attempt::First)
    }

    /// Handles a parked frame again after its wait (`attempt` from [`Wait::retry_as`]); after
    /// a fill's wait it never waits again.
    pub(crate) fn retry(
        &mut self,
        frame: FrontendMessage,
        attempt: Attempt,
        out: &mut Outputs<'_>,
    ) -> Step {
        self.handle(frame, out, attempt)
    }

    fn handle(&mut self, frame: FrontendMessage, out: &mut Outputs<'_>, attempt: Attempt) -> Step {
        if attempt != Attempt::Filled {
            self.replica_answers.set(None);
        }
        if self.mode == Mode::Lost {
            self.release_held(out);
            out.forward(frame.tag, frame.bytes);
            return Step::Done;
        }
        if frame.is_unreadable() {
            return self.lose_track(frame, out);
        }
        if attempt == Attempt::First {
            if let Some(released) = self.release_for(&frame) {
                return Step::Park(Wait::Released(released), frame);
            }
        }
        match frame.tag {
            FrontendTag::Query => {
                self.release_held(out);
                self.simple_query(frame, out, attempt)
            }
            FrontendTag::Parse
            | FrontendTag::Bind
            | FrontendTag::Describe
            | FrontendTag::Execute
            | FrontendTag::Close => {
                self.batch_message(frame, out);
                Step::Done
            }
            FrontendTag::Sync => self.sync(frame, out, attempt),
            FrontendTag::FunctionCall => {
                self.release_held(out);
                self.backend.metrics.query(StatementKind::Other);
                // A function call may do anything.
                self.fingerprint.make_private();
                self.expect_unknown_request();
                out.forward(frame.tag, frame.bytes);
                Step::Done
            }
            FrontendTag::Flush
            | FrontendTag::CopyData
            | FrontendTag::CopyDone
            | FrontendTag::CopyFail
            | FrontendTag::Terminate
            | FrontendTag::Password => {
                self.release_held(out);
                out.forward(frame.tag, frame.bytes);
                Step::Done
            }
            FrontendTag::Unknown(_) => self.lose_track(frame, out),
        }
    }

    /// The start of a client frame too large to hold (over 1 MiB); the caller forwards it.
    pub(crate) fn streamed_client_frame(&mut self, tag: FrontendTag, out: &mut Outputs<'_>) {
        self.release_held(out);
        if self.mode == Mode::Lost {
            return;
        }
        match tag {
            FrontendTag::Query | FrontendTag::FunctionCall => {
                self.backend.metrics.query(StatementKind::Other);
                // Its text cannot be read whole: effects unknown.
                self.fingerprint.make_private();
                self.expect_unknown_request();
            }
            FrontendTag::CopyData => {}
            _ => self.lose(),
        }
    }

    /// A request whose effects are unknown: it may write, and it is answered up to its
    /// ReadyForQuery.
    fn expect_unknown_request(&mut self) {
        self.expect.push_back(Expect::Simple {
            capture: None,
            started: std::time::Instant::now(),
            path: QueryPath::Passthrough,
            writes: WriteScope::Database,
            tx: vec![TxEffect::Opaque {
                names_isolation: true,
            }],
            failed: false,
        });
    }

    /// A frame this module cannot read: relay it and stop caching for the session.
    fn lose_track(&mut self, frame: FrontendMessage, out: &mut Outputs<'_>) -> Step {
        self.release_held(out);
        self.lose();
        out.forward(frame.tag, frame.bytes);
        Step::Done
    }

    /// Stops caching for this session; everything from now on is relayed.
    fn lose(&mut self) {
        tracing::debug!("cache path lost track of the conversation; relaying only");
        self.mode = Mode::Lost;
        self.expect.clear();
        self.fills.clear();
        self.statements.clear();
    }
}

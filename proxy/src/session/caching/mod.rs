//! The cache path of a session: decides, frame by frame, whether a read is answered from the
//! cache, relayed and captured, or just relayed. It touches no socket: the relay hands it frames
//! and it queues bytes on the relay's outboxes.
//!
//! Layout:
//! - this file: the [`CachingSession`] state and the client side (Query, Parse/Bind/Describe/
//!   Execute/Close/Sync batches).
//! - [`server`]: the server side, attributing each answer to its request ([`expect`]).
//! - [`capture`]: copying a result as it passes, for the fill.
//!
//! Batches. Extended-protocol messages up to Sync are held back (when nothing else is in
//! flight, outside a transaction block). At Sync the batch is answered locally if every
//! Execute in it is a hit; otherwise it is relayed whole and each cacheable Execute's result is
//! captured. Named statements are always prepared on the server (a batch with a named Parse is
//! relayed), so later misses can use them; an unnamed statement answered locally is re-sent to
//! the server (and its ParseComplete swallowed) before a later batch needs it. A Flush, or any
//! other message, releases a held batch at once.
//!
//! Legal states of a batch: `Idle → Holding (P/B/D/E/C) → Idle` at Sync (answered or relayed),
//! `Holding → Streaming` at Flush or any other message; `Idle → Streaming` when the session
//! cannot answer locally (in a transaction, requests in flight); `Streaming → Idle` at Sync.

pub mod capture;
pub mod expect;
pub mod server;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use pgcached_cache::{CacheKey, FillWait, Lookup, ResultCache};

use super::fingerprint::Fingerprint;
use super::outbox::Outbox;
use super::tracker::{QueryKind, Tracker};
use crate::cache_metrics::CacheMetrics;
use crate::classify::{CacheableRead, Class, Classifier};
use crate::metrics::ProxyMetrics;
use crate::stats::{ClientInfo, QueryKind as StatementKind};
use crate::wire::extended;
use crate::wire::fixed::{BIND_COMPLETE, PARSE_COMPLETE, READY_IDLE};
use capture::{Capture, PendingFill};
use expect::{Expect, QueryPath};

/// A held batch larger than this is relayed instead of held (large Bind values).
const MAX_HELD_BYTES: usize = 256 * 1024;
/// A session with more prepared statements than this stops caching (and tracking them), so a
/// client cannot grow pgcached's memory without bound.
const MAX_STATEMENTS: usize = 10_000;

/// What all sessions share for caching.
pub struct CacheShared {
    /// The result store.
    pub cache: Arc<ResultCache>,
    /// Statement classification.
    pub classifier: Arc<Classifier>,
    /// Cache metric handles.
    pub metrics: CacheMetrics,
    /// Largest result captured.
    pub max_entry: usize,
    /// Streams of writes made outside pgcached.
    pub replication: Arc<crate::replication::Replication>,
    /// Watchers of DDL and privilege changes made outside pgcached.
    pub watchers: Arc<crate::catalog::watcher::CatalogWatchers>,
}

/// Where the cache path writes: the relay's outboxes and the facts it keeps.
pub struct Io<'a> {
    /// Frames for PostgreSQL.
    pub upstream: &'a mut Outbox,
    /// Frames for the client.
    pub client: &'a mut Outbox,
    /// The relay's tracker, which must see every frame relayed upstream.
    pub tracker: &'a mut Tracker,
    /// Relay metrics.
    pub metrics: &'a ProxyMetrics,
    /// The session, as `SHOW CLIENTS` lists it.
    pub client_info: &'a ClientInfo,
}

impl Io<'_> {
    /// Relays a frame (or the start of one) upstream, counting it.
    pub fn forward(&mut self, frame: Bytes) {
        if let Some(tag) = frame.first() {
            match self.tracker.on_client_frame(*tag) {
                Some(QueryKind::Simple) => {
                    self.metrics.queries_simple.increment(1);
                    self.client_info.query(false);
                }
                Some(QueryKind::Extended) => {
                    self.metrics.queries_extended.increment(1);
                    self.client_info.query(false);
                }
                None => {}
            }
        }
        self.upstream.push(frame);
    }
}

/// A prepared statement as the client sees it.
#[derive(Clone)]
struct Statement {
    /// The Parse frame, to re-send if the server's unnamed statement is another one.
    parse: Bytes,
    /// Query text.
    sql: Bytes,
    /// Parameter type OIDs as sent.
    param_types: Bytes,
}

/// A portal as the client sees it.
#[derive(Clone)]
struct Portal {
    statement: Bytes,
    arguments: Bytes,
}

/// A held frame and what it is.
struct Held {
    frame: Bytes,
    kind: HeldKind,
}

enum HeldKind {
    Parse,
    Bind,
    DescribePortal(Bytes),
    DescribeStatement,
    Execute(extended::Execute),
    Close,
}

/// True for `DISCARD ALL`, `DISCARD PLANS`, `DEALLOCATE ...`: statements that make the server
/// forget prepared statements.
fn drops_prepared_statements(sql: &[u8]) -> bool {
    let text = sql.trim_ascii_start();
    let starts =
        |word: &[u8]| text.len() >= word.len() && text[..word.len()].eq_ignore_ascii_case(word);
    starts(b"deallocate") || starts(b"discard")
}

/// What to do with a held batch at Sync.
enum LocalAnswer {
    /// Every Execute hit: these frames answer the batch.
    Answer(Vec<Bytes>),
    /// Another session is filling one of the results: wait for it, then try again.
    Wait(FillWait),
    /// Relay the batch.
    Relay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchMode {
    Idle,
    Holding,
    Streaming,
}

/// The cache path state of one session.
pub struct CachingSession {
    shared: Arc<CacheShared>,
    database: Arc<str>,
    role: Bytes,
    fingerprint: Fingerprint,
    /// Set when the conversation left what this module models; the session is then relayed.
    disabled: bool,
    statements: HashMap<Bytes, Statement>,
    portals: HashMap<Bytes, Portal>,
    /// The Parse frame of the server's current unnamed statement.
    server_unnamed: Option<Bytes>,
    mode: BatchMode,
    held: Vec<Held>,
    held_bytes: usize,
    /// A held batch must be relayed (named Parse, Close, Describe statement, row limit, ...).
    must_relay: bool,
    /// When the current batch started.
    batch_started: Instant,
    /// Whether any Execute of the current streamed batch was a miss.
    batch_path: QueryPath,
    expect: VecDeque<Expect>,
    fills: Vec<PendingFill>,
    /// Status of the last ReadyForQuery.
    status: u8,
    /// A write was relayed in the request being built (a simple query about to be relayed, or
    /// the extended batch up to its Sync); it goes with that request's expectation, so that the
    /// very ReadyForQuery that acknowledges the write bumps the generation, even when requests
    /// are pipelined.
    wrote: bool,
    /// A write was relayed in the current transaction block.
    wrote_in_transaction: bool,
    /// The RowDescription or NoData last answered to Describe portal.
    row_description: Option<Bytes>,
}

impl CachingSession {
    /// A session of `role` on `database` with these startup parameters.
    pub fn new(
        shared: Arc<CacheShared>,
        database: &str,
        role: &str,
        fingerprint: Fingerprint,
    ) -> CachingSession {
        CachingSession {
            shared,
            database: Arc::from(database),
            role: Bytes::copy_from_slice(role.as_bytes()),
            fingerprint,
            disabled: false,
            statements: HashMap::new(),
            portals: HashMap::new(),
            server_unnamed: None,
            mode: BatchMode::Idle,
            held: Vec::new(),
            held_bytes: 0,
            must_relay: false,
            batch_started: Instant::now(),
            batch_path: QueryPath::Passthrough,
            expect: VecDeque::new(),
            fills: Vec::new(),
            status: 0,
            wrote: false,
            wrote_in_transaction: false,
            row_description: None,
        }
    }

    /// The session is over. A write whose acknowledgement never came back may still have
    /// committed (the client or PostgreSQL went away after the commit): invalidate as if it had.
    pub fn end(&mut self) {
        let unacknowledged = self.wrote
            || self.expect.iter().any(|e| {
                matches!(
                    e,
                    Expect::Simple { wrote: true, .. } | Expect::Sync { wrote: true, .. }
                )
            });
        if unacknowledged || self.wrote_in_transaction || self.disabled {
            self.invalidate_database();
        }
    }

    /// True when client frames are held back, waiting for the batch's Sync.
    pub fn holds_frames(&self) -> bool {
        !self.held.is_empty()
    }

    /// True while every frame is simply relayed.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Handles one complete frame from the client. Returns a wait when another session is
    /// filling the same result: the relay then parks this frame, waits (bounded), and hands it
    /// back through [`CachingSession::retry_client_frame`].
    pub fn on_client_frame(&mut self, frame: Bytes, io: &mut Io<'_>) -> Option<FillWait> {
        self.handle_client_frame(frame, io, true)
    }

    /// Handles a parked frame again after its wait; it never waits twice.
    pub fn retry_client_frame(&mut self, frame: Bytes, io: &mut Io<'_>) {
        let _ = self.handle_client_frame(frame, io, false);
    }

    fn handle_client_frame(
        &mut self,
        frame: Bytes,
        io: &mut Io<'_>,
        may_wait: bool,
    ) -> Option<FillWait> {
        if self.disabled {
            // Nothing is read any more; every ReadyForQuery invalidates (see server.rs).
            // Frames held when the session was disabled go first, in order.
            for held in std::mem::take(&mut self.held) {
                io.forward(held.frame);
            }
            self.held_bytes = 0;
            io.forward(frame);
            return None;
        }
        let tag = frame.first().copied().unwrap_or(0);
        match tag {
            b'Q' => {
                self.release_held(io);
                return self.simple_query(frame, io, may_wait);
            }
            b'P' | b'B' | b'D' | b'E' | b'C' => self.extended_message(tag, frame, io),
            b'S' => return self.sync(frame, io, may_wait),
            b'H' => {
                self.release_held(io);
                io.forward(frame);
            }
            b'F' => {
                self.release_held(io);
                self.shared.metrics.query(StatementKind::Other);
                // A function call may do anything.
                self.fingerprint.make_private();
                self.expect.push_back(Expect::Simple {
                    capture: None,
                    started: Instant::now(),
                    path: QueryPath::Passthrough,
                    wrote: true,
                });
                io.forward(frame);
            }
            b'd' | b'c' | b'f' | b'X' | b'p' => {
                self.release_held(io);
                io.forward(frame);
            }
            _ => {
                self.release_held(io);
                self.disable();
                io.forward(frame);
            }
        }
        None
    }

    /// The start of a client frame too large to hold (over 1 MiB); the relay forwards its bytes.
    pub fn on_streamed_client_frame(&mut self, tag: u8, io: &mut Io<'_>) {
        self.release_held(io);
        match tag {
            b'Q' | b'F' if !self.disabled => {
                self.shared.metrics.query(StatementKind::Other);
                // Its text cannot be read whole: effects unknown.
                self.fingerprint.make_private();
                self.expect.push_back(Expect::Simple {
                    capture: None,
                    started: Instant::now(),
                    path: QueryPath::Passthrough,
                    wrote: true,
                });
            }
            b'd' => {}
            _ => self.disable(),
        }
    }

    /// Stops caching for this session; everything from now on is relayed.
    fn disable(&mut self) {
        self.disabled = true;
        self.expect.clear();
        self.fills.clear();
        self.statements.clear();
        self.portals.clear();
    }

    /// True when a request may be answered locally now: nothing in flight, idle transaction state.
    fn can_answer_locally(&self, io: &Io<'_>) -> bool {
        self.status == b'I' && self.expect.is_empty() && io.tracker.is_idle()
    }

    fn simple_query(&mut self, frame: Bytes, io: &mut Io<'_>, may_wait: bool) -> Option<FillWait> {
        let started = Instant::now();
        let Some(sql) = extended::query_text(&frame) else {
            self.shared.metrics.query(StatementKind::Other);
            self.relay_simple(frame, None, started, io);
            return None;
        };
        let class = self.classify(&sql);
        if may_wait {
            // A retried frame had its effects applied the first time.
            self.apply_effects(&class, &sql);
        }
        let local = self.can_answer_locally(io);
        let Class::Cacheable(read) = &class else {
            self.shared.metrics.query(statement_kind(&class));
            self.shared.metrics.bypass(class.bypass_reason());
            self.relay_simple(frame, None, started, io);
            return None;
        };
        if !local {
            self.shared.metrics.query(StatementKind::ReadUncacheable);
            self.shared.metrics.bypass(self.not_now_reason());
            self.relay_simple(frame, None, started, io);
            return None;
        }
        if may_wait {
            // A retried frame was counted the first time.
            self.shared.metrics.query(StatementKind::ReadCached);
        }
        let key = self.key(b"Q", &sql, &[], &[], false);
        match self.shared.cache.lookup(&key, &self.database, &read.tables) {
            Lookup::Hit(entry) => {
                io.client.push(entry.response.clone());
                io.client.push(Bytes::from_static(READY_IDLE));
                self.shared
                    .metrics
                    .hit(entry.response.len(), started, entry.cost);
                io.client_info.query(true);
            }
            Lookup::Miss(guard) => {
                self.shared.metrics.miss();
                let capture = Capture::new(prepare(guard, read), self.shared.max_entry, false);
                self.relay_simple(frame, Some(capture), started, io);
            }
            Lookup::Wait(wait) if may_wait => return Some(wait),
            Lookup::Wait(_) => {
                self.shared.metrics.bypass("fill_in_flight");
                self.relay_simple(frame, None, started, io);
            }
            Lookup::Bypass(reason) => {
                self.shared.metrics.bypass(reason.0);
                self.relay_simple(frame, None, started, io);
            }
        }
        None
    }

    fn relay_simple(
        &mut self,
        frame: Bytes,
        capture: Option<Capture>,
        started: Instant,
        io: &mut Io<'_>,
    ) {
        let path = if capture.is_some() {
            QueryPath::Miss
        } else {
            QueryPath::Passthrough
        };
        let wrote = std::mem::take(&mut self.wrote);
        self.expect.push_back(Expect::Simple {
            capture,
            started,
            path,
            wrote,
        });
        io.forward(frame);
    }

    fn not_now_reason(&self) -> &'static str {
        match self.status {
            b'T' | b'E' => "in_transaction",
            _ => "pipelined",
        }
    }

    fn classify(&self, sql: &Bytes) -> Class {
        match std::str::from_utf8(sql) {
            Ok(text) => self.shared.classifier.classify(&self.database, text),
            Err(_) => Class::Other,
        }
    }

    /// What a relayed statement does to the session: state changes, privacy, writes.
    fn apply_effects(&mut self, class: &Class, sql: &[u8]) {
        if drops_prepared_statements(sql) {
            // DISCARD ALL / DEALLOCATE: the server forgets prepared statements; so do we, so
            // that a later Bind of one reaches the server and gets its error.
            self.statements.clear();
            self.portals.clear();
            self.server_unnamed = None;
        }
        match class {
            Class::SessionState => self.fingerprint.fold(sql),
            Class::TempObjects | Class::CallsVolatile => self.fingerprint.make_private(),
            Class::Other => {
                self.fingerprint.make_private();
                self.wrote = true;
            }
            Class::Write => self.wrote = true,
            Class::Classifying {
                calls_functions: true,
            } => self.fingerprint.make_private(),
            Class::Cacheable(_)
            | Class::Classifying { .. }
            | Class::Uncacheable(_)
            | Class::TransactionControl => {}
        }
    }

    fn key(
        &self,
        protocol: &[u8],
        sql: &[u8],
        param_types: &[u8],
        arguments: &[u8],
        described: bool,
    ) -> CacheKey {
        CacheKey::builder()
            .part(self.database.as_bytes())
            .part(&self.role)
            .part(self.fingerprint.as_bytes())
            .part(protocol)
            .part(sql)
            .part(param_types)
            .part(arguments)
            .part(if described { b"D" } else { b"-" })
            .finish()
    }

    fn extended_message(&mut self, tag: u8, frame: Bytes, io: &mut Io<'_>) {
        if self.mode == BatchMode::Idle {
            self.batch_started = Instant::now();
            self.batch_path = QueryPath::Passthrough;
            self.must_relay = false;
            self.mode = if self.can_answer_locally(io) {
                BatchMode::Holding
            } else {
                BatchMode::Streaming
            };
        }
        let kind = match tag {
            b'P' if self.statements.len() >= MAX_STATEMENTS => return self.give_up(frame, io),
            b'P' => match extended::parse(&frame) {
                Some(parse) => {
                    if !parse.name.is_empty() {
                        self.must_relay = true;
                    }
                    self.statements.insert(
                        parse.name.clone(),
                        Statement {
                            parse: frame.clone(),
                            sql: parse.sql,
                            param_types: parse.param_types,
                        },
                    );
                    HeldKind::Parse
                }
                None => return self.give_up(frame, io),
            },
            b'B' => match extended::bind(&frame) {
                Some(bind) => {
                    if !self.statements.contains_key(&bind.statement) {
                        self.must_relay = true;
                    }
                    self.portals.insert(
                        bind.portal,
                        Portal {
                            statement: bind.statement,
                            arguments: bind.arguments,
                        },
                    );
                    HeldKind::Bind
                }
                None => return self.give_up(frame, io),
            },
            b'D' => match extended::target(&frame) {
                Some(target) if target.kind == b'P' => HeldKind::DescribePortal(target.name),
                Some(_) => {
                    self.must_relay = true;
                    HeldKind::DescribeStatement
                }
                None => return self.give_up(frame, io),
            },
            b'E' => match extended::execute(&frame) {
                Some(execute) => {
                    if execute.max_rows != 0 {
                        self.must_relay = true;
                    }
                    HeldKind::Execute(execute)
                }
                None => return self.give_up(frame, io),
            },
            _ => match extended::target(&frame) {
                Some(target) => {
                    self.must_relay = true;
                    if target.kind == b'S' {
                        self.statements.remove(&target.name);
                    } else {
                        self.portals.remove(&target.name);
                    }
                    HeldKind::Close
                }
                None => return self.give_up(frame, io),
            },
        };
        let held = Held { frame, kind };
        match self.mode {
            BatchMode::Holding => {
                self.held_bytes += held.frame.len();
                self.held.push(held);
                if self.held_bytes > MAX_HELD_BYTES {
                    self.release_held(io);
                }
            }
            _ => self.relay_extended(held, io),
        }
    }

    /// A frame this module cannot read: relay it and stop caching for the session.
    fn give_up(&mut self, frame: Bytes, io: &mut Io<'_>) {
        self.release_held(io);
        self.disable();
        io.forward(frame);
    }

    /// Relays every held frame (with its expectations), and streams the rest of the batch.
    fn release_held(&mut self, io: &mut Io<'_>) {
        if self.mode == BatchMode::Holding {
            self.mode = BatchMode::Streaming;
        }
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        for frame in held {
            self.relay_extended(frame, io);
        }
    }

    /// Relays one extended-protocol frame with its expectation (and capture, for a miss).
    fn relay_extended(&mut self, held: Held, io: &mut Io<'_>) {
        match held.kind {
            HeldKind::Parse => {
                if let Some(parse) = extended::parse(&held.frame) {
                    if parse.name.is_empty() {
                        self.server_unnamed = Some(held.frame.clone());
                    }
                }
                self.expect.push_back(Expect::Parse { swallow: false });
            }
            HeldKind::Bind => {
                self.ensure_server_has_unnamed(&held.frame, io);
                self.expect.push_back(Expect::Bind);
            }
            HeldKind::DescribePortal(_) => self.expect.push_back(Expect::DescribePortal),
            HeldKind::DescribeStatement => self.expect.push_back(Expect::DescribeStatement),
            HeldKind::Close => self.expect.push_back(Expect::Close),
            HeldKind::Execute(execute) => {
                let capture = self.capture_for(&execute, false);
                if capture.is_some() {
                    self.batch_path = QueryPath::Miss;
                }
                self.expect.push_back(Expect::Execute { capture });
            }
        }
        io.forward(held.frame);
    }

    /// Before a Bind of the unnamed statement, makes sure the server's unnamed statement is the
    /// client's (it may have been answered locally): re-sends the Parse and swallows its answer.
    fn ensure_server_has_unnamed(&mut self, bind_frame: &Bytes, io: &mut Io<'_>) {
        let Some(bind) = extended::bind(bind_frame) else {
            return;
        };
        if !bind.statement.is_empty() {
            return;
        }
        let Some(statement) = self.statements.get(&bind.statement) else {
            return;
        };
        if self.server_unnamed.as_ref() == Some(&statement.parse) {
            return;
        }
        let parse = statement.parse.clone();
        self.server_unnamed = Some(parse.clone());
        self.expect.push_back(Expect::Parse { swallow: true });
        io.forward(parse);
    }

    /// The statement and arguments an Execute runs, and the statement's class.
    fn lookup_execution(&self, execute: &extended::Execute) -> Option<(Statement, Portal, Class)> {
        let portal = self.portals.get(&execute.portal)?.clone();
        let statement = self.statements.get(&portal.statement)?.clone();
        let class = self.classify(&statement.sql);
        Some((statement, portal, class))
    }

    /// Like [`Self::lookup_execution`], for an Execute being relayed: its effects apply.
    fn execution(&mut self, execute: &extended::Execute) -> Option<(Statement, Portal, Class)> {
        let found = self.lookup_execution(execute)?;
        self.apply_effects(&found.2, &found.0.sql);
        Some(found)
    }

    /// For a relayed Execute: a capture if its result is cacheable and not cached.
    fn capture_for(&mut self, execute: &extended::Execute, described: bool) -> Option<Capture> {
        let Some((statement, portal, class)) = self.execution(execute) else {
            self.shared.metrics.query(StatementKind::Other);
            self.shared.metrics.bypass("unknown_statement");
            return None;
        };
        let Class::Cacheable(read) = &class else {
            self.shared.metrics.query(statement_kind(&class));
            self.shared.metrics.bypass(class.bypass_reason());
            return None;
        };
        if self.status != b'I' || execute.max_rows != 0 {
            let reason = if execute.max_rows != 0 {
                "row_limit"
            } else {
                self.not_now_reason()
            };
            self.shared.metrics.query(StatementKind::ReadUncacheable);
            self.shared.metrics.bypass(reason);
            return None;
        }
        self.shared.metrics.query(StatementKind::ReadCached);
        let described = described || self.batch_describes(&execute.portal);
        let key = self.key(
            b"E",
            &statement.sql,
            &statement.param_types,
            &portal.arguments,
            described,
        );
        match self.shared.cache.lookup(&key, &self.database, &read.tables) {
            Lookup::Miss(guard) => {
                self.shared.metrics.miss();
                Some(Capture::new(
                    prepare(guard, read),
                    self.shared.max_entry,
                    described,
                ))
            }
            Lookup::Hit(_) => {
                self.shared.metrics.bypass("batch_not_all_hits");
                None
            }
            Lookup::Wait(_) => {
                self.shared.metrics.bypass("fill_in_flight");
                None
            }
            Lookup::Bypass(reason) => {
                self.shared.metrics.bypass(reason.0);
                None
            }
        }
    }

    /// True if the portal was described in the batch being relayed (its Describe is already
    /// queued as an expectation after its Bind).
    fn batch_describes(&self, _portal: &Bytes) -> bool {
        self.expect
            .iter()
            .rev()
            .take_while(|e| {
                !matches!(
                    e,
                    Expect::Bind | Expect::Sync { .. } | Expect::Simple { .. }
                )
            })
            .any(|e| matches!(e, Expect::DescribePortal))
    }

    fn sync(&mut self, frame: Bytes, io: &mut Io<'_>, may_wait: bool) -> Option<FillWait> {
        if self.mode == BatchMode::Holding && !self.must_relay {
            match self.answer_locally(may_wait) {
                LocalAnswer::Answer(answer) => {
                    for bytes in answer {
                        io.client.push(bytes);
                    }
                    for held in &self.held {
                        if matches!(held.kind, HeldKind::Execute(_)) {
                            io.client_info.query(true);
                        }
                    }
                    io.client.push(Bytes::from_static(READY_IDLE));
                    self.held.clear();
                    self.held_bytes = 0;
                    self.mode = BatchMode::Idle;
                    // Outside a transaction block, Sync ends the implicit transaction and with it
                    // every portal.
                    self.portals.clear();
                    return None;
                }
                LocalAnswer::Wait(wait) => return Some(wait),
                LocalAnswer::Relay => {}
            }
        }
        self.release_held(io);
        let wrote = std::mem::take(&mut self.wrote);
        self.expect.push_back(Expect::Sync {
            started: self.batch_started,
            path: self.batch_path,
            wrote,
        });
        self.mode = BatchMode::Idle;
        io.forward(frame);
        None
    }

    /// The answer to the held batch if every Execute in it is a hit.
    fn answer_locally(&mut self, may_wait: bool) -> LocalAnswer {
        match self.try_answer_locally(may_wait) {
            Ok(answer) => LocalAnswer::Answer(answer),
            Err(Some(wait)) => LocalAnswer::Wait(wait),
            Err(None) => LocalAnswer::Relay,
        }
    }

    /// `Err(Some(wait))` when another session is filling one of the results.
    fn try_answer_locally(&mut self, may_wait: bool) -> Result<Vec<Bytes>, Option<FillWait>> {
        let started = self.batch_started;
        // First pass: find every Execute's entry.
        let mut entries = Vec::new();
        let mut described_portals: Vec<Bytes> = Vec::new();
        let held_kinds: Vec<(usize, Option<extended::Execute>, Option<Bytes>)> = self
            .held
            .iter()
            .enumerate()
            .map(|(i, h)| match &h.kind {
                HeldKind::Execute(e) => (i, Some(e.clone()), None),
                HeldKind::DescribePortal(p) => (i, None, Some(p.clone())),
                HeldKind::Bind => (i, None, None),
                _ => (i, None, None),
            })
            .collect();
        for (index, execute, described) in &held_kinds {
            if let Some(portal) = described {
                described_portals.push(portal.clone());
                continue;
            }
            if let HeldKind::Bind = self.held[*index].kind {
                if let Some(bind) = extended::bind(&self.held[*index].frame) {
                    described_portals.retain(|p| *p != bind.portal);
                }
                continue;
            }
            let Some(execute) = execute else { continue };
            let (statement, portal, class) = self.lookup_execution(execute).ok_or(None)?;
            let Class::Cacheable(read) = &class else {
                return Err(None);
            };
            let described = described_portals.contains(&execute.portal);
            let key = self.key(
                b"E",
                &statement.sql,
                &statement.param_types,
                &portal.arguments,
                described,
            );
            match self.shared.cache.lookup(&key, &self.database, &read.tables) {
                Lookup::Hit(entry) => entries.push((*index, execute.portal.clone(), entry)),
                Lookup::Wait(wait) if may_wait => return Err(Some(wait)),
                _ => return Err(None),
            }
        }
        if entries.is_empty() {
            return Err(None);
        }
        // Second pass: the answers, in order.
        let mut answer = Vec::with_capacity(self.held.len());
        let mut served = 0usize;
        for (index, held) in self.held.iter().enumerate() {
            match &held.kind {
                HeldKind::Parse => answer.push(Bytes::from_static(PARSE_COMPLETE)),
                HeldKind::Bind => answer.push(Bytes::from_static(BIND_COMPLETE)),
                HeldKind::DescribePortal(portal) => {
                    let next = entries
                        .iter()
                        .find(|(i, p, _)| *i > index && p == portal)
                        .map(|(_, _, entry)| entry.meta.clone())
                        .filter(|meta| !meta.is_empty())
                        .ok_or(None)?;
                    answer.push(next);
                }
                HeldKind::Execute(_) => {
                    let (_, _, entry) = entries.iter().find(|(i, _, _)| *i == index).ok_or(None)?;
                    served += entry.response.len();
                    answer.push(entry.response.clone());
                }
                HeldKind::DescribeStatement | HeldKind::Close => return Err(None),
            }
        }
        for (_, _, entry) in &entries {
            self.shared.metrics.query(StatementKind::ReadCached);
            self.shared
                .metrics
                .hit(served / entries.len().max(1), started, entry.cost);
        }
        Ok(answer)
    }

    /// The tables a write in this session touched are unknown here: the database is bumped.
    fn invalidate_database(&self) {
        self.shared
            .cache
            .generations()
            .bump_database(&self.database);
        self.shared
            .metrics
            .invalidation(crate::stats::InvalidationSource::Proxy, 1);
    }
}

/// The kind counted for a statement relayed without a cache lookup.
fn statement_kind(class: &Class) -> StatementKind {
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

/// A miss's fill guard, told the read's TTL hint and label.
fn prepare(
    mut guard: pgcached_cache::FillGuard,
    read: &CacheableRead,
) -> pgcached_cache::FillGuard {
    if let Some(ttl) = read.ttl {
        guard.set_ttl(ttl);
    }
    guard.set_label(Arc::clone(&read.label), Arc::clone(&read.tables));
    guard
}

//! Extended-protocol batches: held until Sync and answered locally when every Execute in them
//! is a hit, else relayed whole, with each cacheable Execute's result captured.
//!
//! Named statements are always prepared on the server (a batch with a named Parse is relayed),
//! so later misses can use them; an unnamed statement answered locally is re-sent to the server
//! (and its ParseComplete swallowed) before a later Bind needs it. A Flush, or any message that
//! is not part of a batch, releases a held batch at once.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use pgcached_cache::{Entry, FillWait};

use super::capture::Capture;
use super::effects::{self, Answerable, Found, KeyProtocol};
use super::expect::{Expect, QueryPath};
use super::local_block;
use super::writes::OwnedValues;
use super::{Attempt, CachePath, Mode, Outputs, Step, Wait};
use crate::bypass::BypassReason;
use crate::classify::{limit_for, Class, Protocol};
use crate::pins::reads::ExecutionValues;
use crate::replica::ReplicaRequest;
use crate::sql::{CompletionTag, Isolation, TransactionStep};
use crate::stats::QueryKind as StatementKind;
use crate::wire::backend::TransactionStatus;
use crate::wire::extended::Execute;
use crate::wire::fixed::{BIND_COMPLETE, CLOSE_COMPLETE, NO_DATA, PARSE_COMPLETE};
use crate::wire::frontend::{Frontend, FrontendMessage, FrontendTag};

/// A held batch larger than this is relayed instead of held (large Bind values).
pub(crate) const MAX_HELD_BYTES: usize = 256 * 1024;

/// Where the current extended-protocol batch stands (transitions: see the module docs of
/// [`super`]).
pub(crate) enum Batch {
    /// No batch since the last Sync.
    Idle,
    /// Frames held until Sync, to be answered locally if every Execute hits.
    Holding(Held),
    /// Frames go upstream as they come.
    Streaming {
        /// When the batch started.
        started: Instant,
        /// Miss if any Execute of the batch was captured.
        path: QueryPath,
    },
}

/// A held batch.
pub(crate) struct Held {
    frames: Vec<FrontendMessage>,
    bytes: usize,
    /// The batch cannot be answered locally (named Parse, Close or Describe of a statement, a
    /// row limit, an unknown statement): it is relayed at Sync.
    must_relay: bool,
    started: Instant,
}

impl Batch {
    /// True while frames are held.
    pub(crate) fn is_holding(&self) -> bool {
        matches!(self, Batch::Holding(held) if !held.frames.is_empty())
    }
}

/// One Execute of a held batch, resolved.
#[derive(Debug, Clone)]
struct HeldExecution {
    /// Its frame's index in the batch (of its Bind, until it is executed).
    index: usize,
    /// The portal it executes.
    portal: Bytes,
    /// The statement text the portal binds.
    sql: Bytes,
    /// The statement's declared parameter types.
    param_types: Bytes,
    /// The Bind's formats, values and result formats.
    arguments: Bytes,
}

/// What the held batch's Sync leads to.
enum LocalAnswer {
    /// Every Execute hit or was a transaction step answerable here: these frames answer the
    /// batch, and these steps open or end the block, in order.
    Answer(Vec<Bytes>, Vec<LocalStep>),
    /// Another session is filling one of the results: wait for it, then try again.
    Wait(FillWait),
    /// Relay the batch.
    Relay,
}

/// A transaction step of a held batch answered locally ([`super::local_block`]).
#[derive(Debug, Clone)]
enum LocalStep {
    /// A BEGIN naming this level (or none), with its text.
    Begin(Option<Isolation>, Bytes),
    /// A COMMIT or ROLLBACK of a block begun here.
    End,
}

/// How one Execute of a held batch is answered.
enum Planned {
    /// From this entry.
    Hit(Arc<Entry>),
    /// A transaction step, completed with this tag.
    Step(CompletionTag),
}

impl CachePath {
    /// Parse, Bind, Describe, Execute or Close.
    pub(super) fn batch_message(&mut self, frame: FrontendMessage, out: &mut Outputs<'_>) {
        if matches!(self.batch, Batch::Idle) {
            let started = Instant::now();
            self.batch = if self.may_answer_locally(out) {
                Batch::Holding(Held {
                    frames: Vec::new(),
                    bytes: 0,
                    must_relay: false,
                    started,
                })
            } else {
                Batch::Streaming {
                    started,
                    path: QueryPath::Passthrough,
                }
            };
        }
        let must_relay = match &frame.message {
            Frontend::Parse(_) if self.statements.is_full() => {
                let _ = self.lose_track(frame, out);
                return;
            }
            Frontend::Parse(parse) => {
                self.statements.parsed(parse, &frame.bytes);
                !parse.name.is_empty()
            }
            Frontend::Bind(bind) => !self.statements.bound(bind, &frame.bytes),
            Frontend::Describe(target) => target.kind != b'P',
            // Outside a block the portal ends at Sync, so a limited Execute's answer is the
            // statement's first rows; inside one the portal may be read on in parts. A batch
            // pipelining several Executes of a write (or of any statement only PostgreSQL
            // answers) is relayed from the second one; a lone Execute, as every cache hit
            // sends, is not classified here (Sync does it).
            Frontend::Execute(execute) => {
                (row_limit(execute) != 0 && self.transactions.status() != TransactionStatus::Idle)
                    || (self.held_executes() > 0 && self.is_relayed_anyway(&execute.portal))
            }
            Frontend::Close(target) => {
                self.statements.closed(target.kind, &target.name);
                // Closing a portal can be answered here (sqlx closes its portal in every
                // batch): PostgreSQL treats a portal it never bound as closed too. Closing a
                // statement changes what later Binds find on the server: relayed.
                target.kind != b'P'
            }
            Frontend::Query { .. } | Frontend::Other => {
                let _ = self.lose_track(frame, out);
                return;
            }
        };
        match &mut self.batch {
            Batch::Holding(held) => {
                held.must_relay |= must_relay;
                held.bytes += frame.bytes.len();
                held.frames.push(frame);
                // A batch that will be relayed goes now: the server's answers (an error that
                // makes a pipelining client stop sending) come back as early as without
                // pgcached.
                if held.must_relay || held.bytes > MAX_HELD_BYTES {
                    self.release_held(out);
                }
            }
            _ => self.relay_batch_frame(frame, out),
        }
    }

    /// Relays every held frame (with its expectations); the rest of the batch streams.
    pub(super) fn release_held(&mut self, out: &mut Outputs<'_>) {
        let Batch::Holding(held) = &mut self.batch else {
            return;
        };
        let frames = std::mem::take(&mut held.frames);
        let started = held.started;
        self.batch = Batch::Streaming {
            started,
            path: QueryPath::Passthrough,
        };
        for frame in frames {
            if self.mode == Mode::Lost {
                out.forward(frame.tag, frame.bytes);
            } else {
                self.relay_batch_frame(frame, out);
            }
        }
    }

    /// Relays one batch frame with its expectation (and capture, for a miss).
    fn relay_batch_frame(&mut self, frame: FrontendMessage, out: &mut Outputs<'_>) {
        match &frame.message {
            Frontend::Parse(parse) => {
                // Held frames were all recorded when they arrived; recording each again as it
                // goes upstream keeps the registry in the order the server sees them (a batch
                // may prepare the unnamed statement more than once).
                self.statements.parsed(parse, &frame.bytes);
                if parse.name.is_empty() {
                    self.statements.server_prepared_unnamed(&frame.bytes);
                }
                self.expect.push_back(Expect::Parse { swallow: false });
            }
            Frontend::Bind(bind) => {
                self.statements.bound(bind, &frame.bytes);
                self.ensure_server_statement(&bind.statement, out);
                self.statements.server_bound(&bind.portal);
                self.expect.push_back(Expect::Bind { swallow: false });
            }
            Frontend::Describe(target) if target.kind == b'P' => {
                self.ensure_server_portal(&target.name, out);
                self.expect.push_back(Expect::DescribePortal)
            }
            Frontend::Describe(_) => self.expect.push_back(Expect::DescribeStatement),
            Frontend::Close(_) => self.expect.push_back(Expect::Close),
            Frontend::Execute(execute) => {
                self.ensure_server_portal(&execute.portal, out);
                let resumed = self.statements.executed(&execute.portal);
                let capture = self.capture_for(execute, resumed);
                if capture.is_some() {
                    if let Batch::Streaming { path, .. } = &mut self.batch {
                        *path = QueryPath::Miss;
                    }
                }
                self.expect.push_back(Expect::Execute { capture });
            }
            Frontend::Query { .. } | Frontend::Other => {}
        }
        out.forward(frame.tag, frame.bytes);
    }

    /// Before a Bind of `statement` goes upstream: if the server's unnamed statement is another
    /// one (the client's was answered locally, or replaced since), prepare the client's again
    /// and swallow the answer the client does not expect.
    fn ensure_server_statement(&mut self, statement: &Bytes, out: &mut Outputs<'_>) {
        if let Some(parse) = self.statements.reparse_for(statement) {
            self.expect.push_back(Expect::Parse { swallow: true });
            out.forward(FrontendTag::Parse, parse);
        }
    }

    /// Before an Execute or Describe of `portal` goes upstream: if its Bind was answered
    /// locally inside a transaction block (where portals outlive Sync), bind it on the server
    /// first and swallow the BindComplete.
    fn ensure_server_portal(&mut self, portal: &Bytes, out: &mut Outputs<'_>) {
        if let Some((bind, statement)) = self.statements.rebind(portal) {
            self.ensure_server_statement(&statement, out);
            self.expect.push_back(Expect::Bind { swallow: true });
            out.forward(FrontendTag::Bind, bind);
        }
    }

    /// True when an Execute of `portal` runs a statement that is relayed whatever the cache
    /// holds: judged, and neither a read nor a transaction step (those may be answered here).
    fn is_relayed_anyway(&self, portal: &Bytes) -> bool {
        let Some((statement, _)) = self.statements.execution(portal) else {
            return true;
        };
        !matches!(
            self.classify(&statement.sql, Protocol::Extended),
            Class::Cacheable(_)
                | Class::TransactionControl(_)
                | Class::Classifying { .. }
                | Class::Write(crate::classify::WriteClass::Judging)
        )
    }

    /// The statement class and key parts an Execute of `portal` runs.
    fn execution(&self, portal: &Bytes) -> Option<(Class, Bytes, Bytes, Bytes)> {
        let (statement, bound) = self.statements.execution(portal)?;
        let class = self.classify(&statement.sql, Protocol::Extended);
        Some((
            class,
            statement.sql.clone(),
            statement.param_types.clone(),
            bound.arguments.clone(),
        ))
    }

    /// For an Execute being relayed (`resumed` when its portal was executed before since its
    /// Bind): its effects apply; a capture if its result is cacheable, not cached, and the
    /// transaction state allows it.
    fn capture_for(&mut self, execute: &Execute, resumed: bool) -> Option<Capture> {
        let Some((class, sql, param_types, arguments)) = self.execution(&execute.portal) else {
            self.backend.metrics.query(StatementKind::Other);
            self.backend.metrics.bypass(BypassReason::UnknownStatement);
            return None;
        };
        self.apply_effects(
            &class,
            &sql,
            OwnedValues::Bind(arguments.clone(), param_types.clone()),
        );
        let Class::Cacheable(read) = &class else {
            self.backend.metrics.query(effects::statement_kind(&class));
            if let Some(reason) = class.bypass_reason() {
                self.backend.metrics.bypass(reason);
            }
            return None;
        };
        let limit = row_limit(execute);
        let allowed = if resumed {
            Err(BypassReason::PortalResumed)
        } else if limit != 0 && self.transactions.predict(&self.request_tx).in_block {
            Err(BypassReason::RowLimit)
        } else {
            self.transaction_allows(read)
        };
        if let Err(reason) = allowed {
            self.backend.metrics.query(StatementKind::ReadUncacheable);
            self.backend.metrics.bypass(reason);
            return None;
        }
        self.backend.metrics.query(StatementKind::ReadCached);
        let described = self.relayed_batch_describes();
        let key = self.key(
            KeyProtocol::Extended(limit),
            &sql,
            &param_types,
            &arguments,
            described,
        );
        let values = || ExecutionValues::Bind {
            arguments: &arguments,
            types: &param_types,
        };
        // The miss found while trying to answer the batch locally, if it is this Execute's.
        if let Some(guard) = self.take_kept_miss(&key, read, values()) {
            return Some(Capture::new(guard, self.backend.max_entry, described));
        }
        match self.look_up(&key, read, false, values(), || {
            ReplicaRequest::Simple(Bytes::new())
        }) {
            Found::Miss(guard) => Some(Capture::new(guard, self.backend.max_entry, described)),
            Found::Hit(_) => {
                self.backend.metrics.bypass(BypassReason::BatchNotAllHits);
                None
            }
            Found::Wait(_) | Found::Relay => None,
        }
    }

    /// True if the portal of the Execute being relayed was described since its Bind (the
    /// Describe is then the latest expectation after the Bind).
    fn relayed_batch_describes(&self) -> bool {
        self.expect
            .iter()
            .rev()
            .take_while(|e| !matches!(e, Expect::Bind { .. }) && !e.ends_request())
            .any(|e| matches!(e, Expect::DescribePortal))
    }

    /// Sync: answer the held batch locally when every Execute hits; else relay it. Statements
    /// of the batch still being judged are waited for first.
    pub(super) fn sync(
        &mut self,
        frame: FrontendMessage,
        out: &mut Outputs<'_>,
        attempt: Attempt,
    ) -> Step {
        if let Batch::Holding(held) = &self.batch {
            if !held.must_relay {
                if attempt.may_wait_for_verdict() {
                    let (judging, classes) = self.held_statements_being_judged();
                    if !judging.is_empty() {
                        let verdict = self.backend.classify.until_judged(&self.database, judging);
                        let limit = limit_for(&classes);
                        return Step::Park(Wait::Judged { verdict, limit }, frame);
                    }
                }
                match self.answer_locally(attempt.may_wait_for_fill(), out) {
                    LocalAnswer::Answer(answer, steps) => {
                        let executes = self.held_executes();
                        for bytes in answer {
                            out.answer(bytes);
                        }
                        for _ in steps.len()..executes {
                            out.client_info.query(true);
                        }
                        for step in steps {
                            match step {
                                LocalStep::Begin(level, sql) => {
                                    self.begin_locally(level, &sql, out)
                                }
                                LocalStep::End => self.end_locally(out),
                            }
                        }
                        out.answer(self.ready_frame());
                        if self.transactions.status() == TransactionStatus::Idle {
                            // Outside a transaction block, Sync ends the implicit transaction
                            // and with it every portal.
                            self.statements.transaction_ended();
                        } else {
                            // Inside one, portals outlive Sync: the server lacks these.
                            let bound = self.held_portals();
                            self.statements.answered_in_block(bound.iter());
                        }
                        self.batch = Batch::Idle;
                        return Step::Done;
                    }
                    LocalAnswer::Wait(wait) => return Step::Park(Wait::Fill(wait), frame),
                    LocalAnswer::Relay => {}
                }
            }
        }
        self.release_held(out);
        self.forget_kept_miss();
        let (started, path) = match &self.batch {
            Batch::Streaming { started, path } => (*started, *path),
            _ => (Instant::now(), QueryPath::Passthrough),
        };
        let writes = std::mem::take(&mut self.request_writes);
        let tx = std::mem::take(&mut self.request_tx);
        self.expect.push_back(Expect::Sync {
            started,
            path,
            writes,
            tx,
            failed: false,
        });
        self.batch = Batch::Idle;
        out.forward(frame.tag, frame.bytes);
        Step::Done
    }

    /// What each Execute of the held batch runs, resolved in the batch's order (a batch may
    /// prepare the unnamed statement, or bind a portal, more than once). `None` when an
    /// Execute runs a portal the batch did not bind, or one it already executed since its
    /// Bind: only PostgreSQL knows what that portal is now (a portal run to completion or
    /// part of the way, or one of an earlier batch of the block).
    fn held_executions(&self) -> Option<Vec<HeldExecution>> {
        let Batch::Holding(held) = &self.batch else {
            return None;
        };
        let mut parsed: Vec<(&Bytes, &Bytes, &Bytes)> = Vec::new();
        let mut bound: Vec<HeldExecution> = Vec::new();
        let mut executions = Vec::new();
        for (index, frame) in held.frames.iter().enumerate() {
            match &frame.message {
                Frontend::Parse(parse) => {
                    parsed.retain(|(name, _, _)| **name != parse.name);
                    parsed.push((&parse.name, &parse.sql, &parse.param_types));
                }
                Frontend::Bind(bind) => {
                    let (sql, param_types) =
                        match parsed.iter().find(|(name, _, _)| **name == bind.statement) {
                            Some((_, sql, types)) => ((*sql).clone(), (*types).clone()),
                            None => {
                                let statement = self.statements.statement(&bind.statement)?;
                                (statement.sql.clone(), statement.param_types.clone())
                            }
                        };
                    bound.retain(|execution| execution.portal != bind.portal);
                    bound.push(HeldExecution {
                        index,
                        portal: bind.portal.clone(),
                        sql,
                        param_types,
                        arguments: bind.arguments.clone(),
                    });
                }
                Frontend::Close(target) if target.kind == b'P' => {
                    bound.retain(|execution| execution.portal != target.name);
                }
                Frontend::Execute(execute) => {
                    // Each Bind is executed once here: a second Execute of the portal goes on
                    // where the first stopped, which only PostgreSQL can answer.
                    let position = bound.iter().position(|e| e.portal == execute.portal)?;
                    let execution = bound.swap_remove(position);
                    executions.push(HeldExecution { index, ..execution });
                }
                _ => {}
            }
        }
        Some(executions)
    }

    /// The statements of the held batch's Executes that are being judged.
    fn held_statements_being_judged(&self) -> (Vec<(String, Protocol)>, Vec<Class>) {
        let mut judging: Vec<(String, Protocol)> = Vec::new();
        let mut classes = Vec::new();
        for execution in self.held_executions().unwrap_or_default() {
            let class = self.classify(&execution.sql, Protocol::Extended);
            if let Class::Classifying { .. } = class {
                let text = String::from_utf8_lossy(&execution.sql).into_owned();
                if !judging.iter().any(|(known, _)| *known == text) {
                    judging.push((text, Protocol::Extended));
                    classes.push(class);
                }
            }
        }
        (judging, classes)
    }

    /// The portals the held batch binds.
    fn held_portals(&self) -> Vec<Bytes> {
        match &self.batch {
            Batch::Holding(held) => held
                .frames
                .iter()
                .filter_map(|f| match &f.message {
                    Frontend::Bind(bind) => Some(bind.portal.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn held_executes(&self) -> usize {
        match &self.batch {
            Batch::Holding(held) => held
                .frames
                .iter()
                .filter(|f| f.tag == FrontendTag::Execute)
                .count(),
            _ => 0,
        }
    }

    fn answer_locally(&self, may_wait: bool, out: &Outputs<'_>) -> LocalAnswer {
        match self.try_answer_locally(may_wait, out) {
            Ok((answer, steps)) => LocalAnswer::Answer(answer, steps),
            Err(Some(wait)) => LocalAnswer::Wait(wait),
            Err(None) => LocalAnswer::Relay,
        }
    }

    /// The answer to the held batch if every Execute in it is a hit, or a BEGIN, COMMIT or
    /// ROLLBACK that may be answered here ([`super::local_block`]), with those steps;
    /// `Err(Some(wait))` when another session is filling one of the results.
    fn try_answer_locally(
        &self,
        may_wait: bool,
        out: &Outputs<'_>,
    ) -> Result<(Vec<Bytes>, Vec<LocalStep>), Option<FillWait>> {
        let Batch::Holding(held) = &self.batch else {
            return Err(None);
        };
        // First pass: every Execute's entry or step.
        let mut executions = self.held_executions().ok_or(None)?.into_iter().peekable();
        let mut entries: Vec<(usize, Bytes, Planned)> = Vec::new();
        let mut steps: Vec<LocalStep> = Vec::new();
        let mut described: Vec<Bytes> = Vec::new();
        for (index, frame) in held.frames.iter().enumerate() {
            match &frame.message {
                Frontend::Describe(target) => described.push(target.name.clone()),
                Frontend::Bind(bind) => described.retain(|p| *p != bind.portal),
                Frontend::Execute(execute) => {
                    let execution = executions.next_if(|e| e.index == index).ok_or(None)?;
                    let limit = row_limit(execute);
                    if limit != 0 && !steps.is_empty() {
                        // A block begun here: the portal outlives Sync.
                        return Err(None);
                    }
                    let read = match self.classify(&execution.sql, Protocol::Extended) {
                        Class::Cacheable(read) => read,
                        Class::TransactionControl(step) => {
                            let local = self
                                .plan_step(step, &execution.sql, &steps, out)
                                .ok_or(None)?;
                            let tag = CompletionTag::of(&execution.sql).ok_or(None)?;
                            steps.push(local);
                            entries.push((index, execution.portal, Planned::Step(tag)));
                            continue;
                        }
                        _ => return Err(None),
                    };
                    if self.transaction_allows(&read).is_err() {
                        return Err(None);
                    }
                    let key = self.key(
                        KeyProtocol::Extended(limit),
                        &execution.sql,
                        &execution.param_types,
                        &execution.arguments,
                        described.contains(&execute.portal),
                    );
                    let values = ExecutionValues::Bind {
                        arguments: &execution.arguments,
                        types: &execution.param_types,
                    };
                    let request = || ReplicaRequest::Extended {
                        sql: execution.sql.clone(),
                        param_types: execution.param_types.clone(),
                        arguments: execution.arguments.clone(),
                        described: described.contains(&execute.portal),
                        limit,
                    };
                    match self.look_up_to_answer(&key, &read, may_wait, values, request) {
                        Answerable::Hit(entry) => {
                            entries.push((index, execution.portal, Planned::Hit(entry)))
                        }
                        Answerable::Wait(wait) => return Err(Some(wait)),
                        Answerable::No => return Err(None),
                    }
                }
                _ => {}
            }
        }
        if entries.is_empty() {
            return Err(None);
        }
        // Second pass: the answers, in order.
        let mut answer = Vec::with_capacity(held.frames.len());
        let mut served = 0usize;
        for (index, frame) in held.frames.iter().enumerate() {
            match &frame.message {
                Frontend::Parse(_) => answer.push(Bytes::from_static(PARSE_COMPLETE)),
                Frontend::Bind(_) => answer.push(Bytes::from_static(BIND_COMPLETE)),
                Frontend::Describe(target) => {
                    let meta = match entries
                        .iter()
                        .find(|(i, p, _)| *i > index && *p == target.name)
                        .map(|(_, _, planned)| planned)
                    {
                        Some(Planned::Hit(entry)) if !entry.meta.is_empty() => entry.meta.clone(),
                        Some(Planned::Step(_)) => Bytes::from_static(NO_DATA),
                        _ => return Err(None),
                    };
                    answer.push(meta);
                }
                Frontend::Execute(_) => {
                    match entries.iter().find(|(i, _, _)| *i == index).ok_or(None)? {
                        (_, _, Planned::Hit(entry)) => {
                            served += entry.response.len();
                            answer.push(entry.response.clone());
                        }
                        (_, _, Planned::Step(tag)) => answer.push(local_block::completion(*tag)),
                    }
                }
                Frontend::Close(target) if target.kind == b'P' => {
                    answer.push(Bytes::from_static(CLOSE_COMPLETE));
                }
                Frontend::Close(_) | Frontend::Query { .. } | Frontend::Other => return Err(None),
            }
        }
        let hits = entries
            .iter()
            .filter(|(_, _, planned)| matches!(planned, Planned::Hit(_)))
            .count();
        for (_, _, planned) in &entries {
            match planned {
                // The answer of a miss a replica filled was counted as that miss.
                Planned::Hit(_) if self.answered_by_replica() => {
                    self.backend.metrics.query(StatementKind::ReadCached);
                }
                Planned::Hit(entry) => {
                    self.backend.metrics.query(StatementKind::ReadCached);
                    self.backend
                        .metrics
                        .hit(served / hits.max(1), held.started, entry.cost);
                }
                Planned::Step(_) => self.backend.metrics.query(StatementKind::Other),
            }
        }
        Ok((answer, steps))
    }

    /// A transaction step of the held batch, after `earlier` steps of it, if it may be answered
    /// here: a BEGIN as the batch's first step when the session may begin a block itself; a
    /// COMMIT or ROLLBACK of a block begun here (earlier in the batch, or before it).
    fn plan_step(
        &self,
        step: TransactionStep,
        sql: &Bytes,
        earlier: &[LocalStep],
        out: &Outputs<'_>,
    ) -> Option<LocalStep> {
        let tag = CompletionTag::of(sql);
        match (step, earlier.last()) {
            (TransactionStep::Begin(level), None) if self.may_begin_locally(level, tag, out) => {
                Some(LocalStep::Begin(level, sql.clone()))
            }
            (TransactionStep::End { chain: false }, None) if self.may_end_locally(tag, out) => {
                Some(LocalStep::End)
            }
            (TransactionStep::End { chain: false }, Some(LocalStep::Begin(..)))
                if matches!(tag, Some(CompletionTag::Commit | CompletionTag::Rollback)) =>
            {
                Some(LocalStep::End)
            }
            _ => None,
        }
    }
}

/// An Execute's row limit as PostgreSQL reads it: zero or less is every row.
fn row_limit(execute: &Execute) -> u32 {
    u32::try_from(execute.max_rows).unwrap_or(0)
}

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
use super::simple::not_now_reason;
use super::writes::OwnedValues;
use super::{CachePath, Mode, Outputs, Step};
use crate::bypass::BypassReason;
use crate::classify::{Class, Protocol};
use crate::pins::reads::ExecutionValues;
use crate::session::conversation::Phase;
use crate::stats::QueryKind as StatementKind;
use crate::wire::backend::TransactionStatus;
use crate::wire::extended::Execute;
use crate::wire::fixed::{BIND_COMPLETE, PARSE_COMPLETE, READY_IDLE};
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
    /// The batch cannot be answered locally (named Parse, Close, Describe of a statement, a row
    /// limit, an unknown statement): it is relayed at Sync.
    must_relay: bool,
    started: Instant,
}

impl Batch {
    /// True while frames are held.
    pub(crate) fn is_holding(&self) -> bool {
        matches!(self, Batch::Holding(held) if !held.frames.is_empty())
    }
}

/// What the held batch's Sync leads to.
enum LocalAnswer {
    /// Every Execute hit: these frames answer the batch.
    Answer(Vec<Bytes>),
    /// Another session is filling one of the results: wait for it, then try again.
    Wait(FillWait),
    /// Relay the batch.
    Relay,
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
            Frontend::Bind(bind) => !self.statements.bound(bind),
            Frontend::Describe(target) => target.kind != b'P',
            Frontend::Execute(execute) => execute.max_rows != 0,
            Frontend::Close(target) => {
                self.statements.closed(target.kind, &target.name);
                true
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
                if held.bytes > MAX_HELD_BYTES {
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
                if parse.name.is_empty() {
                    self.statements.server_prepared_unnamed(&frame.bytes);
                }
                self.expect.push_back(Expect::Parse { swallow: false });
            }
            Frontend::Bind(bind) => {
                if let Some(parse) = self.statements.reparse_for(&bind.statement) {
                    // The server's unnamed statement is another one: prepare the client's again
                    // and swallow the answer the client does not expect.
                    self.expect.push_back(Expect::Parse { swallow: true });
                    out.forward(FrontendTag::Parse, parse);
                }
                self.expect.push_back(Expect::Bind);
            }
            Frontend::Describe(target) if target.kind == b'P' => {
                self.expect.push_back(Expect::DescribePortal)
            }
            Frontend::Describe(_) => self.expect.push_back(Expect::DescribeStatement),
            Frontend::Close(_) => self.expect.push_back(Expect::Close),
            Frontend::Execute(execute) => {
                let capture = self.capture_for(execute, out.conversation.phase());
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

    /// For an Execute being relayed: its effects apply; a capture if its result is cacheable
    /// and not cached.
    /// `phase` is where the conversation stands (fills need the last status to be idle).
    fn capture_for(&mut self, execute: &Execute, phase: Phase) -> Option<Capture> {
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
        let idle = phase == Phase::Ready(TransactionStatus::Idle);
        if !idle || execute.max_rows != 0 {
            let reason = if execute.max_rows != 0 {
                BypassReason::RowLimit
            } else {
                not_now_reason(phase)
            };
            self.backend.metrics.query(StatementKind::ReadUncacheable);
            self.backend.metrics.bypass(reason);
            return None;
        }
        self.backend.metrics.query(StatementKind::ReadCached);
        let described = self.relayed_batch_describes();
        let key = self.key(
            KeyProtocol::Extended,
            &sql,
            &param_types,
            &arguments,
            described,
        );
        let values = ExecutionValues::Bind {
            arguments: &arguments,
            types: &param_types,
        };
        match self.look_up(&key, read, false, values) {
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
            .take_while(|e| !matches!(e, Expect::Bind) && !e.ends_request())
            .any(|e| matches!(e, Expect::DescribePortal))
    }

    /// Sync: answer the held batch locally when every Execute hits; else relay it.
    pub(super) fn sync(
        &mut self,
        frame: FrontendMessage,
        out: &mut Outputs<'_>,
        first: bool,
    ) -> Step {
        if let Batch::Holding(held) = &self.batch {
            if !held.must_relay {
                match self.answer_locally(first) {
                    LocalAnswer::Answer(answer) => {
                        let executes = self.held_executes();
                        for bytes in answer {
                            out.answer(bytes);
                        }
                        for _ in 0..executes {
                            out.client_info.query(true);
                        }
                        out.answer(Bytes::from_static(READY_IDLE));
                        self.batch = Batch::Idle;
                        // Outside a transaction block, Sync ends the implicit transaction and
                        // with it every portal.
                        self.statements.transaction_ended();
                        return Step::Done;
                    }
                    LocalAnswer::Wait(wait) => return Step::Park(wait, frame),
                    LocalAnswer::Relay => {}
                }
            }
        }
        self.release_held(out);
        let (started, path) = match &self.batch {
            Batch::Streaming { started, path } => (*started, *path),
            _ => (Instant::now(), QueryPath::Passthrough),
        };
        let writes = std::mem::take(&mut self.request_writes);
        self.expect.push_back(Expect::Sync {
            started,
            path,
            writes,
        });
        self.batch = Batch::Idle;
        out.forward(frame.tag, frame.bytes);
        Step::Done
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

    fn answer_locally(&self, may_wait: bool) -> LocalAnswer {
        match self.try_answer_locally(may_wait) {
            Ok(answer) => LocalAnswer::Answer(answer),
            Err(Some(wait)) => LocalAnswer::Wait(wait),
            Err(None) => LocalAnswer::Relay,
        }
    }

    /// The answer to the held batch if every Execute in it is a hit; `Err(Some(wait))` when
    /// another session is filling one of the results.
    fn try_answer_locally(&self, may_wait: bool) -> Result<Vec<Bytes>, Option<FillWait>> {
        let Batch::Holding(held) = &self.batch else {
            return Err(None);
        };
        // First pass: every Execute's entry.
        let mut entries: Vec<(usize, Bytes, Arc<Entry>)> = Vec::new();
        let mut described: Vec<Bytes> = Vec::new();
        for (index, frame) in held.frames.iter().enumerate() {
            match &frame.message {
                Frontend::Describe(target) => described.push(target.name.clone()),
                Frontend::Bind(bind) => described.retain(|p| *p != bind.portal),
                Frontend::Execute(execute) => {
                    let (class, sql, param_types, arguments) =
                        self.execution(&execute.portal).ok_or(None)?;
                    let Class::Cacheable(read) = &class else {
                        return Err(None);
                    };
                    let key = self.key(
                        KeyProtocol::Extended,
                        &sql,
                        &param_types,
                        &arguments,
                        described.contains(&execute.portal),
                    );
                    let values = ExecutionValues::Bind {
                        arguments: &arguments,
                        types: &param_types,
                    };
                    match self.look_up_to_answer(&key, read, may_wait, values) {
                        Answerable::Hit(entry) => {
                            entries.push((index, execute.portal.clone(), entry))
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
                    let meta = entries
                        .iter()
                        .find(|(i, p, _)| *i > index && *p == target.name)
                        .map(|(_, _, entry)| entry.meta.clone())
                        .filter(|meta| !meta.is_empty())
                        .ok_or(None)?;
                    answer.push(meta);
                }
                Frontend::Execute(_) => {
                    let (_, _, entry) = entries.iter().find(|(i, _, _)| *i == index).ok_or(None)?;
                    served += entry.response.len();
                    answer.push(entry.response.clone());
                }
                Frontend::Close(_) | Frontend::Query { .. } | Frontend::Other => return Err(None),
            }
        }
        for (_, _, entry) in &entries {
            self.backend.metrics.query(StatementKind::ReadCached);
            self.backend
                .metrics
                .hit(served / entries.len().max(1), held.started, entry.cost);
        }
        Ok(answer)
    }
}

//! The simple Query path: a hit is answered with the stored bytes and a ReadyForQuery in one
//! write; a miss is relayed with a capture; anything else is relayed.

use std::time::Instant;

use bytes::Bytes;

use super::capture::Capture;
use super::effects::{self, Found, KeyProtocol};
use super::expect::{Expect, QueryPath};
use super::writes::OwnedValues;
use super::{CachePath, Outputs, Step};
use crate::bypass::BypassReason;
use crate::classify::{Class, Protocol};
use crate::pins::reads::ExecutionValues;
use crate::session::conversation::Phase;
use crate::stats::QueryKind as StatementKind;
use crate::wire::backend::TransactionStatus;
use crate::wire::fixed::READY_IDLE;
use crate::wire::frontend::{Frontend, FrontendMessage};

impl CachePath {
    /// A Query frame. `first` is false when it comes back after a wait: its effects were
    /// applied and it was counted the first time.
    pub(super) fn simple_query(
        &mut self,
        frame: FrontendMessage,
        out: &mut Outputs<'_>,
        first: bool,
    ) -> Step {
        let started = Instant::now();
        let Frontend::Query { sql } = &frame.message else {
            self.backend.metrics.query(StatementKind::Other);
            self.relay_simple(frame.bytes, None, started, out);
            return Step::Done;
        };
        let class = self.classify(sql, Protocol::Simple);
        if first {
            self.apply_effects(&class, sql, OwnedValues::Literals(sql.clone()));
        }
        let Class::Cacheable(read) = &class else {
            self.backend.metrics.query(effects::statement_kind(&class));
            if let Some(reason) = class.bypass_reason() {
                self.backend.metrics.bypass(reason);
            }
            self.relay_simple(frame.bytes, None, started, out);
            return Step::Done;
        };
        if !self.may_answer_locally(out) {
            self.backend.metrics.query(StatementKind::ReadUncacheable);
            self.backend
                .metrics
                .bypass(not_now_reason(out.conversation.phase()));
            self.relay_simple(frame.bytes, None, started, out);
            return Step::Done;
        }
        if first {
            self.backend.metrics.query(StatementKind::ReadCached);
        }
        let key = self.key(KeyProtocol::Simple, sql, &[], &[], false);
        let text = std::str::from_utf8(sql).unwrap_or("");
        match self.look_up(&key, read, first, ExecutionValues::Literals(text)) {
            Found::Hit(entry) => {
                out.answer(entry.response.clone());
                out.answer(Bytes::from_static(READY_IDLE));
                self.backend
                    .metrics
                    .hit(entry.response.len(), started, entry.cost);
                out.client_info.query(true);
            }
            Found::Miss(guard) => {
                let capture = Capture::new(guard, self.backend.max_entry, false);
                self.relay_simple(frame.bytes, Some(capture), started, out);
            }
            Found::Wait(wait) => return Step::Park(wait, frame),
            Found::Relay => self.relay_simple(frame.bytes, None, started, out),
        }
        Step::Done
    }

    /// Relays a Query with its expectation (and capture, for a miss).
    fn relay_simple(
        &mut self,
        frame: Bytes,
        capture: Option<Capture>,
        started: Instant,
        out: &mut Outputs<'_>,
    ) {
        let path = if capture.is_some() {
            QueryPath::Miss
        } else {
            QueryPath::Passthrough
        };
        let writes = std::mem::take(&mut self.request_writes);
        self.expect.push_back(Expect::Simple {
            capture,
            started,
            path,
            writes,
        });
        out.forward(crate::wire::frontend::FrontendTag::Query, frame);
    }

    /// True when a request may be answered by pgcached alone now: nothing in flight, outside a
    /// transaction block.
    pub(super) fn may_answer_locally(&self, out: &Outputs<'_>) -> bool {
        self.expect.is_empty() && out.conversation.may_answer_locally()
    }
}

/// Why a cacheable read is relayed uncached right now.
pub(super) fn not_now_reason(phase: Phase) -> BypassReason {
    match phase {
        Phase::Ready(TransactionStatus::InBlock | TransactionStatus::Failed) => {
            BypassReason::InTransaction
        }
        _ => BypassReason::Pipelined,
    }
}

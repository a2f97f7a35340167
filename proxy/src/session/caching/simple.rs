//! The simple Query path: a hit is answered with the stored bytes and a ReadyForQuery in one
//! write; a miss is relayed with a capture; anything else is relayed.

use std::time::Instant;

use bytes::Bytes;

use super::capture::Capture;
use super::effects::{self, Found, KeyProtocol};
use super::expect::{Expect, QueryPath};
use super::writes::OwnedValues;
use super::{Attempt, CachePath, Outputs, Step, Wait};
use crate::bypass::BypassReason;
use crate::classify::{limit_for, Class, Protocol};
use crate::pins::reads::ExecutionValues;
use crate::replica::ReplicaRequest;
use crate::stats::QueryKind as StatementKind;
use crate::wire::backend::TransactionStatus;
use crate::wire::fixed::{READY_IDLE, READY_IN_BLOCK};
use crate::wire::frontend::{Frontend, FrontendMessage};

impl CachePath {
    /// A Query frame, as `attempt` (after a fill's wait its effects were applied and it was
    /// counted the first time).
    pub(super) fn simple_query(
        &mut self,
        frame: FrontendMessage,
        out: &mut Outputs<'_>,
        attempt: Attempt,
    ) -> Step {
        let started = Instant::now();
        let Frontend::Query { sql } = &frame.message else {
            self.backend.metrics.query(StatementKind::Other);
            self.relay_simple(frame.bytes, None, started, out);
            return Step::Done;
        };
        let class = self.classify(sql, Protocol::Simple);
        if attempt.may_wait_for_verdict() && class.is_being_judged() {
            let text = String::from_utf8_lossy(sql).into_owned();
            let verdict = self
                .backend
                .classify
                .until_judged(&self.database, vec![(text, Protocol::Simple)]);
            let limit = limit_for([&class]);
            return Step::Park(Wait::Judged { verdict, limit }, frame);
        }
        let first = attempt.applies_effects();
        if let Class::TransactionControl(step) = &class {
            if first && self.answer_step_locally(*step, sql, out) {
                return Step::Done;
            }
        }
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
        let allowed = if self.may_answer_locally(out) {
            self.transaction_allows(read)
        } else {
            Err(BypassReason::Pipelined)
        };
        if let Err(reason) = allowed {
            if first {
                self.backend.metrics.query(StatementKind::ReadUncacheable);
                self.backend.metrics.bypass(reason);
            }
            self.relay_simple(frame.bytes, None, started, out);
            return Step::Done;
        }
        if first {
            self.backend.metrics.query(StatementKind::ReadCached);
        }
        let key = self.key(KeyProtocol::Simple, sql, &[], &[], false);
        let text = std::str::from_utf8(sql).unwrap_or("");
        match self.look_up(
            &key,
            read,
            attempt.may_wait_for_fill(),
            ExecutionValues::Literals(text),
            || ReplicaRequest::Simple(frame.bytes.clone()),
        ) {
            Found::Hit(entry) => {
                out.answer(entry.response.clone());
                out.answer(self.ready_frame());
                if self.answered_by_replica() {
                    // A replica's answer to the miss, which was counted as such.
                    out.client_info.query(false);
                } else {
                    self.backend
                        .metrics
                        .hit(entry.response.len(), started, entry.cost);
                    out.client_info.query(true);
                }
            }
            Found::Miss(guard) => {
                let capture = Capture::new(guard, self.backend.max_entry, false);
                self.relay_simple(frame.bytes, Some(capture), started, out);
            }
            Found::Wait(wait) => return Step::Park(Wait::Fill(wait), frame),
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
        let tx = std::mem::take(&mut self.request_tx);
        self.expect.push_back(Expect::Simple {
            capture,
            started,
            path,
            writes,
            tx,
            failed: false,
        });
        out.forward(crate::wire::frontend::FrontendTag::Query, frame);
    }

    /// True when a request may be answered by pgcached alone now, in the order the client
    /// expects: nothing in flight. Whether the transaction state lets a read be served is
    /// [`CachePath::transaction_allows`].
    pub(super) fn may_answer_locally(&self, out: &Outputs<'_>) -> bool {
        self.expect.is_empty() && out.conversation.is_idle()
    }

    /// The ReadyForQuery that ends a request answered locally: the session's status is
    /// unchanged by a read.
    pub(super) fn ready_frame(&self) -> Bytes {
        match self.transactions.status() {
            TransactionStatus::InBlock => Bytes::from_static(READY_IN_BLOCK),
            TransactionStatus::Idle | TransactionStatus::Failed => Bytes::from_static(READY_IDLE),
        }
    }
}

//! A BEGIN answered by pgcached and sent to PostgreSQL only when its block first needs the
//! server.
//!
//! Why: the blocks of a read-mostly application (sysbench, pgjdbc with autocommit off, psycopg
//! and SQLAlchemy defaults, Django's `ATOMIC_REQUESTS`) mostly read; when every read is a hit,
//! the BEGIN and COMMIT round trips are all PostgreSQL still sees of them. So the cache path
//! answers a READ COMMITTED `BEGIN` itself (`CommandComplete` and ReadyForQuery `T`) and hands
//! the statement to this gate. A COMMIT or ROLLBACK while it is still here is answered locally
//! too: PostgreSQL never saw the block, and a READ COMMITTED block that only read commits
//! nothing.
//!
//! The first frame of the block that must reach PostgreSQL sends the BEGIN ahead of it, and
//! that frame and every one after it are held until the BEGIN's ReadyForQuery says `T`: a
//! statement of the block never runs outside it. If the BEGIN does not open a block (an error:
//! a cancel that reached it as it ran, a server shutting down), nothing after it was sent and
//! the session is closed ([`BeginGate::failed`]), as if the connection had been lost inside
//! the block; nothing of it ran.
//!
//! States: `Open` (nothing deferred) → `Deferred` (a BEGIN answered locally) → `Open` (the
//! block ended locally, [`BeginGate::cancel`]) or `Sending` (a frame needs the server: BEGIN
//! sent, frames held) → `Open` (BEGIN's ReadyForQuery `T`: held frames released) or `Failed`
//! (final: the session closes).

use bytes::Bytes;

use super::caching::server::ServerAction;
use super::outbox::Outbox;
use crate::wire::backend::{BackendTag, TransactionStatus};
use crate::wire::frontend::FrontendTag;

/// Where the session's deferred BEGIN stands.
#[derive(Debug, Default)]
pub(crate) enum BeginGate {
    /// No BEGIN is deferred: frames go upstream as they come.
    #[default]
    Open,
    /// A BEGIN was answered locally; its Query frame waits for the block's first frame that
    /// needs the server.
    Deferred {
        /// The Query frame that opens the block.
        begin: Bytes,
    },
    /// The BEGIN went upstream; frames after it wait for its ReadyForQuery.
    Sending {
        /// Frames for PostgreSQL, in order.
        held: Vec<Bytes>,
        /// Their total size.
        bytes: usize,
    },
    /// The BEGIN did not open a block: the session must close.
    Failed,
}

/// What [`BeginGate::send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The frame went upstream (or was held behind a BEGIN already sent).
    Frame,
    /// The deferred BEGIN went upstream first (a Query the conversation must count).
    BeginFirst,
}

impl BeginGate {
    /// A BEGIN was answered locally; `begin` is the Query frame that opens the block.
    pub(crate) fn defer(&mut self, begin: Bytes) {
        debug_assert!(self.is_open(), "a BEGIN deferred twice");
        *self = BeginGate::Deferred { begin };
    }

    /// True when nothing is deferred or held.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self, BeginGate::Open)
    }

    /// True while a BEGIN is deferred and nothing of its block reached PostgreSQL.
    pub(crate) fn is_deferred(&self) -> bool {
        matches!(self, BeginGate::Deferred { .. })
    }

    /// The deferred block ended locally (COMMIT or ROLLBACK answered here): forget its BEGIN.
    pub(crate) fn cancel(&mut self) {
        if self.is_deferred() {
            *self = BeginGate::Open;
        }
    }

    /// True when the BEGIN failed and the session must close.
    pub(crate) fn failed(&self) -> bool {
        matches!(self, BeginGate::Failed)
    }

    /// Bytes held behind a BEGIN in flight (counted against the upstream queue's limit).
    pub(crate) fn held_bytes(&self) -> usize {
        match self {
            BeginGate::Sending { bytes, .. } => *bytes,
            _ => 0,
        }
    }

    /// A frame (or part of one) for PostgreSQL, the frame's tag when it starts one.
    pub(crate) fn send(
        &mut self,
        tag: Option<FrontendTag>,
        frame: Bytes,
        upstream: &mut Outbox,
    ) -> Sent {
        match self {
            BeginGate::Open => {
                upstream.push(frame);
                Sent::Frame
            }
            BeginGate::Deferred { .. } if tag == Some(FrontendTag::Terminate) => {
                // Closing the connection ends the block; PostgreSQL need not see it.
                *self = BeginGate::Open;
                upstream.push(frame);
                Sent::Frame
            }
            BeginGate::Deferred { begin } => {
                upstream.push(std::mem::take(begin));
                *self = BeginGate::Sending {
                    bytes: frame.len(),
                    held: vec![frame],
                };
                Sent::BeginFirst
            }
            BeginGate::Sending { held, bytes } => {
                *bytes += frame.len();
                held.push(frame);
                Sent::Frame
            }
            BeginGate::Failed => Sent::Frame,
        }
    }

    /// A frame from PostgreSQL (`status` set for a ReadyForQuery). `Some` when it answers the
    /// BEGIN sent ahead of the block (the session's cache path must not see it); `None` when it
    /// is the session's.
    pub(crate) fn server_frame(
        &mut self,
        tag: BackendTag,
        status: Option<TransactionStatus>,
        upstream: &mut Outbox,
    ) -> Option<ServerAction> {
        match self {
            BeginGate::Open | BeginGate::Deferred { .. } => None,
            BeginGate::Failed => Some(ServerAction::Drop),
            BeginGate::Sending { held, .. } => Some(match tag {
                BackendTag::CommandComplete => ServerAction::Drop,
                BackendTag::NoticeResponse | BackendTag::ParameterStatus => ServerAction::Forward,
                BackendTag::ReadyForQuery if status == Some(TransactionStatus::InBlock) => {
                    for frame in std::mem::take(held) {
                        upstream.push(frame);
                    }
                    *self = BeginGate::Open;
                    ServerAction::Drop
                }
                BackendTag::ErrorResponse => {
                    // PostgreSQL's reason reaches the client before the session closes.
                    *self = BeginGate::Failed;
                    ServerAction::Forward
                }
                _ => {
                    *self = BeginGate::Failed;
                    ServerAction::Drop
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin() -> Bytes {
        crate::wire::test_frame(b'Q', b"BEGIN\0")
    }

    fn queued(outbox: &Outbox) -> usize {
        outbox.bytes
    }

    #[test]
    fn frames_pass_while_nothing_is_deferred() {
        let mut gate = BeginGate::default();
        let mut upstream = Outbox::default();
        let frame = crate::wire::test_frame(b'Q', b"SELECT 1\0");
        assert_eq!(
            gate.send(Some(FrontendTag::Query), frame.clone(), &mut upstream),
            Sent::Frame
        );
        assert_eq!(queued(&upstream), frame.len());
        assert_eq!(
            gate.server_frame(BackendTag::CommandComplete, None, &mut upstream),
            None
        );
    }

    #[test]
    fn the_first_frame_sends_the_begin_and_waits_for_its_ready_for_query() {
        let mut gate = BeginGate::default();
        gate.defer(begin());
        let mut upstream = Outbox::default();
        let update = crate::wire::test_frame(b'Q', b"UPDATE t SET v = 1\0");
        assert_eq!(
            gate.send(Some(FrontendTag::Query), update.clone(), &mut upstream),
            Sent::BeginFirst
        );
        assert_eq!(queued(&upstream), begin().len(), "only the BEGIN went");
        assert_eq!(gate.held_bytes(), update.len());
        assert_eq!(
            gate.server_frame(BackendTag::CommandComplete, None, &mut upstream),
            Some(ServerAction::Drop)
        );
        assert_eq!(
            gate.server_frame(
                BackendTag::ReadyForQuery,
                Some(TransactionStatus::InBlock),
                &mut upstream
            ),
            Some(ServerAction::Drop)
        );
        assert_eq!(queued(&upstream), begin().len() + update.len());
        assert!(gate.is_open());
        assert_eq!(
            gate.server_frame(BackendTag::CommandComplete, None, &mut upstream),
            None,
            "the update's answer is the session's"
        );
    }

    #[test]
    fn a_begin_that_opens_no_block_holds_everything_back_and_fails() {
        let mut gate = BeginGate::default();
        gate.defer(begin());
        let mut upstream = Outbox::default();
        let update = crate::wire::test_frame(b'Q', b"UPDATE t SET v = 1\0");
        let _ = gate.send(Some(FrontendTag::Query), update, &mut upstream);
        assert_eq!(
            gate.server_frame(BackendTag::ErrorResponse, None, &mut upstream),
            Some(ServerAction::Forward)
        );
        assert!(gate.failed());
        assert_eq!(
            gate.server_frame(
                BackendTag::ReadyForQuery,
                Some(TransactionStatus::Idle),
                &mut upstream
            ),
            Some(ServerAction::Drop)
        );
        assert_eq!(queued(&upstream), begin().len(), "the update never went");
    }

    #[test]
    fn a_block_ended_locally_or_by_terminate_never_sends_its_begin() {
        let mut gate = BeginGate::default();
        gate.defer(begin());
        gate.cancel();
        assert!(gate.is_open());
        gate.defer(begin());
        let mut upstream = Outbox::default();
        let terminate = crate::wire::test_frame(b'X', b"");
        assert_eq!(
            gate.send(
                Some(FrontendTag::Terminate),
                terminate.clone(),
                &mut upstream
            ),
            Sent::Frame
        );
        assert_eq!(queued(&upstream), terminate.len());
        assert!(gate.is_open());
    }
}

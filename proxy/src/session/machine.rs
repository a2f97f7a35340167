//! One session's state machine, as the relay drives it: client pieces and server frames in,
//! bytes queued on the relay's outboxes out. It touches no socket.
//!
//! It owns what the relay must not decide: the [`Conversation`] (idle, transaction status,
//! who closed), query counting, and, with caching on, the [`CachePath`]. A lookup that must
//! wait for another session's fill parks the frame here; the relay awaits [`Parked`]'s wait
//! (bounded) and calls [`SessionMachine::resume`]; pieces the client sent meanwhile are kept
//! in order and handled after it.
//!
//! States: `Running` (pieces handled as they come) ⇄ `Parked` (one frame waits for a fill;
//! later pieces queue). `Parked → Running` when the wait ends (the fill landed, was abandoned,
//! or [`SINGLE_FLIGHT_WAIT`] passed): the frame is handled again, without waiting twice.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::begin_gate::BeginGate;
use super::caching::server::ServerAction;
use super::caching::{Attempt, CachePath, Outputs, Step, Wait};
use super::conversation::Conversation;
use super::outbox::Outbox;
use crate::metrics::ProxyMetrics;
use crate::stats::ClientInfo;
use crate::wire::backend::BackendTag;
use crate::wire::frontend::{FrontendMessage, FrontendTag};

/// How long a session waits for another session's fill before relaying its own query.
pub(crate) const SINGLE_FLIGHT_WAIT: Duration = Duration::from_secs(2);

/// A piece of the client's stream, as the relay cuts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientPiece {
    /// A complete frame.
    Whole(Bytes),
    /// The start of a frame too large to hold (tag, bytes so far).
    StreamStart(u8, Bytes),
    /// More bytes of a streamed frame.
    StreamMore(Bytes),
}

/// A frame waiting for another session's fill of the same result, or for its statements'
/// verdict.
pub(crate) struct Parked {
    frame: FrontendMessage,
    /// How the frame is handled when the wait is over.
    retry_as: Attempt,
    /// Completes when the wait is over: true if what it waited for happened, false if it
    /// timed out.
    pub(crate) wait: Pin<Box<dyn Future<Output = bool> + Send>>,
}

/// The outboxes the machine writes to.
pub(crate) struct Outboxes<'a> {
    /// Bytes for PostgreSQL.
    pub(crate) upstream: &'a mut Outbox,
    /// Bytes for the client.
    pub(crate) client: &'a mut Outbox,
}

/// The state machine of one session.
pub(crate) struct SessionMachine {
    conversation: Conversation,
    cache: Option<CachePath>,
    metrics: ProxyMetrics,
    client_info: Arc<ClientInfo>,
    parked: Option<Parked>,
    /// Pieces received while a frame is parked, handled in order after it.
    deferred: VecDeque<ClientPiece>,
    /// A BEGIN the cache path answered locally, sent with its block's first frame for
    /// PostgreSQL.
    gate: BeginGate,
}

impl SessionMachine {
    /// A session, caching when `cache` is given.
    pub(crate) fn new(
        cache: Option<CachePath>,
        metrics: ProxyMetrics,
        client_info: Arc<ClientInfo>,
    ) -> SessionMachine {
        SessionMachine {
            conversation: Conversation::default(),
            cache,
            metrics,
            client_info,
            parked: None,
            deferred: VecDeque::new(),
            gate: BeginGate::default(),
        }
    }

    /// The conversation as the frames showed it.
    pub(crate) fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// True when closing the session now would interrupt nothing and lose nothing.
    pub(crate) fn is_idle(&self) -> bool {
        self.conversation.is_idle()
            && self.parked.is_none()
            && self.gate.held_bytes() == 0
            && self.deferred.is_empty()
            && !self.cache.as_ref().is_some_and(CachePath::holds_frames)
    }

    /// True when a BEGIN the cache path deferred failed to open its block: the session must
    /// close (nothing of the block reached PostgreSQL).
    pub(crate) fn begin_failed(&self) -> bool {
        self.gate.failed()
    }

    /// Bytes for PostgreSQL held until a deferred BEGIN is acknowledged.
    pub(crate) fn held_upstream_bytes(&self) -> usize {
        self.gate.held_bytes()
    }

    /// The parked frame's wait, if a frame is parked.
    pub(crate) fn parked(&mut self) -> Option<&mut Parked> {
        self.parked.as_mut()
    }

    /// Handles a piece of the client's stream (queued behind a parked frame, if any).
    pub(crate) fn client_piece(&mut self, piece: ClientPiece, boxes: Outboxes<'_>) {
        if self.parked.is_some() {
            self.deferred.push_back(piece);
            return;
        }
        self.handle_piece(piece, boxes);
    }

    /// The parked frame's wait is over: handles it again, then what the client sent meanwhile,
    /// until a frame parks again or nothing is left.
    pub(crate) fn resume(&mut self, boxes: Outboxes<'_>) {
        let Some(parked) = self.parked.take() else {
            return;
        };
        if let Some(cache) = self.cache.as_mut() {
            let mut out = outputs(
                &mut self.conversation,
                &self.metrics,
                &self.client_info,
                &mut self.gate,
                boxes.upstream,
                boxes.client,
            );
            if let Step::Park(wait, frame) = cache.retry(parked.frame, parked.retry_as, &mut out) {
                self.parked = Some(park(wait, frame));
            }
        }
        while self.parked.is_none() {
            let Some(piece) = self.deferred.pop_front() else {
                break;
            };
            self.handle_piece(
                piece,
                Outboxes {
                    upstream: &mut *boxes.upstream,
                    client: &mut *boxes.client,
                },
            );
        }
    }

    fn handle_piece(&mut self, piece: ClientPiece, boxes: Outboxes<'_>) {
        let mut out = outputs(
            &mut self.conversation,
            &self.metrics,
            &self.client_info,
            &mut self.gate,
            boxes.upstream,
            boxes.client,
        );
        match piece {
            ClientPiece::Whole(bytes) => {
                let frame = FrontendMessage::decode(bytes);
                match self.cache.as_mut() {
                    Some(cache) => {
                        if let Step::Park(wait, frame) = cache.client_frame(frame, &mut out) {
                            self.parked = Some(park(wait, frame));
                        }
                    }
                    None => {
                        if matches!(frame.tag, FrontendTag::Query | FrontendTag::Execute) {
                            self.metrics.statement_without_cache();
                        }
                        out.forward(frame.tag, frame.bytes);
                    }
                }
            }
            ClientPiece::StreamStart(tag, bytes) => {
                let tag = FrontendTag::of(tag);
                match self.cache.as_mut() {
                    Some(cache) => cache.streamed_client_frame(tag, &mut out),
                    None if matches!(tag, FrontendTag::Query) => {
                        self.metrics.statement_without_cache()
                    }
                    None => {}
                }
                out.forward(tag, bytes);
            }
            ClientPiece::StreamMore(bytes) => out.forward_more(bytes),
        }
    }

    /// A client frame relayed as part of a run, without a cache path (caching off): only the
    /// conversation and the counters learn of it.
    pub(crate) fn relayed_client_frame(&mut self, tag: FrontendTag) {
        self.conversation.sent(tag);
        if matches!(tag, FrontendTag::Query | FrontendTag::Execute) {
            self.metrics.statement_without_cache();
            self.client_info.query(false);
            if tag == FrontendTag::Query {
                self.metrics.queries_simple.increment(1);
            } else {
                self.metrics.queries_extended.increment(1);
            }
        }
    }

    /// Handles one frame from the server (`frame` is the whole frame, or its first bytes when
    /// `whole` is false).
    pub(crate) fn server_frame(
        &mut self,
        tag: u8,
        frame: &[u8],
        whole: bool,
        upstream: &mut Outbox,
    ) -> ServerAction {
        let tag = BackendTag::of(tag);
        let status = self.conversation.received(tag, frame);
        if tag == BackendTag::ErrorResponse {
            self.metrics.upstream_error(frame);
        }
        if let Some(action) = self.gate.server_frame(tag, status, upstream) {
            return action;
        }
        match self.cache.as_mut() {
            Some(cache) => cache.server_frame(tag, frame, whole, status),
            None => ServerAction::Forward,
        }
    }

    /// The session is over.
    pub(crate) fn end(&mut self) {
        if let Some(cache) = self.cache.as_mut() {
            cache.end();
        }
    }
}

/// A frame parked for `wait`, bounded: [`SINGLE_FLIGHT_WAIT`] for a fill, the wait's own limit for a
/// verdict.
fn park(wait: Wait, frame: FrontendMessage) -> Parked {
    let retry_as = wait.retry_as();
    let wait: Pin<Box<dyn Future<Output = bool> + Send>> = match wait {
        Wait::Fill(fill) => Box::pin(fill.wait(SINGLE_FLIGHT_WAIT)),
        Wait::Judged { verdict, limit } => {
            Box::pin(async move { tokio::time::timeout(limit, verdict).await.is_ok() })
        }
        Wait::Released(released) => Box::pin(async move {
            // Bounded inside too ([`crate::release::GONE_WAIT`]); this is the backstop.
            let limit = crate::release::GONE_WAIT * 2;
            tokio::time::timeout(limit, released).await.is_ok()
        }),
    };
    Parked {
        frame,
        retry_as,
        wait,
    }
}

/// The cache path's outputs over the relay's outboxes.
fn outputs<'a>(
    conversation: &'a mut Conversation,
    metrics: &'a ProxyMetrics,
    client_info: &'a ClientInfo,
    gate: &'a mut BeginGate,
    upstream: &'a mut Outbox,
    client: &'a mut Outbox,
) -> Outputs<'a> {
    Outputs {
        upstream,
        client,
        conversation,
        metrics,
        client_info,
        gate,
    }
}

//! Where the conversation between a client and PostgreSQL stands, learned from the frames the
//! relay passes: whether closing the session now would interrupt anything, the transaction
//! status, whether PostgreSQL already said why it is closing, whether the client said goodbye.
//!
//! States: `Starting` until the first ReadyForQuery (the one that ends the login), then
//! `Ready(status)`, where requests may be outstanding. A client message that expects an answer
//! (`Q`, `S`, `F`) adds an outstanding request and the ReadyForQuery answering it removes one;
//! an extended-protocol message (`P`, `B`, `D`, `E`, `C`, `H`) opens a batch that Sync closes.
//! The session is idle (safe to close at shutdown) when ready, nothing is outstanding and no
//! batch is open.

use crate::wire::backend::{self, BackendTag, TransactionStatus};
use crate::wire::frontend::FrontendTag;

/// Whether the login's last ReadyForQuery has been seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the first ReadyForQuery.
    Starting,
    /// After it, with the status of the latest ReadyForQuery.
    Ready(TransactionStatus),
}

/// Session facts gathered from relayed frames.
#[derive(Debug)]
pub(crate) struct Conversation {
    phase: Phase,
    /// Requests (`Q`, `S`, `F`) whose ReadyForQuery has not arrived yet.
    outstanding: u32,
    /// Extended-protocol messages were sent since the last Sync.
    batch_open: bool,
    /// PostgreSQL sent a FATAL or PANIC error: it is closing on purpose and said why.
    upstream_fatal: bool,
    /// The client sent Terminate.
    client_terminated: bool,
}

impl Default for Conversation {
    fn default() -> Conversation {
        Conversation {
            phase: Phase::Starting,
            outstanding: 0,
            batch_open: false,
            upstream_fatal: false,
            client_terminated: false,
        }
    }
}

impl Conversation {
    /// Records a frame relayed to PostgreSQL.
    pub(crate) fn sent(&mut self, tag: FrontendTag) {
        match tag {
            FrontendTag::Query | FrontendTag::FunctionCall => self.outstanding += 1,
            FrontendTag::Sync => {
                self.outstanding += 1;
                self.batch_open = false;
            }
            tag if tag.is_extended() => self.batch_open = true,
            FrontendTag::Terminate => self.client_terminated = true,
            _ => {}
        }
    }

    /// Records a frame from PostgreSQL (`frame` is the whole frame, or its first bytes if
    /// streamed); returns the transaction status when it is a ReadyForQuery.
    pub(crate) fn received(&mut self, tag: BackendTag, frame: &[u8]) -> Option<TransactionStatus> {
        match tag {
            BackendTag::ReadyForQuery => {
                let status = TransactionStatus::of_ready(frame);
                self.phase = Phase::Ready(status);
                self.outstanding = self.outstanding.saturating_sub(1);
                Some(status)
            }
            BackendTag::ErrorResponse => {
                if backend::is_fatal(frame) {
                    self.upstream_fatal = true;
                }
                None
            }
            _ => None,
        }
    }

    /// True when closing the session now would interrupt nothing.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Ready(_)) && self.outstanding == 0 && !self.batch_open
    }

    /// True when PostgreSQL announced with a FATAL error that it is closing.
    pub(crate) fn upstream_fatal(&self) -> bool {
        self.upstream_fatal
    }

    /// True once the client said Terminate.
    pub(crate) fn client_terminated(&self) -> bool {
        self.client_terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::error_response::{encode, Severity};

    #[test]
    fn idle_after_every_request_is_answered() {
        let mut c = Conversation::default();
        assert!(!c.is_idle(), "not idle before the login's ReadyForQuery");
        c.received(BackendTag::ReadyForQuery, b"Z\0\0\0\x05I");
        assert!(c.is_idle());
        c.sent(FrontendTag::Query);
        c.sent(FrontendTag::Query);
        c.received(BackendTag::ReadyForQuery, b"Z\0\0\0\x05T");
        assert!(!c.is_idle(), "second query still outstanding");
        assert_eq!(
            c.received(BackendTag::ReadyForQuery, b"Z\0\0\0\x05T"),
            Some(TransactionStatus::InBlock)
        );
        assert!(c.is_idle());
    }

    #[test]
    fn an_unsynced_batch_is_busy() {
        let mut c = Conversation::default();
        c.received(BackendTag::ReadyForQuery, b"Z\0\0\0\x05I");
        c.sent(FrontendTag::Parse);
        c.sent(FrontendTag::Bind);
        c.sent(FrontendTag::Execute);
        assert!(!c.is_idle());
        c.sent(FrontendTag::Sync);
        assert!(!c.is_idle());
        c.received(BackendTag::ReadyForQuery, b"Z\0\0\0\x05I");
        assert!(c.is_idle());
    }

    #[test]
    fn fatal_errors_and_terminate_are_recognised() {
        let mut c = Conversation::default();
        c.received(
            BackendTag::ErrorResponse,
            &encode(Severity::Error, "42P01", "no table"),
        );
        assert!(!c.upstream_fatal());
        c.received(
            BackendTag::ErrorResponse,
            &encode(Severity::Fatal, "57P01", "terminating"),
        );
        assert!(c.upstream_fatal());
        c.sent(FrontendTag::Terminate);
        assert!(c.client_terminated());
    }
}

//! What the relay learns from the frames it passes, without touching a socket.
//!
//! The tracker follows the conversation just enough to know when a session is idle (every
//! request answered by its ReadyForQuery, so closing it loses nothing) and whether PostgreSQL
//! already told the client why it is closing (a FATAL ErrorResponse), so that pgcached does not
//! add a second, misleading error.
//!
//! Legal sequence of the idle state: `Startup → (auth) → Ready(I|T|E) ⇄ Busy`; a client message
//! that expects an answer (`Q`, `S`, `F`) or opens a batch (`P`, `B`, `D`, `E`, `C`, `H`) makes
//! the session busy; the ReadyForQuery answering the last outstanding `Q`/`S`/`F` makes it
//! ready again.

use crate::wire::error_response;

/// Which query counter a client frame feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A simple-protocol Query.
    Simple,
    /// An extended-protocol Execute.
    Extended,
}

/// Session facts gathered from relayed frames.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Requests (`Q`, `S`, `F`) whose ReadyForQuery has not arrived yet.
    pending_ready: u32,
    /// Extended-protocol messages sent since the last Sync.
    in_batch: bool,
    /// At least one ReadyForQuery seen: authentication is over.
    ready_seen: bool,
    /// Transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    transaction_status: u8,
    /// PostgreSQL sent a FATAL or PANIC error: it is closing on purpose and said why.
    upstream_fatal: bool,
    /// The client sent Terminate.
    client_terminated: bool,
}

impl Tracker {
    /// Records a client frame; returns the query counter it feeds, if any.
    pub fn on_client_frame(&mut self, tag: u8) -> Option<QueryKind> {
        match tag {
            b'Q' => {
                self.pending_ready += 1;
                Some(QueryKind::Simple)
            }
            b'F' => {
                self.pending_ready += 1;
                None
            }
            b'S' => {
                self.pending_ready += 1;
                self.in_batch = false;
                None
            }
            b'E' => {
                self.in_batch = true;
                Some(QueryKind::Extended)
            }
            b'P' | b'B' | b'D' | b'C' | b'H' => {
                self.in_batch = true;
                None
            }
            b'X' => {
                self.client_terminated = true;
                None
            }
            _ => None,
        }
    }

    /// Records a server frame (`frame` is the whole frame, or its first bytes if streamed).
    pub fn on_server_frame(&mut self, tag: u8, frame: &[u8]) {
        match tag {
            b'Z' => {
                self.ready_seen = true;
                self.pending_ready = self.pending_ready.saturating_sub(1);
                self.transaction_status = frame.get(5).copied().unwrap_or(b'I');
            }
            b'E' if is_fatal(frame) => self.upstream_fatal = true,
            _ => {}
        }
    }

    /// True when closing the session now would interrupt nothing.
    pub fn is_idle(&self) -> bool {
        self.ready_seen && self.pending_ready == 0 && !self.in_batch
    }

    /// True when PostgreSQL announced with a FATAL error that it is closing.
    pub fn upstream_fatal(&self) -> bool {
        self.upstream_fatal
    }

    /// True once the client said Terminate.
    pub fn client_terminated(&self) -> bool {
        self.client_terminated
    }

    /// Transaction status of the last ReadyForQuery (`0` before the first).
    pub fn transaction_status(&self) -> u8 {
        self.transaction_status
    }
}

/// True for an ErrorResponse whose severity is FATAL or PANIC.
fn is_fatal(frame: &[u8]) -> bool {
    // `V` (never localized) when the server sends it, else `S`.
    let severity =
        error_response::field(frame, b'V').or_else(|| error_response::field(frame, b'S'));
    matches!(severity, Some(b"FATAL" | b"PANIC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::error_response::{encode, Severity};

    #[test]
    fn idle_after_every_request_is_answered() {
        let mut t = Tracker::default();
        assert!(!t.is_idle(), "not idle before authentication ends");
        t.on_server_frame(b'Z', b"Z\0\0\0\x05I");
        assert!(t.is_idle());
        assert_eq!(t.on_client_frame(b'Q'), Some(QueryKind::Simple));
        assert_eq!(t.on_client_frame(b'Q'), Some(QueryKind::Simple));
        t.on_server_frame(b'Z', b"Z\0\0\0\x05T");
        assert!(!t.is_idle(), "second query still outstanding");
        t.on_server_frame(b'Z', b"Z\0\0\0\x05T");
        assert!(t.is_idle());
        assert_eq!(t.transaction_status(), b'T');
    }

    #[test]
    fn an_unsynced_batch_is_busy() {
        let mut t = Tracker::default();
        t.on_server_frame(b'Z', b"Z\0\0\0\x05I");
        t.on_client_frame(b'P');
        t.on_client_frame(b'B');
        assert_eq!(t.on_client_frame(b'E'), Some(QueryKind::Extended));
        assert!(!t.is_idle());
        t.on_client_frame(b'S');
        assert!(!t.is_idle());
        t.on_server_frame(b'Z', b"Z\0\0\0\x05I");
        assert!(t.is_idle());
    }

    #[test]
    fn fatal_errors_are_recognised() {
        let mut t = Tracker::default();
        t.on_server_frame(b'E', &encode(Severity::Error, "42P01", "no table"));
        assert!(!t.upstream_fatal());
        t.on_server_frame(b'E', &encode(Severity::Fatal, "57P01", "terminating"));
        assert!(t.upstream_fatal());
    }
}

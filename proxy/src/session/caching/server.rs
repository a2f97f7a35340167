//! The server side of the cache path: each frame PostgreSQL sends is attributed to the request
//! it answers ([`super::expect`]), captured if it belongs to a result being cached, swallowed if
//! it answers a Parse pgcached injected, and otherwise relayed.
//!
//! At ReadyForQuery the batch is over: with status `I` the complete captures are filled (each
//! through its guard), and if the batch wrote, the database's generation is bumped before the
//! ReadyForQuery reaches the client, so no later read of any client sees a result from before.

use bytes::Bytes;

use super::capture::Capture;
use super::expect::Expect;
use super::CachingSession;

/// What the relay does with a server frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAction {
    /// Relay to the client.
    Forward,
    /// Do not relay (answer to an injected request).
    Drop,
}

impl CachingSession {
    /// Handles one frame from the server; `whole` is false for the first part of a streamed frame.
    pub fn on_server_frame(&mut self, tag: u8, frame: &[u8], whole: bool) -> ServerAction {
        if self.disabled {
            if tag == b'Z' {
                self.ready(frame);
            }
            return ServerAction::Forward;
        }
        match tag {
            b'Z' => self.ready(frame),
            b'E' => self.error(),
            b'N' | b'S' | b'G' | b'H' | b'W' | b'd' | b'c' => self.spoil_front(),
            b'A' => {}
            b'1' => match self.expect.front() {
                Some(Expect::Parse { swallow }) => {
                    let swallow = *swallow;
                    self.expect.pop_front();
                    if swallow {
                        return ServerAction::Drop;
                    }
                }
                _ => self.desync(),
            },
            b'2' => self.pop_if(|e| matches!(e, Expect::Bind)),
            b'3' => self.pop_if(|e| matches!(e, Expect::Close)),
            b't' if !matches!(self.expect.front(), Some(Expect::DescribeStatement)) => {
                self.desync()
            }
            b'T' | b'n' => match self.expect.front_mut() {
                Some(Expect::Simple { capture, .. }) => {
                    if let Some(capture) = capture {
                        capture.add(frame, whole);
                    }
                }
                Some(Expect::DescribePortal) => {
                    self.row_description = Some(Bytes::copy_from_slice(frame));
                    self.expect.pop_front();
                }
                Some(Expect::DescribeStatement) => {
                    self.expect.pop_front();
                }
                _ => self.desync(),
            },
            b'D' => match self.expect.front_mut() {
                Some(Expect::Simple { capture, .. }) | Some(Expect::Execute { capture }) => {
                    if let Some(capture) = capture {
                        capture.add(frame, whole);
                    }
                }
                _ => self.desync(),
            },
            b'C' => match self.expect.front_mut() {
                Some(Expect::Simple { capture, .. }) => {
                    if let Some(capture) = capture {
                        capture.finish(frame, whole);
                    }
                }
                Some(Expect::Execute { .. }) => {
                    if let Some(Expect::Execute {
                        capture: Some(mut capture),
                    }) = self.expect.pop_front()
                    {
                        capture.finish(frame, whole);
                        self.complete(capture);
                    }
                }
                _ => self.desync(),
            },
            b'I' => match self.expect.front_mut() {
                Some(Expect::Simple { capture, .. }) => {
                    if let Some(capture) = capture {
                        capture.spoil();
                    }
                }
                Some(Expect::Execute { .. }) => {
                    self.expect.pop_front();
                }
                _ => self.desync(),
            },
            b's' => self.pop_if(|e| matches!(e, Expect::Execute { .. })),
            _ => {}
        }
        ServerAction::Forward
    }

    /// A finished Execute capture waits for ReadyForQuery.
    fn complete(&mut self, capture: Capture) {
        let meta = if capture.described {
            self.row_description.take().unwrap_or_default()
        } else {
            Bytes::new()
        };
        if let Some(fill) = capture.into_fill(meta) {
            self.fills.push(fill);
        }
    }

    fn pop_if(&mut self, expected: impl Fn(&Expect) -> bool) {
        match self.expect.front() {
            Some(e) if expected(e) => {
                self.expect.pop_front();
            }
            _ => self.desync(),
        }
    }

    fn spoil_front(&mut self) {
        match self.expect.front_mut() {
            Some(Expect::Simple {
                capture: Some(capture),
                ..
            })
            | Some(Expect::Execute {
                capture: Some(capture),
            }) => capture.spoil(),
            _ => {}
        }
    }

    /// An ErrorResponse: the statement failed; in a batch, the server skips to Sync.
    fn error(&mut self) {
        self.spoil_front();
        self.fills.clear();
        while let Some(front) = self.expect.front() {
            match front {
                Expect::Simple { .. } | Expect::Sync { .. } => break,
                _ => {
                    self.expect.pop_front();
                }
            }
        }
    }

    /// ReadyForQuery: the end of a request; fills and invalidation happen here.
    fn ready(&mut self, frame: &[u8]) {
        let status = frame.get(5).copied().unwrap_or(b'I');
        let first = self.status == 0;
        self.status = status;
        if first {
            // The ReadyForQuery that ends authentication answers no request. The database is
            // real and the client may use it: follow its changes.
            self.shared.replication.ensure(&self.database);
            self.shared.watchers.ensure(&self.database);
            return;
        }
        if self.disabled {
            // Requests are no longer told apart: any of them may have written.
            self.invalidate_database();
            return;
        }
        let wrote = match self.expect.pop_front() {
            Some(Expect::Simple {
                capture,
                started,
                path,
                wrote,
            }) => {
                if let Some(capture) = capture {
                    if let Some(fill) = capture.into_fill(Bytes::new()) {
                        self.fills.push(fill);
                    }
                }
                self.shared.metrics.duration(path, started);
                wrote
            }
            Some(Expect::Sync {
                started,
                path,
                wrote,
            }) => {
                self.shared.metrics.duration(path, started);
                wrote
            }
            Some(_) | None => {
                self.desync();
                self.invalidate_database();
                return;
            }
        };
        // This ReadyForQuery acknowledges the request's write (or, in a transaction block, its
        // step): bump now, before the client sees it; and again when the block ends.
        if wrote {
            if status != b'I' {
                self.wrote_in_transaction = true;
            }
            self.invalidate_database();
        } else if status == b'I' && self.wrote_in_transaction {
            self.invalidate_database();
        }
        if status == b'I' {
            self.wrote_in_transaction = false;
        }
        if status == b'I' {
            // The transaction is over, and with it every portal.
            self.portals.clear();
        }
        let fills = std::mem::take(&mut self.fills);
        if status == b'I' {
            for fill in fills {
                let outcome = fill.guard.fill(fill.response, fill.meta);
                self.shared.metrics.filled(outcome);
            }
        }
    }

    /// The answers no longer match the requests: stop caching for this session.
    fn desync(&mut self) {
        tracing::debug!("cache path lost track of the conversation; relaying only");
        self.disable();
    }
}

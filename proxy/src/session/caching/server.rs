//! The server side of the cache path: each frame PostgreSQL sends is attributed to the request
//! it answers ([`super::expect`]), captured if it belongs to a result being cached, swallowed if
//! it answers a Parse pgcached injected, and otherwise relayed.
//!
//! At ReadyForQuery a request is over: if it wrote, what it wrote is invalidated before the
//! ReadyForQuery reaches the client, so no later read of any client sees a result from before;
//! its effects on the transaction state apply; then its complete captures are filled (each
//! through its guard).

use bytes::Bytes;

use super::capture::Capture;
use super::expect::Expect;
use super::{CachePath, Mode};
use crate::wire::backend::{BackendTag, TransactionStatus};

/// What the relay does with a server frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerAction {
    /// Relay to the client.
    Forward,
    /// Do not relay (the answer to a request pgcached injected).
    Drop,
}

impl CachePath {
    /// Handles one frame from the server; `whole` is false for the first part of a streamed
    /// frame. `status` is set for a ReadyForQuery.
    pub(crate) fn server_frame(
        &mut self,
        tag: BackendTag,
        frame: &[u8],
        whole: bool,
        status: Option<TransactionStatus>,
    ) -> ServerAction {
        if self.mode == Mode::Lost {
            if status.is_some() {
                // Requests are no longer told apart: any of them may have written.
                self.invalidate_database();
            }
            return ServerAction::Forward;
        }
        match tag {
            BackendTag::ReadyForQuery => self.ready(status.unwrap_or(TransactionStatus::Idle)),
            BackendTag::ErrorResponse => self.error(),
            BackendTag::ParameterStatus => {
                self.parameter_status(frame);
                self.spoil_front();
            }
            BackendTag::NoticeResponse | BackendTag::CopyResponse | BackendTag::CopyData => {
                self.spoil_front()
            }
            BackendTag::ParseComplete => match self.expect.front() {
                Some(Expect::Parse { swallow }) => {
                    let swallow = *swallow;
                    self.expect.pop_front();
                    if swallow {
                        return ServerAction::Drop;
                    }
                }
                _ => self.desync(),
            },
            BackendTag::BindComplete => match self.expect.front() {
                Some(Expect::Bind { swallow }) => {
                    let swallow = *swallow;
                    self.expect.pop_front();
                    if swallow {
                        return ServerAction::Drop;
                    }
                }
                _ => self.desync(),
            },
            BackendTag::CloseComplete => self.pop_if(|e| matches!(e, Expect::Close)),
            BackendTag::ParameterDescription => {
                if !matches!(self.expect.front(), Some(Expect::DescribeStatement)) {
                    self.desync();
                }
            }
            BackendTag::RowDescription | BackendTag::NoData => match self.expect.front_mut() {
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
            BackendTag::DataRow => match self.expect.front_mut() {
                Some(Expect::Simple { capture, .. }) | Some(Expect::Execute { capture }) => {
                    if let Some(capture) = capture {
                        capture.add(frame, whole);
                    }
                }
                _ => self.desync(),
            },
            BackendTag::CommandComplete => match self.expect.front_mut() {
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
            BackendTag::EmptyQuery => match self.expect.front_mut() {
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
            // The end of a limited Execute's rows: its answer, as a CommandComplete would be.
            BackendTag::PortalSuspended => match self.expect.pop_front() {
                Some(Expect::Execute { capture }) => {
                    if let Some(mut capture) = capture {
                        capture.finish(frame, whole);
                        self.complete(capture);
                    }
                }
                _ => self.desync(),
            },
            BackendTag::Notification | BackendTag::Other(_) => {}
        }
        ServerAction::Forward
    }

    /// A ParameterStatus: the session's client encoding decides whether text can be pinned.
    fn parameter_status(&mut self, frame: &[u8]) {
        let mut parts = frame.get(5..).unwrap_or(&[]).split(|b| *b == 0);
        if parts.next() == Some(b"client_encoding") {
            let value = parts.next().unwrap_or(&[]);
            self.utf8_client =
                value.eq_ignore_ascii_case(b"UTF8") || value.eq_ignore_ascii_case(b"UTF-8");
        }
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

    /// An ErrorResponse: the statement failed; in a batch, the server skips to Sync. The
    /// request may have run only part of its statements.
    fn error(&mut self) {
        self.spoil_front();
        self.fills.clear();
        while let Some(front) = self.expect.front() {
            if front.ends_request() {
                break;
            }
            self.expect.pop_front();
        }
        if let Some(Expect::Simple { failed, .. } | Expect::Sync { failed, .. }) =
            self.expect.front_mut()
        {
            *failed = true;
        }
    }

    /// ReadyForQuery: the end of a request; fills and invalidation happen here.
    fn ready(&mut self, status: TransactionStatus) {
        let (writes, tx, failed) = match self.expect.pop_front() {
            Some(Expect::Simple {
                capture,
                started,
                path,
                writes,
                tx,
                failed,
            }) => {
                if let Some(capture) = capture {
                    if let Some(fill) = capture.into_fill(Bytes::new()) {
                        self.fills.push(fill);
                    }
                }
                self.backend.metrics.duration(path, started);
                (writes, tx, failed)
            }
            Some(Expect::Sync {
                started,
                path,
                writes,
                tx,
                failed,
            }) => {
                self.backend.metrics.duration(path, started);
                (writes, tx, failed)
            }
            None if !self.started => {
                // The ReadyForQuery that ends the login answers no request.
                self.started = true;
                return;
            }
            Some(_) | None => {
                self.desync();
                self.invalidate_database();
                return;
            }
        };
        // This ReadyForQuery acknowledges the request's write (or, in a transaction block, its
        // step): invalidate now, before the client sees it; and again when the block ends.
        let idle = status == TransactionStatus::Idle;
        self.invalidate(&writes);
        if idle {
            let block = std::mem::take(&mut self.transaction_writes);
            self.invalidate(&block);
        } else if writes.writes() {
            let block = std::mem::take(&mut self.transaction_writes);
            self.transaction_writes = block.join(writes);
        }
        self.transactions.acknowledged(&tx, failed, status);
        if idle {
            // The transaction is over, and with it every portal.
            self.statements.transaction_ended();
        }
        // Captures were only made for reads that saw committed rows and nothing of their own
        // block's writes (see `transaction_allows`); a failed request left none.
        for fill in self.fills.drain(..) {
            let outcome = fill.guard.fill(fill.response, fill.meta);
            self.backend.metrics.filled(outcome);
        }
    }

    /// The answers no longer match the requests: stop caching for this session.
    fn desync(&mut self) {
        self.lose();
    }
}

//! Capturing a response on its way to the client, to fill the cache with it.
//!
//! The relay forwards the server's frames untouched; a capture copies the frames that make up a
//! cacheable result (RowDescription, DataRows, CommandComplete) into its own buffer as they
//! pass. Anything that makes the result unfit to replay (a notice, an error, a parameter change,
//! COPY, a frame too large to buffer) spoils it. The fill itself waits for ReadyForQuery with
//! status `I`, and then still goes through the fill guard (no stale fills).

use bytes::{Bytes, BytesMut};
use pgcached_cache::FillGuard;

/// A response being captured.
pub struct Capture {
    guard: FillGuard,
    buf: BytesMut,
    max: usize,
    spoiled: bool,
    complete: bool,
    /// Whether the key says the client described the portal (then the RowDescription is `meta`).
    pub described: bool,
}

impl Capture {
    /// Starts capturing for `guard`; results over `max` bytes are not kept.
    pub fn new(guard: FillGuard, max: usize, described: bool) -> Capture {
        Capture {
            guard,
            buf: BytesMut::new(),
            max,
            spoiled: false,
            complete: false,
            described,
        }
    }

    /// Adds a frame of the result. `whole` is false for a streamed (very large) frame.
    pub fn add(&mut self, frame: &[u8], whole: bool) {
        if self.spoiled {
            return;
        }
        if self.complete || !whole || self.buf.len() + frame.len() > self.max {
            self.spoil();
            return;
        }
        self.buf.extend_from_slice(frame);
    }

    /// Adds the CommandComplete that ends the result.
    pub fn finish(&mut self, frame: &[u8], whole: bool) {
        self.add(frame, whole);
        self.complete = true;
    }

    /// Marks the result as unfit to replay.
    pub fn spoil(&mut self) {
        self.spoiled = true;
        self.buf = BytesMut::new();
    }

    /// The guard and the captured bytes, if the result is complete and clean.
    pub fn into_fill(self, meta: Bytes) -> Option<PendingFill> {
        if self.spoiled || !self.complete {
            return None;
        }
        Some(PendingFill {
            guard: self.guard,
            response: self.buf.freeze(),
            meta,
        })
    }
}

/// A complete, clean result waiting for ReadyForQuery `I` before it is stored.
pub struct PendingFill {
    /// Checks that no dependency changed since the query was sent.
    pub guard: FillGuard,
    /// The frames to replay on a hit.
    pub response: Bytes,
    /// The RowDescription (or NoData) to replay for Describe, or empty.
    pub meta: Bytes,
}

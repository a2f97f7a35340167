//! Bytes queued for one peer, written with vectored writes.
//!
//! Frames are queued as the `Bytes` they were read into (or cached in), so a run of frames, a
//! cached response and a ReadyForQuery go out in one `writev` without being copied together.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;

/// What one [`Outbox::pump`] did.
pub enum Pumped {
    /// Wrote this many bytes.
    Wrote(usize),
    /// Flushed the writer.
    Flushed,
}

/// Bytes queued for one peer.
#[derive(Default)]
pub struct Outbox {
    queue: VecDeque<Bytes>,
    /// Total queued bytes.
    pub bytes: usize,
    /// Written since the last flush (matters for TLS, where writes may be buffered).
    pub needs_flush: bool,
}

impl Outbox {
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.bytes += bytes.len();
        self.queue.push_back(bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
        self.needs_flush = false;
    }

    /// True when there is something to write or a flush to do.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.needs_flush
    }

    /// Writes some queued bytes (one vectored write), or flushes when the queue is empty.
    pub async fn pump<W: AsyncWrite + Unpin>(&self, writer: &mut W) -> std::io::Result<Pumped> {
        if self.queue.is_empty() {
            writer.flush().await?;
            return Ok(Pumped::Flushed);
        }
        let n = if self.queue.len() == 1 {
            writer.write(&self.queue[0]).await?
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                *slot = IoSlice::new(bytes);
                count += 1;
            }
            writer.write_vectored(&slices[..count]).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        Ok(Pumped::Wrote(n))
    }

    /// Applies the result of [`Outbox::pump`]; on error the queue is dropped.
    pub fn settle(&mut self, pumped: std::io::Result<Pumped>) -> std::io::Result<()> {
        match pumped {
            Ok(Pumped::Wrote(n)) => self.advance(n),
            Ok(Pumped::Flushed) => self.needs_flush = false,
            Err(e) => {
                self.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Takes everything queued (for tests that look at what would be written).
    #[cfg(test)]
    pub(crate) fn take_all(&mut self) -> Vec<Bytes> {
        self.bytes = 0;
        self.queue.drain(..).collect()
    }

    pub fn advance(&mut self, mut n: usize) {
        self.bytes -= n.min(self.bytes);
        self.needs_flush = true;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_advances_across_buffers() {
        let mut out = Outbox::default();
        out.push(Bytes::from_static(b"abc"));
        out.push(Bytes::from_static(b"defg"));
        out.advance(4);
        assert_eq!(out.bytes, 3);
        assert_eq!(out.queue.front().map(|b| &b[..]), Some(&b"efg"[..]));
        out.advance(3);
        assert!(out.is_empty());
    }
}

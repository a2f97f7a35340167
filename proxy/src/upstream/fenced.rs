//! A connection that fails once its era is over ([`super::primary::Fence`]).
//!
//! pgcached's replication connections are wrapped in it: when another server becomes current,
//! the next read of a stream still following the old one fails with an I/O error, so the stream
//! reconnects (to the new host) the way it would after any lost connection.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::primary::Fence;

/// `inner`, until its fence moves.
pub struct Fenced<S> {
    inner: S,
    moved: Pin<Box<dyn Future<Output = ()> + Send>>,
    over: bool,
}

impl<S> Fenced<S> {
    /// Wraps `inner`, opened under `fence`.
    pub fn new(inner: S, mut fence: Fence) -> Fenced<S> {
        Fenced {
            inner,
            moved: Box::pin(async move { fence.wait().await }),
            over: false,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if !self.over && self.moved.as_mut().poll(cx).is_ready() {
            self.over = true;
        }
        if self.over {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "another upstream server is current now",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Fenced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Fenced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    // Forwarded, not left to the default (which writes only the first buffer): a run of frames
    // queued as several buffers goes out in one `writev`, not one `sendto` per frame.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::primary::Upstreams;
    use crate::upstream::UpstreamUrl;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_fail_once_the_era_is_over() {
        let upstreams = Upstreams::new(UpstreamUrl::parse("postgres://u@a").expect("url"), true);
        let (mut near, far) = tokio::io::duplex(64);
        let mut fenced = Fenced::new(far, upstreams.fence());
        near.write_all(b"x").await.expect("write");
        let mut byte = [0u8; 1];
        fenced
            .read_exact(&mut byte)
            .await
            .expect("read while current");
        let blocked = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            fenced.read_exact(&mut byte).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        upstreams.force_switch_for_tests();
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), blocked)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(
            result.expect_err("fails").kind(),
            std::io::ErrorKind::ConnectionAborted
        );
        drop(near);
    }

    /// Records how each write reached it.
    #[derive(Default)]
    struct Recorder {
        vectored_calls: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.get_mut().bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            this.vectored_calls += 1;
            let mut n = 0;
            for buf in bufs {
                this.bytes.extend_from_slice(buf);
                n += buf.len();
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn several_buffers_go_out_in_one_vectored_write() {
        let upstreams = Upstreams::new(UpstreamUrl::parse("postgres://u@a").expect("url"), true);
        let mut fenced = Fenced::new(Recorder::default(), upstreams.fence());
        assert!(fenced.is_write_vectored());
        let frames = [
            IoSlice::new(b"Bind"),
            IoSlice::new(b"Execute"),
            IoSlice::new(b"Sync"),
        ];
        let written = fenced.write_vectored(&frames).await.expect("write");
        assert_eq!(written, 15);
        assert_eq!(fenced.inner.vectored_calls, 1);
        assert_eq!(fenced.inner.bytes, b"BindExecuteSync");
    }
}

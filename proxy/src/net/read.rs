//! Reading one whole tagged message from a stream, for the phases that talk to a peer one
//! message at a time (login, the admin console) rather than relaying byte runs.
//!
//! Reads are exact (header, then body), so nothing past the message is consumed: after the
//! login phase the relay takes over the same streams with no bytes left behind in a buffer.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// One tagged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type byte.
    pub tag: u8,
    /// The whole message: tag, length word and body.
    pub bytes: Bytes,
}

impl Frame {
    /// The body (after the length word).
    pub fn body(&self) -> &[u8] {
        self.bytes.get(5..).unwrap_or(&[])
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed or the socket failed.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    /// The length word is below 4 or above the limit.
    #[error("message of {0} bytes is out of range for the admin console")]
    Length(usize),
}

/// Reads one whole message of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Frame, FrameError> {
    let mut header = [0u8; 5];
    reader.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=max).contains(&length) {
        return Err(FrameError::Length(length));
    }
    let mut bytes = BytesMut::with_capacity(length + 1);
    bytes.extend_from_slice(&header);
    bytes.resize(length + 1, 0);
    reader.read_exact(&mut bytes[5..]).await?;
    Ok(Frame {
        tag: header[0],
        bytes: bytes.freeze(),
    })
}

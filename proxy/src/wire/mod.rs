//! PostgreSQL wire bytes: framing and the few messages pgcached writes itself.
//!
//! This layer decides nothing. It cuts a byte stream into frames (tag, length, body) without
//! copying or re-encoding them, and it builds the handful of messages pgcached must originate on
//! its own (errors, SSL answers). What to do with a frame is the session's business.
//!
//! Layout:
//! - [`authentication`]: the login phase's `R` requests and `p` answers (SASL above all).
//! - [`frame`]: the framer for tagged messages, with streaming of large frames.
//! - [`startup`]: the untagged startup-phase packets (SSLRequest, StartupMessage, ...).
//! - [`error_response`]: ErrorResponse messages with a SQLSTATE, encoded with pgwire.
//! - [`frontend`], [`backend`]: message tags typed by direction; frontend messages decoded
//!   once into typed views over the frame.
//! - [`extended`]: fields of the frontend messages the cache inspects, as slices of the frame.
//! - [`fixed`]: backend messages whose bytes never vary (ReadyForQuery, ParseComplete, ...).

pub mod authentication;
pub mod backend;
pub mod error_response;
pub mod extended;
pub mod fixed;
pub mod frame;
pub mod frontend;
pub mod startup;

/// A frame with `tag` and `body`, for tests that hand-make messages.
#[cfg(test)]
pub(crate) fn test_frame(tag: u8, body: &[u8]) -> bytes::Bytes {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    bytes::Bytes::from(v)
}

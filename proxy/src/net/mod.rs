//! Byte streams that may or may not be wrapped in TLS, and reading whole messages from them.

pub mod read;
pub mod stream;

pub use stream::Stream;

//! Byte streams that may or may not be wrapped in TLS.

pub mod stream;

pub use stream::Stream;

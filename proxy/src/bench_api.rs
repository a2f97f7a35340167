//! The internals the criterion benches in `proxy/benches/` time, and nothing else.
//!
//! A bench is its own crate and sees only the library's public items; making the modules
//! themselves public would hide dead code from the compiler again. So the few hot-path pieces
//! the benches drive are re-exported here, hidden from the documentation: this is not an API.

pub use crate::session::caching::capture::Capture;
pub use crate::sql::shape::{of as shape_of, Shape};

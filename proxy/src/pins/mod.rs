//! Row-level dependencies: a read that pins rows by equality on columns depends on those rows'
//! keys, not on its whole table.
//!
//! The pieces: [`canonical`] forms of values, the same from a query constant, a Bind parameter
//! and a replication row image; [`keys`], the hash of (table, column set, values) that indexes
//! a key slot of the cache's generations; the [`registry`] of the column sets in use per table,
//! which every source of changes consults to bump the right keys; a read's row dependencies per
//! execution ([`reads`]); and what a proxied write's acknowledgement bumps ([`writes`]). The
//! replication stream's row images are turned into bumps in [`crate::replication`].

pub mod canonical;
pub mod changes;
pub mod keys;
pub mod reads;
pub mod registry;
pub mod writes;

pub use canonical::PinType;
pub use registry::{Identity, PinRegistry};

//! pgcached's result store. It keeps opaque response bytes under opaque keys and decides
//! whether a stored result may still be served; it knows nothing about sockets or SQL.
//!
//! Invalidation is generational: every table has a counter ([`Generations`]); an entry remembers
//! the counters it was computed under; invalidating a table is one increment, whatever the number
//! of entries, and a stale entry is found and dropped at lookup. A fill goes through a
//! [`FillGuard`] that recorded the counters before the query was sent: if any moved while the
//! query ran, the result is not stored.
//!
//! Layout:
//! - [`generations`]: counters per database, table, column set, and row-key slots.
//! - [`key`]: [`CacheKey`], unambiguous length-prefixed key material.
//! - [`store`]: [`ResultCache`], [`Lookup`], [`FillGuard`], entries weighed in bytes.
//! - [`flight`]: single flight, so concurrent identical misses send one query upstream.
//! - [`positions`]: WAL positions per database and per counter, tickets of changes made
//!   through this pgcached, and the [`Stamp`] a fill records: what a tier shared by several
//!   pgcacheds validates results with.

pub mod flight;
pub mod generations;
pub mod key;
pub mod positions;
pub mod store;

pub use flight::FillWait;
pub use generations::{
    ColumnSetId, Feed, GenerationHandle, Generations, KeyHash, TableId, KEY_SLOTS,
};
pub use key::{CacheKey, CacheKeyBuilder};
pub use positions::{LastChange, Positions, Stamp, Standing};
pub use store::{
    CacheConfig, Dependencies, Entry, FeedRefusal, FillGuard, FillObserver, FillOutcome, Lookup,
    Reservation, ResultCache, RowDependency,
};

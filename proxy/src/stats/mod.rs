//! What pgcached has done, kept in memory for the admin console and the per-table metrics.
//!
//! Prometheus metrics ([`crate::metrics`], [`crate::cache_metrics`]) can be written but not read
//! back, and the admin console must answer `SHOW STATS`, `SHOW TABLES` and `SHOW CLIENTS` from
//! this process's own figures. The same calls that update a metric update these counters, so
//! the two never disagree.
//!
//! Layout:
//! - [`counters`]: process-wide totals (queries by kind, hits, bytes served, time saved, ...).
//! - [`tables`]: invalidations per table, and the top tables exported as metric labels.
//! - [`clients`]: the sessions open now.

pub mod clients;
pub mod counters;
pub mod tables;

pub use clients::{ClientInfo, Clients};
pub use counters::{Counters, InvalidationSource, QueryKind};
pub use tables::TableActivity;

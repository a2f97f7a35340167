//! The connection from pgcached to PostgreSQL.
//!
//! Layout:
//! - [`url`]: the `--upstream` URL, with libpq's `sslmode` and `sslrootcert`.
//! - [`connect`]: TCP connect plus TLS negotiation as `sslmode` asks, and cancel forwarding.
//! - [`control`]: pgcached's own control connections (catalog, SCRAM verifiers).
//! - [`own_login`]: pgcached logging in as itself (its replication connections).

pub mod connect;
pub mod control;
pub mod own_login;
pub mod url;

pub use connect::{forward_cancel, Connector, UpstreamError, UpstreamStream};
pub use url::{SslMode, UpstreamUrl};

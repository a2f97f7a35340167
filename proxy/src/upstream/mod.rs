//! The connection from pgcached to PostgreSQL.
//!
//! Layout:
//! - [`url`]: the `--upstream` URL, with libpq's `sslmode` and `sslrootcert`.
//! - [`connect`]: TCP connect plus TLS negotiation as `sslmode` asks, and cancel forwarding.
//! - [`control`]: pgcached's own control connections (catalog, SCRAM verifiers).
//! - [`own_login`]: pgcached logging in as itself (its replication connections).
//! - [`primary`]: which host is in use, the monitor that notices when that changes, fences
//!   for connections of an older era.
//! - [`fenced`]: a connection that fails once its era is over.
//! - `probe`: one check of one host (role, system identifier, timeline).

pub mod connect;
pub mod control;
pub mod fenced;
pub mod own_login;
pub mod primary;
pub(crate) mod probe;
pub mod url;

pub use connect::{forward_cancel, Connector, UpstreamError, UpstreamStream};
pub use primary::{Fence, Upstreams};
pub use url::{SslMode, TargetSessionAttrs, UpstreamUrl};

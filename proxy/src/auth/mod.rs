//! Client logins through pgcached.
//!
//! PostgreSQL authenticates every client itself; pgcached holds no password. Where TLS ends at
//! pgcached, SCRAM's channel binding cannot reach PostgreSQL, so pgcached takes part in the
//! exchange: it hides `-PLUS` from plain clients, and for TLS clients it verifies SCRAM itself
//! against the role's verifier and passes the login on to PostgreSQL with the client key the
//! client's proof reveals (see [`login`]).
//!
//! Layout:
//! - [`login`]: the login phase, from StartupMessage to AuthenticationOk.
//! - [`credential`]: what a login lets pgcached present as the same role to a read replica.
//! - [`scram`]: SCRAM-SHA-256 messages and keys (pure; RFC 7677's vectors in its tests).
//! - [`channel_binding`]: `tls-server-end-point` data of pgcached's certificate.
//! - [`verifiers`]: role verifiers read with the auth query, cached briefly.

pub mod channel_binding;
pub(crate) mod credential;
pub mod login;
pub mod scram;
pub mod verifiers;

pub(crate) use login::login;
pub use login::{LoginError, ScramServer, LOGIN_TIMEOUT};
pub use verifiers::{AuthQueryError, Verifiers, DEFAULT_AUTH_QUERY};

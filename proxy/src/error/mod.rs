//! Errors pgcached tells clients about, sorted into kinds.
//!
//! Every error pgcached writes to a client itself (a refusal, a session it ends) has an
//! [`ErrorKind`], which owns what the error feeds: the `kind` label of
//! `pgcached_session_errors_total`, the SQLSTATE the client's driver classifies it by, the level
//! it is logged at, and the text the client reads. That text is written for the client and
//! holds no address, no I/O error and nothing else of pgcached's internals: a client that has
//! not even logged in must not learn where PostgreSQL runs. The full error, with the upstream's
//! address and the underlying cause, goes to pgcached's log.
//!
//! An error type says how it is told to a client by implementing [`ClientFacing`]; the one
//! place that turns such an error into an ErrorResponse is [`fatal_response`].
//!
//! Layout:
//! - [`kind`]: the kinds, each with its label, SQLSTATE, log level and client text.
//! - [`session`]: why a client session ended early ([`SessionError`]).

pub mod kind;
pub mod session;

use std::borrow::Cow;

use bytes::Bytes;

use crate::wire::error_response::{self, Severity};

pub use kind::{ErrorKind, LogLevel};
pub use session::SessionError;

/// An error a client is told about.
///
/// The defaults tell the client only what its kind says. An error overrides them only with
/// what the client itself sent or may know (its own malformed packet, its role, a precise but
/// address-free reason such as "TLS handshake with PostgreSQL failed").
pub trait ClientFacing {
    /// The error's kind: metric label, SQLSTATE, log level.
    fn kind(&self) -> ErrorKind;

    /// The message the client reads (after pgcached's `pgcached: ` prefix).
    fn client_message(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.kind().client_text())
    }

    /// A DETAIL line for the client, if any.
    fn client_detail(&self) -> Option<&'static str> {
        self.kind().client_detail()
    }

    /// A HINT line (what to do), if any.
    fn client_hint(&self) -> Option<&'static str> {
        None
    }
}

/// The FATAL ErrorResponse that tells a client about `error`: the kind's SQLSTATE and the
/// client-safe text, never the error's own `Display`.
pub fn fatal_response(error: &dyn ClientFacing) -> Bytes {
    error_response::encode_with(
        Severity::Fatal,
        error.kind().sqlstate(),
        &error.client_message(),
        error.client_detail(),
        error.client_hint(),
    )
}

//! TLS on both sides of pgcached, with one rustls provider (ring) for the whole binary.
//!
//! Layout:
//! - [`acceptor`]: TLS offered to clients that send SSLRequest (`--tls-cert`, `--tls-key`).
//! - [`connector`]: TLS towards PostgreSQL as the upstream URL's `sslmode` asks.

pub mod acceptor;
pub mod connector;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider every rustls config in pgcached is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot load {what} from {path}: {reason}")]
    Pem {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The verifier could not be built.
    #[error("invalid TLS trust roots: {0}")]
    Verifier(String),
}

//! The TLS acceptor for client connections, and the certificate it presents (SCRAM channel
//! binding is computed from it).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::{provider, TlsConfigError};

/// TLS towards clients.
pub struct ClientTls {
    /// Accepts TLS connections.
    pub acceptor: TlsAcceptor,
    /// The leaf certificate presented to clients (DER).
    pub certificate: CertificateDer<'static>,
}

/// Builds the acceptor from a PEM certificate chain and a PEM private key.
pub fn load(cert: &Path, key: &Path) -> Result<ClientTls, TlsConfigError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error("certificate chain", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error("certificate chain", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(
            "certificate chain",
            cert,
            "no CERTIFICATE block".to_owned(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| pem_error("private key", key, e.to_string()))?;
    let certificate = chain[0].clone();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)?;
    // PostgreSQL 17 clients may offer ALPN "postgresql"; clients offering none still connect.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(ClientTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certificate,
    })
}

fn pem_error(what: &'static str, path: &Path, reason: String) -> TlsConfigError {
    TlsConfigError::Pem {
        what,
        path: path.display().to_string(),
        reason,
    }
}

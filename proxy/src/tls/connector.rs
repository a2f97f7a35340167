//! The rustls client config for connections to PostgreSQL, one per `sslmode`.
//!
//! `prefer` and `require` (without `sslrootcert`) encrypt without verifying, as libpq does;
//! `verify-ca` checks the chain but not the name; `verify-full` checks both.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::{provider, TlsConfigError};
use crate::upstream::url::{SslMode, UpstreamUrl};

/// Builds the client config the upstream URL asks for, or `None` for `sslmode=disable`.
pub fn for_upstream(url: &UpstreamUrl) -> Result<Option<Arc<ClientConfig>>, TlsConfigError> {
    let verification = match (url.sslmode, &url.sslrootcert) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Prefer, _) | (SslMode::Require, None) => Verification::None,
        (SslMode::Require | SslMode::VerifyCa, Some(roots)) => {
            Verification::Chain(load_roots(roots)?)
        }
        (SslMode::VerifyFull, Some(roots)) => Verification::Full(load_roots(roots)?),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(TlsConfigError::Verifier(
                "verification needs sslrootcert".to_owned(),
            ))
        }
    };
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match verification {
        Verification::Full(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Verification::Chain(roots) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification))
            .with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

enum Verification {
    None,
    Chain(RootCertStore),
    Full(RootCertStore),
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    if path == Path::new("system") {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(store);
    }
    let error = |reason: String| TlsConfigError::Pem {
        what: "sslrootcert",
        path: path.display().to_string(),
        reason,
    };
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(e.to_string()))? {
        let cert = cert.map_err(|e| error(e.to_string()))?;
        store.add(cert).map_err(|e| error(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(error("no CERTIFICATE block".to_owned()));
    }
    Ok(store)
}

/// Accepts any certificate: encryption without authentication (`prefer`, bare `require`).
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Verifies the chain but not the host name (`verify-ca`).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

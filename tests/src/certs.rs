//! A throwaway certificate authority and server certificates for TLS tests.

use std::path::PathBuf;

use pgcached_local_cluster::{ClusterOptions, LocalCluster, SslFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// PEM files of a test CA and one server certificate signed by it, in a temp dir.
pub struct TestCerts {
    /// Keeps the files alive.
    pub dir: tempfile::TempDir,
    /// CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// Server certificate (PEM), valid for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    /// Server private key (PEM).
    pub server_key: PathBuf,
    /// A certificate from another CA, valid for the same names (must be refused).
    pub other_ca_cert: PathBuf,
}

/// Creates a CA and a server certificate for `names` (DNS names or IP addresses).
pub fn make(names: &[&str]) -> TestCerts {
    let dir = tempfile::Builder::new()
        .prefix("pgcached-certs-")
        .tempdir()
        .expect("temp dir");
    let (ca_pem, issuer) = make_ca("pgcached test CA");
    let (other_ca_pem, _) = make_ca("some other CA");

    let server_key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "pgcached test server");
    for name in names {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => params.subject_alt_names.push(SanType::IpAddress(ip)),
            Err(_) => params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into().expect("dns name"))),
        }
    }
    let server = params
        .signed_by(&server_key, &issuer)
        .expect("sign server cert");

    let write = |name: &str, contents: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write pem");
        path
    };
    TestCerts {
        ca_cert: write("ca.crt", ca_pem),
        server_cert: write("server.crt", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        other_ca_cert: write("other-ca.crt", other_ca_pem),
        dir,
    }
}

fn make_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

/// A throwaway cluster with `ssl = on` and the server certificate of `certs` (it accepts both
/// TLS and plain connections).
pub fn tls_cluster(certs: &TestCerts) -> LocalCluster {
    LocalCluster::start(ClusterOptions {
        ssl: Some(SslFiles {
            cert_pem: certs.server_cert.clone(),
            key_pem: certs.server_key.clone(),
        }),
        ..crate::cluster::options()
    })
    .expect("start a TLS cluster")
}

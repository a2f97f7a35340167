//! `tls-server-end-point` channel binding (RFC 5929) for pgcached's own certificate.
//!
//! A client that binds SCRAM to the TLS channel sends a hash of the certificate it was shown,
//! and the server compares it with the hash of its own. The hash function is the one of the
//! certificate's signature algorithm, except that MD5 and SHA-1 are replaced by SHA-256; like
//! PostgreSQL, pgcached offers `SCRAM-SHA-256-PLUS` only for signature algorithms whose hash it
//! can name (so not for RSASSA-PSS or Ed25519 certificates).
//!
//! Only the certificate's outer DER structure is read, enough to find the signature
//! algorithm's object identifier.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// The hash functions a certificate's signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Signature algorithm object identifiers (DER content bytes) and the hash to bind with.
const ALGORITHMS: [(&[u8], Hash); 12] = [
    // md5WithRSAEncryption, sha1WithRSAEncryption: SHA-256 instead (RFC 5929, 4.1).
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
        Hash::Sha256,
    ),
    // sha256/384/512/224WithRSAEncryption.
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        Hash::Sha512,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0e],
        Hash::Sha224,
    ),
    // ecdsa-with-SHA1: SHA-256 instead.
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01], Hash::Sha256),
    // ecdsa-with-SHA224/256/384/512.
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x01],
        Hash::Sha224,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        Hash::Sha512,
    ),
    // dsa-with-sha256.
    (
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x02],
        Hash::Sha256,
    ),
];

/// The `tls-server-end-point` binding data of a DER certificate, or `None` when its signature
/// algorithm names no usable hash (or the DER cannot be read).
pub(crate) fn tls_server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    let (tag, certificate_body, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, _tbs, rest) = element(certificate_body)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, algorithm, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid, _) = element(algorithm)?;
    if tag != OBJECT_IDENTIFIER {
        return None;
    }
    let hash = ALGORITHMS
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|(_, hash)| *hash)?;
    Some(match hash {
        Hash::Sha224 => Sha224::digest(certificate).to_vec(),
        Hash::Sha256 => Sha256::digest(certificate).to_vec(),
        Hash::Sha384 => Sha384::digest(certificate).to_vec(),
        Hash::Sha512 => Sha512::digest(certificate).to_vec(),
    })
}

const SEQUENCE: u8 = 0x30;
const OBJECT_IDENTIFIER: u8 = 0x06;

/// One DER element at the start of `data`: (tag, content, what follows).
fn element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut length = 0usize;
        for byte in data.get(2..2 + count)? {
            length = (length << 8) | usize::from(*byte);
        }
        (length, 2 + count)
    };
    let end = header.checked_add(length)?;
    Some((tag, data.get(header..end)?, data.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate-shaped DER value: SEQUENCE { SEQUENCE {}, SEQUENCE { OID }, BIT STRING }.
    fn shaped(oid: &[u8]) -> Vec<u8> {
        let mut algorithm = vec![OBJECT_IDENTIFIER, oid.len() as u8];
        algorithm.extend_from_slice(oid);
        let mut body = vec![SEQUENCE, 0];
        body.push(SEQUENCE);
        body.push(algorithm.len() as u8);
        body.extend_from_slice(&algorithm);
        body.extend_from_slice(&[0x03, 0x02, 0x00, 0xff]);
        let mut der = vec![SEQUENCE, body.len() as u8];
        der.extend_from_slice(&body);
        der
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let sha384_rsa = shaped(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]);
        assert_eq!(
            tls_server_end_point(&sha384_rsa),
            Some(Sha384::digest(&sha384_rsa).to_vec())
        );
        let sha1_rsa = shaped(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]);
        assert_eq!(
            tls_server_end_point(&sha1_rsa),
            Some(Sha256::digest(&sha1_rsa).to_vec()),
            "SHA-1 is replaced by SHA-256"
        );
        let ed25519 = shaped(&[0x2b, 0x65, 0x70]);
        assert_eq!(tls_server_end_point(&ed25519), None);
    }

    #[test]
    fn a_generated_ecdsa_certificate_binds_with_sha256() {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        let der = cert.der().to_vec();
        assert_eq!(
            tls_server_end_point(&der),
            Some(Sha256::digest(&der).to_vec())
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(tls_server_end_point(b""), None);
        assert_eq!(tls_server_end_point(&[SEQUENCE, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(tls_server_end_point(&[SEQUENCE, 0x10, 0x30]), None);
        assert_eq!(tls_server_end_point(&[0x02, 0x01, 0x00]), None);
    }
}

//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash) as PostgreSQL speaks it, for pass-through.
//!
//! pgcached verifies a client's SCRAM proof against the role's stored verifier (`StoredKey`,
//! `ServerKey`, salt and iteration count, as `pg_authid.rolpassword` holds them) and then logs in
//! to PostgreSQL as that role. The password is never known: the client's proof is
//! `ClientKey XOR HMAC(StoredKey, AuthMessage)`, so the server side recovers `ClientKey`, checks
//! `SHA-256(ClientKey) = StoredKey`, and can compute a fresh proof for PostgreSQL's own exchange
//! (same salt and iterations, since PostgreSQL stores that very verifier). `ServerKey` signs the
//! server's final message to the client.
//!
//! Everything here is pure: messages in, messages out; no socket, no state between calls.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of SHA-256 keys, proofs and signatures.
pub(crate) const KEY_LEN: usize = 32;

/// The mechanism names PostgreSQL offers.
pub(crate) const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The channel-bound variant.
pub(crate) const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type PostgreSQL implements (RFC 5929).
pub(crate) const TLS_SERVER_END_POINT: &str = "tls-server-end-point";

type HmacSha256 = Hmac<Sha256>;

/// A SCRAM message that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScramError {
    /// The bytes are not UTF-8 text.
    #[error("SCRAM message is not valid UTF-8")]
    NotText,
    /// A required attribute is missing or out of order.
    #[error("malformed SCRAM message: expected attribute \"{0}\"")]
    Missing(char),
    /// An attribute value cannot be decoded.
    #[error("malformed SCRAM message: invalid {0}")]
    Invalid(&'static str),
    /// The GS2 header is not one PostgreSQL accepts.
    #[error("malformed SCRAM message: unexpected channel-binding flag")]
    Gs2Header,
    /// An authorization identity (`a=`), which PostgreSQL does not support.
    #[error("client uses authorization identity, but it is not supported")]
    AuthorizationIdentity,
}

/// A role's stored SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Verifier {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// The salt as PostgreSQL prints it (base64).
    pub salt: String,
    /// `SHA-256(ClientKey)`.
    pub stored_key: [u8; KEY_LEN],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .field("salt", &self.salt)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Reads a verifier as stored in `pg_authid.rolpassword`; `None` for anything else (an md5
    /// hash, a plain password, garbage).
    pub(crate) fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|i| *i > 0)?;
        STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(Verifier {
            iterations,
            salt: salt.to_owned(),
            stored_key: decode_key(stored)?,
            server_key: decode_key(server)?,
        })
    }

    /// True when PostgreSQL's server-first message was made from this verifier.
    pub(crate) fn matches(&self, server_first: &ServerFirst) -> bool {
        self.iterations == server_first.iterations && self.salt == server_first.salt
    }
}

fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

/// The channel-binding part of a GS2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelBindingFlag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=<type>`: the client binds to the channel.
    Bound(String),
}

/// The client's first message, `gs2-header client-first-message-bare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFirst {
    /// The channel-binding flag.
    pub flag: ChannelBindingFlag,
    /// The GS2 header as sent, e.g. `n,,` (what `c=` must repeat in the final message).
    pub gs2_header: String,
    /// `n=<user>,r=<nonce>[,extensions]`, exactly as sent (part of the AuthMessage).
    pub bare: String,
    /// The client nonce.
    pub nonce: String,
}

/// Reads the client's first message.
pub(crate) fn parse_client_first(data: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(data).map_err(|_| ScramError::NotText)?;
    let (flag_text, rest) = text.split_once(',').ok_or(ScramError::Gs2Header)?;
    let flag = match flag_text {
        "n" => ChannelBindingFlag::NotSupported,
        "y" => ChannelBindingFlag::ClientOnly,
        _ => match flag_text.strip_prefix("p=") {
            Some(kind) if !kind.is_empty() => ChannelBindingFlag::Bound(kind.to_owned()),
            _ => return Err(ScramError::Gs2Header),
        },
    };
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Gs2Header)?;
    if !authzid.is_empty() {
        return Err(ScramError::AuthorizationIdentity);
    }
    let mut attributes = bare.split(',');
    let user = attributes.next().ok_or(ScramError::Missing('n'))?;
    if !user.starts_with("n=") {
        return Err(ScramError::Missing('n'));
    }
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Missing('r'))?;
    if nonce.is_empty() || !nonce.bytes().all(is_printable) {
        return Err(ScramError::Invalid("nonce"));
    }
    Ok(ClientFirst {
        flag,
        gs2_header: format!("{flag_text},,"),
        bare: bare.to_owned(),
        nonce: nonce.to_owned(),
    })
}

/// `printable` of RFC 5802: any visible ASCII character but `,`.
fn is_printable(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && byte != b','
}

/// The server's first message, `r=<nonce>,s=<salt>,i=<iterations>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerFirst {
    /// The whole message as sent (part of the AuthMessage).
    pub raw: String,
    /// Client nonce followed by the server's.
    pub nonce: String,
    /// Base64 salt.
    pub salt: String,
    /// Iteration count.
    pub iterations: u32,
}

/// Reads the server's first message.
pub(crate) fn parse_server_first(data: &[u8]) -> Result<ServerFirst, ScramError> {
    let raw = std::str::from_utf8(data).map_err(|_| ScramError::NotText)?;
    let mut attributes = raw.split(',');
    let mut next = |name: char| {
        attributes
            .next()
            .and_then(|a| a.strip_prefix(name).and_then(|a| a.strip_prefix('=')))
            .ok_or(ScramError::Missing(name))
    };
    let nonce = next('r')?.to_owned();
    let salt = next('s')?.to_owned();
    let iterations = next('i')?
        .parse()
        .map_err(|_| ScramError::Invalid("iteration count"))?;
    STANDARD
        .decode(&salt)
        .map_err(|_| ScramError::Invalid("salt"))?;
    Ok(ServerFirst {
        raw: raw.to_owned(),
        nonce,
        salt,
        iterations,
    })
}

/// The client's final message, `c=<binding>,r=<nonce>,p=<proof>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFinal {
    /// Decoded `c=`: the GS2 header followed by the channel-binding data, if any.
    pub channel_binding: Vec<u8>,
    /// The nonce, which must repeat the server-first nonce.
    pub nonce: String,
    /// Everything before `,p=` (part of the AuthMessage).
    pub without_proof: String,
    /// The client's proof.
    pub proof: [u8; KEY_LEN],
}

/// Reads the client's final message.
pub(crate) fn parse_client_final(data: &[u8]) -> Result<ClientFinal, ScramError> {
    let text = std::str::from_utf8(data).map_err(|_| ScramError::NotText)?;
    let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Missing('p'))?;
    let mut attributes = without_proof.split(',');
    let binding = attributes
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(ScramError::Missing('c'))?;
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Missing('r'))?;
    Ok(ClientFinal {
        channel_binding: STANDARD
            .decode(binding)
            .map_err(|_| ScramError::Invalid("channel binding"))?,
        nonce: nonce.to_owned(),
        without_proof: without_proof.to_owned(),
        proof: decode_key(proof).ok_or(ScramError::Invalid("proof"))?,
    })
}

/// The message both sides sign: `client-first-bare , server-first , client-final-without-proof`.
pub(crate) fn auth_message(
    client_first_bare: &str,
    server_first: &str,
    client_final_without_proof: &str,
) -> String {
    format!("{client_first_bare},{server_first},{client_final_without_proof}")
}

/// A client key recovered from a valid proof; enough to log in as the role, so kept only in
/// the memory of the session that proved it (for its reads on replicas), never printed.
pub(crate) struct ClientKey([u8; KEY_LEN]);

/// Recovers the client key from `proof`, if the proof was made with the verifier's password.
pub(crate) fn recover_client_key(
    verifier: &Verifier,
    auth_message: &str,
    proof: &[u8; KEY_LEN],
) -> Option<ClientKey> {
    let signature = hmac(&verifier.stored_key, auth_message.as_bytes());
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = proof[i] ^ signature[i];
    }
    let stored: [u8; KEY_LEN] = Sha256::digest(key).into();
    bool::from(stored.ct_eq(&verifier.stored_key)).then_some(ClientKey(key))
}

/// The proof a client holding `client_key` sends for `auth_message`.
pub(crate) fn client_proof(
    client_key: &ClientKey,
    stored_key: &[u8; KEY_LEN],
    auth_message: &str,
) -> [u8; KEY_LEN] {
    let signature = hmac(stored_key, auth_message.as_bytes());
    let mut proof = [0u8; KEY_LEN];
    for (i, byte) in proof.iter_mut().enumerate() {
        *byte = client_key.0[i] ^ signature[i];
    }
    proof
}

/// `v=<ServerSignature>`: the server's final message for `auth_message`.
pub(crate) fn server_final(server_key: &[u8; KEY_LEN], auth_message: &str) -> String {
    format!(
        "v={}",
        STANDARD.encode(hmac(server_key, auth_message.as_bytes()))
    )
}

/// True when `data` is the final message a server holding `server_key` sends for `auth_message`.
pub(crate) fn is_server_final(server_key: &[u8; KEY_LEN], auth_message: &str, data: &[u8]) -> bool {
    let expected = server_final(server_key, auth_message);
    bool::from(expected.as_bytes().ct_eq(data))
}

/// `c=<base64(gs2 header + binding data)>,r=<nonce>`: a final message without its proof.
pub(crate) fn client_final_without_proof(
    gs2_header: &str,
    binding_data: &[u8],
    nonce: &str,
) -> String {
    let mut input = gs2_header.as_bytes().to_vec();
    input.extend_from_slice(binding_data);
    format!("c={},r={nonce}", STANDARD.encode(input))
}

/// `<without proof>,p=<proof>`.
pub(crate) fn with_proof(without_proof: &str, proof: &[u8; KEY_LEN]) -> String {
    format!("{without_proof},p={}", STANDARD.encode(proof))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3: user "user", password "pencil".
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// The verifier PostgreSQL would store for "pencil" with the RFC's salt and iterations.
    fn rfc_verifier() -> Verifier {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pencil", &salt, 4096, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        let server = hmac(&salted, b"Server Key");
        let text = format!(
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==${}:{}",
            STANDARD.encode(stored),
            STANDARD.encode(server)
        );
        Verifier::parse(&text).expect("verifier")
    }

    fn rfc_auth_message() -> String {
        let first = parse_client_first(CLIENT_FIRST.as_bytes()).expect("client first");
        let last = parse_client_final(CLIENT_FINAL.as_bytes()).expect("client final");
        auth_message(&first.bare, SERVER_FIRST, &last.without_proof)
    }

    #[test]
    fn the_rfc_7677_exchange_verifies_and_signs() {
        let verifier = rfc_verifier();
        let server_first = parse_server_first(SERVER_FIRST.as_bytes()).expect("server first");
        assert!(verifier.matches(&server_first));
        let last = parse_client_final(CLIENT_FINAL.as_bytes()).expect("client final");
        assert_eq!(last.channel_binding, b"n,,");
        let message = rfc_auth_message();
        let key = recover_client_key(&verifier, &message, &last.proof).expect("valid proof");
        assert_eq!(server_final(&verifier.server_key, &message), SERVER_FINAL);
        assert!(is_server_final(
            &verifier.server_key,
            &message,
            SERVER_FINAL.as_bytes()
        ));
        // The recovered key makes the very proof the client sent.
        assert_eq!(
            client_proof(&key, &verifier.stored_key, &message),
            last.proof
        );
        assert_eq!(with_proof(&last.without_proof, &last.proof), CLIENT_FINAL);
    }

    #[test]
    fn a_proof_made_with_another_password_is_refused() {
        let verifier = rfc_verifier();
        let message = rfc_auth_message();
        let mut proof = parse_client_final(CLIENT_FINAL.as_bytes())
            .expect("client final")
            .proof;
        proof[0] ^= 1;
        assert!(recover_client_key(&verifier, &message, &proof).is_none());
        assert!(!is_server_final(
            &verifier.server_key,
            &message,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5="
        ));
    }

    #[test]
    fn a_recovered_key_signs_a_second_exchange_with_the_same_verifier() {
        // What pgcached does upstream: same salt and iterations, other nonce and binding.
        let verifier = rfc_verifier();
        let message = rfc_auth_message();
        let last = parse_client_final(CLIENT_FINAL.as_bytes()).expect("client final");
        let key = recover_client_key(&verifier, &message, &last.proof).expect("valid");
        let upstream_final = client_final_without_proof("n,,", b"", "other-nonce");
        assert_eq!(upstream_final, "c=biws,r=other-nonce");
        let upstream_message = auth_message("n=,r=other", SERVER_FIRST, &upstream_final);
        let proof = client_proof(&key, &verifier.stored_key, &upstream_message);
        assert!(recover_client_key(&verifier, &upstream_message, &proof).is_some());
    }

    #[test]
    fn verifiers_are_read_as_postgres_stores_them() {
        let verifier = rfc_verifier();
        assert_eq!(verifier.iterations, 4096);
        assert!(!format!("{verifier:?}").contains(&STANDARD.encode(verifier.stored_key)));
        for bad in [
            "md5a3556571e93b0d20722ba62be61e8c2d",
            "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$AA==:AA==",
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AA==:AA==",
            "SCRAM-SHA-256$4096:$x:y",
            "plain password",
            "",
        ] {
            assert!(Verifier::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn client_first_flags_are_told_apart() {
        let plus = parse_client_first(b"p=tls-server-end-point,,n=,r=abc").expect("plus");
        assert_eq!(
            plus.flag,
            ChannelBindingFlag::Bound(TLS_SERVER_END_POINT.to_owned())
        );
        assert_eq!(plus.gs2_header, "p=tls-server-end-point,,");
        assert_eq!(plus.bare, "n=,r=abc");
        let y = parse_client_first(b"y,,n=,r=abc").expect("y");
        assert_eq!(y.flag, ChannelBindingFlag::ClientOnly);
        assert_eq!(
            parse_client_first(b"n,a=admin,n=,r=abc"),
            Err(ScramError::AuthorizationIdentity)
        );
        for bad in [
            &b"x,,n=,r=abc"[..],
            b"n,,r=abc",
            b"n,,n=,r=",
            b"p=,,n=,r=a",
            b"",
            b"\xff,,n=,r=a",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_server_and_final_messages_are_refused() {
        assert!(parse_server_first(b"r=abc,s=!!,i=4096").is_err());
        assert!(parse_server_first(b"r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=many").is_err());
        assert!(parse_server_first(b"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=abc,i=1").is_err());
        assert!(parse_client_final(b"c=biws,r=abc").is_err());
        assert!(parse_client_final(b"c=biws,r=abc,p=AAAA").is_err());
        assert!(
            parse_client_final(b"r=abc,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
                .is_err()
        );
    }
}

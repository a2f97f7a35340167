//! The login phase: from the client's StartupMessage to PostgreSQL's AuthenticationOk.
//!
//! PostgreSQL authenticates every client itself. The StartupMessage goes upstream unchanged and
//! the exchange that follows is relayed, message by message, with two exceptions that exist
//! because pgcached terminates TLS on both sides:
//!
//! - **SCRAM relayed** (plain clients, or when pgcached cannot verify SCRAM itself): the
//!   `-PLUS` mechanisms are removed from PostgreSQL's offer, since a binding to the client's
//!   channel can never match PostgreSQL's. A plain client then sends GS2 flag `n`, which
//!   PostgreSQL accepts over TLS. A TLS client that supports binding would send `y`, which
//!   PostgreSQL refuses over TLS; that case gets an error that says what to do.
//! - **SCRAM pass-through** (TLS clients, with the auth query in place): pgcached is the SCRAM
//!   server towards the client, offering `SCRAM-SHA-256-PLUS` bound to its own certificate, and
//!   the SCRAM client towards PostgreSQL ([`ScramServer`]). The nonce, salt and iteration count
//!   are PostgreSQL's own (its first message is passed on unchanged), the client's proof is
//!   checked against the role's verifier, and the client key recovered from it signs
//!   PostgreSQL's exchange. A proof that does not verify is sent on as a wrong one, so
//!   PostgreSQL itself refuses the login, with its own message and log line.
//!
//! Reads are exact, one message at a time, so no byte past AuthenticationOk is consumed: the
//! relay takes over the same streams.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::credential::{Credential, Transcript};
use super::scram::{self, ChannelBindingFlag, ClientFirst, Verifier};
use super::verifiers::{Fetched, Verifiers};
use crate::error::{fatal_response, ClientFacing, ErrorKind};
use crate::net::read::{read_frame, Frame, FrameError};
use crate::net::Stream;
use crate::wire::authentication as auth;

/// Largest message of the login phase.
const MAX_LOGIN_FRAME: usize = 1024 * 1024;
/// How long a whole login may take (PostgreSQL's `authentication_timeout` default).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How pgcached takes part in SCRAM logins of TLS clients.
pub struct ScramServer {
    /// `tls-server-end-point` data of pgcached's certificate; `None` offers no `-PLUS`.
    pub binding: Option<Vec<u8>>,
    /// Where role verifiers come from.
    pub verifiers: Arc<Verifiers>,
}

/// Why a login did not reach AuthenticationOk.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// PostgreSQL refused the login (or pgcached refused a malformed SCRAM exchange as
    /// PostgreSQL would); the client has been told why.
    #[error("login refused")]
    Refused,
    /// The client's connection failed or closed.
    #[error("client connection lost during login: {0}")]
    ClientIo(std::io::Error),
    /// PostgreSQL's connection failed or closed.
    #[error("PostgreSQL connection lost during login: {0}")]
    UpstreamIo(std::io::Error),
    /// The client sent a message that is out of range.
    #[error("invalid message from the client during login: {0}")]
    ClientFrame(String),
    /// PostgreSQL sent something no login allows.
    #[error("unexpected message from PostgreSQL during login: {0}")]
    UpstreamProtocol(&'static str),
    /// The login did not finish within [`LOGIN_TIMEOUT`].
    #[error("login did not finish within {0:?}")]
    Timeout(Duration),
}

impl ClientFacing for LoginError {
    fn kind(&self) -> ErrorKind {
        match self {
            LoginError::Refused | LoginError::ClientFrame(_) => ErrorKind::ClientProtocol,
            LoginError::ClientIo(_) => ErrorKind::ClientLost,
            LoginError::UpstreamIo(_) => ErrorKind::UpstreamLost,
            LoginError::UpstreamProtocol(_) => ErrorKind::UpstreamProtocol,
            LoginError::Timeout(_) => ErrorKind::LoginTimeout,
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        match self {
            // What the client itself sent.
            LoginError::ClientFrame(e) => {
                Cow::Owned(format!("invalid message from the client during login: {e}"))
            }
            LoginError::UpstreamIo(_) => {
                Cow::Borrowed("connection to PostgreSQL lost during login")
            }
            _ => Cow::Borrowed(self.kind().client_text()),
        }
    }
}

/// Sends the StartupMessage upstream and carries the exchange through to AuthenticationOk,
/// which has then been relayed to the client.
/// `startup` is the StartupMessage to send (the client's own, or the admin console's with
/// another database) and `role` the role it logs in as. Returns what the exchange lets
/// pgcached present as the same role elsewhere ([`Credential`]).
pub(crate) async fn login(
    client: &mut Stream,
    upstream: &mut Stream,
    startup: &[u8],
    role: &str,
    scram_server: Option<&ScramServer>,
) -> Result<Credential, LoginError> {
    let mut sides = Sides { client, upstream };
    sides.send_upstream(startup).await?;
    let mut credential = Credential::Nothing;
    let mut transcript: Option<Transcript> = None;
    loop {
        let frame = sides.read_upstream().await?;
        match frame.tag {
            b'E' => {
                sides.send_client(&frame.bytes).await?;
                return Err(LoginError::Refused);
            }
            b'R' => {
                let Some(code) = auth::request_code(&frame.bytes) else {
                    return Err(LoginError::UpstreamProtocol("short authentication request"));
                };
                match code {
                    auth::OK => {
                        sides.send_client(&frame.bytes).await?;
                        return Ok(match transcript {
                            Some(transcript) => transcript.into_credential(),
                            None => credential,
                        });
                    }
                    auth::SASL => {
                        let tls_client = sides.client.is_tls();
                        match scram_server.filter(|_| tls_client) {
                            Some(server) => {
                                credential =
                                    pass_through(&mut sides, &frame, role, server, &mut transcript)
                                        .await?;
                            }
                            None => {
                                let mut relayed = Transcript::default();
                                relay_sasl(&mut sides, &frame, &mut relayed).await?;
                                transcript = Some(relayed);
                            }
                        }
                    }
                    code if auth::expects_answer(code) => {
                        sides.send_client(&frame.bytes).await?;
                        let answer = sides.read_client().await?;
                        sides.send_upstream(&answer.bytes).await?;
                        credential = match (code, transcript.as_mut()) {
                            (auth::SASL_CONTINUE, Some(relayed)) => {
                                relayed.server_first(auth::request_data(&frame.bytes));
                                relayed.client_final(auth::sasl_response(&answer.bytes));
                                credential
                            }
                            (auth::CLEARTEXT_PASSWORD, _) => auth::password(&answer.bytes)
                                .map_or(Credential::Unavailable, Credential::Password),
                            _ => Credential::Unavailable,
                        };
                    }
                    _ => sides.send_client(&frame.bytes).await?,
                }
            }
            // NegotiateProtocolVersion, NoticeResponse.
            _ => sides.send_client(&frame.bytes).await?,
        }
    }
}

/// The two streams of a login.
struct Sides<'a> {
    client: &'a mut Stream,
    upstream: &'a mut Stream,
}

impl Sides<'_> {
    async fn read_upstream(&mut self) -> Result<Frame, LoginError> {
        read_frame(self.upstream, MAX_LOGIN_FRAME)
            .await
            .map_err(|e| match e {
                FrameError::Io(e) => LoginError::UpstreamIo(e),
                FrameError::Length(_) => LoginError::UpstreamProtocol("message out of range"),
            })
    }

    async fn read_client(&mut self) -> Result<Frame, LoginError> {
        read_frame(self.client, MAX_LOGIN_FRAME)
            .await
            .map_err(|e| match e {
                FrameError::Io(e) => LoginError::ClientIo(e),
                other => LoginError::ClientFrame(other.to_string()),
            })
    }

    async fn send_client(&mut self, bytes: &[u8]) -> Result<(), LoginError> {
        write(self.client, bytes)
            .await
            .map_err(LoginError::ClientIo)
    }

    async fn send_upstream(&mut self, bytes: &[u8]) -> Result<(), LoginError> {
        write(self.upstream, bytes)
            .await
            .map_err(LoginError::UpstreamIo)
    }

    /// Tells the client why its login fails (as PostgreSQL would say it) and ends the login.
    async fn refuse<T>(&mut self, refusal: Refusal) -> Result<T, LoginError> {
        self.send_client(&fatal_response(&refusal)).await?;
        Err(LoginError::Refused)
    }
}

async fn write<W: AsyncWrite + Unpin>(stream: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// SCRAM exchanges pgcached refuses itself, in PostgreSQL's words where PostgreSQL has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A TLS client that supports channel binding, relayed to a TLS upstream.
    BindingCannotPassThrough,
    /// The client's message breaks the SCRAM grammar.
    Malformed,
    /// PLUS chosen without binding data, or binding data without PLUS.
    BindingMismatch,
    /// A binding type PostgreSQL does not implement.
    UnsupportedBindingType,
    /// Flag `y` although binding was offered: a downgrade.
    BindingNegotiation,
    /// The client bound to a channel other than this one.
    BindingCheckFailed,
    /// A mechanism that was not offered.
    UnknownMechanism,
}

/// Refusals are the client's own doing: SQLSTATE 08P01, as PostgreSQL says them.
impl ClientFacing for Refusal {
    fn kind(&self) -> ErrorKind {
        ErrorKind::ClientProtocol
    }

    fn client_message(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.text().0)
    }

    fn client_detail(&self) -> Option<&'static str> {
        self.text().1
    }

    fn client_hint(&self) -> Option<&'static str> {
        self.text().2
    }
}

impl Refusal {
    fn text(self) -> (&'static str, Option<&'static str>, Option<&'static str>) {
        match self {
            Refusal::BindingCannotPassThrough => (
                "SCRAM channel binding cannot pass through pgcached",
                Some(
                    "pgcached ends TLS on both sides, so a binding to its certificate never \
                     matches PostgreSQL's, and PostgreSQL refuses a client that offers binding \
                     but does not use it.",
                ),
                Some(
                    "Install pgcached's verifier function (README, \"Logins\") so that pgcached \
                     can verify SCRAM itself, or connect with channel_binding=disable.",
                ),
            ),
            Refusal::Malformed => ("malformed SCRAM message", None, None),
            Refusal::BindingMismatch => (
                "malformed SCRAM message",
                Some("The channel-binding flag does not match the mechanism the client chose."),
                None,
            ),
            Refusal::UnsupportedBindingType => {
                ("unsupported SCRAM channel-binding type", None, None)
            }
            Refusal::BindingNegotiation => (
                "SCRAM channel binding negotiation error",
                Some(
                    "The client supports SCRAM channel binding but thinks the server does not.  \
                     However, this server does support channel binding.",
                ),
                None,
            ),
            Refusal::BindingCheckFailed => ("SCRAM channel binding check failed", None, None),
            Refusal::UnknownMechanism => (
                "client selected an invalid SASL authentication mechanism",
                None,
                None,
            ),
        }
    }
}

/// SCRAM relayed: PostgreSQL's offer without `-PLUS`, then the client's first message, after
/// which the generic loop relays the rest.
async fn relay_sasl(
    sides: &mut Sides<'_>,
    request: &Frame,
    transcript: &mut Transcript,
) -> Result<(), LoginError> {
    let mechanisms = auth::sasl_mechanisms(&request.bytes).ok_or(LoginError::UpstreamProtocol(
        "malformed SASL mechanism list",
    ))?;
    let offered: Vec<&str> = mechanisms
        .iter()
        .map(String::as_str)
        .filter(|m| !m.ends_with("-PLUS"))
        .collect();
    sides.send_client(&auth::encode_sasl(&offered)).await?;
    let answer = sides.read_client().await?;
    if let Some(response) = auth::sasl_initial_response(&answer.bytes) {
        transcript.client_first(&response.data);
    }
    if sides.upstream.is_tls() {
        let first = auth::sasl_initial_response(&answer.bytes)
            .and_then(|response| scram::parse_client_first(&response.data).ok());
        if first.is_some_and(|first| first.flag == ChannelBindingFlag::ClientOnly) {
            return sides.refuse(Refusal::BindingCannotPassThrough).await;
        }
    }
    sides.send_upstream(&answer.bytes).await
}

/// SCRAM pass-through for a TLS client (see the module docs). Returns once the client has its
/// SASLFinal, with the client key; PostgreSQL's AuthenticationOk follows in the generic loop.
/// When it relays instead, `transcript` collects the exchange.
async fn pass_through(
    sides: &mut Sides<'_>,
    request: &Frame,
    role: &str,
    server: &ScramServer,
    transcript: &mut Option<Transcript>,
) -> Result<Credential, LoginError> {
    let mechanisms = auth::sasl_mechanisms(&request.bytes).ok_or(LoginError::UpstreamProtocol(
        "malformed SASL mechanism list",
    ))?;
    let fetched = match mechanisms.iter().any(|m| m == scram::SCRAM_SHA_256) {
        true => server.verifiers.get(role).await.ok(),
        false => None,
    };
    let fetched = match fetched {
        Some(fetched) => fetched,
        // No SCRAM-SHA-256, or the auth query is not usable (the failure is logged): relay,
        // as without it.
        None => {
            let mut relayed = Transcript::default();
            relay_sasl(sides, request, &mut relayed).await?;
            *transcript = Some(relayed);
            return Ok(Credential::Unavailable);
        }
    };
    let offered: Vec<&str> = match server.binding {
        Some(_) => vec![scram::SCRAM_SHA_256_PLUS, scram::SCRAM_SHA_256],
        None => vec![scram::SCRAM_SHA_256],
    };
    sides.send_client(&auth::encode_sasl(&offered)).await?;

    // Client first message.
    let answer = sides.read_client().await?;
    let Some(initial) = auth::sasl_initial_response(&answer.bytes) else {
        return sides.refuse(Refusal::Malformed).await;
    };
    if !offered.contains(&initial.mechanism.as_str()) {
        return sides.refuse(Refusal::UnknownMechanism).await;
    }
    let first = match scram::parse_client_first(&initial.data) {
        Ok(first) => first,
        Err(_) => return sides.refuse(Refusal::Malformed).await,
    };
    let binding = match bound_data(&first, &initial.mechanism, server.binding.as_deref()) {
        Ok(binding) => binding,
        Err(refusal) => return sides.refuse(refusal).await,
    };
    let upstream_first = format!("n,,{}", first.bare);
    sides
        .send_upstream(&auth::encode_sasl_initial_response(
            scram::SCRAM_SHA_256,
            upstream_first.as_bytes(),
        ))
        .await?;

    // PostgreSQL's first message: its nonce, salt and iterations, passed on unchanged.
    let continued = sides.read_upstream().await?;
    if continued.tag == b'E' {
        sides.send_client(&continued.bytes).await?;
        return Err(LoginError::Refused);
    }
    if continued.tag != b'R' || auth::request_code(&continued.bytes) != Some(auth::SASL_CONTINUE) {
        return Err(LoginError::UpstreamProtocol("expected SASLContinue"));
    }
    let server_first = scram::parse_server_first(auth::request_data(&continued.bytes))
        .map_err(|_| LoginError::UpstreamProtocol("malformed SCRAM server-first message"))?;
    if !server_first.nonce.starts_with(&first.nonce) {
        return Err(LoginError::UpstreamProtocol(
            "SCRAM nonce does not extend the client's",
        ));
    }
    let mut verifier = usable(&fetched, &server_first);
    let mut fresh = false;
    if verifier.is_none() {
        verifier = refetch(server, role, &server_first).await;
        fresh = true;
    }
    sides.send_client(&continued.bytes).await?;

    // Client final message.
    let answer = sides.read_client().await?;
    let last = match scram::parse_client_final(auth::sasl_response(&answer.bytes)) {
        Ok(last) => last,
        Err(_) => return sides.refuse(Refusal::Malformed).await,
    };
    if last.nonce != server_first.nonce {
        return sides.refuse(Refusal::Malformed).await;
    }
    let mut expected_binding = first.gs2_header.as_bytes().to_vec();
    expected_binding.extend_from_slice(binding);
    if last.channel_binding != expected_binding {
        return sides.refuse(Refusal::BindingCheckFailed).await;
    }
    let client_message = scram::auth_message(&first.bare, &server_first.raw, &last.without_proof);
    let mut key = verifier
        .as_ref()
        .and_then(|v| scram::recover_client_key(v, &client_message, &last.proof));
    if key.is_none() && !fresh {
        // The password may have changed since the verifier was cached.
        verifier = refetch(server, role, &server_first).await;
        key = verifier
            .as_ref()
            .and_then(|v| scram::recover_client_key(v, &client_message, &last.proof));
    }

    // PostgreSQL's exchange, signed with the recovered key (or deliberately wrong).
    let upstream_without_proof = scram::client_final_without_proof("n,,", b"", &server_first.nonce);
    let upstream_message =
        scram::auth_message(&first.bare, &server_first.raw, &upstream_without_proof);
    let proof = match (&key, &verifier) {
        (Some(key), Some(verifier)) => {
            scram::client_proof(key, &verifier.stored_key, &upstream_message)
        }
        _ => wrong_proof(),
    };
    sides
        .send_upstream(&auth::encode_sasl_response(
            scram::with_proof(&upstream_without_proof, &proof).as_bytes(),
        ))
        .await?;
    let last_step = sides.read_upstream().await?;
    if last_step.tag == b'E' {
        sides.send_client(&last_step.bytes).await?;
        return Err(LoginError::Refused);
    }
    let (Some(key), Some(verifier)) = (key, verifier) else {
        return Err(LoginError::UpstreamProtocol(
            "PostgreSQL accepted a wrong SCRAM proof",
        ));
    };
    if last_step.tag != b'R'
        || auth::request_code(&last_step.bytes) != Some(auth::SASL_FINAL)
        || !scram::is_server_final(
            &verifier.server_key,
            &upstream_message,
            auth::request_data(&last_step.bytes),
        )
    {
        return Err(LoginError::UpstreamProtocol(
            "PostgreSQL's SCRAM signature does not match the role's verifier",
        ));
    }
    let server_final = scram::server_final(&verifier.server_key, &client_message);
    sides
        .send_client(&auth::encode_sasl_step(
            auth::SASL_FINAL,
            server_final.as_bytes(),
        ))
        .await?;
    Ok(Credential::ScramKey { key, verifier })
}

/// The binding data the client's final message must carry, checked against the mechanism it
/// chose, as PostgreSQL checks it.
fn bound_data<'a>(
    first: &ClientFirst,
    mechanism: &str,
    binding: Option<&'a [u8]>,
) -> Result<&'a [u8], Refusal> {
    let plus = mechanism == scram::SCRAM_SHA_256_PLUS;
    match (&first.flag, plus) {
        (ChannelBindingFlag::Bound(kind), true) => {
            if kind != scram::TLS_SERVER_END_POINT {
                return Err(Refusal::UnsupportedBindingType);
            }
            binding.ok_or(Refusal::BindingMismatch)
        }
        (ChannelBindingFlag::Bound(_), false) | (_, true) => Err(Refusal::BindingMismatch),
        (ChannelBindingFlag::ClientOnly, false) if binding.is_some() => {
            Err(Refusal::BindingNegotiation)
        }
        (ChannelBindingFlag::ClientOnly | ChannelBindingFlag::NotSupported, false) => Ok(&[]),
    }
}

/// The cached verifier, if it is the one PostgreSQL's first message was made from.
fn usable(fetched: &Fetched, server_first: &scram::ServerFirst) -> Option<Arc<Verifier>> {
    match fetched {
        Fetched::Verifier(verifier) if verifier.matches(server_first) => Some(Arc::clone(verifier)),
        _ => None,
    }
}

/// The role's verifier asked again, if it matches PostgreSQL's first message.
async fn refetch(
    server: &ScramServer,
    role: &str,
    server_first: &scram::ServerFirst,
) -> Option<Arc<Verifier>> {
    let fetched = server.verifiers.fetch(role).await.ok()?;
    usable(&fetched, server_first)
}

/// A proof no password makes: PostgreSQL refuses it with its own error.
fn wrong_proof() -> [u8; scram::KEY_LEN] {
    let mut proof = [0u8; scram::KEY_LEN];
    if getrandom::getrandom(&mut proof).is_err() {
        proof = [0x5a; scram::KEY_LEN];
    }
    proof
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(text: &str) -> ClientFirst {
        scram::parse_client_first(text.as_bytes()).expect("client first")
    }

    #[test]
    fn binding_flags_are_checked_against_the_mechanism() {
        let cert = [1u8, 2, 3];
        let plus = first("p=tls-server-end-point,,n=,r=a");
        assert_eq!(
            bound_data(&plus, scram::SCRAM_SHA_256_PLUS, Some(&cert)),
            Ok(&cert[..])
        );
        assert_eq!(
            bound_data(&plus, scram::SCRAM_SHA_256, Some(&cert)),
            Err(Refusal::BindingMismatch)
        );
        let unique = first("p=tls-unique,,n=,r=a");
        assert_eq!(
            bound_data(&unique, scram::SCRAM_SHA_256_PLUS, Some(&cert)),
            Err(Refusal::UnsupportedBindingType)
        );
        let n = first("n,,n=,r=a");
        assert_eq!(
            bound_data(&n, scram::SCRAM_SHA_256_PLUS, Some(&cert)),
            Err(Refusal::BindingMismatch)
        );
        assert_eq!(
            bound_data(&n, scram::SCRAM_SHA_256, Some(&cert)),
            Ok(&[][..])
        );
        let y = first("y,,n=,r=a");
        assert_eq!(
            bound_data(&y, scram::SCRAM_SHA_256, Some(&cert)),
            Err(Refusal::BindingNegotiation),
            "a downgrade when binding was offered"
        );
        assert_eq!(bound_data(&y, scram::SCRAM_SHA_256, None), Ok(&[][..]));
    }

    #[test]
    fn wrong_proofs_differ() {
        assert_ne!(wrong_proof(), wrong_proof());
    }
}

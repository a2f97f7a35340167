//! pgcached logging in to PostgreSQL itself: as its own role for its replication connections,
//! and as a client's role on a read replica ([`login_as`], with what that client's login left,
//! [`crate::auth::credential`]).
//!
//! Client sessions relay their own login; pgcached's own connections use the credentials of
//! `--upstream`. The catalog connection goes through tokio-postgres; a replication connection
//! (`replication=database`) cannot, so this module does the login itself: TCP and TLS exactly
//! as the sessions' connections ([`Connector`]: same `sslmode`, `sslrootcert`, the binary's one
//! rustls provider), a StartupMessage, then whichever exchange the server asks for
//! (AuthenticationOk, cleartext, md5, SCRAM-SHA-256 without channel binding, whose gs2 flag `n`
//! PostgreSQL accepts over TLS too), up to the first ReadyForQuery. The authenticated stream is
//! handed on as is.

use std::time::Duration;

use bytes::BytesMut;
use pgcached_invalidation::wire::{MessageReader, ReadError, ServerError};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use super::connect::{Connector, UpstreamError};
use crate::auth::credential::Secret;
use crate::auth::scram::{self, ClientKey, Verifier};
use crate::net::Stream;

/// How long the login may take once connected.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Authentication codes of the `R` message.
const AUTH_OK: i32 = 0;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// The only SASL mechanism pgcached speaks.
const SCRAM: &str = "SCRAM-SHA-256";

/// Who logs in where.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// pgcached's role.
    pub user: &'a str,
    /// Its password, if `--upstream` has one.
    pub password: Option<&'a str>,
    /// The database.
    pub database: &'a str,
    /// `application_name`, as `pg_stat_activity` shows it.
    pub application_name: &'a str,
    /// Ask for a logical replication connection (`replication=database`).
    pub replication: bool,
}

/// Why the login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// TCP or TLS failed.
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    /// PostgreSQL refused (wrong password, no pg_hba.conf line, no REPLICATION attribute, no
    /// free WAL sender, ...).
    #[error("PostgreSQL refused pgcached's login: {0}")]
    Server(ServerError),
    /// PostgreSQL asks for a password and `--upstream` has none.
    #[error("PostgreSQL asks for a password and the --upstream URL has none")]
    NoPassword,
    /// PostgreSQL asks for a method pgcached does not speak.
    #[error("PostgreSQL asks for authentication method {0}, which pgcached does not support (use scram-sha-256, md5 or password)")]
    UnsupportedMethod(String),
    /// The SCRAM exchange failed (for instance, the server's proof was wrong).
    #[error("SCRAM authentication failed: {0}")]
    Scram(std::io::Error),
    /// The connection failed or broke the protocol during the login.
    #[error("lost PostgreSQL during pgcached's login: {0}")]
    Lost(String),
    /// Something PostgreSQL does not send during a login.
    #[error("unexpected message {0:#04x} during pgcached's login")]
    Unexpected(u8),
    /// The login took too long.
    #[error("pgcached's login to PostgreSQL timed out")]
    Timeout,
}

impl From<ReadError> for LoginError {
    fn from(error: ReadError) -> LoginError {
        LoginError::Lost(error.to_string())
    }
}

/// Connects and logs in; returns the stream right after the first ReadyForQuery.
pub async fn login(connector: &Connector, login: Login<'_>) -> Result<Stream, LoginError> {
    let mut parameters = vec![
        ("user", login.user),
        ("database", login.database),
        ("application_name", login.application_name),
        ("client_encoding", "UTF8"),
    ];
    if login.replication {
        parameters.push(("replication", "database"));
    }
    let secret = login.password.map_or(Secret::Nothing, Secret::Password);
    let (stream, _) = login_as(connector, &parameters, login.user, secret).await?;
    Ok(stream)
}

/// A backend's cancel key (BackendKeyData): process id and secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackendKey {
    /// The backend's process id.
    pub(crate) pid: i32,
    /// Its secret key.
    pub(crate) secret: i32,
}

/// Connects and logs in as `user` with these startup parameters (`user` among them),
/// presenting `secret`; returns the stream right after the first ReadyForQuery, and the
/// backend's cancel key when the server sent one.
pub(crate) async fn login_as(
    connector: &Connector,
    parameters: &[(&str, &str)],
    user: &str,
    secret: Secret<'_>,
) -> Result<(Stream, Option<BackendKey>), LoginError> {
    let mut stream = connector.connect().await?;
    match tokio::time::timeout(
        LOGIN_TIMEOUT,
        authenticate(&mut stream, parameters, user, secret),
    )
    .await
    {
        Ok(Ok(key)) => Ok((stream, key)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(LoginError::Timeout),
    }
}

/// A SCRAM exchange in progress: from a password, or from a client key.
enum Exchange<'a> {
    Password(ScramSha256),
    Key {
        key: &'a ClientKey,
        verifier: &'a Verifier,
        client_first_bare: String,
        nonce: String,
        /// Set once the server's first message is answered.
        auth_message: Option<String>,
    },
}

impl<'a> Exchange<'a> {
    /// The first message of an exchange made with `secret`.
    fn start(secret: &Secret<'a>) -> Result<(Exchange<'a>, Vec<u8>), LoginError> {
        match secret {
            Secret::Nothing => Err(LoginError::NoPassword),
            Secret::Password(password) => {
                // No channel binding: gs2 flag `n`, which PostgreSQL accepts over TLS (only
                // `y` is refused there, as a downgrade).
                let exchange = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                let first = exchange.message().to_vec();
                Ok((Exchange::Password(exchange), first))
            }
            Secret::ScramKey(key, verifier) => {
                let mut random = [0u8; 18];
                getrandom::getrandom(&mut random).map_err(|e| LoginError::Lost(e.to_string()))?;
                let nonce =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, random);
                // PostgreSQL takes the role from the startup packet, not from `n=`.
                let client_first_bare = format!("n=,r={nonce}");
                let first = format!("n,,{client_first_bare}").into_bytes();
                Ok((
                    Exchange::Key {
                        key,
                        verifier,
                        client_first_bare,
                        nonce,
                        auth_message: None,
                    },
                    first,
                ))
            }
        }
    }

    /// The answer to the server's first message.
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, LoginError> {
        match self {
            Exchange::Password(exchange) => {
                exchange.update(data).map_err(LoginError::Scram)?;
                Ok(exchange.message().to_vec())
            }
            Exchange::Key {
                key,
                verifier,
                client_first_bare,
                nonce,
                auth_message,
            } => {
                let server_first = scram::parse_server_first(data)
                    .map_err(|e| LoginError::Scram(std::io::Error::other(e.to_string())))?;
                if !server_first.nonce.starts_with(nonce.as_str()) {
                    return Err(LoginError::Scram(std::io::Error::other(
                        "the server's nonce does not extend pgcached's",
                    )));
                }
                if !verifier.matches(&server_first) {
                    return Err(LoginError::Scram(std::io::Error::other(
                        "the role's password changed since the client logged in",
                    )));
                }
                let without_proof =
                    scram::client_final_without_proof("n,,", b"", &server_first.nonce);
                let message =
                    scram::auth_message(client_first_bare, &server_first.raw, &without_proof);
                let proof = scram::client_proof(key, &verifier.stored_key, &message);
                *auth_message = Some(message);
                Ok(scram::with_proof(&without_proof, &proof).into_bytes())
            }
        }
    }

    /// Checks the server's final message.
    fn finish(&mut self, data: &[u8]) -> Result<(), LoginError> {
        match self {
            Exchange::Password(exchange) => exchange.finish(data).map_err(LoginError::Scram),
            Exchange::Key {
                verifier,
                auth_message: Some(message),
                ..
            } if scram::is_server_final(&verifier.server_key, message, data) => Ok(()),
            Exchange::Key { .. } => Err(LoginError::Scram(std::io::Error::other(
                "the server's SCRAM signature does not match the role's verifier",
            ))),
        }
    }
}

async fn send(stream: &mut Stream, bytes: &[u8]) -> Result<(), LoginError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| LoginError::Lost(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| LoginError::Lost(e.to_string()))
}

fn io_error(e: std::io::Error) -> LoginError {
    LoginError::Lost(e.to_string())
}

async fn authenticate(
    stream: &mut Stream,
    parameters: &[(&str, &str)],
    user: &str,
    secret: Secret<'_>,
) -> Result<Option<BackendKey>, LoginError> {
    let mut key = None;
    let mut buffer = BytesMut::new();
    frontend::startup_message(parameters.iter().copied(), &mut buffer).map_err(io_error)?;
    send(stream, &buffer).await?;
    let mut reader = MessageReader::default();
    let mut scram: Option<Exchange<'_>> = None;
    loop {
        let message = reader.next(stream).await?;
        let body = &message.body[..];
        match message.tag {
            b'R' => {
                let code = body
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(LoginError::Unexpected(b'R'))?;
                let data = &body[4..];
                buffer.clear();
                match code {
                    AUTH_OK => {}
                    AUTH_CLEARTEXT => {
                        let Secret::Password(password) = &secret else {
                            return Err(LoginError::NoPassword);
                        };
                        frontend::password_message(password.as_bytes(), &mut buffer)
                            .map_err(io_error)?;
                        send(stream, &buffer).await?;
                    }
                    AUTH_MD5 => {
                        let Secret::Password(password) = &secret else {
                            return Err(LoginError::NoPassword);
                        };
                        let salt: [u8; 4] = data
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or(LoginError::Unexpected(b'R'))?;
                        let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                        frontend::password_message(hash.as_bytes(), &mut buffer)
                            .map_err(io_error)?;
                        send(stream, &buffer).await?;
                    }
                    AUTH_SASL => {
                        let offered: Vec<&[u8]> =
                            data.split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
                        if !offered.contains(&SCRAM.as_bytes()) {
                            let names: Vec<String> = offered
                                .iter()
                                .map(|m| String::from_utf8_lossy(m).into_owned())
                                .collect();
                            return Err(LoginError::UnsupportedMethod(format!(
                                "SASL ({})",
                                names.join(", ")
                            )));
                        }
                        let (exchange, first) = Exchange::start(&secret)?;
                        frontend::sasl_initial_response(SCRAM, &first, &mut buffer)
                            .map_err(io_error)?;
                        send(stream, &buffer).await?;
                        scram = Some(exchange);
                    }
                    AUTH_SASL_CONTINUE => {
                        let exchange = scram.as_mut().ok_or(LoginError::Unexpected(b'R'))?;
                        let answer = exchange.update(data)?;
                        frontend::sasl_response(&answer, &mut buffer).map_err(io_error)?;
                        send(stream, &buffer).await?;
                    }
                    AUTH_SASL_FINAL => {
                        let exchange = scram.as_mut().ok_or(LoginError::Unexpected(b'R'))?;
                        exchange.finish(data)?;
                    }
                    other => {
                        let name = match other {
                            2 => "Kerberos V5".to_owned(),
                            7 | 8 => "GSSAPI".to_owned(),
                            9 => "SSPI".to_owned(),
                            code => format!("code {code}"),
                        };
                        return Err(LoginError::UnsupportedMethod(name));
                    }
                }
            }
            b'E' => return Err(LoginError::Server(ServerError::parse(body))),
            b'Z' => return Ok(key),
            b'K' => {
                key = match (body.get(..4), body.get(4..8)) {
                    (Some(pid), Some(secret)) => Some(BackendKey {
                        pid: i32::from_be_bytes([pid[0], pid[1], pid[2], pid[3]]),
                        secret: i32::from_be_bytes([secret[0], secret[1], secret[2], secret[3]]),
                    }),
                    _ => None,
                }
            }
            b'S' | b'N' => {}
            tag => return Err(LoginError::Unexpected(tag)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_fix() {
        let refused = LoginError::Server(ServerError {
            severity: "FATAL".to_owned(),
            code: "28P01".to_owned(),
            message: "password authentication failed for user \"pgcached\"".to_owned(),
            hint: None,
        });
        assert!(refused.to_string().contains("28P01"), "{refused}");
        assert!(LoginError::NoPassword.to_string().contains("--upstream"));
        assert!(LoginError::UnsupportedMethod("GSSAPI".to_owned())
            .to_string()
            .contains("scram-sha-256"));
    }
}

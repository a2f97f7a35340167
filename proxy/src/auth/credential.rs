//! What a client's login leaves pgcached able to do as that role elsewhere: log in to a read
//! replica ([`crate::replica`]) with the same identity PostgreSQL just accepted.
//!
//! PostgreSQL checked the login; pgcached only keeps what the exchange showed it, for the life
//! of the session, in memory, never logged:
//!
//! - nothing was asked (`trust`): nothing is needed;
//! - a password sent in clear (method `password`): that password;
//! - SCRAM, verified by pgcached itself (pass-through for TLS clients): the client key the
//!   proof revealed, with the verifier it was checked against;
//! - SCRAM relayed: the exchange itself. With the role's verifier (the auth query), the client
//!   key is recovered from the proof exactly as in pass-through, when a replica needs it;
//! - md5, or a method pgcached does not take part in: nothing usable. The md5 answer is bound
//!   to PostgreSQL's salt and cannot be replayed; such sessions read from the primary only.

use std::sync::Arc;

use super::scram::{self, ClientKey, Verifier, KEY_LEN};
use super::verifiers::{Fetched, Verifiers};

/// What a session's login lets pgcached present as the same role.
#[derive(Default)]
pub(crate) enum Credential {
    /// PostgreSQL asked for no password.
    Nothing,
    /// The password the client sent in clear.
    Password(String),
    /// The client key of a SCRAM login pgcached verified.
    ScramKey {
        /// `ClientKey`: signs any later exchange with the same verifier.
        key: ClientKey,
        /// The role's verifier the proof was checked against.
        verifier: Arc<Verifier>,
    },
    /// A relayed SCRAM exchange, from which the key can be recovered with the role's verifier.
    ScramExchange {
        /// `client-first-bare , server-first , client-final-without-proof`.
        auth_message: String,
        /// The client's proof.
        proof: [u8; KEY_LEN],
    },
    /// Nothing pgcached can present (md5, or an exchange it did not follow).
    #[default]
    Unavailable,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Nothing => "Credential::Nothing",
            Credential::Password(_) => "Credential::Password(***)",
            Credential::ScramKey { .. } => "Credential::ScramKey(***)",
            Credential::ScramExchange { .. } => "Credential::ScramExchange(***)",
            Credential::Unavailable => "Credential::Unavailable",
        })
    }
}

/// What a login to another server presents, once resolved.
pub(crate) enum Secret<'a> {
    /// No password (the server must not ask for one).
    Nothing,
    /// A password: answers cleartext, md5 and SCRAM requests.
    Password(&'a str),
    /// A SCRAM client key: answers SCRAM requests made from this verifier only.
    ScramKey(&'a ClientKey, &'a Verifier),
}

impl Credential {
    /// True when a login elsewhere may be tried with it.
    pub(crate) fn is_usable(&self, verifiers: Option<&Verifiers>) -> bool {
        match self {
            Credential::Nothing | Credential::Password(_) | Credential::ScramKey { .. } => true,
            Credential::ScramExchange { .. } => verifiers.is_some(),
            Credential::Unavailable => false,
        }
    }

    /// Turns a relayed exchange into its client key (with `role`'s verifier); other kinds are
    /// kept as they are. `None` when the key cannot be recovered (no verifier, or the
    /// password changed since the login).
    pub(crate) async fn resolve(
        &self,
        role: &str,
        verifiers: Option<&Verifiers>,
    ) -> Option<Resolved<'_>> {
        match self {
            Credential::Nothing => Some(Resolved::Borrowed(Secret::Nothing)),
            Credential::Password(password) => Some(Resolved::Borrowed(Secret::Password(password))),
            Credential::ScramKey { key, verifier } => {
                Some(Resolved::Borrowed(Secret::ScramKey(key, verifier)))
            }
            Credential::ScramExchange {
                auth_message,
                proof,
            } => {
                let Ok(Fetched::Verifier(verifier)) = verifiers?.get(role).await else {
                    return None;
                };
                let key = scram::recover_client_key(&verifier, auth_message, proof)?;
                Some(Resolved::Recovered(key, verifier))
            }
            Credential::Unavailable => None,
        }
    }
}

/// A credential ready to present.
pub(crate) enum Resolved<'a> {
    /// Presented as the session holds it.
    Borrowed(Secret<'a>),
    /// A key recovered now from a relayed exchange.
    Recovered(ClientKey, Arc<Verifier>),
}

impl Resolved<'_> {
    /// The secret to present.
    pub(crate) fn secret(&self) -> Secret<'_> {
        match self {
            Resolved::Borrowed(Secret::Nothing) => Secret::Nothing,
            Resolved::Borrowed(Secret::Password(password)) => Secret::Password(password),
            Resolved::Borrowed(Secret::ScramKey(key, verifier)) => Secret::ScramKey(key, verifier),
            Resolved::Recovered(key, verifier) => Secret::ScramKey(key, verifier),
        }
    }
}

/// A relayed SCRAM exchange, collected as its messages pass.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    client_first_bare: Option<String>,
    server_first: Option<String>,
    client_final: Option<(String, [u8; KEY_LEN])>,
}

impl Transcript {
    /// The client's first message (its data, GS2 header included).
    pub(crate) fn client_first(&mut self, data: &[u8]) {
        self.client_first_bare = scram::parse_client_first(data).ok().map(|f| f.bare);
    }

    /// PostgreSQL's first message.
    pub(crate) fn server_first(&mut self, data: &[u8]) {
        self.server_first = std::str::from_utf8(data).ok().map(str::to_owned);
    }

    /// The client's final message.
    pub(crate) fn client_final(&mut self, data: &[u8]) {
        self.client_final = scram::parse_client_final(data)
            .ok()
            .map(|last| (last.without_proof, last.proof));
    }

    /// The credential a complete exchange leaves.
    pub(crate) fn into_credential(self) -> Credential {
        match (self.client_first_bare, self.server_first, self.client_final) {
            (Some(first), Some(server), Some((without_proof, proof))) => {
                Credential::ScramExchange {
                    auth_message: scram::auth_message(&first, &server, &without_proof),
                    proof,
                }
            }
            _ => Credential::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let text = format!("{:?}", Credential::Password("hunter2".to_owned()));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn an_incomplete_exchange_leaves_nothing_usable() {
        let mut transcript = Transcript::default();
        transcript.client_first(b"n,,n=,r=abc");
        transcript.server_first(b"r=abcdef,s=c2FsdA==,i=4096");
        assert!(matches!(
            transcript.into_credential(),
            Credential::Unavailable
        ));
        assert!(!Credential::Unavailable.is_usable(None));
        assert!(Credential::Nothing.is_usable(None));
        let exchange = Credential::ScramExchange {
            auth_message: String::new(),
            proof: [0; KEY_LEN],
        };
        assert!(!exchange.is_usable(None), "needs the role's verifier");
    }
}

//! SCRAM verifiers of client roles, read with the auth query on pgcached's control connection.
//!
//! Only superusers may read `pg_authid`, so the operator installs a `SECURITY DEFINER` function
//! once (README, "Logins") and grants pgcached's role the right to call it; pgcached's role then
//! needs no superuser. The default auth query is [`DEFAULT_AUTH_QUERY`]; it runs in the database
//! of `--upstream` (or `postgres`) with the role name as `$1` and returns the verifier text, or
//! no row / NULL when the role has no SCRAM verifier.
//!
//! Verifiers are cached for [`CACHE_FOR`]. A cached verifier is only ever used when it matches
//! the salt and iteration count PostgreSQL itself just sent, and a proof that fails against a
//! cached verifier is checked again against a fresh one, so a role whose password changed logs
//! in with the new one at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, warn};

use super::scram::Verifier;
use crate::upstream::control::{ControlConnections, ControlError};

/// The auth query pgcached runs unless `--auth-query` says otherwise.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT public.pgcached_scram_verifier($1)";

/// The one-time SQL, run as a superuser in pgcached's database, that lets `role` (pgcached's
/// own) read SCRAM verifiers with [`DEFAULT_AUTH_QUERY`] without being a superuser.
pub fn install_sql(role: &str) -> String {
    let role = role.replace('"', "\"\"");
    format!(
        "CREATE OR REPLACE FUNCTION public.pgcached_scram_verifier(role_name text) RETURNS text\n\
         \x20   LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog\n\
         \x20   AS $$ SELECT rolpassword FROM pg_authid\n\
         \x20         WHERE rolname = role_name AND rolcanlogin\n\
         \x20           AND rolpassword LIKE 'SCRAM-SHA-256$%' $$;\n\
         REVOKE ALL ON FUNCTION public.pgcached_scram_verifier(text) FROM PUBLIC;\n\
         GRANT EXECUTE ON FUNCTION public.pgcached_scram_verifier(text) TO \"{role}\";\n"
    )
}

/// How long a fetched verifier is reused without asking again.
const CACHE_FOR: Duration = Duration::from_secs(30);
/// Roles remembered at most; past this the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Why the auth query gave no answer, and what the operator should do.
#[derive(Debug, thiserror::Error)]
pub enum AuthQueryError {
    /// No control connection.
    #[error("{0}")]
    Control(#[from] ControlError),
    /// The function (or its schema) is not installed.
    #[error(
        "the auth query failed ({message}); install pgcached's verifier function as described \
         in README (\"Logins\"), or set --auth-query"
    )]
    NotInstalled { message: String },
    /// pgcached's role may not call it.
    #[error(
        "the auth query is not permitted ({message}); GRANT EXECUTE on the verifier function \
         to pgcached's role"
    )]
    NotPermitted { message: String },
    /// Any other failure.
    #[error("the auth query failed: {0}")]
    Query(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for AuthQueryError {
    fn from(error: tokio_postgres::Error) -> AuthQueryError {
        let message = error
            .as_db_error()
            .map(|db| db.message().to_owned())
            .unwrap_or_else(|| error.to_string());
        match error.code().map(|c| c.code()) {
            // undefined_function, invalid_schema_name, undefined_table.
            Some("42883" | "3F000" | "42P01") => AuthQueryError::NotInstalled { message },
            // insufficient_privilege.
            Some("42501") => AuthQueryError::NotPermitted { message },
            _ => AuthQueryError::Query(error),
        }
    }
}

/// What the auth query said about a role.
#[derive(Debug, Clone)]
pub(crate) enum Fetched {
    /// Its SCRAM-SHA-256 verifier.
    Verifier(Arc<Verifier>),
    /// No such role, no password, or not a SCRAM verifier: the login cannot be verified here.
    Unverifiable,
}

/// The verifier source shared by every session.
pub struct Verifiers {
    control: Arc<ControlConnections>,
    database: String,
    query: String,
    cached: Mutex<HashMap<String, (Fetched, Instant)>>,
    /// A failure was already logged as a warning.
    warned: AtomicBool,
}

impl Verifiers {
    /// Verifiers read with `query` in `database` over `control`.
    pub fn new(control: Arc<ControlConnections>, database: String, query: String) -> Verifiers {
        Verifiers {
            control,
            database,
            query,
            cached: Mutex::new(HashMap::new()),
            warned: AtomicBool::new(false),
        }
    }

    /// The role's verifier, from the cache when recent enough.
    pub(crate) async fn get(&self, role: &str) -> Result<Fetched, AuthQueryError> {
        let cached = self.cached.lock().get(role).cloned();
        match cached {
            Some((fetched, at)) if at.elapsed() < CACHE_FOR => Ok(fetched),
            _ => self.fetch(role).await,
        }
    }

    /// The role's verifier, asked again now.
    pub(crate) async fn fetch(&self, role: &str) -> Result<Fetched, AuthQueryError> {
        let result = self.query(role).await;
        match &result {
            Ok(fetched) => {
                let mut cached = self.cached.lock();
                if cached.len() >= MAX_CACHED {
                    cached.clear();
                }
                cached.insert(role.to_owned(), (fetched.clone(), Instant::now()));
                self.warned.store(false, Ordering::Relaxed);
            }
            Err(error) => {
                self.cached.lock().remove(role);
                if self.warned.swap(true, Ordering::Relaxed) {
                    debug!("SCRAM verifiers unavailable: {error}");
                } else {
                    warn!("TLS clients' SCRAM logins are relayed without channel binding: {error}");
                }
            }
        }
        result
    }

    async fn query(&self, role: &str) -> Result<Fetched, AuthQueryError> {
        let client = self.control.client(&self.database).await?;
        let rows = client.query(self.query.as_str(), &[&role]).await?;
        let text: Option<String> = match rows.first() {
            Some(row) => row.try_get(0)?,
            None => None,
        };
        Ok(match text.as_deref().and_then(Verifier::parse) {
            Some(verifier) => Fetched::Verifier(Arc::new(verifier)),
            None => Fetched::Unverifiable,
        })
    }
}

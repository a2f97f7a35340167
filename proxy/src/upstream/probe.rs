//! One check of one upstream host: its role (`pg_is_in_recovery()`, `transaction_read_only`)
//! and which server it is (`system_identifier`, timeline), over a tokio-postgres connection
//! with pgcached's own credentials that is kept for the next check.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;
use tracing::debug;

use super::primary::{Identity, Role};
use super::url::{SslMode, UpstreamUrl};

/// How long a check of one host may take (connect, login, query).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a check asks a host: its role.
const ROLE_SQL: &str = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')";

/// Which server it is: the system identifier, and the timeline (on a primary the one of its
/// current WAL file, which moves at promotion; `pg_control_checkpoint()` only follows at the
/// next checkpoint).
pub(crate) const IDENTITY_SQL: &str =
    "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
     CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END";

/// The identity of a server whose identity functions pgcached may not call: a change of
/// server on the same host is then noticed only by the change streams (which drop what they
/// fed and start again on the new server).
pub(crate) const UNKNOWN_SYSTEM: &str = "unknown";

/// Checks host `index`, over its kept connection or a new one.
pub(super) async fn probe(
    url: &UpstreamUrl,
    index: usize,
    kept: &mut Option<tokio_postgres::Client>,
) -> (Role, Option<Identity>) {
    if kept.as_ref().is_none_or(|client| client.is_closed()) {
        match tokio::time::timeout(PROBE_TIMEOUT, open(url, index)).await {
            Ok(Ok(client)) => *kept = Some(client),
            Ok(Err(e)) => return (Role::Down(e.to_string()), None),
            Err(_) => return (Role::Down("timed out".to_owned()), None),
        }
    }
    let Some(client) = kept.as_ref() else {
        return (Role::Down("no connection".to_owned()), None);
    };
    let role = match tokio::time::timeout(PROBE_TIMEOUT, client.query_one(ROLE_SQL, &[])).await {
        Ok(Ok(row)) => row,
        Ok(Err(e)) => {
            *kept = None;
            return (Role::Down(e.to_string()), None);
        }
        Err(_) => {
            *kept = None;
            return (Role::Down("timed out".to_owned()), None);
        }
    };
    let role = match (role.try_get::<_, bool>(0), role.try_get::<_, String>(1)) {
        (Ok(true), _) => Role::Standby,
        (Ok(false), Ok(read_only)) if read_only == "on" => Role::ReadOnly,
        (Ok(false), Ok(_)) => Role::Primary,
        (Err(e), _) | (_, Err(e)) => {
            debug!(error = %e, "unexpected answer to the upstream check");
            return (Role::Down(e.to_string()), None);
        }
    };
    let identity =
        match tokio::time::timeout(PROBE_TIMEOUT, client.query_one(IDENTITY_SQL, &[])).await {
            Ok(Ok(row)) => match (
                row.try_get::<_, String>(0),
                row.try_get::<_, Option<i32>>(1),
            ) {
                (Ok(system_id), Ok(timeline)) => Identity {
                    system_id,
                    timeline: timeline.unwrap_or(0),
                },
                (Err(e), _) | (_, Err(e)) => {
                    debug!(error = %e, "unexpected answer to the upstream identity check");
                    Identity {
                        system_id: UNKNOWN_SYSTEM.to_owned(),
                        timeline: 0,
                    }
                }
            },
            Ok(Err(e)) if e.as_db_error().is_some() => {
                // Not allowed here (a managed service may restrict pg_control_system()).
                debug!(error = %e, "upstream identity unavailable");
                Identity {
                    system_id: UNKNOWN_SYSTEM.to_owned(),
                    timeline: 0,
                }
            }
            Ok(Err(e)) => {
                *kept = None;
                return (Role::Down(e.to_string()), None);
            }
            Err(_) => {
                *kept = None;
                return (Role::Down("timed out".to_owned()), None);
            }
        };
    (role, Some(identity))
}

/// Why a host could not be checked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// Connect, login or TLS failed.
    #[error("{0}")]
    Connect(#[from] tokio_postgres::Error),
    /// The TLS settings are unusable.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsConfigError),
    /// No user in the URL.
    #[error("no user in --upstream")]
    NoUser,
}

/// A control connection to host `index` for checks.
async fn open(url: &UpstreamUrl, index: usize) -> Result<tokio_postgres::Client, ProbeError> {
    connect(url, index, "pgcached monitor").await
}

/// A connection with pgcached's own credentials to host `index` of `url`, as `pg_stat_activity`
/// shows `application_name`.
pub(crate) async fn connect(
    url: &UpstreamUrl,
    index: usize,
    application_name: &str,
) -> Result<tokio_postgres::Client, ProbeError> {
    let host = &url.hosts[index];
    let user = url.user.as_deref().ok_or(ProbeError::NoUser)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host.name)
        .port(host.port)
        .dbname(url.database.as_deref().unwrap_or("postgres"))
        .user(user)
        .application_name(application_name)
        .connect_timeout(PROBE_TIMEOUT);
    if let Some(password) = &url.password {
        config.password(password);
    }
    let client = match crate::tls::connector::for_upstream(url)? {
        None => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            client
        }
        Some(tls) => {
            config.ssl_mode(match url.sslmode {
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(Arc::unwrap_or_clone(tls));
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

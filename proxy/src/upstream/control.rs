//! pgcached's own control connections to PostgreSQL, one per database, opened on first use.
//!
//! The catalog reader and the SCRAM verifier lookup both query PostgreSQL as pgcached's own
//! role (the credentials in `--upstream`), never as a client. They share these connections:
//! tokio-postgres clients, with the same TLS policy (`sslmode`, `sslrootcert`) as the sessions'
//! upstream connections. A connection that closed, or that was opened to another server than
//! the current one ([`super::primary`]), is opened again on the next use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::NoTls;
use tracing::debug;

use super::primary::Upstreams;
use super::url::{SslMode, UpstreamUrl};

/// How long opening a control connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a control connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// `--upstream` has no user for pgcached's own connections.
    #[error(
        "the --upstream URL has no user: add pgcached's own credentials \
         (postgres://pgcached:secret@host:port)"
    )]
    NoCredentials,
    /// The connection or its login failed.
    #[error("connection to database {database:?} as pgcached's own role failed: {source}")]
    Connect {
        database: String,
        source: tokio_postgres::Error,
    },
    /// The TLS settings of the upstream URL are unusable.
    #[error("control connection TLS: {0}")]
    Tls(#[from] crate::tls::TlsConfigError),
    /// The database was let go of moments ago, for a statement that needs it free.
    #[error("database {0:?} is being dropped or renamed")]
    Released(String),
}

/// Control connections, one per database, each with the era it was opened in.
pub struct ControlConnections {
    upstreams: Arc<Upstreams>,
    clients: Mutex<HashMap<String, (u64, Arc<tokio_postgres::Client>)>>,
    /// Databases let go of, not connected to again before these instants.
    released: parking_lot::Mutex<HashMap<String, std::time::Instant>>,
}

impl ControlConnections {
    /// Connections to the current host of `upstreams`, with the credentials and TLS settings
    /// of its URL.
    pub fn new(upstreams: Arc<Upstreams>) -> ControlConnections {
        ControlConnections {
            upstreams,
            clients: Mutex::new(HashMap::new()),
            released: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The hosts the connections go to.
    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// The upstream URL the connections use.
    pub fn upstream(&self) -> &UpstreamUrl {
        self.upstreams.url()
    }

    /// The open connection to `database`, opened now if there is none.
    pub async fn client(
        &self,
        database: &str,
    ) -> Result<Arc<tokio_postgres::Client>, ControlError> {
        {
            let mut released = self.released.lock();
            released.retain(|_, until| *until > std::time::Instant::now());
            if released.contains_key(database) {
                return Err(ControlError::Released(database.to_owned()));
            }
        }
        let mut clients = self.clients.lock().await;
        let era = self.upstreams.era();
        if let Some((opened, client)) = clients.get(database) {
            if !client.is_closed() && *opened == era {
                return Ok(Arc::clone(client));
            }
        }
        let client = Arc::new(self.open(database).await?);
        clients.insert(database.to_owned(), (era, Arc::clone(&client)));
        Ok(client)
    }

    /// Closes the connection to `database` and opens none to it for `quiet`: a statement about
    /// to drop or rename it needs it free ([`crate::release`]). A connection still in use by
    /// a query in flight closes when that query is done.
    pub(crate) async fn release(&self, database: &str, quiet: Duration) {
        self.released
            .lock()
            .insert(database.to_owned(), std::time::Instant::now() + quiet);
        self.clients.lock().await.remove(database);
    }

    async fn open(&self, database: &str) -> Result<tokio_postgres::Client, ControlError> {
        let upstream = self.upstreams.url();
        let Some(user) = &upstream.user else {
            return Err(ControlError::NoCredentials);
        };
        let host = self.upstreams.current_or_wait().await;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&host.name)
            .port(host.port)
            .dbname(database)
            .user(user)
            .application_name("pgcached control")
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(password) = &upstream.password {
            config.password(password);
        }
        let failed = |source| ControlError::Connect {
            database: database.to_owned(),
            source,
        };
        let name = database.to_owned();
        let report_end = move |result: Result<(), tokio_postgres::Error>| {
            if let Err(e) = result {
                debug!(database = %name, error = %e, "control connection closed");
            }
        };
        match crate::tls::connector::for_upstream(upstream)? {
            None => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
                tokio::spawn(async move { report_end(connection.await) });
                Ok(client)
            }
            Some(tls) => {
                config.ssl_mode(match upstream.sslmode {
                    SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                    _ => tokio_postgres::config::SslMode::Require,
                });
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(Arc::unwrap_or_clone(tls));
                let (client, connection) = config.connect(tls).await.map_err(failed)?;
                tokio::spawn(async move { report_end(connection.await) });
                Ok(client)
            }
        }
    }
}

//! What a change stream is given: pgcached's own replication login, and the catalog's relation
//! names.
//!
//! Each replication connection belongs to the era it was opened in ([`crate::upstream::primary`]):
//! it is [`Fenced`], so it fails once another server is current, and its era is recorded per
//! database ([`ConnectedEras`]) so that the sink ignores what a stream of an older era still
//! reports before its connection fails.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use pgcached_invalidation::{
    BoxFuture, Connect, ConnectError, Problem, RelationNames, ReplicationIo,
};

use crate::catalog::Catalog;
use crate::upstream::fenced::Fenced;
use crate::upstream::own_login::{self, Login, LoginError};
use crate::upstream::{Connector, UpstreamError, Upstreams};

/// Per database, the era of its stream's latest connection.
#[derive(Debug)]
pub struct ConnectedEras {
    upstreams: Arc<Upstreams>,
    connected: Mutex<HashMap<String, u64>>,
}

impl ConnectedEras {
    /// Eras of `upstreams`.
    pub fn new(upstreams: Arc<Upstreams>) -> ConnectedEras {
        ConnectedEras {
            upstreams,
            connected: Mutex::new(HashMap::new()),
        }
    }

    /// The era of `database`'s latest replication connection (0 before any).
    pub fn of(&self, database: &str) -> u64 {
        self.connected.lock().get(database).copied().unwrap_or(0)
    }

    /// Holds off a change of server while a report of `database`'s stream is applied; `None`
    /// if the stream's connection belongs to an older era.
    pub fn hold(&self, database: &str) -> Option<parking_lot::RwLockReadGuard<'_, ()>> {
        self.upstreams.hold(self.of(database))
    }

    pub(super) fn set(&self, database: &str, era: u64) {
        self.connected.lock().insert(database.to_owned(), era);
    }
}

/// `application_name` of the replication connections (`pg_stat_replication` shows it).
pub const APPLICATION_NAME: &str = "pgcached replication";

/// Opens replication connections with the credentials of `--upstream`.
pub struct OwnLogin {
    /// TCP and TLS, as for client sessions.
    pub connector: Connector,
    /// pgcached's role.
    pub user: String,
    /// Its password, if given.
    pub password: Option<String>,
    /// Where each connection's era is recorded.
    pub eras: Arc<ConnectedEras>,
}

impl Connect for OwnLogin {
    fn connect<'a>(
        &'a self,
        database: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn ReplicationIo>, ConnectError>> {
        Box::pin(async move {
            let login = Login {
                user: &self.user,
                password: self.password.as_deref(),
                database,
                application_name: APPLICATION_NAME,
                replication: true,
            };
            // The fence first: a switch while connecting leaves this connection in the old era.
            let fence = self.connector.fence();
            self.eras.set(database, fence.era());
            match own_login::login(&self.connector, login).await {
                Ok(stream) => Ok(Box::new(Fenced::new(stream, fence)) as Box<dyn ReplicationIo>),
                Err(error) => Err(connect_error(error)),
            }
        })
    }
}

/// Sorts a login failure into what the stream reports.
pub fn connect_error(error: LoginError) -> ConnectError {
    let detail = error.to_string();
    match error {
        LoginError::Connect(
            UpstreamError::TlsRefused { .. }
            | UpstreamError::Handshake { .. }
            | UpstreamError::BadSslAnswer { .. }
            | UpstreamError::ServerName(_),
        ) => ConnectError::Problem(Problem::Tls { detail }),
        LoginError::Connect(_) | LoginError::Lost(_) | LoginError::Timeout => {
            ConnectError::Transient(detail)
        }
        LoginError::Server(server) => ConnectError::Server(server),
        LoginError::NoPassword | LoginError::UnsupportedMethod(_) | LoginError::Scram(_) => {
            ConnectError::Problem(Problem::Authentication { detail })
        }
        LoginError::Unexpected(_) => ConnectError::Transient(detail),
    }
}

/// The catalog's relation names, for test_decoding.
pub struct CatalogNames(pub Arc<Catalog>);

impl RelationNames for CatalogNames {
    fn load<'a>(
        &'a self,
        database: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, u32>, String>> {
        Box::pin(async move {
            self.0
                .relation_names(database)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn version(&self, database: &str) -> u64 {
        self.0.version(database)
    }
}

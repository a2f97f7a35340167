//! What a change stream is given: pgcached's own replication login, and the catalog's relation
//! names.

use std::collections::HashMap;
use std::sync::Arc;

use pgcached_invalidation::{
    BoxFuture, Connect, ConnectError, Problem, RelationNames, ReplicationIo,
};

use crate::catalog::Catalog;
use crate::upstream::own_login::{self, Login, LoginError};
use crate::upstream::{Connector, UpstreamError};

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
            match own_login::login(&self.connector, login).await {
                Ok(stream) => Ok(Box::new(stream) as Box<dyn ReplicationIo>),
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

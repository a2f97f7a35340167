//! The connection to Redis/Valkey: one server (a connection manager that reconnects by
//! itself) or a cluster (redis-rs's cluster connection, which follows the cluster's layout).
//! Every call is bounded by a timeout; errors are sorted into [`FailureKind`]s.

use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisError, Script};

use super::url::SharedUrl;

/// Why a call to the shared tier failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No answer within the call's bound.
    Timeout,
    /// No connection (refused, dropped, not yet established).
    Connection,
    /// The server answered with an error.
    Server,
}

impl FailureKind {
    /// Every kind, for the metric's documentation.
    pub const ALL: [FailureKind; 3] = [
        FailureKind::Timeout,
        FailureKind::Connection,
        FailureKind::Server,
    ];

    /// The `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::Server => "server",
        }
    }
}

/// A failed call: its kind, and the cause for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.label())]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The cause, for the log.
    pub detail: String,
}

impl Failure {
    fn timeout(limit: Duration) -> Failure {
        Failure {
            kind: FailureKind::Timeout,
            detail: format!("no answer within {limit:?}"),
        }
    }

    fn not_connected() -> Failure {
        Failure {
            kind: FailureKind::Connection,
            detail: "not connected yet".to_owned(),
        }
    }
}

impl From<RedisError> for Failure {
    fn from(error: RedisError) -> Failure {
        let kind = if error.is_timeout() {
            FailureKind::Timeout
        } else if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
        {
            FailureKind::Connection
        } else {
            FailureKind::Server
        };
        Failure {
            kind,
            detail: error.to_string(),
        }
    }
}

/// A connection, either kind.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The client of the shared tier.
pub struct Client {
    url: SharedUrl,
    connection: RwLock<Option<Connection>>,
    /// How long a call on the hot path may take.
    timeout: Duration,
}

impl Client {
    /// A client for `url`; a single server's connection is made on first use, a cluster's by
    /// [`Client::connect`].
    pub fn new(url: SharedUrl, timeout: Duration) -> Result<Client, Failure> {
        let connection = if url.cluster {
            None
        } else {
            let node = url.nodes.first().cloned().unwrap_or_default();
            let client = redis::Client::open(node)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout(timeout)))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            Some(Connection::Single(ConnectionManager::new_lazy_with_config(
                client, config,
            )?))
        };
        Ok(Client {
            url,
            connection: RwLock::new(connection),
            timeout,
        })
    }

    /// The URL, for people.
    pub fn url(&self) -> &SharedUrl {
        &self.url
    }

    /// The bound of hot-path calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Makes sure a connection exists (a cluster's is made here, reading its layout).
    pub async fn connect(&self) -> Result<(), Failure> {
        if self.connection.read().is_some() {
            return Ok(());
        }
        let client = ClusterClient::builder(self.url.nodes.clone())
            .connection_timeout(connect_timeout(self.timeout))
            .response_timeout(self.timeout)
            .retries(1)
            .build()?;
        let limit = connect_timeout(self.timeout) * 4;
        let connection = tokio::time::timeout(limit, client.get_async_connection())
            .await
            .map_err(|_| Failure::timeout(limit))??;
        *self.connection.write() = Some(Connection::Cluster(connection));
        Ok(())
    }

    fn connection(&self) -> Result<Connection, Failure> {
        self.connection
            .read()
            .clone()
            .ok_or_else(Failure::not_connected)
    }

    async fn run<T: FromRedisValue>(&self, cmd: &Cmd, limit: Duration) -> Result<T, Failure> {
        let connection = self.connection()?;
        let call = async move {
            match connection {
                Connection::Single(mut c) => cmd.query_async(&mut c).await,
                Connection::Cluster(mut c) => cmd.query_async(&mut c).await,
            }
        };
        Ok(tokio::time::timeout(limit, call)
            .await
            .map_err(|_| Failure::timeout(limit))??)
    }

    /// `GET name`, within the hot-path bound.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, Failure> {
        let value: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(name), self.timeout).await?;
        Ok(value.map(Bytes::from))
    }

    /// `SET name value PX ttl` for each item (a pipeline on one server; one call per item on
    /// a cluster, whose items live on different nodes), within `limit`.
    pub async fn set_all(
        &self,
        items: &[(String, Bytes, u64)],
        limit: Duration,
    ) -> Result<(), Failure> {
        let connection = self.connection()?;
        let call = async move {
            match connection {
                Connection::Single(mut c) => {
                    let mut pipe = redis::pipe();
                    for (name, value, ttl_ms) in items {
                        pipe.cmd("SET")
                            .arg(name)
                            .arg(value.as_ref())
                            .arg("PX")
                            .arg(*ttl_ms)
                            .ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                }
                Connection::Cluster(c) => {
                    let calls = items.iter().map(|(name, value, ttl_ms)| {
                        let mut c = c.clone();
                        async move {
                            redis::cmd("SET")
                                .arg(name)
                                .arg(value.as_ref())
                                .arg("PX")
                                .arg(*ttl_ms)
                                .query_async::<()>(&mut c)
                                .await
                        }
                    });
                    futures_util::future::try_join_all(calls).await.map(|_| ())
                }
            }
        };
        Ok(tokio::time::timeout(limit, call)
            .await
            .map_err(|_| Failure::timeout(limit))??)
    }

    /// `HGETALL name`, within `limit`.
    pub async fn hash(
        &self,
        name: &str,
        limit: Duration,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Failure> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            self.run(redis::cmd("HGETALL").arg(name), limit).await?;
        Ok(pairs)
    }

    /// Runs `script` on `key` with `args`, within `limit`.
    pub async fn script(
        &self,
        script: &Script,
        key: &str,
        args: &[String],
        limit: Duration,
    ) -> Result<String, Failure> {
        let connection = self.connection()?;
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        let call = async move {
            match connection {
                Connection::Single(mut c) => invoke(&invocation, &mut c).await,
                Connection::Cluster(mut c) => invoke(&invocation, &mut c).await,
            }
        };
        Ok(tokio::time::timeout(limit, call)
            .await
            .map_err(|_| Failure::timeout(limit))??)
    }

    /// `PING`, within `limit`.
    pub async fn ping(&self, limit: Duration) -> Result<(), Failure> {
        let _: String = self.run(&redis::cmd("PING"), limit).await?;
        Ok(())
    }
}

async fn invoke(
    invocation: &redis::ScriptInvocation<'_>,
    connection: &mut impl ConnectionLike,
) -> redis::RedisResult<String> {
    invocation.invoke_async(connection).await
}

/// How long a connection attempt may take: longer than a call, still short.
fn connect_timeout(call: Duration) -> Duration {
    (call * 5).max(Duration::from_millis(100))
}

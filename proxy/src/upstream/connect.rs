//! Opening connections to PostgreSQL: TCP, then TLS negotiation as `sslmode` asks.
//!
//! Every client session gets its own upstream connection; the session relays the client's own
//! StartupMessage over it, so PostgreSQL authenticates the client itself. Cancel requests travel
//! over a fresh connection, exactly as libpq sends them. Connections go to the current host
//! ([`super::primary`]); without a monitor, the hosts are tried in order.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::primary::{Fence, Upstreams};
use super::url::{Host, SslMode, UpstreamUrl};
use crate::net::Stream;
use crate::tls::{connector, TlsConfigError};
use crate::wire::startup::SSL_REQUEST_CODE;

/// How long a TCP connect plus TLS handshake to PostgreSQL may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream connection, plain or TLS.
pub type UpstreamStream = Stream;

/// Why an upstream connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed.
    #[error("could not connect to PostgreSQL at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    /// Connect or handshake took too long.
    #[error("timed out connecting to PostgreSQL at {address}")]
    Timeout { address: String },
    /// The server does not do TLS but sslmode requires it.
    #[error("PostgreSQL at {address} does not support TLS, but sslmode requires it")]
    TlsRefused { address: String },
    /// The TLS handshake failed (bad certificate, wrong name, ...).
    #[error("TLS handshake with PostgreSQL at {address} failed: {source}")]
    Handshake {
        address: String,
        source: std::io::Error,
    },
    /// I/O error during negotiation.
    #[error("lost PostgreSQL at {address} during TLS negotiation: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    /// The server answered the SSLRequest with something else than S or N.
    #[error("PostgreSQL at {address} answered the SSL request with byte {byte:#04x}")]
    BadSslAnswer { address: String, byte: u8 },
    /// The host name is not valid for TLS.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

impl UpstreamError {
    /// What a client may be told: what failed, never where PostgreSQL is or the I/O error
    /// (those are in `Display`, for pgcached's log).
    pub fn client_text(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "pgcached could not reach PostgreSQL",
            UpstreamError::Timeout { .. } => "pgcached timed out connecting to PostgreSQL",
            UpstreamError::TlsRefused { .. } => {
                "PostgreSQL does not support TLS, but pgcached's sslmode requires it"
            }
            UpstreamError::Handshake { .. } => "TLS handshake with PostgreSQL failed",
            UpstreamError::Io { .. } => "pgcached lost PostgreSQL during TLS negotiation",
            UpstreamError::BadSslAnswer { .. } => {
                "PostgreSQL answered pgcached's SSL request with an unexpected byte"
            }
            UpstreamError::ServerName(_) => {
                "pgcached's upstream host is not a valid TLS server name"
            }
        }
    }
}

/// Opens upstream connections according to the upstream URL.
#[derive(Clone)]
pub struct Connector {
    upstreams: Arc<Upstreams>,
    tls: Option<Arc<ClientConfig>>,
}

impl Connector {
    /// Builds the connector, loading TLS roots once.
    pub fn new(upstreams: Arc<Upstreams>) -> Result<Connector, TlsConfigError> {
        let tls = connector::for_upstream(upstreams.url())?;
        Ok(Connector { upstreams, tls })
    }

    /// A connector for `url` without a monitor: the hosts are tried in order per connection.
    pub fn unmonitored(url: UpstreamUrl) -> Result<Connector, TlsConfigError> {
        Connector::new(Upstreams::new(url, false))
    }

    /// The upstream URL.
    pub fn url(&self) -> &UpstreamUrl {
        self.upstreams.url()
    }

    /// The hosts and the one in use.
    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// The fence of a connection opened now: moves once another server is current.
    pub fn fence(&self) -> Fence {
        if self.upstreams.monitored() {
            self.upstreams.fence()
        } else {
            Fence::fixed()
        }
    }

    /// Opens a connection to the current host, ready for a StartupMessage (or a
    /// CancelRequest). Without a monitor, the hosts are tried in order and the first that
    /// accepts the connection is used.
    pub async fn connect(&self) -> Result<Stream, UpstreamError> {
        if self.upstreams.monitored() {
            let host = self.upstreams.current_or_wait().await;
            return self.connect_to(&host).await;
        }
        let hosts = &self.url().hosts;
        let mut result = self.connect_to(self.url().first()).await;
        for host in hosts.iter().skip(1) {
            if result.is_ok() {
                break;
            }
            result = self.connect_to(host).await;
        }
        result
    }

    /// Opens a connection to `host`.
    pub async fn connect_to(&self, host: &Host) -> Result<Stream, UpstreamError> {
        let address = host.address();
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner(host, &address)).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout { address }),
        }
    }

    async fn connect_inner(&self, host: &Host, address: &str) -> Result<Stream, UpstreamError> {
        let tcp = TcpStream::connect((host.name.as_str(), host.port))
            .await
            .map_err(|source| UpstreamError::Connect {
                address: address.to_owned(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let mut tcp = tcp;
        let io_error = |source| UpstreamError::Io {
            address: address.to_owned(),
            source,
        };
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&8i32.to_be_bytes());
        request[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        tcp.write_all(&request).await.map_err(io_error)?;
        let answer = tcp.read_u8().await.map_err(io_error)?;
        match answer {
            b'S' => {}
            b'N' if self.url().sslmode == SslMode::Prefer => return Ok(Stream::Plain(tcp)),
            b'N' => {
                return Err(UpstreamError::TlsRefused {
                    address: address.to_owned(),
                })
            }
            byte => {
                return Err(UpstreamError::BadSslAnswer {
                    address: address.to_owned(),
                    byte,
                })
            }
        }
        let name = ServerName::try_from(host.name.clone())
            .map_err(|_| UpstreamError::ServerName(host.name.clone()))?;
        let tls_stream = TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|source| UpstreamError::Handshake {
                address: address.to_owned(),
                source,
            })?;
        Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(
            tls_stream,
        ))))
    }
}

/// Forwards a client's CancelRequest packet to PostgreSQL and waits for the server to close.
///
/// The cancel key the client holds is PostgreSQL's own (pgcached relays BackendKeyData
/// unchanged), so the packet needs no translation.
pub async fn forward_cancel(connector: &Connector, packet: &[u8]) -> Result<(), UpstreamError> {
    let mut stream = connector.connect().await?;
    let address = connector
        .upstreams()
        .current()
        .map_or_else(|| connector.url().address(), |host| host.address());
    stream
        .write_all(packet)
        .await
        .map_err(|source| UpstreamError::Io {
            address: address.clone(),
            source,
        })?;
    let _ = stream.flush().await;
    // The server closes the connection once it has read the request.
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
    Ok(())
}

//! One client session: startup negotiation, then the relay to its own PostgreSQL connection.
//!
//! Layout:
//! - [`startup`]: SSLRequest/GSSENCRequest/CancelRequest handling up to the StartupMessage.
//! - [`relay`]: the two-way relay once the login is over: moves bytes, performs the machine's
//!   decisions.
//! - [`inbound`]: received bytes cut into frames without copying.
//! - [`machine`]: the session's state machine: conversation, counting, parking, cache path.
//! - [`conversation`]: what the frames say about the session (idle, transaction status, ...).
//! - [`begin_gate`]: a BEGIN answered locally, sent with its block's first statement that
//!   needs PostgreSQL.
//! - [`caching`]: the cache path: hits answered locally, misses captured, invalidation.
//! - [`fingerprint`]: the session-state part of every cache key.
//! - [`outbox`]: bytes queued for a peer.
//!
//! PostgreSQL checks every login ([`crate::auth`]): the client's StartupMessage goes upstream
//! unchanged and pgcached never knows a password.

pub(crate) mod begin_gate;
pub mod caching;
pub(crate) mod conversation;
pub mod fingerprint;
pub(crate) mod inbound;
pub(crate) mod machine;
pub mod outbox;
pub mod relay;
pub mod startup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::auth::LoginError;
use crate::error::{fatal_response, ClientFacing, LogLevel, SessionError};
use crate::metrics::{ConnectionOutcome, ProxyMetrics};
use crate::net::Stream;
use crate::shutdown::{Phase, PhaseReceiver};
use crate::upstream::{forward_cancel, Connector};
use startup::Opening;

/// How long writing a refusal to a client may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What every session shares.
pub struct SessionContext {
    /// Opens connections to PostgreSQL.
    pub connector: Connector,
    /// TLS for clients, when configured.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// SCRAM pass-through for TLS clients, when TLS and the auth query are configured.
    pub scram_server: Option<crate::auth::ScramServer>,
    /// Metric handles.
    pub metrics: ProxyMetrics,
    /// The configured client limit, for the refusal message.
    pub max_client_conn: usize,
    /// Time allowed for the startup phase.
    pub startup_timeout: Duration,
    /// The result cache, when `--cache on`.
    pub cache: Option<Arc<caching::CacheShared>>,
    /// The sessions open now.
    pub clients: Arc<crate::stats::Clients>,
    /// The admin console's settings.
    pub console: crate::admin::Console,
}

/// Whether the listener had room for this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Within `--max-client-conn`.
    Admitted,
    /// Over the limit: negotiate startup, then refuse with 53300.
    OverLimit,
}

/// Serves one client connection to its end.
pub async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    context: Arc<SessionContext>,
    admission: Admission,
    mut phase: PhaseReceiver,
) {
    let _ = tcp.set_nodelay(true);
    let opening = tokio::time::timeout(
        context.startup_timeout,
        startup::negotiate(tcp, context.tls_acceptor.as_ref()),
    )
    .await
    .unwrap_or(Err(startup::Failed {
        error: SessionError::StartupTimeout,
        stream: None,
    }));
    let (mut client, startup) = match opening {
        Ok(Opening::Cancel { stream, packet }) => {
            context.metrics.connection(ConnectionOutcome::Cancel);
            context.metrics.cancel_requests.increment(1);
            if let Err(e) = forward_cancel(&context.connector, &packet).await {
                debug!(%peer, error = %e, "cancel request not delivered");
            }
            // Closed only now: the client takes this close as "the server has the request".
            drop(stream);
            return;
        }
        Ok(Opening::Session { stream, startup }) => (stream, startup),
        Err(failed) => {
            context.metrics.connection(ConnectionOutcome::BadStartup);
            if let Some(stream) = failed.stream {
                refuse(stream, &failed.error).await;
            }
            report(&context, peer, &failed.error);
            return;
        }
    };
    if admission == Admission::OverLimit {
        context.metrics.connection(ConnectionOutcome::RefusedLimit);
        let error = SessionError::TooManyClients(context.max_client_conn);
        refuse(client, &error).await;
        report(&context, peer, &error);
        return;
    }
    if *phase.borrow_and_update() != Phase::Running {
        context.metrics.connection(ConnectionOutcome::ShuttingDown);
        refuse(client, &SessionError::Shutdown).await;
        return;
    }
    if startup.database() == crate::admin::CONSOLE_DATABASE && !startup.is_replication() {
        context.metrics.connection(ConnectionOutcome::Admin);
        crate::admin::run(client, startup, peer, &context, phase).await;
        return;
    }
    // Taken before connecting: a change of server meanwhile leaves this session in the old era.
    let fence = context.connector.fence();
    let mut upstream = match context.connector.connect().await {
        Ok(upstream) => upstream,
        Err(e) => {
            context.metrics.upstream_connection(false);
            context
                .metrics
                .connection(ConnectionOutcome::UpstreamUnavailable);
            let error = SessionError::UpstreamConnect(e);
            refuse(client, &error).await;
            report(&context, peer, &error);
            return;
        }
    };
    context.metrics.upstream_connection(true);
    let login = tokio::time::timeout(
        crate::auth::LOGIN_TIMEOUT,
        crate::auth::login(
            &mut client,
            &mut upstream,
            &startup.raw,
            startup.user(),
            context.scram_server.as_ref(),
        ),
    )
    .await
    .unwrap_or(Err(LoginError::Timeout(crate::auth::LOGIN_TIMEOUT)));
    let credential = match login {
        Ok(credential) => credential,
        Err(LoginError::Refused) => {
            context.metrics.connection(ConnectionOutcome::LoginRefused);
            let _ = client.shutdown().await;
            debug!(%peer, user = startup.user(), database = startup.database(), "login refused");
            return;
        }
        Err(e) => {
            context.metrics.connection(ConnectionOutcome::LoginFailed);
            let client_gone = matches!(e, LoginError::ClientIo(_));
            let error = SessionError::Login(e);
            if !client_gone {
                refuse(client, &error).await;
            }
            report(&context, peer, &error);
            return;
        }
    };
    context.metrics.connection(ConnectionOutcome::Relayed);
    context.metrics.upstream_connections.increment(1.0);
    debug!(%peer, user = startup.user(), database = startup.database(), tls = client.is_tls(), "session start");
    let registration = context.clients.register(crate::stats::clients::NewClient {
        peer,
        user: startup.user(),
        database: startup.database(),
        application: startup.parameter("application_name").unwrap_or(""),
        tls: client.is_tls(),
    });
    let cache_path = match &context.cache {
        Some(shared) if !startup.is_replication() => {
            // The database is real and the client may use it: follow its changes.
            shared.follow(startup.database());
            let inherited = shared
                .classifier
                .catalog()
                .inherited_isolation(startup.database(), startup.user());
            let transactions = caching::transaction::Transactions::new(
                caching::transaction::startup_default(&startup.parameters),
                inherited,
            );
            Some(
                caching::CachePath::new(
                    shared.backend(),
                    startup.database(),
                    startup.user(),
                    fingerprint::Fingerprint::from_startup(&startup.parameters),
                    transactions,
                )
                .with_replica_login(crate::replica::ReplicaLogin {
                    role: startup.user().to_owned(),
                    database: startup.database().to_owned(),
                    credential,
                }),
            )
        }
        _ => None,
    };
    let caching_on = cache_path.is_some();
    let mut machine = machine::SessionMachine::new(
        cache_path,
        context.metrics.clone(),
        Arc::clone(&registration.info),
    );
    let upstream = crate::upstream::fenced::Fenced::new(upstream, fence);
    let result = relay::run(&mut client, upstream, &mut machine, &mut phase, caching_on).await;
    machine.end();
    context.metrics.upstream_connections.decrement(1.0);
    let _ = client.shutdown().await;
    let queries = registration
        .info
        .queries
        .load(std::sync::atomic::Ordering::Relaxed);
    let hits = registration
        .info
        .hits
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(registration);
    match result {
        Ok(()) => {
            debug!(%peer, user = startup.user(), database = startup.database(), queries, hits, "session end")
        }
        Err(error) => report(&context, peer, &error),
    }
}

/// Tells the client why it is refused (FATAL with the kind's SQLSTATE and client-safe text)
/// and closes.
async fn refuse(mut stream: Stream, error: &SessionError) {
    let message = fatal_response(error);
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        let _ = stream.write_all(&message).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Counts the error and logs it in full (the upstream's address and the cause included).
fn report(context: &SessionContext, peer: SocketAddr, error: &SessionError) {
    let kind = error.kind();
    context.metrics.session_error(kind);
    let label = kind.label();
    match kind.log_level() {
        LogLevel::Debug => debug!(%peer, kind = label, "session ended: {error}"),
        LogLevel::Info => info!(%peer, kind = label, "session ended: {error}"),
        LogLevel::Warn => warn!(%peer, kind = label, "session ended: {error}"),
    }
}

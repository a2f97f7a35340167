//! The listener: accepts clients, enforces `--max-client-conn`, and runs the shutdown sequence.
//!
//! [`Server::serve`] takes an already bound listener and a shutdown future, so tests can bind
//! port 0 and run pgcached in-process, and `main` can bind the configured address and pass a
//! signal future.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use pgcached_cache::{CacheConfig, Generations, ResultCache};

use crate::auth::{channel_binding, ScramServer, Verifiers};
use crate::cache_metrics::{self, CacheMetrics};
use crate::catalog::watcher::CatalogWatchers;
use crate::catalog::Catalog;
use crate::classify::{Classifier, TableRules};
use crate::config::{CacheMode, Config};
use crate::metrics::ProxyMetrics;
use crate::replica::Replicas;
use crate::replication::{Replication, ReplicationSettings};
use crate::session::caching::CacheShared;
use crate::session::{self, Admission, SessionContext};
use crate::shared_cache::SharedCache;
use crate::shutdown::{self, Phase};
use crate::stats::{tables, Clients, Counters};
use crate::tls::{acceptor, TlsConfigError};
use crate::upstream::control::ControlConnections;
use crate::upstream::primary;
use crate::upstream::{Connector, Upstreams};

/// How long sessions get, after the grace period, to tell their clients and close.
const TERMINATE_WAIT: Duration = Duration::from_secs(6);

/// A configuration the server cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS files or roots are unusable.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The shared cache's URL cannot be used.
    #[error("shared cache: {0}")]
    SharedCache(#[from] crate::shared_cache::client::Failure),
}

/// A configured, not yet serving, pgcached.
pub struct Server {
    context: Arc<SessionContext>,
    max_client_conn: usize,
    shutdown_timeout: Duration,
    /// The upstream monitor, stopped with the server.
    _monitor: Option<Monitor>,
}

/// The upstream monitor's task, aborted on drop.
struct Monitor(tokio::task::JoinHandle<()>);

impl Drop for Monitor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// Prepares TLS, the upstream connector, the cache and metric handles. Must run inside a
    /// tokio runtime (the cache's gauge task is spawned here).
    pub fn new(config: &Config) -> Result<Server, ServerError> {
        let client_tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(acceptor::load(cert, key)?),
            _ => None,
        };
        let upstreams = Upstreams::new(config.upstream.clone(), config.upstream.user.is_some());
        let monitor = upstreams
            .monitored()
            .then(|| Monitor(primary::spawn_monitor(Arc::clone(&upstreams))));
        let connector = Connector::new(Arc::clone(&upstreams))?;
        let control = Arc::new(ControlConnections::new(Arc::clone(&upstreams)));
        let verifiers = config.auth_query.as_ref().map(|query| {
            Arc::new(Verifiers::new(
                Arc::clone(&control),
                crate::admin::Console::own_database(config),
                query.clone(),
            ))
        });
        let scram_server = match (&client_tls, &verifiers) {
            (Some(tls), Some(verifiers)) => Some(ScramServer {
                binding: channel_binding::tls_server_end_point(&tls.certificate),
                verifiers: Arc::clone(verifiers),
            }),
            _ => None,
        };
        let counters = Arc::new(Counters::default());
        let cache = match config.cache.mode {
            CacheMode::Off => None,
            CacheMode::On => {
                let generations = Arc::new(Generations::new());
                let cache = Arc::new(ResultCache::new(
                    CacheConfig {
                        max_bytes: config.cache.size,
                        max_entry_bytes: usize::try_from(config.cache.max_entry)
                            .unwrap_or(usize::MAX),
                        ttl: config.cache.ttl,
                    },
                    generations,
                ));
                let metrics = CacheMetrics::new(Arc::clone(&counters));
                let catalog = Arc::new(Catalog::new(
                    Arc::clone(&control),
                    config.cache.publication.clone(),
                ));
                let registry = Arc::new(crate::pins::PinRegistry::default());
                let classifier = Arc::new(Classifier::new(
                    Arc::clone(&catalog),
                    TableRules {
                        allow: config.cache.allow_tables.clone(),
                        deny: config.cache.deny_tables.clone(),
                    },
                    Arc::clone(&registry),
                ));
                cache_metrics::spawn_gauges(
                    Arc::clone(&cache),
                    Arc::clone(&classifier),
                    metrics.clone(),
                );
                tables::spawn_export(Arc::clone(&metrics.tables), Arc::clone(&catalog));
                let shared = match &config.shared_cache {
                    Some(settings) => Some(SharedCache::start(
                        settings.clone(),
                        &cache,
                        Arc::clone(&control),
                    )?),
                    None => None,
                };
                let max_entry = usize::try_from(config.cache.max_entry).unwrap_or(usize::MAX);
                let replicas = match config.replicas.urls.is_empty() {
                    true => None,
                    false => {
                        if shared.is_none() {
                            // Bounds on proxied writes' positions, which replicas must pass.
                            tokio::spawn(crate::shared_cache::resolver::run(
                                Arc::clone(cache.generations()),
                                Arc::clone(&control),
                            ));
                        }
                        Some(Replicas::start(
                            &config.replicas.urls,
                            config.replicas.pool_size,
                            Arc::clone(cache.generations()),
                            Arc::clone(&control),
                            verifiers.clone(),
                            max_entry,
                        )?)
                    }
                };
                let watchers = Arc::new(CatalogWatchers::new(
                    Arc::clone(&catalog),
                    Arc::clone(&classifier),
                    Arc::clone(&cache),
                    metrics.clone(),
                ));
                let on_switch = Arc::downgrade(&watchers);
                upstreams.on_switch(Box::new(move || {
                    if let Some(watchers) = on_switch.upgrade() {
                        watchers.server_changed();
                    }
                }));
                let replication = Arc::new(Replication::new(
                    ReplicationSettings {
                        mode: config.cache.replication,
                        publication: config.cache.publication.clone(),
                        ttl_unreplicated: config.cache.ttl_unreplicated,
                    },
                    connector.clone(),
                    catalog,
                    Arc::clone(&cache),
                    Arc::clone(&registry),
                    metrics.clone(),
                    shared.as_ref().map(|shared| shared.journal()),
                ));
                let release = Arc::new(crate::release::DatabaseRelease {
                    replication: Arc::clone(&replication),
                    watchers: Arc::clone(&watchers),
                    control: Arc::clone(&control),
                });
                Some(Arc::new(CacheShared {
                    release,
                    cache,
                    classifier,
                    metrics,
                    max_entry,
                    defer_begin: config.cache.defer_begin == crate::config::DeferBegin::On,
                    replication,
                    watchers,
                    shared,
                    replicas,
                }))
            }
        };
        Ok(Server {
            context: Arc::new(SessionContext {
                connector,
                tls_acceptor: client_tls.map(|tls| tls.acceptor),
                scram_server,
                metrics: ProxyMetrics::new(counters),
                max_client_conn: config.max_client_conn,
                startup_timeout: config.startup_timeout,
                cache,
                clients: Arc::new(Clients::default()),
                console: crate::admin::Console::new(config),
            }),
            max_client_conn: config.max_client_conn,
            shutdown_timeout: config.shutdown_timeout,
            _monitor: monitor,
        })
    }

    /// The result cache, when caching is on (for inspection by tests and the admin side).
    pub fn result_cache(&self) -> Option<Arc<ResultCache>> {
        self.context
            .cache
            .as_ref()
            .map(|shared| Arc::clone(&shared.cache))
    }

    /// The shared tier, when `--shared-cache` is set (for inspection by tests).
    pub fn shared_cache(&self) -> Option<Arc<SharedCache>> {
        self.context
            .cache
            .as_ref()
            .and_then(|shared| shared.shared.clone())
    }

    /// Serves clients from `listener` until `shutdown` completes, then drains sessions.
    pub async fn serve(self, listener: TcpListener, shutdown_signal: impl Future<Output = ()>) {
        let (phase_tx, phase_rx) = shutdown::channel();
        let slots = Arc::new(Semaphore::new(self.max_client_conn));
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown_signal);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let permit = Arc::clone(&slots).try_acquire_owned().ok();
                        let admission = if permit.is_some() {
                            Admission::Admitted
                        } else {
                            Admission::OverLimit
                        };
                        let context = Arc::clone(&self.context);
                        let phase = phase_rx.clone();
                        sessions.spawn(async move {
                            context.metrics.client_connections.increment(1.0);
                            session::run(tcp, peer, Arc::clone(&context), admission, phase).await;
                            context.metrics.client_connections.decrement(1.0);
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(
                            error = %e,
                            "accept failed; if the error is \"Too many open files\", raise the \
                             file-descriptor limit (ulimit -n) above --max-client-conn x 2"
                        );
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                () = &mut shutdown_signal => break,
            }
        }
        drop(listener);
        info!(
            sessions = sessions.len(),
            grace = ?self.shutdown_timeout,
            "shutting down: no new connections, idle sessions close now"
        );
        let _ = phase_tx.send(Phase::Draining);
        if !wait_all(&mut sessions, self.shutdown_timeout).await {
            info!(
                sessions = sessions.len(),
                "grace period over: closing remaining sessions"
            );
            let _ = phase_tx.send(Phase::Terminating);
            if !wait_all(&mut sessions, TERMINATE_WAIT).await {
                sessions.abort_all();
                while sessions.join_next().await.is_some() {}
            }
        }
        info!("shutdown complete");
    }
}

/// Waits for every session to end, up to `limit`; true if all ended.
async fn wait_all(sessions: &mut JoinSet<()>, limit: Duration) -> bool {
    let all = async { while sessions.join_next().await.is_some() {} };
    tokio::time::timeout(limit, all).await.is_ok()
}

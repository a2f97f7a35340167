//! pgcached running in-process for a test.
//!
//! The server gets its own runtime on its own thread, so a test may block (running psql or
//! pgbench as a child process) without starving the proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use clap::Parser;
use pgcached::config::{Cli, Config, FileConfig};
use pgcached::shared_cache::SharedCache;
use pgcached::Server;
use pgcached_cache::ResultCache;
use pgcached_local_cluster::LocalCluster;
use tokio::sync::oneshot;

/// A running pgcached; dropping it shuts it down and waits for it.
pub struct TestProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The result cache, when caching is on.
    pub cache: Option<Arc<ResultCache>>,
    /// The shared tier, when `--shared-cache` is set.
    pub shared: Option<Arc<SharedCache>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What a started server hands the test.
type Started = (Option<Arc<ResultCache>>, Option<Arc<SharedCache>>);

/// A config pointing at `cluster`, listening on a free port; `extra` are more flags.
pub fn config_for(cluster: &LocalCluster, extra: &[&str]) -> Config {
    let upstream = format!(
        "postgres://{}:{}?sslmode=disable",
        cluster.host(),
        cluster.port()
    );
    config_with(&upstream, extra, "")
}

/// A config with caching on, in front of `cluster`, with pgcached's own credentials (its
/// catalog connection needs them); `extra` are more flags.
pub fn caching_config_for(cluster: &LocalCluster, extra: &[&str]) -> Config {
    use pgcached_local_cluster::users::{PGCACHED_PASSWORD, PGCACHED_USER};
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@{}:{}?sslmode=disable",
        cluster.host(),
        cluster.port()
    );
    let mut flags = vec!["--cache", "on"];
    flags.extend_from_slice(extra);
    config_with(&upstream, &flags, "")
}

/// A config from flags plus a config-file text (may be empty).
pub fn config_with(upstream: &str, extra: &[&str], file: &str) -> Config {
    let mut args = vec![
        "pgcached",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
        "--shutdown-timeout",
        "5s",
    ];
    args.extend_from_slice(extra);
    let cli = Cli::parse_from(args);
    let file: FileConfig = toml::from_str(file).unwrap_or_else(|e| panic!("bad test config: {e}"));
    Config::resolve(&cli, &file).unwrap_or_else(|e| panic!("bad test config: {e}"))
}

impl TestProxy {
    /// Serves pgcached in front of `cluster` with default settings.
    pub fn start(cluster: &LocalCluster) -> TestProxy {
        TestProxy::with_config(config_for(cluster, &[]))
    }

    /// Serves pgcached with this config (its listen address is replaced by a free port).
    pub fn with_config(config: Config) -> TestProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Started, String>>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let server = match Server::new(&config) {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = ready_tx.send(Ok((server.result_cache(), server.shared_cache())));
                server
                    .serve(listener, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let (cache, shared) = match ready_rx.recv() {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => panic!("pgcached did not start: {e}"),
            Err(_) => panic!("pgcached thread died at start"),
        };
        TestProxy {
            addr,
            cache,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Asks the server to shut down (as SIGTERM would) without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until the server has finished.
    pub fn shutdown(&mut self) {
        self.begin_shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// True once the server thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

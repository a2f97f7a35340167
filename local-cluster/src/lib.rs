//! A throwaway PostgreSQL cluster started from the machine's installed server binaries.
//!
//! Used by `pgcached demo` and by the integration tests; a crate of its own so that the
//! `pgcached` library carries none of it, and knows nothing of pgcached: what pgcached needs
//! installed in the cluster (its SCRAM verifier function) the caller passes in
//! [`ClusterOptions::setup_sql`]. A cluster lives in its own temporary
//! directory (`pgcached-cluster-*`: data directory, Unix socket, `postgres.log`), listens on a
//! free port of 127.0.0.1 with `wal_level = logical`, has one role per authentication method
//! ([`users`]) and a database `app`, and is removed when dropped. The API is blocking (std
//! only); async callers use `spawn_blocking`, or start the cluster before their runtime.
//!
//! Two details make it safe to use anywhere:
//!
//! - **Root.** initdb and postgres refuse to run as root, and tests often run as root (in
//!   containers, CI). Then the cluster's directory is given to `nobody`, and initdb and
//!   postgres run with that uid and gid ([`os_user`]); psql and everything else stay as they are.
//! - **No leaks.** `Drop` stops the server (fast shutdown, then SIGKILL after 10 s) and deletes
//!   the directory, also while a panic unwinds. A process can also end without running
//!   destructors: SIGKILL, `std::process::exit`, or a cluster kept in a static (a test binary
//!   sharing one cluster). For those a watchdog process ([`watchdog`]) polls whether this process
//!   is alive and, once it is not, kills the postmaster's process group and removes the
//!   directory.
//!
//! The postmaster is a direct child (`postgres -D`, no pg_ctl) in its own process group, so
//! Ctrl-C on a terminal running `pgcached demo` reaches only pgcached, which then stops the
//! cluster in order.
//!
//! Layout:
//! - [`bindir`]: finding initdb, postgres and psql.
//! - [`users`]: the roles, the `app` database and pg_hba.conf.
//! - [`os_user`]: who runs the server (`nobody` when this process is root).
//! - [`watchdog`]: the process that cleans up after an owner that died.
//! - `standby`: a streaming standby of a running cluster (`pg_basebackup -R`), and promotion.
//! - `options`, `conf`, `initdb`, `postmaster`, `psql`, `workdir`, `error`: the steps of a
//!   start and what can go wrong in them.

pub mod bindir;
mod conf;
mod error;
mod initdb;
mod options;
pub mod os_user;
mod postmaster;
mod psql;
mod standby;
pub mod users;
pub mod watchdog;
mod workdir;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

pub use bindir::{find_bindir, BINDIR_ENV};
pub use error::LocalClusterError;
pub use options::{ClusterOptions, SslFiles};

use error::io;
use os_user::ServerUser;
use postmaster::ServerSpec;
use watchdog::Watchdog;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times the server is started when its port turns out to be taken.
const START_ATTEMPTS: usize = 5;
/// The address the server listens on.
const HOST: &str = "127.0.0.1";

/// A running throwaway cluster; dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct LocalCluster {
    /// Where initdb, postgres and psql are (symbolic links resolved).
    bindir: PathBuf,
    /// The temporary directory: data directory, Unix socket, `postgres.log`. Removed on drop;
    /// `None` only while dropping.
    dir: Option<tempfile::TempDir>,
    /// Path of `dir`.
    root: PathBuf,
    /// The data directory, `<root>/data`.
    data_dir: PathBuf,
    /// TCP port on 127.0.0.1; 0 until the first start.
    port: u16,
    /// Who runs initdb and postgres.
    user: ServerUser,
    /// The postmaster, while running.
    postmaster: Option<Child>,
    /// The watchdog that cleans up if this process dies first.
    watchdog: Option<Watchdog>,
}

impl LocalCluster {
    /// Creates a cluster with initdb, configures it, starts it and creates the roles and the
    /// `app` database. Takes a second or two.
    pub fn start(options: ClusterOptions) -> Result<LocalCluster, LocalClusterError> {
        let bindir = find_bindir()?;
        let user = ServerUser::pick()?;
        let dir = workdir::create(&user)?;
        let root = dir.path().to_owned();
        // From here on, any error drops `cluster`, which removes everything made so far.
        let mut cluster = LocalCluster {
            bindir,
            dir: Some(dir),
            data_dir: root.join("data"),
            root,
            port: 0,
            user,
            postmaster: None,
            watchdog: None,
        };
        cluster.try_rearm(None)?;
        initdb::run(
            &cluster.bindir,
            &cluster.data_dir,
            &cluster.root,
            &cluster.user,
        )?;
        conf::write(&cluster.data_dir, &cluster.root, &options)?;
        cluster.user.own(&cluster.root)?;
        cluster.launch()?;
        cluster.psql("postgres", &users::setup_sql())?;
        cluster.psql(users::APP_DATABASE, users::APP_SQL)?;
        if !options.setup_sql.is_empty() {
            for database in ["postgres", users::APP_DATABASE] {
                cluster.psql(database, &options.setup_sql)?;
            }
        }
        tracing::debug!(
            port = cluster.port,
            dir = %cluster.root.display(),
            bindir = %cluster.bindir.display(),
            "local PostgreSQL cluster started"
        );
        Ok(cluster)
    }

    /// Host to connect to: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// TCP port on [`host`](Self::host).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory of the PostgreSQL programs in use (also holds psql, pgbench, ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file, `postgres.log` next to the data directory.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Pid of the postmaster, while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// Runs SQL as the superuser through the cluster's own psql (`-X -q -v ON_ERROR_STOP=1`,
    /// unaligned tuples only: `SELECT 1` gives `"1\n"`) and returns its stdout. The SQL may hold
    /// several statements; the first error stops it and is returned with psql's stderr.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, LocalClusterError> {
        psql::run(&self.bindir, self.port, database, sql)
    }

    /// Stops the server with a fast shutdown (SIGKILL if it takes over 10 s). Idempotent; the
    /// files stay until the cluster is dropped.
    pub fn stop(&mut self) {
        if let Some(child) = self.postmaster.take() {
            postmaster::stop(child, STOP_TIMEOUT);
            self.rearm(None);
        }
    }

    /// Stops the server, if running, and starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<(), LocalClusterError> {
        self.stop();
        self.launch()
    }

    /// Starts the postmaster and waits until it accepts connections. The first start picks a
    /// free port and tries another one if the server cannot bind it (another process may take
    /// it between the check and the start); later starts keep the port.
    fn launch(&mut self) -> Result<(), LocalClusterError> {
        let keep_port = self.port != 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = if keep_port { self.port } else { free_port()? };
            let spec = ServerSpec {
                bindir: &self.bindir,
                data_dir: &self.data_dir,
                workdir: &self.root,
                user: &self.user,
            };
            let (mut child, log) = postmaster::spawn(&spec, port)?;
            // Guard the new postmaster at once, also while it is starting up.
            if let Err(e) = self.try_rearm(Some(child.id())) {
                postmaster::stop(child, STOP_TIMEOUT);
                self.rearm(None);
                return Err(e);
            }
            let ready = postmaster::wait_ready(&mut child, &self.data_dir, &log, START_TIMEOUT);
            self.postmaster = Some(child);
            let failure = match ready {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(failure) => failure,
            };
            self.stop();
            if failure.port_in_use() && attempt < START_ATTEMPTS {
                tracing::debug!(port, attempt, "port taken, starting PostgreSQL again");
                if keep_port {
                    std::thread::sleep(Duration::from_millis(200));
                }
                continue;
            }
            return Err(LocalClusterError::Start {
                reason: failure.reason,
                log: failure.log,
            });
        }
    }

    /// Replaces the watchdog by one guarding `postmaster`; the new one starts before the old
    /// one is stopped.
    fn try_rearm(&mut self, postmaster: Option<u32>) -> Result<(), LocalClusterError> {
        let watchdog = Watchdog::spawn(&self.root, postmaster)?;
        self.watchdog = Some(watchdog);
        Ok(())
    }

    /// [`try_rearm`](Self::try_rearm) for when the postmaster is gone: if no new watchdog can
    /// be started, the old one is stopped all the same, as it holds a pid that may be reused.
    fn rearm(&mut self, postmaster: Option<u32>) {
        if let Err(e) = self.try_rearm(postmaster) {
            tracing::warn!(error = %e, "cannot restart the cluster watchdog");
            self.watchdog = None;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.close() {
                tracing::warn!(
                    dir = %self.root.display(),
                    error = %e,
                    "cannot remove the cluster's directory now; it goes when this process exits"
                );
                if let Some(watchdog) = self.watchdog.take() {
                    watchdog.detach();
                }
            }
        }
        self.watchdog = None;
    }
}

/// A TCP port on 127.0.0.1 that is free right now.
fn free_port() -> Result<u16, LocalClusterError> {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| io("find a free port on 127.0.0.1", e))
}

#[cfg(test)]
mod tests;

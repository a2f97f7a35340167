//! A throwaway PostgreSQL cluster started from the machine's server binaries.
//!
//! Used by `pgcached demo` and by the integration tests. A cluster lives in its own temporary
//! directory, listens on a free loopback port with `wal_level = logical`, has one role per
//! authentication method ([`users`]), and is removed when dropped. Two details make it safe to
//! use anywhere:
//!
//! - **Root.** initdb and postgres refuse to run as root, so under root the cluster runs as
//!   `nobody` ([`os_user`]).
//! - **No leaks.** `Drop` stops the server and deletes the directory; a watchdog process
//!   ([`watchdog`]) does the same if the owning process dies without running destructors.
//!
//! The API is blocking (std only); async callers use `spawn_blocking` or call it before their
//! runtime starts.

pub mod bindir;
pub mod os_user;
pub mod users;
pub mod watchdog;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use bindir::find_bindir;
use os_user::ServerUser;

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `wal_level`; `logical` lets pgcached follow changes by logical replication.
    pub wal_level: String,
    /// Server TLS files; when set, `ssl = on`.
    pub ssl: Option<SslFiles>,
    /// More `postgresql.conf` settings.
    pub extra_settings: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            wal_level: "logical".to_owned(),
            ssl: None,
            extra_settings: Vec::new(),
        }
    }
}

/// Certificate and key for the server's TLS.
#[derive(Debug, Clone)]
pub struct SslFiles {
    /// PEM certificate chain.
    pub cert_pem: PathBuf,
    /// PEM private key.
    pub key_pem: PathBuf,
}

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// No server binaries on this machine.
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) found; looked in: {}. \
         Install PostgreSQL (e.g. `apt-get install postgresql`) or set PGCACHED_PG_BINDIR \
         to the directory holding initdb and postgres",
        looked.join(", ")
    )]
    NoBinaries { looked: Vec<String> },
    /// Running as root without a `nobody` user to run the server as.
    #[error("running as root and no unprivileged user 'nobody' exists to run PostgreSQL as")]
    NoUnprivilegedUser,
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A PostgreSQL program failed.
    #[error("{program} failed: {output}")]
    Program { program: String, output: String },
    /// The server did not come up.
    #[error("PostgreSQL did not start: {log}")]
    Start { log: String },
}

/// A running throwaway cluster; dropping it stops the server and deletes its files.
pub struct LocalCluster {
    /// Where initdb, postgres and psql are.
    bindir: PathBuf,
    /// Temporary directory holding the data directory, socket and log; removed on drop.
    dir: Option<tempfile::TempDir>,
    /// The data directory inside `dir`.
    data_dir: PathBuf,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// Who runs the server processes.
    user: ServerUser,
    /// The postmaster, while running.
    postmaster: Option<Child>,
    /// The watchdog that cleans up if this process dies first.
    watchdog: Option<Child>,
}

impl LocalCluster {
    /// Creates, configures and starts a cluster.
    pub fn start(options: ClusterOptions) -> Result<LocalCluster, LocalClusterError> {
        let bindir = find_bindir()?;
        let user = ServerUser::pick()?;
        let dir = tempfile::Builder::new()
            .prefix("pgcached-cluster-")
            .tempdir()
            .map_err(|e| io("create temp dir", e))?;
        let data_dir = dir.path().join("data");
        user.own(dir.path())?;
        set_mode(dir.path(), 0o700)?;
        initdb(&bindir, &data_dir, user)?;
        write_config(&data_dir, dir.path(), &options)?;
        std::fs::write(data_dir.join("pg_hba.conf"), users::hba_conf())
            .map_err(|e| io("write pg_hba.conf", e))?;
        if let Some(ssl) = &options.ssl {
            copy_private(&ssl.cert_pem, &data_dir.join("server.crt"))?;
            copy_private(&ssl.key_pem, &data_dir.join("server.key"))?;
        }
        user.own(dir.path())?;
        let mut cluster = LocalCluster {
            bindir,
            dir: Some(dir),
            data_dir,
            port: 0,
            user,
            postmaster: None,
            watchdog: None,
        };
        cluster.launch()?;
        cluster.psql("postgres", &users::setup_sql())?;
        cluster.psql("app", users::app_sql())?;
        Ok(cluster)
    }

    /// Host to connect to.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory of the PostgreSQL binaries in use.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs SQL as the superuser with the cluster's own psql; returns its output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, LocalClusterError> {
        let mut child = Command::new(self.bindir.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", users::SUPERUSER, "-d", database])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-f", "-"])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io("run psql", e))?;
        // Statements go through stdin so each runs in its own transaction (CREATE DATABASE
        // refuses to run inside the implicit transaction of `psql -c`).
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(sql.as_bytes())
                .map_err(|e| io("write to psql", e))?;
        }
        let output = child.wait_with_output().map_err(|e| io("run psql", e))?;
        if !output.status.success() {
            return Err(LocalClusterError::Program {
                program: "psql".to_owned(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server with a fast shutdown (idempotent).
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let Some(mut postmaster) = self.postmaster.take() else {
            return;
        };
        signal(postmaster.id(), libc::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match postmaster.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
        signal(postmaster.id(), libc::SIGKILL);
        let _ = postmaster.wait();
    }

    /// Stops and starts the server again, same data, same port.
    pub fn restart(&mut self) -> Result<(), LocalClusterError> {
        self.stop();
        self.launch()
    }

    /// Starts the postmaster on the current port (or a free one) and waits until it is ready.
    fn launch(&mut self) -> Result<(), LocalClusterError> {
        let keep_port = self.port != 0;
        let mut last_error = None;
        for _ in 0..5 {
            let port = if keep_port { self.port } else { free_port()? };
            match self.spawn_postmaster(port) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(LocalClusterError::Start {
            log: "no attempt made".to_owned(),
        }))
    }

    fn spawn_postmaster(&mut self, port: u16) -> Result<(), LocalClusterError> {
        let dir = self.dir_path().to_owned();
        let log_path = dir.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io("open postgres.log", e))?;
        let log_err = log.try_clone().map_err(|e| io("open postgres.log", e))?;
        self.user.own(&log_path)?;
        let _ = std::fs::remove_file(self.data_dir.join("postmaster.pid"));
        let mut command = Command::new(self.bindir.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        self.user.apply(&mut command);
        let mut child = command.spawn().map_err(|e| io("start postgres", e))?;
        self.watchdog = watchdog::spawn(child.id(), &dir);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                if let Some(mut w) = self.watchdog.take() {
                    let _ = w.kill();
                    let _ = w.wait();
                }
                return Err(LocalClusterError::Start {
                    log: log_tail(&log_path),
                });
            }
            if is_ready(&self.data_dir) {
                break;
            }
            if Instant::now() >= deadline {
                signal(child.id(), libc::SIGKILL);
                let _ = child.wait();
                return Err(LocalClusterError::Start {
                    log: log_tail(&log_path),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.port = port;
        self.postmaster = Some(child);
        Ok(())
    }

    fn dir_path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or_else(|| self.data_dir.parent().unwrap_or(&self.data_dir))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn initdb(bindir: &Path, data_dir: &Path, user: ServerUser) -> Result<(), LocalClusterError> {
    let mut last = String::new();
    for locale in ["C.UTF-8", "C"] {
        let mut command = Command::new(bindir.join("initdb"));
        command
            .arg("-D")
            .arg(data_dir)
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .arg(format!("--locale={locale}"))
            .arg("--no-sync")
            .stdin(Stdio::null());
        user.apply(&mut command);
        let output = command.output().map_err(|e| io("run initdb", e))?;
        if output.status.success() {
            return Ok(());
        }
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let _ = std::fs::remove_dir_all(data_dir);
    }
    Err(LocalClusterError::Program {
        program: "initdb".to_owned(),
        output: last,
    })
}

fn write_config(
    data_dir: &Path,
    socket_dir: &Path,
    options: &ClusterOptions,
) -> Result<(), LocalClusterError> {
    let mut conf = String::from("\n# pgcached local cluster\n");
    let socket_dir = socket_dir.display().to_string();
    let mut settings: Vec<(String, String)> = vec![
        ("listen_addresses".into(), "'127.0.0.1'".into()),
        ("unix_socket_directories".into(), format!("'{socket_dir}'")),
        ("wal_level".into(), options.wal_level.clone()),
        ("max_wal_senders".into(), "10".into()),
        ("max_replication_slots".into(), "10".into()),
        ("max_connections".into(), "200".into()),
        ("fsync".into(), "off".into()),
        ("synchronous_commit".into(), "on".into()),
        ("full_page_writes".into(), "off".into()),
        ("shared_buffers".into(), "64MB".into()),
        ("log_min_messages".into(), "warning".into()),
        ("logging_collector".into(), "off".into()),
    ];
    if options.ssl.is_some() {
        settings.push(("ssl".into(), "on".into()));
        settings.push(("ssl_cert_file".into(), "'server.crt'".into()));
        settings.push(("ssl_key_file".into(), "'server.key'".into()));
    }
    settings.extend(options.extra_settings.iter().cloned());
    for (key, value) in settings {
        let _ = writeln!(conf, "{key} = {value}");
    }
    let path = data_dir.join("postgresql.conf");
    let mut existing = std::fs::read_to_string(&path).map_err(|e| io("read postgresql.conf", e))?;
    existing.push_str(&conf);
    std::fs::write(&path, existing).map_err(|e| io("write postgresql.conf", e))
}

fn copy_private(from: &Path, to: &Path) -> Result<(), LocalClusterError> {
    std::fs::copy(from, to).map_err(|e| io(&format!("copy {}", from.display()), e))?;
    set_mode(to, 0o600)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LocalClusterError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io(&format!("chmod {}", path.display()), e))
}

/// True once postmaster.pid says the server accepts connections.
fn is_ready(data_dir: &Path) -> bool {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .map(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
        .unwrap_or(false)
}

fn free_port() -> Result<u16, LocalClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| io("find a free port", e))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn signal(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) on a child process we started.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn io(what: &str, source: std::io::Error) -> LocalClusterError {
    LocalClusterError::Io {
        what: what.to_owned(),
        source,
    }
}

use std::os::unix::process::CommandExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_starts_answers_restarts_and_leaves_nothing_behind() {
        let mut cluster = LocalCluster::start(ClusterOptions::default()).expect("start");
        assert_eq!(cluster.psql("app", "SELECT 1").expect("psql").trim(), "1");
        assert_eq!(
            cluster.psql("app", "SHOW wal_level").expect("psql").trim(),
            "logical"
        );
        let port = cluster.port();
        cluster.restart().expect("restart");
        assert_eq!(cluster.port(), port);
        assert_eq!(cluster.psql("app", "SELECT 2").expect("psql").trim(), "2");
        let dir = cluster.data_dir().parent().expect("parent").to_owned();
        let pid = cluster.postmaster.as_ref().map(|c| c.id()).expect("pid");
        drop(cluster);
        assert!(!dir.exists(), "temp dir left behind");
        // SAFETY: signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
        assert!(!alive, "postmaster still running");
    }

    #[test]
    fn a_missing_bindir_is_a_clear_error() {
        let error = LocalClusterError::NoBinaries {
            looked: vec!["/nowhere".to_owned()],
        };
        let text = error.to_string();
        assert!(text.contains("PGCACHED_PG_BINDIR") && text.contains("/nowhere"));
    }
}

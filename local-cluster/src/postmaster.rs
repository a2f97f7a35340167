//! Running `postgres -D <data>` as a child process: start, wait until ready, stop.
//!
//! The postmaster gets its own process group, so Ctrl-C on the terminal of `pgcached demo`
//! reaches pgcached only (which then stops the cluster in order), and so the whole server —
//! postmaster and backends — can be killed at once with a signal to the group. Its stderr (and
//! stdout) go to `postgres.log` in the cluster's directory.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::io;
use super::os_user::ServerUser;
use super::LocalClusterError;

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(20);
/// How many lines of the log an error shows.
const LOG_LINES: usize = 30;

/// Where and as whom the server runs.
pub struct ServerSpec<'a> {
    /// Directory of the `postgres` program.
    pub bindir: &'a Path,
    /// The data directory.
    pub data_dir: &'a Path,
    /// The cluster's directory (working directory, `HOME`, log).
    pub workdir: &'a Path,
    /// Who runs it.
    pub user: &'a ServerUser,
}

/// Where in `postgres.log` the output of one run of the server begins.
pub struct LogMark {
    path: PathBuf,
    offset: u64,
}

impl LogMark {
    /// The last lines written since the mark.
    pub fn tail(&self) -> String {
        log_tail(&self.path, self.offset)
    }
}

/// Why a postmaster did not get ready.
pub struct Failure {
    /// What happened.
    pub reason: String,
    /// The end of this run's log.
    pub log: String,
}

impl Failure {
    /// Whether the server failed because its port was taken.
    pub fn port_in_use(&self) -> bool {
        [
            "could not bind",
            "Address already in use",
            "could not create any TCP/IP sockets",
        ]
        .iter()
        .any(|needle| self.log.contains(needle))
    }
}

/// Starts the postmaster on `port`.
pub fn spawn(spec: &ServerSpec<'_>, port: u16) -> Result<(Child, LogMark), LocalClusterError> {
    let path = spec.workdir.join("postgres.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io(format!("open {}", path.display()), e))?;
    let offset = log
        .metadata()
        .map_err(|e| io(format!("stat {}", path.display()), e))?
        .len();
    let log_out = log
        .try_clone()
        .map_err(|e| io(format!("open {}", path.display()), e))?;
    // A postmaster.pid left by a killed server would make the new one refuse to start if its
    // pid has been reused, and would confuse the readiness check.
    let pid_file = spec.data_dir.join("postmaster.pid");
    if pid_file.exists() {
        std::fs::remove_file(&pid_file)
            .map_err(|e| io(format!("remove stale {}", pid_file.display()), e))?;
    }
    let mut command = Command::new(spec.bindir.join("postgres"));
    command
        .arg("-D")
        .arg(spec.data_dir)
        .arg("-p")
        .arg(port.to_string())
        .current_dir(spec.workdir)
        .stdin(Stdio::null())
        .stdout(log_out)
        .stderr(log)
        .process_group(0);
    spec.user.apply(&mut command, spec.workdir);
    let child = command.spawn().map_err(|e| io("start postgres", e))?;
    Ok((child, LogMark { path, offset }))
}

/// Waits until postmaster.pid says `ready` (line 8), the postmaster exits, or `timeout`.
/// On failure the postmaster is left as it is; the caller stops it.
pub fn wait_ready(
    child: &mut Child,
    data_dir: &Path,
    log: &LogMark,
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    let pid_file = data_dir.join("postmaster.pid");
    let failure = |reason: String| Failure {
        reason,
        log: log.tail(),
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(failure(format!("postgres {status}"))),
            Ok(None) => {}
            Err(e) => return Err(failure(format!("cannot wait for postgres: {e}"))),
        }
        if is_ready(&pid_file, child.id()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failure(format!("not ready after {} s", timeout.as_secs())));
        }
        std::thread::sleep(POLL);
    }
}

/// Stops the postmaster: SIGINT (fast shutdown: abort transactions, disconnect, checkpoint),
/// and if it is not gone within `timeout`, SIGKILL to it and its process group.
pub fn stop(mut child: Child, timeout: Duration) {
    let pid = child.id();
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(pid, libc::SIGINT);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => std::thread::sleep(POLL),
            Err(_) => break,
        }
    }
    tracing::warn!(pid, "PostgreSQL did not shut down in time; killing it");
    // Not reaped yet, so the pid (and the process group id) cannot have been reused.
    signal(pid, libc::SIGKILL);
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

/// Sends `signal` to process `pid`.
fn signal(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Whether postmaster.pid was written by `pid` and its status line (line 8) says `ready`.
fn is_ready(pid_file: &Path, pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().is_some_and(|l| l.trim() == pid.to_string())
        && lines.get(7).is_some_and(|l| l.trim() == "ready")
}

/// The last lines of the log written since `offset`.
fn log_tail(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() && file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return format!("({} is empty)", path.display());
    }
    lines[lines.len().saturating_sub(LOG_LINES)..].join("\n")
}

//! A watchdog process that removes the cluster if its owner dies without cleaning up.
//!
//! `Drop` covers normal returns and panics, but not a process killed by SIGKILL, one that calls
//! `std::process::exit`, or a cluster kept in a static (statics are never dropped, as in a test
//! binary sharing one cluster). The watchdog is a small `/bin/sh` loop, running as the current
//! user (root included), that polls every 200 ms whether the owner process is alive
//! (`kill -0`); once it is gone, it SIGKILLs the postmaster and its process group, and
//! `rm -rf`s the cluster's directory.
//!
//! Each watchdog knows one postmaster pid, or none. The cluster replaces its watchdog whenever
//! that changes (start, stop) — the new one first, so there is never a moment without — so a
//! watchdog does not go on holding the pid of a reaped postmaster, which the system could
//! reuse. The watchdog is in its own process group, so Ctrl-C in a terminal does not reach it,
//! and it ignores SIGHUP and SIGINT; the cluster stops it with SIGKILL.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::error::io;
use super::LocalClusterError;

/// The watchdog script; `$1` owner pid, `$2` directory, `$3` postmaster pid or empty.
const SCRIPT: &str = r#"
trap '' HUP INT
owner="$1"; dir="$2"; postmaster="$3"
while kill -0 "$owner" 2>/dev/null; do
    sleep 0.2 2>/dev/null || sleep 1
done
if [ -n "$postmaster" ]; then
    kill -s KILL "$postmaster" 2>/dev/null
    kill -s KILL -- "-$postmaster" 2>/dev/null
fi
rm -rf -- "$dir"
"#;

/// A running watchdog; dropping it stops it (the cluster is then cleaned up by someone else).
#[derive(Debug)]
pub struct Watchdog {
    child: Option<Child>,
}

impl Watchdog {
    /// Starts a watchdog for this process, guarding `dir` and the postmaster `postmaster`.
    pub fn spawn(dir: &Path, postmaster: Option<u32>) -> Result<Watchdog, LocalClusterError> {
        Watchdog::spawn_for(std::process::id(), dir, postmaster)
    }

    /// Starts a watchdog that acts once process `owner` is gone.
    pub fn spawn_for(
        owner: u32,
        dir: &Path,
        postmaster: Option<u32>,
    ) -> Result<Watchdog, LocalClusterError> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("pgcached-cluster-watchdog")
            .arg(owner.to_string())
            .arg(dir)
            .arg(postmaster.map(|p| p.to_string()).unwrap_or_default())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| io("start the cluster watchdog (/bin/sh)", e))?;
        Ok(Watchdog { child: Some(child) })
    }

    /// Lets the watchdog run on after this handle is gone: it will clean up when this process
    /// exits. Used when the directory could not be removed now.
    pub fn detach(mut self) {
        self.child = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

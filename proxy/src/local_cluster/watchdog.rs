//! A watchdog process that removes the cluster if its owner dies without cleaning up.
//!
//! `Drop` covers panics and normal exits, but not a process killed by SIGKILL, one that calls
//! `std::process::exit`, or a cluster kept in a static (statics are never dropped, as in a test
//! binary that shares one cluster). The watchdog is a small shell loop that polls whether the
//! owner is alive and, once it is gone, kills the postmaster and deletes the directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts the watchdog for `postmaster_pid` and `dir`, owned by the current process.
pub fn spawn(postmaster_pid: u32, dir: &Path) -> Option<Child> {
    let script = r#"
owner="$1"; postmaster="$2"; dir="$3"
while kill -0 "$owner" 2>/dev/null; do sleep 0.2; done
kill -QUIT "$postmaster" 2>/dev/null
sleep 0.5
kill -KILL "-$postmaster" 2>/dev/null
kill -KILL "$postmaster" 2>/dev/null
rm -rf "$dir"
"#;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("pgcached-cluster-watchdog")
        .arg(std::process::id().to_string())
        .arg(postmaster_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

use std::os::unix::process::CommandExt;

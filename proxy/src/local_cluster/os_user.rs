//! The operating-system user the cluster runs as.
//!
//! initdb and postgres refuse to run as root. When pgcached (or its tests) run as root, the
//! cluster runs as `nobody` instead: its directory is handed to that user and each server
//! process is started with that uid and gid.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::LocalClusterError;

/// Who runs the server processes.
#[derive(Debug, Clone, Copy)]
pub enum ServerUser {
    /// The current (non-root) user.
    Current,
    /// An unprivileged user, because the current one is root.
    Switch { uid: u32, gid: u32 },
}

impl ServerUser {
    /// The current user, or `nobody` when running as root.
    pub fn pick() -> Result<ServerUser, LocalClusterError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(ServerUser::Current);
        }
        let name = CString::new("nobody").map_err(|_| LocalClusterError::NoUnprivilegedUser)?;
        // SAFETY: getpwnam with a valid C string; the result is read at once, before any other
        // call that could reuse its static buffer.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            return Err(LocalClusterError::NoUnprivilegedUser);
        }
        // SAFETY: entry is non-null and points to a passwd record.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(ServerUser::Switch { uid, gid })
    }

    /// Makes `command` run as this user.
    pub fn apply(&self, command: &mut Command) {
        if let ServerUser::Switch { uid, gid } = *self {
            command.uid(uid).gid(gid);
            command.env("HOME", "/tmp");
        }
    }

    /// Gives `path` (recursively) to this user.
    pub fn own(&self, path: &Path) -> Result<(), LocalClusterError> {
        if let ServerUser::Switch { uid, gid } = *self {
            chown_recursive(path, uid, gid).map_err(|e| LocalClusterError::Io {
                what: format!("chown {}", path.display()),
                source: e,
            })?;
        }
        Ok(())
    }
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

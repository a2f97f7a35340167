//! The operating-system user the cluster runs as.
//!
//! initdb and postgres refuse to run as root. When pgcached (or its tests) run as root, the
//! cluster runs as `nobody` instead: its directory tree is handed to that user and every server
//! process is started with that uid and gid. (With a uid set, std's `Command` also drops root's
//! supplementary groups with `setgroups(0, NULL)` before `setuid`.) Clients such as psql and the
//! watchdog keep running as the current user.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::error::io;
use super::LocalClusterError;

/// The unprivileged user the server runs as when the current user is root.
pub const UNPRIVILEGED_USER: &str = "nobody";

/// Who runs the server processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerUser {
    /// The current (non-root) user.
    Current,
    /// An unprivileged user, because the current one is root.
    Switch {
        /// Its user id.
        uid: u32,
        /// Its primary group id.
        gid: u32,
    },
}

impl ServerUser {
    /// The current user, or [`UNPRIVILEGED_USER`] when running as root.
    pub fn pick() -> Result<ServerUser, LocalClusterError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(ServerUser::Current);
        }
        let (uid, gid) = lookup(UNPRIVILEGED_USER).ok_or(LocalClusterError::NoUnprivilegedUser)?;
        if uid == 0 {
            return Err(LocalClusterError::NoUnprivilegedUser);
        }
        Ok(ServerUser::Switch { uid, gid })
    }

    /// Whether the server runs as another user than the current one.
    pub fn switches(&self) -> bool {
        matches!(self, ServerUser::Switch { .. })
    }

    /// Makes `command` run as this user, with `home` as its `HOME` (nobody's home usually does
    /// not exist).
    pub fn apply(&self, command: &mut Command, home: &Path) {
        if let ServerUser::Switch { uid, gid } = *self {
            command.uid(uid).gid(gid).env("HOME", home);
        }
    }

    /// Gives `path`, recursively, to this user (nothing to do for the current user).
    pub fn own(&self, path: &Path) -> Result<(), LocalClusterError> {
        if let ServerUser::Switch { uid, gid } = *self {
            chown_recursive(path, uid, gid).map_err(|e| {
                io(
                    format!("chown {} to {UNPRIVILEGED_USER}", path.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

/// uid and gid of the user called `name`, via the thread-safe `getpwnam_r`.
fn lookup(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: passwd is plain old data; all-zero is a valid (empty) value to be filled in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and the buffer's length is passed along.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        return Some((entry.pw_uid, entry.pw_gid));
    }
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let metadata = std::fs::symlink_metadata(path)?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_unknown_users_do_not() {
        assert_eq!(lookup("root"), Some((0, 0)));
        assert_eq!(lookup("no-such-user-pgcached"), None);
    }
}

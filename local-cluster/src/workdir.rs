//! The cluster's temporary directory: data directory, Unix socket and `postgres.log`.
//!
//! It is made in `$TMPDIR` (usually `/tmp`) unless that is unsuitable, in which case `/tmp` is
//! used: when the server runs as another user, every ancestor must be searchable by others; and
//! the socket path (`<dir>/.s.PGSQL.<port>`) must fit the 107 bytes of a Unix socket address.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::io;
use super::os_user::ServerUser;
use super::LocalClusterError;

/// Prefix of the directory's name.
pub const PREFIX: &str = "pgcached-cluster-";
/// The longest base directory still leaving room for the socket's name.
const MAX_BASE_LEN: usize = 64;

/// Creates the directory, mode 0700, owned by the server's user.
pub fn create(user: &ServerUser) -> Result<tempfile::TempDir, LocalClusterError> {
    let base = base_dir(user);
    let dir = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir_in(&base)
        .map_err(|e| io(format!("create a directory in {}", base.display()), e))?;
    set_mode(dir.path(), 0o700)?;
    user.own(dir.path())?;
    Ok(dir)
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), LocalClusterError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io(format!("chmod {mode:o} {}", path.display()), e))
}

fn base_dir(user: &ServerUser) -> PathBuf {
    let preferred = std::env::temp_dir();
    let short = preferred.as_os_str().len() <= MAX_BASE_LEN;
    if short && (!user.switches() || searchable_by_others(&preferred)) {
        preferred
    } else {
        PathBuf::from("/tmp")
    }
}

/// Whether `path` and all its ancestors have the "others may search" bit.
fn searchable_by_others(path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    path.ancestors().all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    })
}

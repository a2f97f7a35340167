//! Finding the PostgreSQL server binaries (`initdb`, `postgres`).
//!
//! Debian installs them in `/usr/lib/postgresql/<version>/bin`, which is not on `PATH`, and its
//! `pg_config` (from libpq-dev) may report `/usr/bin`, where they are not; so every candidate is
//! checked for the two programs rather than trusted.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::LocalClusterError;

/// Environment variable naming the binaries' directory; when set it is the only place looked at.
pub const BINDIR_ENV: &str = "PGCACHED_PG_BINDIR";

/// Finds a directory holding `initdb` and `postgres`.
pub fn find_bindir() -> Result<PathBuf, LocalClusterError> {
    let mut looked = Vec::new();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        return Err(LocalClusterError::NoBinaries {
            looked: vec![format!("{BINDIR_ENV}={}", dir.display())],
        });
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        looked.push(format!("pg_config --bindir ({})", dir.display()));
        if output.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        looked.push("PATH".to_owned());
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                return Ok(dir);
            }
        }
    }
    looked.push("/usr/lib/postgresql/*/bin".to_owned());
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    Some((version, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versioned.sort();
    if let Some((_, dir)) = versioned.into_iter().rev().find(|(_, d)| has_server(d)) {
        return Ok(dir);
    }
    looked.push("/usr/local/pgsql/bin".to_owned());
    let local = PathBuf::from("/usr/local/pgsql/bin");
    if has_server(&local) {
        return Ok(local);
    }
    Err(LocalClusterError::NoBinaries { looked })
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

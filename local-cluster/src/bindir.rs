//! Finding the PostgreSQL server binaries (`initdb`, `postgres`).
//!
//! Debian and Ubuntu install them in `/usr/lib/postgresql/<version>/bin`, which is not on
//! `PATH`, and their `pg_config` (from libpq-dev) may report `/usr/bin`, where they are not. So
//! every candidate is checked for both programs rather than trusted, and symbolic links are
//! resolved: a `/usr/local/bin/initdb` linking into the real directory yields that directory,
//! which also holds `psql` and `pgbench`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::LocalClusterError;

/// Environment variable naming the binaries' directory; when set, it is the only place looked at.
pub const BINDIR_ENV: &str = "PGCACHED_PG_BINDIR";

/// Where Debian-style packages put each major version's programs: `<this>/<version>/bin`.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";
/// Where a PostgreSQL built from source installs by default.
const SOURCE_BUILD_BINDIR: &str = "/usr/local/pgsql/bin";

/// Finds a directory holding `initdb` and `postgres`, looking in order at
/// `$PGCACHED_PG_BINDIR`, `pg_config --bindir`, the directory of `initdb` on `PATH`, the
/// highest version under `/usr/lib/postgresql/*/bin`, and `/usr/local/pgsql/bin`.
pub fn find_bindir() -> Result<PathBuf, LocalClusterError> {
    search(std::env::var_os(BINDIR_ENV), std::env::var_os("PATH"))
}

/// [`find_bindir`] with the environment passed in.
fn search(env_dir: Option<OsString>, path: Option<OsString>) -> Result<PathBuf, LocalClusterError> {
    if let Some(dir) = env_dir.filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return server_dir(&dir).ok_or_else(|| LocalClusterError::NoBinaries {
            looked: vec![format!("{BINDIR_ENV}={}", dir.display())],
        });
    }
    let mut looked = Vec::new();

    match on_path("pg_config", path.as_ref()) {
        Some(pg_config) => {
            let reported = Command::new(&pg_config)
                .arg("--bindir")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            match reported {
                Some(dir) => {
                    looked.push(format!(
                        "`{} --bindir` ({})",
                        pg_config.display(),
                        dir.display()
                    ));
                    if let Some(found) = server_dir(&dir) {
                        return Ok(found);
                    }
                }
                None => looked.push(format!("`{} --bindir` (failed)", pg_config.display())),
            }
        }
        None => looked.push("pg_config on PATH (not found)".to_owned()),
    }

    match on_path("initdb", path.as_ref()) {
        Some(initdb) => {
            let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
            looked.push(format!("initdb on PATH ({})", real.display()));
            if let Some(found) = real.parent().and_then(server_dir) {
                return Ok(found);
            }
        }
        None => looked.push("initdb on PATH (not found)".to_owned()),
    }

    looked.push(format!("{VERSIONED_ROOT}/*/bin"));
    for dir in versioned_dirs(Path::new(VERSIONED_ROOT)) {
        if let Some(found) = server_dir(&dir) {
            return Ok(found);
        }
    }

    looked.push(SOURCE_BUILD_BINDIR.to_owned());
    if let Some(found) = server_dir(Path::new(SOURCE_BUILD_BINDIR)) {
        return Ok(found);
    }
    Err(LocalClusterError::NoBinaries { looked })
}

/// `<root>/<version>/bin` for every version directory under `root`, highest version first
/// (`16` before `15` before `9.6`).
fn versioned_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name().to_string_lossy())?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; anything else is not a version.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The first `name` on `path` that is an executable file.
fn on_path(name: &str, path: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// `dir`, with symbolic links resolved, if it holds executable `initdb` and `postgres`.
fn server_dir(dir: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(dir).ok()?;
    (is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))).then_some(dir)
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_environment_override_is_a_clear_error() {
        let error = search(Some("/nowhere/bin".into()), None).expect_err("no binaries there");
        let text = error.to_string();
        assert!(text.contains("no PostgreSQL server binaries"), "{text}");
        assert!(text.contains("PGCACHED_PG_BINDIR=/nowhere/bin"), "{text}");
        assert!(text.contains("install"), "{text}");
    }

    #[test]
    fn versions_sort_numerically_highest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["9.6", "15", "16", "notaversion", "10"] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        let found: Vec<String> = versioned_dirs(dir.path())
            .iter()
            .filter_map(|p| Some(p.parent()?.file_name()?.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(found, ["16", "15", "10", "9.6"]);
    }

    #[test]
    fn initdb_on_path_is_followed_through_symlinks() {
        let Ok(real) = find_bindir() else {
            return; // no PostgreSQL on this machine
        };
        let links = tempfile::tempdir().expect("tempdir");
        for program in ["initdb", "postgres"] {
            std::os::unix::fs::symlink(real.join(program), links.path().join(program))
                .expect("symlink");
        }
        let path = std::env::join_paths([links.path()]).expect("PATH");
        assert_eq!(search(None, Some(path)).expect("found"), real);
    }

    #[test]
    fn nothing_on_path_lists_every_place_looked_at() {
        let Err(error) = search(None, Some("/nowhere".into())) else {
            return; // this machine has a versioned or source-built installation
        };
        let text = error.to_string();
        assert!(
            text.contains("pg_config") && text.contains(VERSIONED_ROOT),
            "{text}"
        );
    }
}

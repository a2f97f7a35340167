//! Creating the data directory with initdb.

use std::path::Path;
use std::process::{Command, Stdio};

use super::error::io;
use super::os_user::ServerUser;
use super::{users, LocalClusterError};

/// Locales tried in order: `C.UTF-8` sorts like `C` but classifies Unicode characters; some
/// systems (older glibc, musl, macOS) lack it, and plain `C` works everywhere.
const LOCALES: [&str; 2] = ["C.UTF-8", "C"];

/// Runs initdb for `data_dir` as `user`, with `workdir` as working and home directory.
pub fn run(
    bindir: &Path,
    data_dir: &Path,
    workdir: &Path,
    user: &ServerUser,
) -> Result<(), LocalClusterError> {
    let mut failures = Vec::new();
    for locale in LOCALES {
        let mut command = Command::new(bindir.join("initdb"));
        command
            .arg("-D")
            .arg(data_dir)
            .arg("--auth=trust")
            .arg(format!("--username={}", users::SUPERUSER))
            .arg("--encoding=UTF8")
            .arg(format!("--locale={locale}"))
            .arg("--no-sync")
            .current_dir(workdir)
            .stdin(Stdio::null());
        user.apply(&mut command, workdir);
        let output = command.output().map_err(|e| io("run initdb", e))?;
        if output.status.success() {
            tracing::debug!(locale, data_dir = %data_dir.display(), "initdb done");
            return Ok(());
        }
        failures.push(format!(
            "with --locale={locale} ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
        // initdb removes what it created on failure; make sure, so the next try starts clean.
        if data_dir.exists() {
            std::fs::remove_dir_all(data_dir)
                .map_err(|e| io(format!("remove {}", data_dir.display()), e))?;
        }
    }
    Err(LocalClusterError::Program {
        program: "initdb".to_owned(),
        output: failures.join("\n"),
    })
}

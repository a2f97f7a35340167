//! Running SQL through the cluster's own psql.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::io;
use super::{users, LocalClusterError};

/// Connection settings from the environment that could redirect or break psql's connection.
const CLEARED_ENV: [&str; 9] = [
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGHOSTADDR",
    "PGTARGETSESSIONATTRS",
    "PGREQUIRESSL",
    "PGSSLCERTMODE",
];

/// Runs `sql` as the superuser in `database` on 127.0.0.1:`port`; returns psql's stdout.
///
/// The SQL is fed on stdin (`-f -`), so a script may hold many statements, each in its own
/// transaction (CREATE DATABASE refuses the single transaction of `psql -c`). Output is
/// unaligned tuples only (`-A -t`): `SELECT 1` prints `1\n`.
pub fn run(
    bindir: &Path,
    port: u16,
    database: &str,
    sql: &str,
) -> Result<String, LocalClusterError> {
    let mut command = Command::new(bindir.join("psql"));
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-U", users::SUPERUSER, "-d", database])
        .arg("-p")
        .arg(port.to_string())
        .args(["-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in CLEARED_ENV {
        command.env_remove(name);
    }
    let mut child = command.spawn().map_err(|e| io("run psql", e))?;
    let stdin = child.stdin.take();
    // Feed stdin from another thread while collecting the output, so that neither pipe can
    // fill up and block the other side.
    let (written, output) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || match stdin {
            Some(mut stdin) => stdin.write_all(sql.as_bytes()),
            None => Ok(()),
        });
        let output = child.wait_with_output();
        (writer.join(), output)
    });
    let output = output.map_err(|e| io("run psql", e))?;
    if !output.status.success() {
        return Err(LocalClusterError::Program {
            program: "psql".to_owned(),
            output: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(io("write SQL to psql", e)),
        Err(_) => {
            return Err(LocalClusterError::Program {
                program: "psql".to_owned(),
                output: "the thread feeding it SQL panicked".to_owned(),
            })
        }
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

//! Clients: URLs, tokio-postgres connections, and external client programs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgcached_local_cluster::LocalCluster;

/// Where a client connects: straight to PostgreSQL or through pgcached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Host address.
    pub host: &'static str,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// PostgreSQL itself.
    pub fn direct(cluster: &LocalCluster) -> Endpoint {
        Endpoint {
            host: "127.0.0.1",
            port: cluster.port(),
        }
    }

    /// pgcached on `port`.
    pub fn proxy(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1",
            port,
        }
    }
}

/// A libpq-style URL for `user` (with `password` if given) on database `db`.
pub fn url(endpoint: Endpoint, user: &str, password: Option<&str>, db: &str) -> String {
    match password {
        Some(p) => format!(
            "postgres://{user}:{p}@{}:{}/{db}?sslmode=disable",
            endpoint.host, endpoint.port
        ),
        None => format!(
            "postgres://{user}@{}:{}/{db}?sslmode=disable",
            endpoint.host, endpoint.port
        ),
    }
}

/// Connects with tokio-postgres (no TLS) and drives the connection in the background.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The repository's `tests/` directory.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a program with a timeout of `seconds`, returning its output.
pub fn run_with_timeout(command: &mut Command, seconds: u64) -> Output {
    let mut wrapped = Command::new("timeout");
    wrapped.arg("--kill-after=5").arg(seconds.to_string());
    wrapped.arg(command.get_program());
    wrapped.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()))
}

/// psql from the cluster's binaries, connected to `url`, with `-X -q -A -t` and ON_ERROR_STOP.
pub fn psql(cluster: &LocalCluster, url: &str) -> Command {
    let mut command = Command::new(cluster.bindir().join("psql"));
    command
        .arg("-X")
        .arg("-q")
        .arg("-A")
        .arg("-t")
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg(url)
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// pgbench from the cluster's binaries.
pub fn pgbench(cluster: &LocalCluster) -> Command {
    let program = cluster.bindir().join("pgbench");
    let program = if program.exists() {
        program
    } else {
        PathBuf::from("pgbench")
    };
    let mut command = Command::new(program);
    command.env("PGCONNECT_TIMEOUT", "10");
    command
}

/// The Python interpreter for driver scripts (`PGCACHED_PYTHON` or `python3`).
pub fn python() -> Command {
    Command::new(std::env::var("PGCACHED_PYTHON").unwrap_or_else(|_| "python3".to_owned()))
}

/// Path of a driver script in `tests/clients/`.
pub fn client_script(name: &str) -> PathBuf {
    tests_dir().join("clients").join(name)
}

/// Fails the test with the program's output if it did not succeed.
pub fn expect_success(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    stdout
}

/// True when `path` exists (a helper for readable asserts).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// The server's message of a tokio-postgres error (its Display says only "db error").
pub fn error_text(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_else(|| error.to_string())
}

/// Everything a client reads of an error: message, detail and hint, one per line (the
/// driver's own text when the server sent no ErrorResponse).
pub fn error_told(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => [Some(db.message()), db.detail(), db.hint()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("\n"),
        None => error.to_string(),
    }
}

/// The first column of the first row of a simple query, as text; panics with the server's
/// message on error and when there is no row.
pub async fn first_value(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)))
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// A psql command (from the cluster's binaries) with psql's normal, aligned output, connected to
/// `url`, running each of `commands` in turn.
pub fn psql_aligned(cluster: &LocalCluster, url: &str, commands: &[&str]) -> Command {
    let mut command = Command::new(cluster.bindir().join("psql"));
    command.arg("-X").arg(url).env("PGCONNECT_TIMEOUT", "10");
    for sql in commands {
        command.arg("-c").arg(sql);
    }
    command
}

//! What can go wrong when starting or using a local cluster.

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// No directory with the PostgreSQL server programs was found.
    #[error(
        "no PostgreSQL server binaries (initdb and postgres) were found; looked in: {}. \
         To fix this, install the PostgreSQL server (e.g. `apt-get install postgresql` or \
         `dnf install postgresql-server`), or set PGCACHED_PG_BINDIR to the directory that \
         holds initdb and postgres (e.g. /usr/lib/postgresql/16/bin)",
        looked.join("; ")
    )]
    NoBinaries {
        /// Every place looked at, in order.
        looked: Vec<String>,
    },
    /// Running as root, and there is no unprivileged user to run PostgreSQL as.
    #[error(
        "running as root, and there is no user 'nobody' to run PostgreSQL as \
         (initdb and postgres refuse to run as root)"
    )]
    NoUnprivilegedUser,
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation, e.g. "write pg_hba.conf".
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PostgreSQL program (initdb, psql) failed.
    #[error("{program} failed: {output}")]
    Program {
        /// The program's name.
        program: String,
        /// What it printed, or its exit status.
        output: String,
    },
    /// The server did not come up.
    #[error("PostgreSQL did not start ({reason}); last lines of its log:\n{log}")]
    Start {
        /// What happened: exited with a status, or did not get ready in time.
        reason: String,
        /// The end of postgres.log.
        log: String,
    },
}

/// Shorthand for [`LocalClusterError::Io`].
pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> LocalClusterError {
    LocalClusterError::Io {
        what: what.into(),
        source,
    }
}

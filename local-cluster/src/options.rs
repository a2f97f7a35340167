//! How a cluster is configured.

use std::path::PathBuf;

/// Settings of a cluster; [`Default`] gives a logical-replication-ready cluster without TLS.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `wal_level`; the default `logical` lets pgcached follow changes by logical replication.
    pub wal_level: String,
    /// Server certificate and key; when set they are copied into the data directory and
    /// `ssl = on`. The `host` lines of pg_hba.conf accept both TLS and plain connections.
    pub ssl: Option<SslFiles>,
    /// More `postgresql.conf` lines as (name, value). Values are written verbatim after the
    /// built-in settings (so they override them); string values need their own single quotes,
    /// e.g. `("log_statement".into(), "'all'".into())`.
    pub extra_settings: Vec<(String, String)>,
    /// SQL run as the superuser in each database of the cluster (`postgres` and `app`) once
    /// the roles exist: what the caller's own software needs installed, e.g. pgcached's SCRAM
    /// verifier function. Empty by default.
    pub setup_sql: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            wal_level: "logical".to_owned(),
            ssl: None,
            extra_settings: Vec::new(),
            setup_sql: String::new(),
        }
    }
}

/// Certificate and private key for the server's TLS, as PEM files.
#[derive(Debug, Clone)]
pub struct SslFiles {
    /// PEM certificate (chain) presented by the server.
    pub cert_pem: PathBuf,
    /// PEM private key of that certificate; copied with mode 0600, owned by the server's user.
    pub key_pem: PathBuf,
}

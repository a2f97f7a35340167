//! What goes into the data directory after initdb: postgresql.conf settings, pg_hba.conf and
//! the TLS files.

use std::fmt::Write as _;
use std::path::Path;

use super::error::io;
use super::workdir::set_mode;
use super::{users, ClusterOptions, LocalClusterError};

/// File names of the TLS certificate and key inside the data directory.
const SSL_CERT: &str = "server.crt";
const SSL_KEY: &str = "server.key";

/// Appends the cluster's settings to postgresql.conf, writes pg_hba.conf and copies the TLS
/// files. The caller hands the files to the server's user afterwards.
pub fn write(
    data_dir: &Path,
    socket_dir: &Path,
    options: &ClusterOptions,
) -> Result<(), LocalClusterError> {
    let path = data_dir.join("postgresql.conf");
    let mut conf = std::fs::read_to_string(&path).map_err(|e| io("read postgresql.conf", e))?;
    conf.push_str("\n# pgcached local cluster\n");
    for (name, value) in settings(socket_dir, options) {
        let _ = writeln!(conf, "{name} = {value}");
    }
    std::fs::write(&path, conf).map_err(|e| io("write postgresql.conf", e))?;
    std::fs::write(data_dir.join("pg_hba.conf"), users::hba_conf())
        .map_err(|e| io("write pg_hba.conf", e))?;
    if let Some(ssl) = &options.ssl {
        copy_private(&ssl.cert_pem, &data_dir.join(SSL_CERT))?;
        copy_private(&ssl.key_pem, &data_dir.join(SSL_KEY))?;
    }
    Ok(())
}

/// The settings, in order; later ones win, so `extra_settings` come last.
fn settings(socket_dir: &Path, options: &ClusterOptions) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = [
        ("listen_addresses", quote("127.0.0.1")),
        (
            "unix_socket_directories",
            quote(&socket_dir.display().to_string()),
        ),
        ("wal_level", quote(&options.wal_level)),
        ("max_wal_senders", "10".to_owned()),
        ("max_replication_slots", "10".to_owned()),
        ("max_connections", "200".to_owned()),
        ("fsync", "off".to_owned()),
        ("synchronous_commit", "on".to_owned()),
        ("full_page_writes", "off".to_owned()),
        ("shared_buffers", "64MB".to_owned()),
        ("log_min_messages", "warning".to_owned()),
        ("log_destination", quote("stderr")),
        ("logging_collector", "off".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    if options.ssl.is_some() {
        settings.push(("ssl".to_owned(), "on".to_owned()));
        settings.push(("ssl_cert_file".to_owned(), quote(SSL_CERT)));
        settings.push(("ssl_key_file".to_owned(), quote(SSL_KEY)));
    }
    settings.extend(options.extra_settings.iter().cloned());
    settings
}

/// A postgresql.conf string literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Copies a PEM file with mode 0600 (PostgreSQL refuses a key readable by others).
fn copy_private(from: &Path, to: &Path) -> Result<(), LocalClusterError> {
    std::fs::copy(from, to)
        .map_err(|e| io(format!("copy {} to {}", from.display(), to.display()), e))?;
    set_mode(to, 0o600)
}

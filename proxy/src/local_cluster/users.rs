//! The roles every local cluster has, one per authentication method, and pgcached's own role.

/// Superuser, trusted from loopback.
pub const SUPERUSER: &str = "postgres";
/// A role authenticated by `trust`.
pub const TRUST_USER: &str = "trust_user";
/// A role authenticated by `md5`.
pub const MD5_USER: &str = "md5_user";
/// Password of [`MD5_USER`].
pub const MD5_PASSWORD: &str = "md5_secret";
/// A role authenticated by `scram-sha-256`.
pub const SCRAM_USER: &str = "scram_user";
/// Password of [`SCRAM_USER`].
pub const SCRAM_PASSWORD: &str = "scram_secret";
/// pgcached's own role (LOGIN REPLICATION), for its control and replication connections.
pub const PGCACHED_USER: &str = "pgcached";
/// Password of [`PGCACHED_USER`].
pub const PGCACHED_PASSWORD: &str = "pgcached_secret";

/// pg_hba.conf: one method per role, loopback TCP only, plus the superuser's Unix socket.
pub fn hba_conf() -> String {
    let mut lines = vec!["local all postgres trust".to_owned()];
    for address in ["127.0.0.1/32", "::1/128"] {
        for (database, user, method) in [
            ("all", SUPERUSER, "trust"),
            ("all", TRUST_USER, "trust"),
            ("all", MD5_USER, "md5"),
            ("all", SCRAM_USER, "scram-sha-256"),
            ("all", PGCACHED_USER, "scram-sha-256"),
            ("replication", PGCACHED_USER, "scram-sha-256"),
            ("replication", SUPERUSER, "trust"),
            ("all", "all", "scram-sha-256"),
        ] {
            lines.push(format!("host {database} {user} {address} {method}"));
        }
    }
    lines.join("\n") + "\n"
}

/// SQL creating the roles and the `app` database.
pub fn setup_sql() -> String {
    format!(
        "SET password_encryption = 'md5';\n\
         CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}';\n\
         SET password_encryption = 'scram-sha-256';\n\
         CREATE ROLE {TRUST_USER} LOGIN;\n\
         CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}';\n\
         CREATE ROLE {PGCACHED_USER} LOGIN REPLICATION PASSWORD '{PGCACHED_PASSWORD}';\n\
         CREATE DATABASE app OWNER postgres;\n\
         GRANT CONNECT, TEMPORARY ON DATABASE app TO PUBLIC;\n"
    )
}

/// SQL run inside `app` once it exists.
pub fn app_sql() -> &'static str {
    "GRANT ALL ON SCHEMA public TO PUBLIC;"
}

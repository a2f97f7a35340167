//! The roles every local cluster has — one per authentication method, plus pgcached's own —
//! and the pg_hba.conf that authenticates them.

/// Superuser, trusted (loopback TCP and the Unix socket).
pub const SUPERUSER: &str = "postgres";
/// A role authenticated by `trust`.
pub const TRUST_USER: &str = "trust_user";
/// A role authenticated by `md5`; its password is stored as an md5 hash.
pub const MD5_USER: &str = "md5_user";
/// Password of [`MD5_USER`].
pub const MD5_PASSWORD: &str = "md5_secret";
/// A role authenticated by `password` (sent in clear; its stored password is SCRAM).
pub const PASSWORD_USER: &str = "password_user";
/// Password of [`PASSWORD_USER`].
pub const PASSWORD_PASSWORD: &str = "password_secret";
/// A role authenticated by `scram-sha-256`.
pub const SCRAM_USER: &str = "scram_user";
/// Password of [`SCRAM_USER`].
pub const SCRAM_PASSWORD: &str = "scram_secret";
/// pgcached's own role (LOGIN REPLICATION, `scram-sha-256`), for its control and replication
/// connections.
pub const PGCACHED_USER: &str = "pgcached";
/// Password of [`PGCACHED_USER`].
pub const PGCACHED_PASSWORD: &str = "pgcached_secret";
/// The database created for applications, owned by [`SUPERUSER`], open to every role.
pub const APP_DATABASE: &str = "app";

/// pg_hba.conf: loopback TCP only (IPv4 and IPv6), one method per role, replication for
/// pgcached and the superuser, SCRAM for everyone else; plus the superuser on the Unix socket.
/// `host` lines match both TLS and plain connections.
pub fn hba_conf() -> String {
    let mut text = String::from(
        "# pgcached local cluster: one authentication method per role\n\
         # TYPE DATABASE USER ADDRESS METHOD\n",
    );
    text.push_str(&format!("local all {SUPERUSER} trust\n"));
    for address in ["127.0.0.1/32", "::1/128"] {
        for (database, user, method) in [
            ("all", SUPERUSER, "trust"),
            ("all", TRUST_USER, "trust"),
            ("all", MD5_USER, "md5"),
            ("all", PASSWORD_USER, "password"),
            ("all", SCRAM_USER, "scram-sha-256"),
            ("all", PGCACHED_USER, "scram-sha-256"),
            ("replication", PGCACHED_USER, "scram-sha-256"),
            ("replication", SUPERUSER, "trust"),
            ("all", "all", "scram-sha-256"),
        ] {
            text.push_str(&format!("host {database} {user} {address} {method}\n"));
        }
    }
    text
}

/// SQL, run as the superuser in `postgres`, creating the roles and the app database.
pub fn setup_sql() -> String {
    format!(
        "SET password_encryption = 'md5';\n\
         CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}';\n\
         SET password_encryption = 'scram-sha-256';\n\
         CREATE ROLE {TRUST_USER} LOGIN;\n\
         CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}';\n\
         CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD_PASSWORD}';\n\
         CREATE ROLE {PGCACHED_USER} LOGIN REPLICATION PASSWORD '{PGCACHED_PASSWORD}';\n\
         CREATE DATABASE {APP_DATABASE} OWNER {SUPERUSER};\n\
         GRANT CONNECT, TEMPORARY ON DATABASE {APP_DATABASE} TO PUBLIC;\n"
    )
}

/// SQL run inside the app database once it exists: since PostgreSQL 15 only the owner may
/// create objects in `public`; the test roles may too.
pub const APP_SQL: &str = "GRANT ALL ON SCHEMA public TO PUBLIC;\n";

//! What keeps a database's change stream from working, sorted by what an operator must change.
//!
//! PostgreSQL says why a replication connection or command failed with a SQLSTATE; where one
//! SQLSTATE covers several causes (53300 for `max_connections` and `max_wal_senders`), the
//! message tells them apart. Each problem owns its metric label and its text for people, which
//! names the setting to change. Errors that are not a problem of configuration (a lost
//! connection, a server restarting) are not problems: the stream reconnects.

use std::time::Duration;

use crate::wire::ServerError;

/// Retry delay after a problem only an operator can fix (and usually a restart).
const CONFIGURATION_RETRY: Duration = Duration::from_secs(30);
/// Retry delay after a resource limit that frees up by itself when others disconnect.
const LIMIT_RETRY: Duration = Duration::from_secs(5);

/// Why the change stream of a database cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// `--upstream` has no user for pgcached's own connections.
    NoUser,
    /// TLS could not be set up as `sslmode` demands (refused, bad certificate, wrong name).
    Tls {
        /// What failed.
        detail: String,
    },
    /// PostgreSQL refused pgcached's credentials or asked for a method pgcached cannot do.
    Authentication {
        /// PostgreSQL's or pgcached's words.
        detail: String,
    },
    /// pg_hba.conf has no line that lets pgcached's role in.
    PgHba {
        /// PostgreSQL's words.
        detail: String,
    },
    /// The role lacks the REPLICATION attribute.
    ReplicationRole,
    /// Every WAL sender is in use.
    MaxWalSenders,
    /// Every connection slot is in use.
    MaxConnections,
    /// Every replication slot is in use.
    MaxReplicationSlots,
    /// `wal_level` is not `logical`.
    WalLevel {
        /// Its value, when known.
        current: String,
    },
    /// The publication named by `--publication` does not exist in the database.
    PublicationMissing {
        /// Its name.
        publication: String,
    },
    /// The output plugin is not installed on the server.
    DecodingPlugin {
        /// `test_decoding` or `pgoutput`.
        plugin: &'static str,
    },
    /// The server is a standby that cannot decode (before PostgreSQL 16).
    InRecovery,
}

impl Problem {
    /// The metric label (`pgcached_replication_problem{problem}`).
    pub fn label(&self) -> &'static str {
        match self {
            Problem::NoUser => "no_user",
            Problem::Tls { .. } => "tls",
            Problem::Authentication { .. } => "authentication",
            Problem::PgHba { .. } => "pg_hba",
            Problem::ReplicationRole => "replication_role",
            Problem::MaxWalSenders => "max_wal_senders",
            Problem::MaxConnections => "max_connections",
            Problem::MaxReplicationSlots => "max_replication_slots",
            Problem::WalLevel { .. } => "wal_level",
            Problem::PublicationMissing { .. } => "publication_missing",
            Problem::DecodingPlugin { .. } => "decoding_plugin",
            Problem::InRecovery => "in_recovery",
        }
    }

    /// Every label, for documentation checks.
    pub const LABELS: [&'static str; 12] = [
        "no_user",
        "tls",
        "authentication",
        "pg_hba",
        "replication_role",
        "max_wal_senders",
        "max_connections",
        "max_replication_slots",
        "wal_level",
        "publication_missing",
        "decoding_plugin",
        "in_recovery",
    ];

    /// What is wrong and what to change, for the log, `SHOW REPLICATION` and the alert.
    pub fn text(&self) -> String {
        match self {
            Problem::NoUser => "the --upstream URL has no user: give pgcached its own role with \
                 the REPLICATION attribute, e.g. postgres://pgcached:secret@host/db"
                .to_owned(),
            Problem::Tls { detail } => format!(
                "TLS to PostgreSQL failed ({detail}): check sslmode and sslrootcert in --upstream \
                 (sslrootcert must hold the CA that signed the server's certificate)"
            ),
            Problem::Authentication { detail } => format!(
                "PostgreSQL refused pgcached's login ({detail}): check the user and password in \
                 --upstream"
            ),
            Problem::PgHba { detail } => format!(
                "pg_hba.conf does not let pgcached's role in ({detail}): add a line for it and the \
                 database (host <database> <role> <address> scram-sha-256) and reload PostgreSQL"
            ),
            Problem::ReplicationRole => "pgcached's role lacks the REPLICATION attribute: \
                 ALTER ROLE <the user in --upstream> REPLICATION"
                .to_owned(),
            Problem::MaxWalSenders => "every WAL sender is in use (max_wal_senders): raise \
                 max_wal_senders on PostgreSQL (a restart) or stop an idle replication client; \
                 pgcached needs one per database it caches"
                .to_owned(),
            Problem::MaxConnections => "PostgreSQL has no connection slot free \
                 (max_connections): raise max_connections or lower the number of connections"
                .to_owned(),
            Problem::MaxReplicationSlots => "every replication slot is in use \
                 (max_replication_slots): raise max_replication_slots on PostgreSQL (a restart) \
                 or drop an unused slot (pg_drop_replication_slot); pgcached needs one temporary \
                 slot per database it caches"
                .to_owned(),
            Problem::WalLevel { current } => format!(
                "wal_level is {current}, logical decoding needs wal_level = logical: set it in \
                 postgresql.conf (on managed services, their logical replication parameter) and \
                 restart PostgreSQL"
            ),
            Problem::PublicationMissing { publication } => format!(
                "publication \"{publication}\" named by --publication does not exist in this \
                 database: create it (CREATE PUBLICATION \"{publication}\" FOR TABLE ...) or run \
                 without --publication to follow every table with test_decoding"
            ),
            Problem::DecodingPlugin { plugin } => format!(
                "the output plugin {plugin} is not installed on PostgreSQL: install the server's \
                 contrib modules, or name a publication with --publication to use pgoutput"
            ),
            Problem::InRecovery => "PostgreSQL is a standby and cannot decode changes (before \
                 version 16): point --upstream at the primary"
                .to_owned(),
        }
    }

    /// How long to wait before trying again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Problem::MaxWalSenders | Problem::MaxConnections | Problem::MaxReplicationSlots => {
                LIMIT_RETRY
            }
            _ => CONFIGURATION_RETRY,
        }
    }

    /// The problem an ErrorResponse reports, or `None` for errors that are not a
    /// configuration problem (the stream then reconnects).
    pub fn from_server(error: &ServerError, plugin: &'static str) -> Option<Problem> {
        let message = error.message.to_ascii_lowercase();
        let detail = || error.message.clone();
        match error.code.as_str() {
            "53300" if message.contains("max_wal_senders") => Some(Problem::MaxWalSenders),
            "53300" => Some(Problem::MaxConnections),
            "53400" if message.contains("replication slot") => Some(Problem::MaxReplicationSlots),
            "42501"
                if message.contains("replication")
                    || message.contains("walsender")
                    || message.contains("wal sender") =>
            {
                Some(Problem::ReplicationRole)
            }
            "28000" if message.contains("pg_hba.conf") => Some(Problem::PgHba { detail: detail() }),
            "28000" | "28P01" => Some(Problem::Authentication { detail: detail() }),
            "55000" if message.contains("wal_level") => Some(Problem::WalLevel {
                current: "not logical".to_owned(),
            }),
            "55000" if message.contains("recovery") => Some(Problem::InRecovery),
            "42704" if message.contains("publication") => {
                let publication = error
                    .message
                    .split('"')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                Some(Problem::PublicationMissing { publication })
            }
            "58P01" | "58P02" if message.contains(plugin) => {
                Some(Problem::DecodingPlugin { plugin })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str, message: &str) -> ServerError {
        ServerError {
            severity: "FATAL".to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
            hint: None,
        }
    }

    #[test]
    fn postgres_errors_are_sorted_by_what_to_change() {
        let cases = [
            (
                "53300",
                "number of requested standby connections exceeds max_wal_senders (currently 1)",
                Some("max_wal_senders"),
            ),
            (
                "53300",
                "sorry, too many clients already",
                Some("max_connections"),
            ),
            (
                "53400",
                "all replication slots are in use",
                Some("max_replication_slots"),
            ),
            (
                "42501",
                "must be superuser or replication role to start walsender",
                Some("replication_role"),
            ),
            (
                "42501",
                "permission denied to start WAL sender",
                Some("replication_role"),
            ),
            (
                "28000",
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"x\", database \"app\"",
                Some("pg_hba"),
            ),
            (
                "28P01",
                "password authentication failed for user \"x\"",
                Some("authentication"),
            ),
            (
                "55000",
                "logical decoding requires wal_level >= logical",
                Some("wal_level"),
            ),
            (
                "42704",
                "publication \"shop\" does not exist",
                Some("publication_missing"),
            ),
            (
                "58P01",
                "could not access file \"test_decoding\": No such file or directory",
                Some("decoding_plugin"),
            ),
            (
                "57P01",
                "terminating connection due to administrator command",
                None,
            ),
            ("3D000", "database \"gone\" does not exist", None),
            ("42501", "permission denied for table t", None),
        ];
        for (code, message, label) in cases {
            let problem = Problem::from_server(&error(code, message), "test_decoding");
            assert_eq!(
                problem.as_ref().map(Problem::label),
                label,
                "{code} {message}"
            );
            if let Some(problem) = problem {
                assert!(Problem::LABELS.contains(&problem.label()));
                assert!(!problem.text().is_empty());
            }
        }
        assert_eq!(
            Problem::from_server(
                &error("42704", "publication \"shop\" does not exist"),
                "pgoutput"
            ),
            Some(Problem::PublicationMissing {
                publication: "shop".to_owned()
            })
        );
    }

    #[test]
    fn each_text_names_the_setting_to_change() {
        let expectations = [
            (Problem::MaxWalSenders, "max_wal_senders"),
            (Problem::MaxReplicationSlots, "max_replication_slots"),
            (Problem::MaxConnections, "max_connections"),
            (Problem::ReplicationRole, "REPLICATION"),
            (
                Problem::WalLevel {
                    current: "replica".to_owned(),
                },
                "wal_level = logical",
            ),
            (Problem::NoUser, "--upstream"),
            (
                Problem::Tls {
                    detail: "invalid peer certificate: UnknownIssuer".to_owned(),
                },
                "sslrootcert",
            ),
            (
                Problem::PublicationMissing {
                    publication: "shop".to_owned(),
                },
                "--publication",
            ),
        ];
        for (problem, setting) in expectations {
            assert!(problem.text().contains(setting), "{}", problem.text());
        }
        assert_eq!(Problem::MaxWalSenders.retry_after(), LIMIT_RETRY);
        assert_eq!(Problem::NoUser.retry_after(), CONFIGURATION_RETRY);
    }
}

//! Every login that works straight to PostgreSQL works through pgcached, with TLS or without,
//! and every login that fails fails with PostgreSQL's own SQLSTATE and message.
//!
//! The matrix: client `sslmode` disable / require / require with `channel_binding=require`,
//! upstream `sslmode` disable / require, SCRAM, md5, password and trust roles, right and wrong
//! passwords.
//! Each login runs with psql (libpq, which implements channel binding) straight to PostgreSQL
//! and through pgcached; the outcomes must be the same.

use std::process::Output;

use pgcached_local_cluster::users::{
    MD5_PASSWORD, MD5_USER, PASSWORD_PASSWORD, PASSWORD_USER, PGCACHED_PASSWORD, PGCACHED_USER,
    SCRAM_PASSWORD, SCRAM_USER, TRUST_USER,
};
use pgcached_local_cluster::LocalCluster;
use pgcached_tests::certs::{self, tls_cluster, TestCerts};
use pgcached_tests::clients::run_with_timeout;
use pgcached_tests::proxy::config_with;
use pgcached_tests::TestProxy;

/// pgcached with TLS for clients, in front of `cluster` with upstream `sslmode`.
fn proxy(cluster: &LocalCluster, certs: &TestCerts, sslmode: &str, extra: &[&str]) -> TestProxy {
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@127.0.0.1:{}?sslmode={sslmode}",
        cluster.port()
    );
    let cert = certs.server_cert.display().to_string();
    let key = certs.server_key.display().to_string();
    let mut flags = vec!["--tls-cert", &cert, "--tls-key", &key, "--cache", "off"];
    flags.extend_from_slice(extra);
    TestProxy::with_config(config_with(&upstream, &flags, ""))
}

/// How a client connects.
#[derive(Debug, Clone, Copy)]
struct ClientMode {
    sslmode: &'static str,
    channel_binding: &'static str,
}

const CLIENT_MODES: [ClientMode; 3] = [
    ClientMode {
        sslmode: "disable",
        channel_binding: "prefer",
    },
    ClientMode {
        sslmode: "require",
        channel_binding: "prefer",
    },
    ClientMode {
        sslmode: "require",
        channel_binding: "require",
    },
];

/// A login's outcome, comparable between PostgreSQL and pgcached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Logged in; the value psql printed.
    LoggedIn(String),
    /// Refused, with libpq's message minus the "connection to server at ... failed:" prefix.
    Refused(String),
}

fn login(
    cluster: &LocalCluster,
    port: u16,
    mode: ClientMode,
    user: &str,
    password: &str,
) -> Outcome {
    let conninfo = format!(
        "host=127.0.0.1 port={port} dbname=app user={user} sslmode={} channel_binding={}",
        mode.sslmode, mode.channel_binding
    );
    let mut command = std::process::Command::new(cluster.bindir().join("psql"));
    command
        .args(["-X", "-w", "-q", "-A", "-t", "-c", "SELECT current_user || ' ' || coalesce((SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), '?')"])
        .arg(&conninfo)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSSLMODE")
        .env_remove("PGCHANNELBINDING");
    outcome(&run_with_timeout(&mut command, 30), port)
}

fn outcome(output: &Output, port: u16) -> Outcome {
    if output.status.success() {
        let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // Whether the server's side of the session is TLS differs by design (upstream sslmode).
        let user = printed.split(' ').next().unwrap_or("").to_owned();
        return Outcome::LoggedIn(user);
    }
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let prefix = format!("connection to server at \"127.0.0.1\", port {port} failed: ");
    let text = stderr
        .lines()
        .map(|line| line.replace(&prefix, "").replace("psql: error: ", ""))
        .collect::<Vec<_>>()
        .join("\n");
    Outcome::Refused(text.trim().to_owned())
}

#[test]
fn every_login_outcome_through_pgcached_matches_postgres() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&certs);
    let proxies = [
        ("disable", proxy(&cluster, &certs, "disable", &[])),
        ("require", proxy(&cluster, &certs, "require", &[])),
    ];
    let users = [
        (SCRAM_USER, SCRAM_PASSWORD),
        (MD5_USER, MD5_PASSWORD),
        (PASSWORD_USER, PASSWORD_PASSWORD),
        (TRUST_USER, "anything"),
    ];
    let mut compared = 0;
    let mut logged_in = 0;
    for mode in CLIENT_MODES {
        for (user, right) in users {
            for password in [right, "wrong password"] {
                let direct = login(&cluster, cluster.port(), mode, user, password);
                for (upstream, proxy) in &proxies {
                    let through = login(&cluster, proxy.port(), mode, user, password);
                    assert_eq!(
                        through,
                        direct,
                        "client {mode:?}, upstream sslmode={upstream}, {user} with {} password",
                        if password == right {
                            "the right"
                        } else {
                            "a wrong"
                        }
                    );
                    compared += 1;
                    if matches!(through, Outcome::LoggedIn(_)) {
                        logged_in += 1;
                    }
                }
            }
        }
    }
    assert_eq!(compared, 48);
    // SCRAM: right password in all three modes; md5 and password: not with binding required;
    // trust: both passwords, not with binding required. Times two upstream modes.
    assert_eq!(
        logged_in,
        2 * (3 + 2 + 2 + 4),
        "logins that succeed, through either upstream"
    );
    // Wrong SCRAM and md5 passwords read as PostgreSQL says them.
    let wrong = login(
        &cluster,
        proxies[1].1.port(),
        CLIENT_MODES[1],
        SCRAM_USER,
        "nope",
    );
    assert_eq!(
        wrong,
        Outcome::Refused(format!(
            "FATAL:  password authentication failed for user \"{SCRAM_USER}\""
        ))
    );
}

#[test]
fn a_changed_password_works_at_once_and_the_old_one_stops() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&certs);
    cluster
        .psql("postgres", "CREATE ROLE rotating LOGIN PASSWORD 'first'; GRANT CONNECT ON DATABASE app TO rotating")
        .expect("role");
    let proxy = proxy(&cluster, &certs, "require", &[]);
    let bound = CLIENT_MODES[2];
    let port = proxy.port();
    assert_eq!(
        login(&cluster, port, bound, "rotating", "first"),
        Outcome::LoggedIn("rotating".to_owned())
    );
    cluster
        .psql("postgres", "ALTER ROLE rotating PASSWORD 'second'")
        .expect("new password");
    assert_eq!(
        login(&cluster, port, bound, "rotating", "second"),
        Outcome::LoggedIn("rotating".to_owned()),
        "the new password is accepted although the old verifier was cached"
    );
    assert!(matches!(
        login(&cluster, port, bound, "rotating", "first"),
        Outcome::Refused(text) if text.contains("password authentication failed")
    ));
    // A role that does not exist fails as it does straight to PostgreSQL.
    let direct = login(&cluster, cluster.port(), bound, "nobody_here", "x");
    assert_eq!(login(&cluster, port, bound, "nobody_here", "x"), direct);
}

#[test]
fn without_the_auth_query_tls_clients_are_told_what_to_do() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&certs);
    for extra in [
        &["--auth-query", "none"][..],
        &["--auth-query", "SELECT missing_function($1)"][..],
    ] {
        let proxy = proxy(&cluster, &certs, "require", extra);
        let port = proxy.port();
        // Plain clients and clients that do not bind log in as before.
        assert_eq!(
            login(&cluster, port, CLIENT_MODES[0], SCRAM_USER, SCRAM_PASSWORD),
            Outcome::LoggedIn(SCRAM_USER.to_owned()),
            "{extra:?}"
        );
        let disable = ClientMode {
            sslmode: "require",
            channel_binding: "disable",
        };
        assert_eq!(
            login(&cluster, port, disable, SCRAM_USER, SCRAM_PASSWORD),
            Outcome::LoggedIn(SCRAM_USER.to_owned()),
            "{extra:?}"
        );
        // A wrong password is still PostgreSQL's refusal.
        assert_eq!(
            login(&cluster, port, CLIENT_MODES[0], SCRAM_USER, "wrong"),
            Outcome::Refused(format!(
                "FATAL:  password authentication failed for user \"{SCRAM_USER}\""
            ))
        );
        // A TLS client that would bind is told why it cannot, and what to do.
        match login(&cluster, port, CLIENT_MODES[1], SCRAM_USER, SCRAM_PASSWORD) {
            Outcome::Refused(text) => {
                assert!(
                    text.contains("channel binding cannot pass through pgcached"),
                    "{text}"
                );
                assert!(text.contains("channel_binding=disable"), "{text}");
            }
            other => panic!("{extra:?}: {other:?}"),
        }
        // md5 and trust are relayed whatever the mode.
        assert_eq!(
            login(&cluster, port, CLIENT_MODES[1], MD5_USER, MD5_PASSWORD),
            Outcome::LoggedIn(MD5_USER.to_owned())
        );
        assert_eq!(
            login(&cluster, port, CLIENT_MODES[1], TRUST_USER, ""),
            Outcome::LoggedIn(TRUST_USER.to_owned())
        );
    }
}

#[test]
fn readme_shows_the_verifier_function_the_tests_install() {
    let readme = std::fs::read_to_string(pgcached_tests::clients::tests_dir().join("../README.md"))
        .expect("README.md");
    let installed = pgcached_tests::cluster::options().setup_sql;
    assert_eq!(
        installed,
        pgcached::auth::verifiers::install_sql(PGCACHED_USER),
        "the test clusters do not install pgcached's verifier function"
    );
    assert!(
        readme.contains(&installed),
        "README's one-time SQL differs from what pgcached's tests install"
    );
}

#[test]
fn the_admin_console_accepts_a_bound_tls_login() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&certs);
    let proxy = proxy(&cluster, &certs, "require", &["--admin-users", SCRAM_USER]);
    let conninfo = format!(
        "host=127.0.0.1 port={} dbname=pgcached user={SCRAM_USER} sslmode=require channel_binding=require",
        proxy.port()
    );
    for (password, works) in [(SCRAM_PASSWORD, true), ("wrong", false)] {
        let mut command = std::process::Command::new(cluster.bindir().join("psql"));
        command
            .args(["-X", "-w", "-A", "-t", "-c", "SHOW VERSION"])
            .arg(&conninfo)
            .env("PGPASSWORD", password);
        let output = run_with_timeout(&mut command, 30);
        assert_eq!(output.status.success(), works, "{output:?}");
        if !works {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("password authentication failed"),
                "{stderr}"
            );
        }
    }
}

//! psycopg, asyncpg, node-postgres and pgjdbc log in through pgcached with TLS on both sides
//! (client to pgcached, pgcached to PostgreSQL), with their default authentication settings,
//! exactly as they do straight to PostgreSQL: the same role for right passwords, the same
//! SQLSTATE and message for wrong ones. `scripts/test` installs the drivers (pgjdbc is Debian's
//! `libpostgresql-jdbc-java`).

use std::process::Command;

use pgcached_local_cluster::users::{
    MD5_PASSWORD, MD5_USER, PGCACHED_PASSWORD, PGCACHED_USER, SCRAM_PASSWORD, SCRAM_USER,
};
use pgcached_tests::certs;
use pgcached_tests::clients::{client_script, expect_success, python, run_with_timeout};
use pgcached_tests::proxy::config_with;
use pgcached_tests::TestProxy;

/// Debian's pgjdbc.
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn logins() -> Vec<String> {
    vec![
        format!("{SCRAM_USER}:{SCRAM_PASSWORD}"),
        format!("{SCRAM_USER}:wrong"),
        format!("{MD5_USER}:{MD5_PASSWORD}"),
        format!("{MD5_USER}:wrong"),
    ]
}

fn run(driver: &str, port: u16) -> serde_json::Value {
    let mut command = match driver {
        "psycopg" | "asyncpg" => {
            let mut c = python();
            c.arg(client_script("tls_login.py")).arg(driver);
            c
        }
        "node-postgres" => {
            let mut c = Command::new("node");
            c.arg(client_script("tls_login.js"));
            c
        }
        "pgjdbc" => {
            let mut c = Command::new("java");
            c.arg("-cp")
                .arg(PGJDBC_JAR)
                .arg(client_script("TlsLogin.java"));
            c
        }
        other => panic!("unknown driver {other}"),
    };
    command
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(logins());
    let output = run_with_timeout(&mut command, 120);
    let stdout = expect_success(&output, driver);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{driver} printed no JSON ({e}):\n{stdout}"))
}

#[test]
fn drivers_log_in_through_pgcached_with_tls_on_both_sides() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = certs::tls_cluster(&certs);
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@127.0.0.1:{}?sslmode=require",
        cluster.port()
    );
    let cert = certs.server_cert.display().to_string();
    let key = certs.server_key.display().to_string();
    let proxy = TestProxy::with_config(config_with(
        &upstream,
        &["--tls-cert", &cert, "--tls-key", &key],
        "",
    ));
    for driver in ["psycopg", "asyncpg", "node-postgres", "pgjdbc"] {
        let direct = run(driver, cluster.port());
        let through = run(driver, proxy.port());
        assert_eq!(through, direct, "{driver}: logins through pgcached differ");
        let right = format!("{SCRAM_USER}:{SCRAM_PASSWORD}");
        assert_eq!(through[&right]["user"], SCRAM_USER, "{driver}: {through}");
        let md5 = format!("{MD5_USER}:{MD5_PASSWORD}");
        assert_eq!(through[&md5]["user"], MD5_USER, "{driver}: {through}");
        let wrong = format!("{SCRAM_USER}:wrong");
        let refused = format!("password authentication failed for user \"{SCRAM_USER}\"");
        assert_eq!(
            through[&wrong]["message"],
            refused.as_str(),
            "{driver}: {through}"
        );
        if driver != "psycopg" {
            // libpq reports a refused login without the server's SQLSTATE.
            assert_eq!(through[&wrong]["sqlstate"], "28P01", "{driver}: {through}");
        }
        if let Some(tls) = through[&right].get("client_tls") {
            assert_eq!(tls, true, "{driver} used TLS to pgcached");
        }
    }
}

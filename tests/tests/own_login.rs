//! pgcached's own login for its replication connections, against a real PostgreSQL with TLS:
//! every password method PostgreSQL offers (trust, password, md5, SCRAM-SHA-256 without
//! channel binding, over TLS too), a working replication connection afterwards, and failures
//! sorted into problems that say what to fix (wrong password, wrong CA).

use pgcached::replication::sources::connect_error;
use pgcached::upstream::own_login::{login, Login, LoginError};
use pgcached::upstream::{Connector, UpstreamError, UpstreamUrl};
use pgcached_invalidation::session::Session;
use pgcached_invalidation::{ConnectError, Problem};
use pgcached_local_cluster::users::{
    MD5_PASSWORD, MD5_USER, PGCACHED_PASSWORD, PGCACHED_USER, SCRAM_PASSWORD, SCRAM_USER,
    TRUST_USER,
};
use pgcached_local_cluster::{ClusterOptions, LocalCluster, SslFiles};
use pgcached_tests::certs;

const PASSWORD_USER: &str = "cleartext_user";
const PASSWORD_SECRET: &str = "cleartext_secret";

fn tls_cluster(certs: &certs::TestCerts) -> LocalCluster {
    let cluster = LocalCluster::start(ClusterOptions {
        ssl: Some(SslFiles {
            cert_pem: certs.server_cert.clone(),
            key_pem: certs.server_key.clone(),
        }),
        ..pgcached_tests::cluster::options()
    })
    .expect("start a TLS cluster");
    // One role with the plain `password` method, ahead of the catch-all lines.
    cluster
        .psql(
            "postgres",
            &format!("CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD_SECRET}'"),
        )
        .expect("role");
    let hba = cluster.data_dir().join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    let line = format!("host all {PASSWORD_USER} 127.0.0.1/32 password\n");
    std::fs::write(&hba, format!("{line}{text}")).expect("write pg_hba.conf");
    cluster
        .psql("postgres", "SELECT pg_reload_conf()")
        .expect("reload");
    cluster
}

fn connector(host: &str, port: u16, query: &str) -> Connector {
    let url = UpstreamUrl::parse(&format!("postgres://{host}:{port}/app?{query}")).expect("url");
    Connector::unmonitored(url).expect("connector")
}

fn as_user<'a>(user: &'a str, password: Option<&'a str>, replication: bool) -> Login<'a> {
    Login {
        user,
        password,
        database: "app",
        application_name: "pgcached login test",
        replication,
    }
}

#[tokio::test]
async fn every_password_method_over_plain_and_tls() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&certs);
    let port = cluster.port();
    let ca = certs.ca_cert.display().to_string();
    let connectors = [
        ("plain", connector("127.0.0.1", port, "sslmode=disable")),
        ("require", connector("127.0.0.1", port, "sslmode=require")),
        (
            "verify-full",
            connector(
                "localhost",
                port,
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        ),
    ];
    for (mode, connector) in &connectors {
        for (user, password) in [
            (TRUST_USER, None),
            (PASSWORD_USER, Some(PASSWORD_SECRET)),
            (MD5_USER, Some(MD5_PASSWORD)),
            (SCRAM_USER, Some(SCRAM_PASSWORD)),
        ] {
            let stream = login(connector, as_user(user, password, false))
                .await
                .unwrap_or_else(|e| panic!("{mode} {user}: {e}"));
            assert_eq!(stream.is_tls(), *mode != "plain", "{mode} {user}");
        }
        // The replication connection pgcached streams on: SCRAM, then replication commands.
        let stream = login(
            connector,
            as_user(PGCACHED_USER, Some(PGCACHED_PASSWORD), true),
        )
        .await
        .unwrap_or_else(|e| panic!("{mode} replication: {e}"));
        let mut session = Session::new(Box::new(stream));
        let identity = session
            .simple_query("IDENTIFY_SYSTEM")
            .await
            .expect("IDENTIFY_SYSTEM");
        assert_eq!(
            identity[0][3].as_deref(),
            Some(&b"app"[..]),
            "{mode}: a database replication connection"
        );
        assert_eq!(
            session
                .value("SHOW wal_level")
                .await
                .expect("SQL")
                .as_deref(),
            Some("logical")
        );
        session.close().await;
    }
}

#[tokio::test]
async fn failures_say_what_to_fix() {
    let certs = certs::make(&["localhost"]);
    let cluster = tls_cluster(&certs);
    let port = cluster.port();

    // A wrong password: PostgreSQL's SQLSTATE, sorted as a credentials problem.
    let plain = connector("127.0.0.1", port, "sslmode=disable");
    let error = login(&plain, as_user(SCRAM_USER, Some("wrong"), true))
        .await
        .err()
        .expect("wrong password");
    let LoginError::Server(server) = &error else {
        panic!("{error}");
    };
    assert_eq!(server.code, "28P01");
    match connect_error(error) {
        ConnectError::Server(server) => {
            let problem = Problem::from_server(&server, "test_decoding").expect("a problem");
            assert_eq!(problem.label(), "authentication");
            assert!(problem.text().contains("--upstream"), "{}", problem.text());
        }
        other => panic!("{other:?}"),
    }
    let error = login(&plain, as_user(SCRAM_USER, None, true))
        .await
        .err()
        .expect("no password");
    assert!(matches!(error, LoginError::NoPassword), "{error}");

    // A certificate from another CA: the TLS handshake fails, nothing is sent in the clear.
    for (host, roots) in [
        ("localhost", certs.other_ca_cert.display().to_string()),
        // The certificate names only localhost.
        ("127.0.0.1", certs.ca_cert.display().to_string()),
    ] {
        let connector = connector(
            host,
            port,
            &format!("sslmode=verify-full&sslrootcert={roots}"),
        );
        let error = login(
            &connector,
            as_user(PGCACHED_USER, Some(PGCACHED_PASSWORD), true),
        )
        .await
        .err()
        .expect("verification fails");
        assert!(
            matches!(error, LoginError::Connect(UpstreamError::Handshake { .. })),
            "{host}: {error}"
        );
        match connect_error(error) {
            ConnectError::Problem(problem) => {
                assert_eq!(problem.label(), "tls");
                let text = problem.text();
                assert!(
                    text.contains("sslrootcert") && text.contains("certificate"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    // sslmode=require against a server without TLS.
    let no_tls = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let error = login(
        &connector("127.0.0.1", no_tls.port(), "sslmode=require"),
        as_user(PGCACHED_USER, Some(PGCACHED_PASSWORD), true),
    )
    .await
    .err()
    .expect("no TLS");
    assert!(
        matches!(
            connect_error(error),
            ConnectError::Problem(Problem::Tls { .. })
        ),
        "a server without TLS is a TLS problem"
    );
}

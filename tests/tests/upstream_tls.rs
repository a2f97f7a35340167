//! TLS from pgcached to PostgreSQL, as managed databases require: `sslmode` and `sslrootcert`
//! in the upstream URL, checked against a cluster with a certificate from a test CA.

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::certs::{self, tls_cluster};
use pgcached_tests::proxy::config_with;
use pgcached_tests::{connect, url, Endpoint, TestProxy};

/// Whether the server sees the proxied session's own connection as TLS.
async fn session_uses_tls(proxy: &TestProxy) -> Result<bool, tokio_postgres::Error> {
    let client = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app")).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmodes_require_and_verify_full_encrypt_the_upstream_connection() {
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&certs);
    let ca = certs.ca_cert.display().to_string();
    let port = cluster.port();
    for upstream in [
        format!("postgres://127.0.0.1:{port}?sslmode=require"),
        format!("postgres://localhost:{port}?sslmode=verify-full&sslrootcert={ca}"),
        format!("postgres://127.0.0.1:{port}?sslmode=verify-full&sslrootcert={ca}"),
        format!("postgres://127.0.0.1:{port}?sslmode=verify-ca&sslrootcert={ca}"),
        format!("postgres://127.0.0.1:{port}?sslmode=prefer"),
    ] {
        let proxy = TestProxy::with_config(config_with(&upstream, &[], ""));
        assert!(
            session_uses_tls(&proxy).await.expect(&upstream),
            "{upstream}: session not encrypted"
        );
    }
    let proxy = TestProxy::with_config(config_with(
        &format!("postgres://127.0.0.1:{port}?sslmode=disable"),
        &[],
        "",
    ));
    assert!(!session_uses_tls(&proxy).await.expect("disable"));
    let direct = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("direct");
    direct
        .query_one("SELECT 1", &[])
        .await
        .expect("direct query");
}

#[tokio::test]
async fn verification_failures_are_reported_to_the_client() {
    let certs = certs::make(&["localhost"]);
    let cluster = tls_cluster(&certs);
    let port = cluster.port();
    let other = certs.other_ca_cert.display().to_string();
    let ca = certs.ca_cert.display().to_string();
    for (upstream, expected) in [
        (
            format!("postgres://localhost:{port}?sslmode=verify-full&sslrootcert={other}"),
            "TLS handshake with PostgreSQL failed",
        ),
        (
            // The certificate names only localhost.
            format!("postgres://127.0.0.1:{port}?sslmode=verify-full&sslrootcert={ca}"),
            "TLS handshake with PostgreSQL failed",
        ),
    ] {
        let proxy = TestProxy::with_config(config_with(&upstream, &[], ""));
        let error = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{upstream} should fail"));
        assert_eq!(error.code().map(|c| c.code()), Some("08006"), "{error}");
        let told = pgcached_tests::clients::error_told(&error);
        assert!(told.contains(expected), "{upstream}: {told}");
        // Where PostgreSQL is, and the certificate's details, stay in pgcached's log.
        for secret in ["localhost", "127.0.0.1", &port.to_string(), "certificate"] {
            assert!(!told.contains(secret), "{upstream}: {secret} in {told}");
        }
    }
}

#[tokio::test]
async fn require_fails_clearly_against_a_server_without_tls() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let upstream = format!("postgres://127.0.0.1:{}?sslmode=require", cluster.port());
    let proxy = TestProxy::with_config(config_with(&upstream, &[], ""));
    let error = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect_err("require without server TLS fails");
    assert_eq!(error.code().map(|c| c.code()), Some("08006"));
    let told = pgcached_tests::clients::error_told(&error);
    assert!(told.contains("does not support TLS"), "{told}");
    assert!(
        !told.contains(&cluster.port().to_string()) && !told.contains("127.0.0.1"),
        "{told}"
    );
}

#[tokio::test]
async fn the_cache_works_when_postgres_requires_tls() {
    use pgcached_local_cluster::users::{PGCACHED_PASSWORD, PGCACHED_USER};
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cluster = tls_cluster(&certs);
    // Only TLS connections are accepted from now on.
    let hba = cluster.data_dir().join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(&hba, text.replace("\nhost ", "\nhostssl ")).expect("write pg_hba.conf");
    cluster
        .psql("app", "SELECT pg_reload_conf()")
        .expect("reload");
    let ca = certs.ca_cert.display().to_string();
    let upstream = format!(
        "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@localhost:{}?sslmode=verify-full&sslrootcert={ca}",
        cluster.port()
    );
    let proxy = TestProxy::with_config(config_with(&upstream, &["--cache", "on"], ""));
    let client = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("connect");
    for _ in 0..4 {
        let rows = client
            .simple_query("SELECT 'cached over tls'")
            .await
            .expect("query");
        let values: Vec<_> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect();
        assert_eq!(values, vec!["cached over tls".to_owned()]);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let cache = proxy.cache.as_ref().expect("cache on");
    assert_eq!(
        cache.len(),
        1,
        "the catalog connection worked over TLS and the result was cached"
    );
}

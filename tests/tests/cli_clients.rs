//! psql and pgbench through pgcached, compared with the same runs straight to PostgreSQL,
//! and TLS between clients and pgcached.

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::certs;
use pgcached_tests::clients::{expect_success, pgbench, psql, run_with_timeout};
use pgcached_tests::proxy::{caching_config_for, config_for};
use pgcached_tests::{shared_cluster, url, Endpoint, TestProxy};

const PSQL_SCRIPT: &str = r#"
DROP TABLE IF EXISTS psql_items;
CREATE TABLE psql_items (id int PRIMARY KEY, name text, price numeric(8,2));
\copy psql_items FROM 'ITEMS_IN' WITH (FORMAT csv)
SELECT count(*), sum(price) FROM psql_items;
\copy (SELECT * FROM psql_items ORDER BY id) TO 'ITEMS_OUT' WITH (FORMAT csv)
BEGIN;
UPDATE psql_items SET price = price * 2 WHERE id <= 10;
SAVEPOINT s1;
DELETE FROM psql_items;
ROLLBACK TO s1;
COMMIT;
SELECT id, name, price FROM psql_items WHERE id <= 12 ORDER BY id;
PREPARE by_id(int) AS SELECT name FROM psql_items WHERE id = $1;
EXECUTE by_id(7);
SELECT 'a' || $$b'c$$, E'tab\there', NULL IS NULL;
\set ON_ERROR_STOP 0
SELECT 1/0;
\set ON_ERROR_STOP 1
SELECT 'still here';
\lo_import 'ITEMS_IN'
SELECT count(*) > 0 FROM pg_largeobject_metadata;
SET client_encoding = 'LATIN1';
SELECT 'caf' || chr(233);
"#;

fn run_script(cluster: &LocalCluster, endpoint: Endpoint, dir: &std::path::Path) -> String {
    let items_in = dir.join("items.csv");
    let items_out = dir.join(format!("out-{}.csv", endpoint.port));
    let script = PSQL_SCRIPT
        .replace("ITEMS_IN", &items_in.display().to_string())
        .replace("ITEMS_OUT", &items_out.display().to_string());
    let script_path = dir.join(format!("script-{}.sql", endpoint.port));
    std::fs::write(&script_path, script).expect("write script");
    let output = run_with_timeout(
        psql(cluster, &url(endpoint, "postgres", None, "app"))
            .arg("-f")
            .arg(&script_path),
        60,
    );
    let stdout = expect_success(&output, "psql script");
    let exported = std::fs::read_to_string(&items_out).expect("\\copy TO wrote a file");
    // Large-object OIDs differ between runs; drop that line.
    let stdout: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("lo_import"))
        .collect();
    format!("{}\n--- exported ---\n{exported}", stdout.join("\n"))
}

#[test]
fn psql_script_with_copy_gives_the_same_output_as_direct() {
    let cluster = shared_cluster();
    let proxy = TestProxy::start(cluster);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut csv = String::new();
    for i in 1..=1000 {
        csv.push_str(&format!(
            "{i},\"item, number {i}\",{}.{:02}\n",
            i % 97,
            i % 100
        ));
    }
    std::fs::write(dir.path().join("items.csv"), &csv).expect("csv");
    let direct = run_script(cluster, Endpoint::direct(cluster), dir.path());
    let proxied = run_script(cluster, Endpoint::proxy(proxy.port()), dir.path());
    assert!(direct.contains("1000|"), "{direct}");
    assert!(direct.contains("still here"), "{direct}");
    assert!(
        direct.contains("caf\u{fffd}") || direct.contains("caf"),
        "{direct}"
    );
    assert_eq!(direct, proxied);
}

#[test]
fn latin1_bytes_pass_through_untouched() {
    let cluster = shared_cluster();
    let proxy = TestProxy::start(cluster);
    let mut outputs = Vec::new();
    for endpoint in [Endpoint::direct(cluster), Endpoint::proxy(proxy.port())] {
        let output = run_with_timeout(
            psql(cluster, &url(endpoint, "postgres", None, "app"))
                .env("PGCLIENTENCODING", "LATIN1")
                .arg("-c")
                .arg("SELECT 'caf' || chr(233) || ' na' || chr(239) || 've'"),
            30,
        );
        expect_success(&output, "psql latin1");
        outputs.push(output.stdout);
    }
    assert!(
        outputs[0].windows(4).any(|w| w == b"caf\xe9"),
        "{:?}",
        outputs[0]
    );
    assert_eq!(outputs[0], outputs[1]);
}

fn pgbench_run(cluster: &LocalCluster, port: u16, mode: &str) -> String {
    let output = run_with_timeout(
        pgbench(cluster)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-c", "4", "-j", "2", "-T", "3", "-M", mode, "-n", "app"]),
        60,
    );
    expect_success(&output, &format!("pgbench -M {mode}"))
}

#[test]
fn pgbench_runs_without_errors_in_every_protocol_mode() {
    let cluster = shared_cluster();
    let init = run_with_timeout(
        pgbench(cluster)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(["-i", "-s", "1", "-q", "app"]),
        120,
    );
    expect_success(&init, "pgbench -i");
    let proxy = TestProxy::start(cluster);
    for mode in ["simple", "extended", "prepared"] {
        let report = pgbench_run(cluster, proxy.port(), mode);
        let processed: u64 = report
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no transaction count in:\n{report}"));
        assert!(processed > 0, "{report}");
        let failed = report
            .lines()
            .find_map(|l| l.strip_prefix("number of failed transactions: "))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned());
        if let Some(failed) = failed {
            assert_eq!(failed, "0", "{report}");
        }
    }
}

#[test]
fn clients_can_negotiate_tls_with_pgcached() {
    let cluster = shared_cluster();
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cert = certs.server_cert.display().to_string();
    let key = certs.server_key.display().to_string();
    let proxy = TestProxy::with_config(config_for(
        cluster,
        &["--tls-cert", &cert, "--tls-key", &key],
    ));
    let port = proxy.port();
    let conninfo = |mode: &str, host: &str, root: &std::path::Path| {
        format!(
            "host={host} port={port} user=postgres dbname=app sslmode={mode} sslrootcert={}",
            root.display()
        )
    };
    for (mode, host) in [("require", "127.0.0.1"), ("verify-full", "localhost")] {
        let output = run_with_timeout(
            psql(cluster, &conninfo(mode, host, &certs.ca_cert))
                .arg("-c")
                .arg("SELECT 'over tls'")
                .arg("-c")
                .arg("\\conninfo"),
            30,
        );
        let stdout = expect_success(&output, &format!("psql sslmode={mode}"));
        assert!(stdout.contains("over tls"), "{stdout}");
        assert!(stdout.contains("SSL connection"), "{mode}: {stdout}");
    }
    // A client that trusts another CA refuses pgcached's certificate.
    let output = run_with_timeout(
        psql(
            cluster,
            &conninfo("verify-full", "localhost", &certs.other_ca_cert),
        )
        .arg("-c")
        .arg("SELECT 1"),
        30,
    );
    assert!(!output.status.success());
    // Plain clients still connect when TLS is offered.
    let output = run_with_timeout(
        psql(
            cluster,
            &format!("host=127.0.0.1 port={port} user=postgres dbname=app sslmode=disable"),
        )
        .arg("-c")
        .arg("SELECT 'plain'"),
        30,
    );
    assert!(expect_success(&output, "plain psql").contains("plain"));
}

#[test]
fn without_a_certificate_tls_is_declined_and_prefer_falls_back() {
    let cluster = shared_cluster();
    let proxy = TestProxy::start(cluster);
    let base = format!(
        "host=127.0.0.1 port={} user=postgres dbname=app",
        proxy.port()
    );
    let output = run_with_timeout(
        psql(cluster, &format!("{base} sslmode=prefer"))
            .arg("-c")
            .arg("SELECT 'fallback'"),
        30,
    );
    assert!(expect_success(&output, "psql prefer").contains("fallback"));
    let output = run_with_timeout(
        psql(cluster, &format!("{base} sslmode=require"))
            .arg("-c")
            .arg("SELECT 1"),
        30,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SSL"), "{stderr}");
}

#[test]
fn pgbench_hot_set_through_the_cache_runs_without_errors() {
    // Its own cluster: pgbench -i on the shared one would race the other pgbench test.
    let cluster = &LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let init = run_with_timeout(
        pgbench(cluster)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(["-i", "-s", "1", "-q", "app"]),
        120,
    );
    expect_success(&init, "pgbench -i");
    let dir = tempfile::tempdir().expect("dir");
    let script = dir.path().join("hot.sql");
    std::fs::write(
        &script,
        "\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n",
    )
    .expect("script");
    let proxy = TestProxy::with_config(caching_config_for(cluster, &[]));
    for mode in ["simple", "extended", "prepared"] {
        let output = run_with_timeout(
            pgbench(cluster)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &proxy.port().to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-c", "4", "-j", "2", "-T", "2", "-M", mode, "-n", "-f"])
                .arg(&script)
                .arg("app"),
            60,
        );
        let report = expect_success(&output, &format!("pgbench -M {mode} through the cache"));
        assert!(
            report.contains("number of failed transactions: 0"),
            "{report}"
        );
    }
    let cache = proxy.cache.as_ref().expect("cache on");
    assert!(cache.len() > 100, "hot set cached: {} entries", cache.len());
}

#[test]
fn tpcb_through_the_cache_keeps_its_invariant_while_others_read() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let init = run_with_timeout(
        pgbench(&cluster)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(["-i", "-s", "1", "-q", "app"]),
        120,
    );
    expect_success(&init, "pgbench -i");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
    let port = proxy.port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(async {
                    let client = pgcached_tests::connect(&url(
                        Endpoint::proxy(port),
                        "postgres",
                        None,
                        "app",
                    ))
                    .await
                    .expect("reader");
                    let mut reads = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let sql = if i == 0 {
                            "SELECT sum(bbalance) FROM pgbench_branches".to_owned()
                        } else {
                            format!(
                                "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
                                reads % 50 + 1
                            )
                        };
                        client.simple_query(&sql).await.expect("read");
                        reads += 1;
                    }
                    reads
                })
            })
        })
        .collect();
    let output = run_with_timeout(
        pgbench(&cluster)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args([
                "-c", "4", "-j", "2", "-T", "10", "-M", "prepared", "-n", "app",
            ]),
        120,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = expect_success(&output, "pgbench TPC-B through the cache");
    assert!(
        report.contains("number of failed transactions: 0"),
        "{report}"
    );
    for reader in readers {
        assert!(reader.join().expect("reader thread") > 10);
    }
    let invariant = "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text || ',' || \
                     (SELECT sum(bbalance) FROM pgbench_branches)::text || ',' || \
                     (SELECT sum(tbalance) FROM pgbench_tellers)::text || ',' || \
                     (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::text";
    let read = |endpoint: Endpoint| {
        let output = run_with_timeout(
            psql(&cluster, &url(endpoint, "postgres", None, "app"))
                .arg("-c")
                .arg(invariant),
            30,
        );
        expect_success(&output, "invariant").trim().to_owned()
    };
    let direct = read(Endpoint::direct(&cluster));
    let sums: Vec<&str> = direct.split(',').collect();
    assert_eq!(sums.len(), 4, "{direct}");
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "TPC-B invariant broken: {direct}"
    );
    // Read twice through pgcached (the second may be a hit): equal to the direct read.
    assert_eq!(read(Endpoint::proxy(port)), direct);
    assert_eq!(read(Endpoint::proxy(port)), direct);
}

//! The examples in `examples/`, run against a real PostgreSQL and an in-process pgcached, with
//! their machine-readable output checked: the read-through catalog must take load off the
//! database and keep read-your-writes; the session store must share sessions between instances
//! and make a logout visible everywhere at once.

use std::net::SocketAddr;
use std::sync::OnceLock;

use pgcached::local_cluster::{ClusterOptions, LocalCluster};
use pgcached_tests::clients::{expect_success, python, run_with_timeout};
use pgcached_tests::dashboard::repo;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{url, Endpoint, TestProxy};

/// pgcached's metrics endpoint in this test process (the exporter is process-wide, installed
/// once on a runtime that lives as long as the process).
fn metrics_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime"),
        ));
        runtime
            .block_on(async { pgcached::metrics::install_exporter(address) })
            .expect("metrics exporter");
        format!("http://{address}/metrics")
    })
}

/// One cluster and one pgcached for both examples (created after the exporter, so pgcached's
/// metric handles are registered with it).
fn stack() -> &'static (LocalCluster, TestProxy) {
    static STACK: OnceLock<(LocalCluster, TestProxy)> = OnceLock::new();
    STACK.get_or_init(|| {
        metrics_url();
        let cluster = LocalCluster::start(ClusterOptions::default()).expect("cluster");
        let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
        (cluster, proxy)
    })
}

/// The examples read pgcached's process-wide counters: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_example(script: &str, args: &[String]) -> serde_json::Value {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut command = python();
    command
        .arg(repo().join("examples").join(script))
        .args(args)
        .arg("--json");
    let output = run_with_timeout(&mut command, 300);
    let stdout = expect_success(&output, script);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script}: not JSON ({e}): {stdout}"))
}

#[test]
fn the_read_through_catalog_takes_load_off_the_database() {
    let (cluster, proxy) = stack();
    let results = run_example(
        "read_through/app.py",
        &[
            "compare".to_owned(),
            "--proxy-url".to_owned(),
            url(Endpoint::proxy(proxy.port()), "postgres", None, "app"),
            "--direct-url".to_owned(),
            url(Endpoint::direct(cluster), "postgres", None, "app"),
            "--metrics-url".to_owned(),
            metrics_url().to_owned(),
            "--requests".to_owned(),
            "1000".to_owned(),
        ],
    );
    let direct = &results[0];
    let cached = &results[1];
    assert_eq!(direct["mode"], "direct");
    assert_eq!(cached["mode"], "pgcached");
    for run in [direct, cached] {
        assert_eq!(
            run["read_your_writes_failures"].as_array().map(Vec::len),
            Some(0),
            "{run}"
        );
        assert_eq!(run["requests"], 1000);
    }
    let direct_scans = direct["scans_per_request"].as_f64().expect("direct scans");
    let cached_scans = cached["scans_per_request"].as_f64().expect("cached scans");
    assert!(
        direct_scans >= 1.5,
        "each direct request reads the table: {direct}"
    );
    assert!(
        cached_scans <= direct_scans / 2.0,
        "pgcached did not halve the database load: {results}"
    );
    let hit_ratio = cached["hit_ratio"].as_f64().expect("hit ratio");
    assert!(hit_ratio >= 0.5, "{results}");
}

#[test]
fn app_instances_share_sessions_and_a_logout_is_seen_everywhere_at_once() {
    let (cluster, proxy) = stack();
    let summary = run_example(
        "session_store/demo.py",
        &[
            "--database-url".to_owned(),
            url(Endpoint::proxy(proxy.port()), "postgres", None, "app"),
            "--direct-url".to_owned(),
            url(Endpoint::direct(cluster), "postgres", None, "app"),
            "--metrics-url".to_owned(),
            metrics_url().to_owned(),
        ],
    );
    assert_eq!(
        summary["failures"].as_array().map(Vec::len),
        Some(0),
        "{summary}"
    );
    assert_eq!(summary["cross_instance_lookups_ok"], true);
    assert_eq!(summary["logout_seen_at_once"], true);
    let hits = summary["cache_hits"].as_f64().expect("hits");
    assert!(
        hits >= 50.0,
        "lookups were not answered from the cache: {summary}"
    );
    let delay = summary["external_delete_delay_ms"]
        .as_f64()
        .expect("an external delete became visible");
    assert!(delay < 2000.0, "{summary}");
}

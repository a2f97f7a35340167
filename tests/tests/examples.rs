//! The examples in `examples/`, run against a real PostgreSQL and an in-process pgcached, with
//! their `--json` output checked: the read-through catalog must at least halve the database's
//! load, keep read-your-writes and read only what the database holds; the session store must
//! share sessions between instances (objects in one process, or processes), answer lookups
//! from the cache, and make a logout, through pgcached or straight in PostgreSQL, visible
//! everywhere.

use std::net::SocketAddr;
use std::sync::OnceLock;

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::clients::{expect_success, python, run_with_timeout, tests_dir};
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

/// One cluster and one pgcached for every example (created after the exporter, so pgcached's
/// metric handles are registered with it).
fn stack() -> &'static (LocalCluster, TestProxy) {
    static STACK: OnceLock<(LocalCluster, TestProxy)> = OnceLock::new();
    STACK.get_or_init(|| {
        metrics_url();
        let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
        let proxy = TestProxy::with_config(caching_config_for(&cluster, &[]));
        (cluster, proxy)
    })
}

/// The repository's `examples/` directory.
fn examples_dir() -> std::path::PathBuf {
    tests_dir()
        .parent()
        .expect("tests/ is inside the repository")
        .join("examples")
}

/// The examples read pgcached's process-wide counters: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_example(script: &str, args: &[String]) -> serde_json::Value {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut command = python();
    command
        .arg(examples_dir().join(script))
        .args(args)
        .arg("--json");
    let output = run_with_timeout(&mut command, 300);
    let stdout = expect_success(&output, script);
    // Shown with --nocapture: the transcript (stderr under --json) and the summary.
    eprint!("{script}:\n{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("{stdout}");
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script}: not JSON ({e}): {stdout}"))
}

fn field<'a>(value: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no `{key}` in {value}"))
}

fn number(value: &serde_json::Value, key: &str) -> f64 {
    field(value, key)
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {value}"))
}

#[test]
fn the_read_through_catalog_takes_load_off_the_database() {
    let (cluster, proxy) = stack();
    let summary = run_example(
        "read_through/app.py",
        &[
            "compare".to_owned(),
            "--database-url".to_owned(),
            url(Endpoint::proxy(proxy.port()), "postgres", None, "app"),
            "--direct-url".to_owned(),
            url(Endpoint::direct(cluster), "postgres", None, "app"),
            "--metrics-url".to_owned(),
            metrics_url().to_owned(),
            "--requests".to_owned(),
            "1000".to_owned(),
        ],
    );
    let direct = field(&summary, "direct");
    let cached = field(&summary, "pgcached");
    for (run, mode) in [(direct, "direct"), (cached, "pgcached")] {
        assert_eq!(field(run, "mode"), mode, "{summary}");
        assert_eq!(field(run, "requests"), 1000, "{summary}");
        assert!(
            number(run, "price_updates") >= 1.0,
            "no price changed, read-your-writes was not exercised: {run}"
        );
        assert_eq!(
            field(run, "read_your_writes_ok"),
            true,
            "a changed price was not read back at once: {run}"
        );
        assert_eq!(
            field(run, "answers_differing_from_database"),
            0,
            "the app read something the database does not hold: {run}"
        );
        assert_eq!(field(run, "failures"), &serde_json::json!([]), "{run}");
    }
    assert_eq!(field(&summary, "ok"), true, "{summary}");

    let direct_scans = number(direct, "scans_per_request");
    let cached_scans = number(cached, "scans_per_request");
    assert!(
        direct_scans >= 1.5,
        "straight to PostgreSQL, each request scans the table twice: {direct}"
    );
    assert!(
        cached_scans <= direct_scans / 2.0,
        "pgcached did not halve the database's load: {summary}"
    );
    let hit_ratio = number(cached, "hit_ratio");
    assert!(hit_ratio >= 0.5, "hit ratio {hit_ratio}: {summary}");
}

/// Runs the session-store demo (`--processes` for one process per app instance) and checks
/// its summary.
fn check_session_store(processes: bool) {
    let (cluster, proxy) = stack();
    let mut args = vec![
        "--database-url".to_owned(),
        url(Endpoint::proxy(proxy.port()), "postgres", None, "app"),
        "--direct-url".to_owned(),
        url(Endpoint::direct(cluster), "postgres", None, "app"),
        "--metrics-url".to_owned(),
        metrics_url().to_owned(),
    ];
    if processes {
        args.push("--processes".to_owned());
    }
    let summary = run_example("session_store/demo.py", &args);
    assert_eq!(
        field(&summary, "instances"),
        if processes { "processes" } else { "in-process" }
    );
    assert_eq!(
        field(&summary, "failures"),
        &serde_json::json!([]),
        "{summary}"
    );
    assert_eq!(field(&summary, "ok"), true, "{summary}");
    assert_eq!(
        field(&summary, "cross_instance_lookups_ok"),
        true,
        "B did not see the session opened on A: {summary}"
    );
    let lookups = number(&summary, "lookups");
    let hits = number(&summary, "cache_hits");
    assert!(
        lookups >= 100.0 && hits >= 0.9 * lookups,
        "B's lookups were not answered from the cache: {summary}"
    );
    assert_eq!(
        field(&summary, "logout_seen_at_once"),
        true,
        "B still saw the session right after the logout on A: {summary}"
    );
    assert_eq!(
        field(&summary, "external_delete_cached_before"),
        true,
        "the session deleted in PostgreSQL was not cached through pgcached: {summary}"
    );
    let delay = field(&summary, "external_delete_delay_ms")
        .as_f64()
        .unwrap_or_else(|| panic!("a delete made in PostgreSQL stayed visible: {summary}"));
    assert!(delay < 2000.0, "{summary}");
    assert_eq!(
        field(&summary, "expired_session_refused"),
        true,
        "{summary}"
    );
}

#[test]
fn app_instances_share_sessions_and_a_logout_is_seen_everywhere_at_once() {
    check_session_store(false);
}

#[test]
fn app_instances_in_separate_processes_share_sessions() {
    check_session_store(true);
}

//! The Grafana dashboard against a real Prometheus: two pgcacheds sharing a Redis tier and a
//! streaming standby as their replica, under load, are scraped with the project's own scrape configuration, and every query of every
//! dashboard panel must return data through Prometheus's HTTP API. A panel that plots a metric pgcached does not export (or
//! exports under other labels) fails here. What pgcached exports is also checked against its
//! metric registry: every family is in it, with its type, help text and label names.
//!
//! Needs Prometheus (Debian's `prometheus` package; `scripts/test` installs it). With
//! `PGCACHED_RENDER_DASHBOARD=<png>` set, the dashboard is also drawn from the collected data
//! by `grafana/render.py` (needs matplotlib).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgcached::metrics::registry::MetricType;
use pgcached_local_cluster::LocalCluster;
use pgcached_tests::dashboard::{concrete, panel_queries, registered, repo, PanelQuery};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};

/// The rate window substituted for `$__rate_interval` (scrapes are 1 s apart here).
const RATE_WINDOW: &str = "30s";
/// How long the dashboard may take to show data for every panel.
const DEADLINE: Duration = Duration::from_secs(90);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn prometheus_binary() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "prometheus not found in PATH: install Debian's prometheus package \
                 (scripts/test does) to run the dashboard test"
            )
        })
}

/// Kills Prometheus when the test ends, even by a panic.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The project's scrape configuration, pointed at `target` and scraping every second.
fn scrape_config(target: SocketAddr) -> String {
    let path = repo().join("prometheus/prometheus.yml");
    let text = std::fs::read_to_string(&path).expect("prometheus/prometheus.yml");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    // Rule files are relative to the config file, which the test writes elsewhere.
    let rules: Vec<serde_yaml::Value> = config["rule_files"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.as_str())
        .map(|f| {
            repo()
                .join("prometheus")
                .join(f)
                .display()
                .to_string()
                .into()
        })
        .collect();
    config["rule_files"] = serde_yaml::Value::Sequence(rules);
    let job = &mut config["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some("pgcached"));
    job["static_configs"][0]["targets"] =
        serde_yaml::Value::Sequence(vec![target.to_string().into()]);
    serde_yaml::to_string(&config).expect("YAML")
}

/// `GET path` from a local HTTP server; the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Why a query returned no usable data, or `None` if it did.
fn check_query(port: u16, expr: &str) -> Option<String> {
    let path = format!("/api/v1/query?query={}", url_encode(expr));
    let Some(body) = http_get(port, &path) else {
        return Some("no answer from Prometheus".to_owned());
    };
    let answer: serde_json::Value = match serde_json::from_str(&body) {
        Ok(answer) => answer,
        Err(e) => return Some(format!("not JSON ({e}): {body}")),
    };
    if answer["status"] != "success" {
        return Some(format!("query failed: {body}"));
    }
    let results = answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if results.is_empty() {
        return Some("empty result".to_owned());
    }
    let finite = results.iter().any(|r| {
        r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    });
    (!finite).then(|| format!("no finite value: {body}"))
}

/// Problems with the alert rules as Prometheus loaded and evaluated them: each must be loaded,
/// evaluated, and healthy.
fn check_rules(port: u16) -> Vec<String> {
    let Some(body) = http_get(port, "/api/v1/rules") else {
        return vec!["no answer from /api/v1/rules".to_owned()];
    };
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let rules: Vec<serde_json::Value> = answer["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    if rules.len() < 5 {
        return vec![format!("{} rules loaded: {body}", rules.len())];
    }
    rules
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
        .collect()
}

/// Statements that make every panel move: hits, misses, uncacheable reads, writes through
/// pgcached and straight to PostgreSQL, errors, a bad startup packet.
/// The label names of one exposition line's series (`name{a="x",b="y"} value`).
fn label_names(line: &str) -> Vec<String> {
    let Some((_, rest)) = line.split_once('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut chars = rest.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches(',').trim().to_owned();
        if name.is_empty() || name.starts_with('}') {
            return names;
        }
        names.push(name);
        // The quoted value, with backslash escapes.
        if chars.next() != Some('"') {
            return names;
        }
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
    }
}

/// How pgcached's exposition differs from its metric registry: families not in it, of another
/// type or without help text, series with other label names.
fn registry_problems(exposition: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut described = std::collections::BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            described.extend(rest.split(' ').next().map(str::to_owned));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            match pgcached::metrics::registry::find(name) {
                None => problems.push(format!("{name} is exported but not in the registry")),
                Some(metric) if metric.kind.name() != kind => problems.push(format!(
                    "{name} is exported as a {kind}, the registry says {}",
                    metric.kind.name()
                )),
                Some(_) => {}
            }
        } else if line.starts_with("pgcached_") {
            let series = line.split(['{', ' ']).next().unwrap_or_default().to_owned();
            let Some(metric) = registered(&series) else {
                problems.push(format!("{series} is exported but not in the registry"));
                continue;
            };
            let mut names = label_names(line);
            if matches!(metric.kind, MetricType::Histogram(_)) && series.ends_with("_bucket") {
                names.retain(|name| name != "le");
            }
            names.sort();
            let mut expected: Vec<String> = metric.labels.iter().map(|l| (*l).to_owned()).collect();
            expected.sort();
            if names != expected {
                problems.push(format!(
                    "{line}: labels {names:?}, the registry says {expected:?}"
                ));
            }
        }
    }
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !described.contains(name) {
                problems.push(format!("{name} is exported without help text"));
            }
        }
    }
    problems
}

async fn load(proxy_port: u16, cluster_port: u16, stop: Arc<AtomicBool>) {
    let through = connect(&url(Endpoint::proxy(proxy_port), "postgres", None, "app"))
        .await
        .expect("through pgcached");
    let direct = connect(&format!(
        "postgres://postgres@127.0.0.1:{cluster_port}/app?sslmode=disable"
    ))
    .await
    .expect("direct");
    let statement = through
        .prepare("SELECT name FROM dash_items WHERE id = $1")
        .await
        .expect("prepare");
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        for id in 1..=20i32 {
            let _ = through.query(&statement, &[&id]).await;
            let _ = through
                .simple_query(&format!(
                    "SELECT name FROM dash_items WHERE id = {}",
                    id % 5
                ))
                .await;
        }
        let _ = through.simple_query("SELECT now()").await;
        let _ = through.simple_query("SELECT 1/0").await;
        if round.is_multiple_of(5) {
            let _ = through
                .simple_query("UPDATE dash_items SET name = name WHERE id = 1")
                .await;
            let _ = direct
                .simple_query("UPDATE dash_items SET name = name WHERE id = 2")
                .await;
            // A client that sends garbage instead of a startup packet.
            if let Ok(mut bad) = TcpStream::connect(("127.0.0.1", proxy_port)) {
                let _ = bad.write_all(b"\x00\x00\x00\x02garbage");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn every_dashboard_panel_has_data_in_prometheus() {
    let prometheus_bin = prometheus_binary();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The exporter is process-wide; it must be installed before pgcached creates its handles.
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    runtime
        .block_on(async { pgcached::metrics::install_exporter(metrics_addr) })
        .expect("metrics exporter");

    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    cluster
        .psql(
            "app",
            "CREATE TABLE dash_items (id int PRIMARY KEY, name text NOT NULL);
             INSERT INTO dash_items SELECT g, 'item ' || g FROM generate_series(1, 20) g;",
        )
        .expect("setup");
    // Two pgcacheds sharing a Redis tier, so the shared tier's panels have data (both report
    // through this process's one exporter, as one instance).
    assert!(
        pgcached_tests::redis::available(),
        "redis-server is not installed (scripts/test installs Debian's redis-server)"
    );
    let redis = pgcached_tests::redis::RedisServer::start();
    let redis_url = redis.url();
    // And a streaming standby as their replica, so the read-replica panels have data.
    let standby = LocalCluster::start_standby(&cluster).expect("standby");
    let replica = format!(
        "postgres://{}:{}?sslmode=disable",
        standby.host(),
        standby.port()
    );
    let shared = [
        "--shared-cache",
        redis_url.as_str(),
        "--replica",
        replica.as_str(),
    ];
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &shared));
    let second = TestProxy::with_config(caching_config_for(&cluster, &shared));

    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, scrape_config(metrics_addr)).expect("write config");
    let prometheus_port = free_port();
    let child = Command::new(&prometheus_bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = Running(child);
    let prometheus_started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let load_task = runtime.spawn(load(proxy.port(), cluster.port(), Arc::clone(&stop)));
    let second_load = runtime.spawn(load(second.port(), cluster.port(), Arc::clone(&stop)));

    let mut queries = panel_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    // The latency histogram is a real Prometheus histogram spanning 50 µs to 10 s.
    for le in ["0.00005", "10", "+Inf"] {
        queries.push(PanelQuery {
            panel: format!("histogram bucket le={le}"),
            expr: format!("pgcached_query_duration_seconds_bucket{{path=\"hit\",le=\"{le}\"}}"),
        });
    }
    let started = Instant::now();
    let failures = loop {
        std::thread::sleep(Duration::from_secs(2));
        let failures: Vec<String> = queries
            .iter()
            .filter_map(|q| {
                let expr = concrete(&q.expr, RATE_WINDOW);
                check_query(prometheus_port, &expr).map(|why| format!("{}: {expr}: {why}", q.panel))
            })
            .collect();
        if failures.is_empty() || started.elapsed() > DEADLINE {
            break failures;
        }
    };
    if failures.is_empty() {
        if let Some(png) = std::env::var_os("PGCACHED_RENDER_DASHBOARD") {
            // Let the graphs cover a few minutes of load before drawing them.
            std::thread::sleep(Duration::from_secs(150));
            let status = Command::new("python3")
                .arg(repo().join("grafana/render.py"))
                .arg("--prometheus")
                .arg(format!("http://127.0.0.1:{prometheus_port}"))
                .arg("--minutes")
                .arg(format!(
                    "{:.2}",
                    prometheus_started.elapsed().as_secs_f64() / 60.0
                ))
                .arg("--out")
                .arg(&png)
                .status()
                .expect("run grafana/render.py");
            assert!(status.success(), "render.py failed");
        }
    }
    let exposition = http_get(metrics_addr.port(), "/metrics").expect("pgcached's /metrics");
    let families = exposition.matches("# TYPE pgcached_").count();
    let registry_problems = registry_problems(&exposition);
    let rule_problems = check_rules(prometheus_port);
    stop.store(true, Ordering::Relaxed);
    let _ = runtime.block_on(load_task);
    let _ = runtime.block_on(second_load);
    assert!(rule_problems.is_empty(), "alert rules: {rule_problems:?}");
    assert!(
        families >= 20,
        "{families} metric families exported:\n{exposition}"
    );
    assert!(
        registry_problems.is_empty(),
        "pgcached's metrics and its registry differ:\n{}",
        registry_problems.join("\n")
    );
    assert!(
        failures.is_empty(),
        "dashboard panels without data after {DEADLINE:?}:\n{}",
        failures.join("\n")
    );
    drop(proxy);
    drop(second);
    drop(redis);
}

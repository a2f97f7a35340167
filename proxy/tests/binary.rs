//! The built `pgcached` binary: help text, configuration precedence, metrics endpoint,
//! signals, `pgcached demo` as a new user runs it (and without PostgreSQL binaries).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgcached_local_cluster::users::PGCACHED_USER;
use pgcached_local_cluster::{ClusterOptions, LocalCluster};

const BIN: &str = env!("CARGO_BIN_EXE_pgcached");

/// A throwaway cluster with pgcached's SCRAM verifier function installed, as the tests crate's.
fn cluster() -> LocalCluster {
    LocalCluster::start(ClusterOptions {
        setup_sql: pgcached::auth::verifiers::install_sql(PGCACHED_USER),
        ..ClusterOptions::default()
    })
    .expect("cluster")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Kills the child if a test fails before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs pgcached on `port` in front of `cluster` with pgcached's own credentials (database
/// `app`), plus `extra` flags; stderr, logged at `rust_log`, goes to `stderr`.
fn spawn_with_credentials(
    cluster: &LocalCluster,
    port: u16,
    extra: &[&str],
    stderr: Stdio,
    rust_log: &str,
) -> Running {
    use pgcached_local_cluster::users::{PGCACHED_PASSWORD, PGCACHED_USER};
    let child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--upstream",
            &format!(
                "postgres://{PGCACHED_USER}:{PGCACHED_PASSWORD}@127.0.0.1:{}/app?sslmode=disable",
                cluster.port()
            ),
        ])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn");
    Running(child)
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn help_explains_every_flag() {
    let output = Command::new(BIN).arg("--help").output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--upstream",
        "--metrics-listen",
        "--tls-cert",
        "--tls-key",
        "--config",
        "--log-format",
        "--max-client-conn",
        "--shutdown-timeout",
        "--cache",
        "--cache-size",
        "--cache-max-entry",
        "--cache-ttl",
        "--replication",
        "--publication",
        "--cache-ttl-unreplicated",
        "--cache-allow-tables",
        "--cache-deny-tables",
        "--admin-users",
        "demo",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
    for env in [
        "PGCACHED_LISTEN",
        "PGCACHED_UPSTREAM",
        "PGCACHED_METRICS_LISTEN",
        "PGCACHED_PUBLICATION",
        "PGCACHED_CACHE_TTL_UNREPLICATED",
        "PGCACHED_ADMIN_USERS",
    ] {
        assert!(help.contains(env), "--help does not mention {env}");
    }
}

#[test]
fn bad_settings_are_refused_with_a_clear_message() {
    let output = Command::new(BIN)
        .args(["--upstream", "mysql://nope"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid upstream URL"), "{stderr}");

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listne = \"127.0.0.1:1\"\n").expect("write");
    let output = Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listne"), "{stderr}");
}

#[test]
fn demo_without_postgresql_binaries_fails_clearly() {
    let output = Command::new(BIN)
        .arg("demo")
        .env("PGCACHED_PG_BINDIR", "/nonexistent/postgresql/bin")
        .env("PATH", "/nonexistent")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    assert!(stderr.contains("PGCACHED_PG_BINDIR"), "{stderr}");
}

/// The `psql "URL" -c 'SQL'` lines of the demo's banner, as (URL, SQL).
fn banner_commands(banner: &str) -> Vec<(String, String)> {
    banner
        .lines()
        .filter_map(|line| line.trim().strip_prefix("psql \""))
        .filter_map(|rest| {
            let (url, rest) = rest.split_once('"')?;
            let sql = rest.trim().strip_prefix("-c '")?.strip_suffix('\'')?;
            Some((url.to_owned(), sql.to_owned()))
        })
        .collect()
}

/// Runs one banner command with the machine's psql (unaligned, tuples only), as a new user
/// would paste it; returns stdout, or stderr on failure.
fn run_banner_command(url: &str, sql: &str) -> Result<String, String> {
    let bindir = pgcached_local_cluster::find_bindir().expect("PostgreSQL binaries");
    let output = Command::new(bindir.join("psql"))
        .args(["-X", "-w", "-A", "-t"])
        .arg(url)
        .args(["-c", sql])
        .output()
        .expect("run psql");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The value of `stat` in `SHOW STATS` output (`stat|value` lines).
fn stat(stats: &str, name: &str) -> f64 {
    stats
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('|'))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in SHOW STATS:\n{stats}"))
}

/// Runs `pgcached demo` with `extra` arguments after `demo`; the running child and its banner.
fn start_demo(extra: &[&str]) -> (Running, String) {
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .arg("demo")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the demo");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().expect("stdout");
    let (lines, banner_lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut banner = String::new();
    while !banner.contains("Press Ctrl-C") {
        match banner_lines.recv_timeout(Duration::from_secs(90)) {
            Ok(line) => {
                banner.push_str(&line);
                banner.push('\n');
            }
            Err(e) => panic!("no banner from the demo ({e}):\n{banner}"),
        }
    }
    (running, banner)
}

#[test]
fn the_demo_with_a_standby_sends_misses_to_it() {
    let (running, banner) = start_demo(&["--standby"]);
    assert!(banner.contains("standby (throwaway)"), "{banner}");
    let commands = banner_commands(&banner);
    let (app, _) = commands
        .iter()
        .find(|(url, _)| url.ends_with("/app"))
        .unwrap_or_else(|| panic!("no command for database app:\n{banner}"));
    let (console, _) = commands
        .iter()
        .find(|(url, _)| url.ends_with("/pgcached"))
        .unwrap_or_else(|| panic!("no console command:\n{banner}"));
    // Misses of rows not read before; once the standby is usable and the change stream runs,
    // it fills them (`filled`, the eighth column of SHOW REPLICAS).
    let mut replicas = String::new();
    for id in 1..200 {
        let sql = format!("SELECT name FROM products WHERE id = {id}");
        let rows = run_banner_command(app, &sql).expect("a read through pgcached");
        assert_eq!(rows.trim(), format!("product {id}"));
        replicas = run_banner_command(console, "SHOW REPLICAS").expect("SHOW REPLICAS");
        let filled: u64 = replicas
            .lines()
            .next()
            .and_then(|row| row.split('|').nth(7))
            .and_then(|filled| filled.parse().ok())
            .unwrap_or(0);
        if filled > 0 {
            stop_demo(running);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the standby never answered a miss:\n{replicas}");
}

/// Ctrl-C (SIGINT) to the demo; it must exit cleanly.
fn stop_demo(mut running: Running) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(running.0.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_demo_banner_commands_work_as_printed() {
    let (running, banner) = start_demo(&[]);
    let commands = banner_commands(&banner);
    let app = commands
        .iter()
        .find(|(url, _)| url.ends_with("/app"))
        .unwrap_or_else(|| panic!("no command for database app:\n{banner}"));
    let console = |what: &str| {
        commands
            .iter()
            .find(|(url, sql)| url.ends_with("/pgcached") && sql.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} command for the admin console:\n{banner}"))
    };
    let (stats_url, show_stats) = console("SHOW STATS");
    let (explain_url, explain) = console("EXPLAIN CACHE");

    // The table is there, and repeating the read is answered from the cache (the first runs
    // are relayed while the catalog is asked and the change stream starts).
    let mut stats = String::new();
    for _ in 0..100 {
        let rows = run_banner_command(&app.0, &app.1).expect("the banner's read");
        assert!(rows.starts_with("1|product 1|"), "{rows}");
        stats = run_banner_command(stats_url, show_stats).expect("the banner's SHOW STATS");
        if stat(&stats, "cache_hits") >= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stat(&stats, "cache_hits") >= 1.0, "never a hit:\n{stats}");
    let verdict = run_banner_command(explain_url, explain).expect("the banner's EXPLAIN CACHE");
    assert!(
        verdict.starts_with("yes|cacheable|"),
        "{explain}: {verdict}"
    );

    // Ctrl-C (SIGINT) stops pgcached, which removes the cluster.
    let data_dir = banner
        .lines()
        .find_map(|line| {
            line.split_once("data in ")
                .map(|(_, dir)| dir.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no data directory in the banner:\n{banner}"));
    assert!(std::path::Path::new(&data_dir).is_dir(), "{data_dir}");
    stop_demo(running);
    assert!(
        !std::path::Path::new(&data_dir).exists(),
        "the demo left {data_dir} behind"
    );
}

#[test]
fn env_beats_file_flag_beats_env_metrics_are_served_and_sigterm_stops_it() {
    let cluster = cluster();
    let (file_port, env_port, flag_port, metrics_port) =
        (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("pgcached.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\nupstream = \"postgres://127.0.0.1:{}?sslmode=disable\"\n\
             metrics_listen = \"127.0.0.1:{metrics_port}\"\nshutdown_timeout = \"3s\"\n",
            cluster.port()
        ),
    )
    .expect("config");

    // The environment beats the file.
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .env("PGCACHED_LISTEN", format!("127.0.0.1:{env_port}"))
        .env(
            "PGCACHED_METRICS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut running = Running(child);
    assert!(wait_for_port(env_port), "env listen address not used");
    assert!(TcpStream::connect(("127.0.0.1", file_port)).is_err());
    let _ = running.0.kill();
    let _ = running.0.wait();

    // A flag beats the environment; the file still supplies the rest.
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{flag_port}")])
        .env("PGCACHED_LISTEN", format!("127.0.0.1:{env_port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut running = Running(child);
    assert!(wait_for_port(flag_port), "flag listen address not used");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!("postgres://postgres@127.0.0.1:{flag_port}/app?sslmode=disable"),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect through the binary");
        tokio::spawn(connection);
        for _ in 0..3 {
            client.simple_query("SELECT 1").await.expect("query");
        }
    });
    let metrics = http_get(metrics_port, "/metrics");
    assert!(metrics.contains("200 OK"), "{metrics}");
    assert!(metrics.contains("pgcached_client_connections"), "{metrics}");
    let relayed = metrics
        .lines()
        .find(|l| l.starts_with("pgcached_queries_relayed_total{protocol=\"simple\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no simple query counter:\n{metrics}"));
    assert!(relayed >= 3.0, "{metrics}");

    // SIGTERM: stops within the grace period and exits cleanly.
    let pid = running.0.id() as i32;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "pgcached ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    if let Some(mut pipe) = running.0.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("shutdown complete"), "{stderr}");
}

#[test]
fn a_killed_pgcached_leaves_no_replication_slot_behind() {
    let cluster = cluster();
    let port = free_port();
    let mut running =
        spawn_with_credentials(&cluster, port, &["--cache", "on"], Stdio::null(), "info");
    assert!(wait_for_port(port));
    let slots = "SELECT count(*) FROM pg_replication_slots WHERE temporary";
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!("postgres://postgres@127.0.0.1:{port}/app?sslmode=disable"),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect");
        tokio::spawn(connection);
        client.simple_query("SELECT 1").await.expect("query");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.psql("app", slots).expect("psql").trim() != "1" {
        assert!(
            Instant::now() < deadline,
            "no temporary slot while pgcached runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = running.0.kill();
    let _ = running.0.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.psql("app", slots).expect("psql").trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "temporary slot left behind by a killed pgcached"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_logs_show_sessions_and_never_a_secret() {
    use pgcached_local_cluster::users::{PGCACHED_PASSWORD, SCRAM_PASSWORD, SCRAM_USER};
    let cluster = cluster();
    let port = free_port();
    let mut running = spawn_with_credentials(
        &cluster,
        port,
        &["--log-format", "json", "--shutdown-timeout", "3s"],
        Stdio::piped(),
        "debug",
    );
    assert!(wait_for_port(port));
    let parameter = "param-value-4711";
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "postgres://{SCRAM_USER}:{SCRAM_PASSWORD}@127.0.0.1:{port}/app?sslmode=disable"
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect");
        tokio::spawn(connection);
        for _ in 0..3 {
            let row = client
                .query_one("SELECT $1::text", &[&parameter])
                .await
                .expect("query");
            assert_eq!(row.get::<_, String>(0), parameter);
        }
        assert!(client
            .simple_query("SELECT * FROM no_such_table_x")
            .await
            .is_err());
    });
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(running.0.id() as i32, libc::SIGTERM);
    }
    let _ = running.0.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = running.0.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let fields = &event["fields"];
        messages.push((
            fields["message"].as_str().unwrap_or_default().to_owned(),
            fields["user"].as_str().unwrap_or_default().to_owned(),
        ));
        for secret in [PGCACHED_PASSWORD, SCRAM_PASSWORD, parameter] {
            assert!(!line.contains(secret), "a secret was logged: {line}");
        }
    }
    let started = messages
        .iter()
        .any(|(message, user)| message == "session start" && user == SCRAM_USER);
    let ended = messages
        .iter()
        .any(|(message, user)| message.starts_with("session end") && user == SCRAM_USER);
    assert!(started && ended, "no session start/end lines:\n{stderr}");
    assert!(
        messages.iter().any(|(m, _)| m == "pgcached serving"),
        "{stderr}"
    );
}

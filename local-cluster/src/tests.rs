//! Tests of the local cluster against the machine's PostgreSQL binaries.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// Whether `pid` is a live process (a zombie, which an init that does not reap may leave
/// behind, counts as gone).
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    if unsafe { libc::kill(pid as i32, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `condition` for up to `timeout`.
fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Connects with the cluster's psql as `user` (password from `PGPASSWORD`), runs `sql`.
fn psql_as(
    cluster: &LocalCluster,
    user: &str,
    password: Option<&str>,
    extra: &str,
    sql: &str,
) -> Result<String, String> {
    let conninfo = format!(
        "host=127.0.0.1 port={} user={user} dbname=app sslmode=disable {extra}",
        cluster.port()
    );
    let mut command = Command::new(cluster.bindir().join("psql"));
    command
        .args(["-X", "-A", "-t", "-w", "-d", &conninfo, "-c", sql])
        .env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn cluster_starts_answers_restarts_and_leaves_nothing_behind() {
    let mut cluster = LocalCluster::start(ClusterOptions::default()).expect("start");
    assert_eq!(cluster.host(), "127.0.0.1");
    assert_eq!(cluster.psql("app", "SELECT 1").expect("psql"), "1\n");
    assert_eq!(
        cluster.psql("app", "SHOW wal_level").expect("psql").trim(),
        "logical"
    );
    assert!(cluster.bindir().join("psql").is_file());

    // Data survives a restart on the same port.
    let port = cluster.port();
    cluster
        .psql(
            "app",
            "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);",
        )
        .expect("create");
    let first_pid = cluster.postmaster_pid().expect("running");
    cluster.restart().expect("restart");
    assert_eq!(cluster.port(), port);
    assert_ne!(cluster.postmaster_pid(), Some(first_pid));
    assert!(!alive(first_pid), "old postmaster still running");
    assert_eq!(
        cluster.psql("app", "SELECT n FROM kept").expect("psql"),
        "42\n"
    );

    // stop is idempotent, and a stopped cluster starts again.
    cluster.stop();
    cluster.stop();
    assert!(cluster.psql("app", "SELECT 1").is_err());
    cluster.restart().expect("restart after stop");
    assert_eq!(cluster.psql("app", "SELECT 3").expect("psql"), "3\n");

    let dir = cluster.root.clone();
    let pid = cluster.postmaster_pid().expect("running");
    assert!(dir.join("postgres.log").is_file());
    drop(cluster);
    assert!(!dir.exists(), "temp dir left behind");
    assert!(!alive(pid), "postmaster still running");
}

#[test]
fn roles_authenticate_with_their_methods() {
    let cluster = LocalCluster::start(ClusterOptions::default()).expect("start");
    let md5_hash = cluster
        .psql(
            "postgres",
            "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'md5_user'",
        )
        .expect("psql");
    assert_eq!(md5_hash.trim(), "md5");

    let who = "SELECT current_user";
    assert_eq!(
        psql_as(&cluster, users::TRUST_USER, None, "", who).as_deref(),
        Ok("trust_user")
    );
    assert_eq!(
        psql_as(
            &cluster,
            users::MD5_USER,
            Some(users::MD5_PASSWORD),
            "",
            who
        )
        .as_deref(),
        Ok("md5_user")
    );
    assert_eq!(
        psql_as(
            &cluster,
            users::SCRAM_USER,
            Some(users::SCRAM_PASSWORD),
            "",
            who
        )
        .as_deref(),
        Ok("scram_user")
    );
    assert!(psql_as(&cluster, users::SCRAM_USER, Some("wrong"), "", who).is_err());
    assert!(psql_as(&cluster, users::MD5_USER, None, "", who).is_err());
    // pgcached may open replication connections.
    let system = psql_as(
        &cluster,
        users::PGCACHED_USER,
        Some(users::PGCACHED_PASSWORD),
        "replication=database",
        "IDENTIFY_SYSTEM",
    )
    .expect("replication connection");
    assert!(system.contains('|'), "{system}");
    // Every role may create tables in app.
    psql_as(
        &cluster,
        users::TRUST_USER,
        None,
        "",
        "CREATE TABLE mine (n int)",
    )
    .expect("create in app");
}

#[test]
fn a_server_that_does_not_start_reports_its_log() {
    let options = ClusterOptions {
        extra_settings: vec![("no_such_setting".to_owned(), "1".to_owned())],
        ..ClusterOptions::default()
    };
    let error = LocalCluster::start(options).expect_err("must not start");
    let text = error.to_string();
    assert!(matches!(error, LocalClusterError::Start { .. }), "{text}");
    assert!(text.contains("no_such_setting"), "{text}");
}

#[test]
fn tls_files_are_installed_for_the_server() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (certs.path().join("c.pem"), certs.path().join("k.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("openssl not available; skipping");
        return;
    }
    let cluster = LocalCluster::start(ClusterOptions {
        ssl: Some(SslFiles {
            cert_pem: cert,
            key_pem: key,
        }),
        ..ClusterOptions::default()
    })
    .expect("start with TLS");
    assert_eq!(cluster.psql("app", "SHOW ssl").expect("psql").trim(), "on");
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(cluster.data_dir().join("server.key")).expect("key");
    assert_eq!(key.mode() & 0o777, 0o600);
    if let ServerUser::Switch { uid, .. } = cluster.user {
        assert_eq!(key.uid(), uid);
    }
    let tls = psql_as(
        &cluster,
        users::SCRAM_USER,
        Some(users::SCRAM_PASSWORD),
        "sslmode=require",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(tls.as_deref(), Ok("t"));
}

#[test]
fn the_watchdog_cleans_up_after_a_dead_owner() {
    let dir = tempfile::tempdir().expect("tempdir").keep();
    std::fs::write(dir.join("file"), "x").expect("write");
    let mut owner = Command::new("sleep").arg("30").spawn().expect("owner");
    let mut server = Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("server");
    let watchdog = Watchdog::spawn_for(owner.id(), &dir, Some(server.id())).expect("watchdog");
    std::thread::sleep(Duration::from_millis(300));
    assert!(dir.exists(), "acted while the owner lives");
    owner.kill().expect("kill owner");
    owner.wait().expect("reap owner");
    assert!(
        eventually(Duration::from_secs(5), || matches!(
            server.try_wait(),
            Ok(Some(_))
        )),
        "server not killed"
    );
    assert!(
        eventually(Duration::from_secs(5), || !dir.exists()),
        "dir not removed"
    );
    drop(watchdog);
}

/// Environment variable telling [`owner_process`] to run, and where to report.
const OWNER_ENV: &str = "PGCACHED_LOCAL_CLUSTER_TEST_OWNER";

/// Not a test: the body of the process that [`a_killed_owner_leaks_nothing`] starts and kills.
#[test]
#[ignore = "run by a_killed_owner_leaks_nothing"]
fn owner_process() {
    if std::env::var_os(OWNER_ENV).is_none() {
        return;
    }
    let cluster = LocalCluster::start(ClusterOptions::default()).expect("start");
    println!(
        "CLUSTER {} {}",
        cluster.postmaster_pid().expect("running"),
        cluster.root.display()
    );
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_owner_leaks_nothing() {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "tests::owner_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OWNER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn owner");
    let stdout = child.stdout.take().expect("stdout");
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| Some(l[l.find("CLUSTER ")?..].to_owned()));
    let Some(line) = line else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the owner process did not start a cluster");
    };
    let mut parts = line.splitn(3, ' ').skip(1);
    let pid: u32 = parts.next().and_then(|p| p.parse().ok()).expect("pid");
    let dir = PathBuf::from(parts.next().expect("dir"));
    assert!(alive(pid) && dir.exists());
    child.kill().expect("SIGKILL the owner");
    child.wait().expect("reap the owner");
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "postmaster {pid} outlived its owner"
    );
    assert!(
        eventually(Duration::from_secs(10), || !dir.exists()),
        "{} outlived its owner",
        dir.display()
    );
}

#[test]
fn the_callers_setup_sql_runs_in_every_database() {
    let cluster = LocalCluster::start(ClusterOptions {
        setup_sql: "CREATE FUNCTION public.installed_by_caller() RETURNS int LANGUAGE sql \
                    AS 'SELECT 7';"
            .to_owned(),
        ..ClusterOptions::default()
    })
    .expect("start");
    for database in ["postgres", users::APP_DATABASE] {
        assert_eq!(
            cluster
                .psql(database, "SELECT public.installed_by_caller()")
                .expect("psql"),
            "7\n",
            "{database}"
        );
    }
}

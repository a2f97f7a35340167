//! The admin console against a real PostgreSQL: who is admitted (PostgreSQL checks the
//! password, `--admin-users` decides), what each command answers, and that `INVALIDATE` really
//! drops results a write pgcached could not see left stale.
//!
//! Stale results are produced on purpose: with `--replication off`, an UPDATE made straight to
//! PostgreSQL is invisible to pgcached, so a cached read keeps its old value until something
//! invalidates it. That makes "was it dropped?" observable from a client.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use pgcached_local_cluster::users::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};
use pgcached_local_cluster::LocalCluster;
use pgcached_tests::clients::{
    error_text, expect_success, first_value, psql_aligned, run_with_timeout,
};
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::{connect, url, Endpoint, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();

fn cluster() -> &'static LocalCluster {
    CLUSTER.get_or_init(|| {
        let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
        cluster
            .psql(
                "app",
                "CREATE TABLE console_items (id int PRIMARY KEY, name text NOT NULL);
                 INSERT INTO console_items SELECT g, 'item ' || g FROM generate_series(1, 50) g;
                 CREATE UNLOGGED TABLE console_scratch (id int);
                 CREATE TABLE console_parent (id int);
                 CREATE UNLOGGED TABLE console_child () INHERITS (console_parent);
                 GRANT SELECT, UPDATE ON console_items, console_scratch TO PUBLIC;",
            )
            .expect("setup");
        cluster
    })
}

fn proxy(extra: &[&str]) -> TestProxy {
    let mut flags = vec!["--admin-users", "scram_user"];
    flags.extend_from_slice(extra);
    TestProxy::with_config(caching_config_for(cluster(), &flags))
}

async fn console(proxy: &TestProxy) -> Client {
    connect(&url(
        Endpoint::proxy(proxy.port()),
        SCRAM_USER,
        Some(SCRAM_PASSWORD),
        "pgcached",
    ))
    .await
    .expect("admin console login")
}

async fn app(proxy: &TestProxy) -> Client {
    connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("app session through pgcached")
}

async fn direct() -> Client {
    connect(&url(Endpoint::direct(cluster()), "postgres", None, "app"))
        .await
        .expect("direct session")
}

/// Rows of a console command as column name → value maps.
async fn rows(client: &Client, command: &str) -> Vec<HashMap<String, Option<String>>> {
    client
        .simple_query(command)
        .await
        .unwrap_or_else(|e| panic!("{command}: {}", error_text(&e)))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), row.get(i).map(str::to_owned)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// `SHOW STATS` as stat → value.
async fn stats(client: &Client) -> HashMap<String, f64> {
    rows(client, "SHOW STATS")
        .await
        .into_iter()
        .map(|row| {
            let name = row["stat"].clone().expect("stat name");
            let value = row["value"]
                .as_deref()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("numeric value");
            (name, value)
        })
        .collect()
}

/// Runs `sql` until two executions in a row were answered from the cache (checked through
/// SHOW STATS), so that the next one is certainly a hit.
async fn warm(app: &Client, console: &Client, sql: &str) {
    for _ in 0..40 {
        let before = stats(console).await["cache_hits"];
        first_value(app, sql).await;
        first_value(app, sql).await;
        if stats(console).await["cache_hits"] >= before + 2.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql} never became a cache hit");
}

async fn login_error(user: &str, password: Option<&str>, proxy: &TestProxy) -> (String, String) {
    let error = connect(&url(
        Endpoint::proxy(proxy.port()),
        user,
        password,
        "pgcached",
    ))
    .await
    .err()
    .unwrap_or_else(|| panic!("{user} was admitted to the console"));
    let code = error
        .as_db_error()
        .map(|e| e.code().code().to_owned())
        .unwrap_or_default();
    (code, error_text(&error))
}

#[tokio::test]
async fn the_console_is_off_unless_admin_users_are_configured() {
    let proxy = TestProxy::with_config(caching_config_for(cluster(), &[]));
    let (code, message) = login_error(SCRAM_USER, Some(SCRAM_PASSWORD), &proxy).await;
    assert_eq!(code, "28000", "{message}");
    assert!(message.contains("--admin-users"), "{message}");
    // Other databases are relayed as before.
    assert_eq!(first_value(&app(&proxy).await, "SELECT 1").await, "1");
}

#[tokio::test]
async fn postgres_checks_the_password_and_admin_users_decides() {
    let proxy = proxy(&[]);
    let (code, message) = login_error(SCRAM_USER, Some("wrong password"), &proxy).await;
    assert_eq!(
        code, "28P01",
        "PostgreSQL's own refusal is relayed: {message}"
    );
    let (code, message) = login_error(MD5_USER, Some(MD5_PASSWORD), &proxy).await;
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.contains("may not use the admin console"),
        "{message}"
    );
    let admin = console(&proxy).await;
    let version = rows(&admin, "SHOW VERSION").await;
    assert!(
        version[0]["version"]
            .as_deref()
            .is_some_and(|v| v.starts_with("pgcached ")),
        "{version:?}"
    );
}

#[tokio::test]
async fn psql_shows_the_console_with_its_normal_output() {
    let proxy = proxy(&[]);
    let console_url = url(
        Endpoint::proxy(proxy.port()),
        SCRAM_USER,
        Some(SCRAM_PASSWORD),
        "pgcached",
    );
    let mut command = psql_aligned(cluster(), &console_url, &["SHOW STATS", "show config;"]);
    command.arg("-v").arg("ON_ERROR_STOP=1");
    let output = expect_success(&run_with_timeout(&mut command, 60), "psql SHOW STATS");
    assert!(output.contains(" stat "), "{output}");
    assert!(output.contains("| value"), "{output}");
    assert!(output.contains("cache_hit_ratio"), "{output}");
    assert!(output.contains(" rows)"), "{output}");
    assert!(output.contains("admin_users"), "{output}");
    assert!(
        !output.contains(pgcached_local_cluster::users::PGCACHED_PASSWORD),
        "SHOW CONFIG printed the upstream password:\n{output}"
    );
    // A mistake is an error, and psql says what to do.
    let mut command = psql_aligned(cluster(), &console_url, &["SHOW EVERYTHING"]);
    let output = run_with_timeout(&mut command, 60);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("SHOW HELP"), "{stderr}");
}

#[tokio::test]
async fn stats_cache_tables_and_clients_follow_the_traffic() {
    let proxy = proxy(&[]);
    let admin = console(&proxy).await;
    let app = app(&proxy).await;
    let before = stats(&admin).await;
    let read = "SELECT name FROM console_items WHERE id = 7";
    warm(&app, &admin, read).await;
    for _ in 0..5 {
        assert_eq!(first_value(&app, read).await, "item 7");
    }
    first_value(&app, "SELECT now()").await;
    app.simple_query("UPDATE console_items SET name = name WHERE id = 50")
        .await
        .expect("update");
    assert!(app.simple_query("SELECT 1/0").await.is_err());
    let after = stats(&admin).await;
    let grew = |name: &str| after[name] - before.get(name).copied().unwrap_or(0.0);
    assert!(grew("cache_hits") >= 7.0, "{after:?}");
    assert!(grew("queries_read_cached") >= 7.0, "{after:?}");
    assert!(grew("queries_read_uncacheable") >= 1.0, "now(): {after:?}");
    assert!(grew("queries_write") >= 1.0, "{after:?}");
    assert!(grew("upstream_errors") >= 1.0, "{after:?}");
    assert!(grew("cache_hit_bytes") > 0.0, "{after:?}");
    assert!(grew("db_time_saved_seconds") > 0.0, "{after:?}");
    assert!(grew("invalidations_proxy") >= 1.0, "{after:?}");

    // The UPDATE invalidated the database: warm the read again, then look at the cache.
    warm(&app, &admin, read).await;
    let cache = rows(&admin, "SHOW CACHE").await;
    let entry = cache
        .iter()
        .find(|row| row["query"].as_deref() == Some("SELECT name FROM console_items WHERE id = ?"))
        .unwrap_or_else(|| panic!("no entry with the literal removed: {cache:?}"));
    assert_eq!(entry["tables"].as_deref(), Some("public.console_items"));
    assert_eq!(entry["database"].as_deref(), Some("app"));
    assert!(entry["hits"].as_deref().and_then(|h| h.parse::<u64>().ok()) >= Some(1));
    assert!(
        cache
            .iter()
            .all(|row| !row["query"].as_deref().unwrap_or("").contains("= 7")),
        "a literal value is shown: {cache:?}"
    );

    let tables = rows(&admin, "SHOW TABLES").await;
    assert!(
        tables.iter().any(
            |row| row["table"].as_deref() == Some("public.console_items")
                && row["database"].as_deref() == Some("app")
        ),
        "{tables:?}"
    );

    let clients = rows(&admin, "SHOW CLIENTS").await;
    assert!(
        clients
            .iter()
            .any(|row| row["user"].as_deref() == Some("postgres")
                && row["database"].as_deref() == Some("app")
                && row["queries"]
                    .as_deref()
                    .and_then(|q| q.parse::<u64>().ok())
                    >= Some(10)),
        "{clients:?}"
    );
    assert!(
        clients
            .iter()
            .any(|row| row["database"].as_deref() == Some("pgcached")),
        "the console's own session is listed: {clients:?}"
    );

    let replication = rows(&admin, "SHOW REPLICATION").await;
    let app_stream = replication
        .iter()
        .find(|row| row["database"].as_deref() == Some("app"))
        .unwrap_or_else(|| panic!("{replication:?}"));
    assert_eq!(app_stream["mode"].as_deref(), Some("auto"));
    assert_eq!(
        app_stream["state"].as_deref(),
        Some("streaming"),
        "{replication:?}"
    );
}

#[tokio::test]
async fn explain_cache_says_why() {
    let proxy = proxy(&["--cache-deny-tables", "console_secret"]);
    let admin = console(&proxy).await;
    let explain = |sql: &'static str| {
        let admin = &admin;
        async move {
            let rows = rows(admin, &format!("EXPLAIN CACHE DATABASE app {sql}")).await;
            assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
            rows.into_iter().next().unwrap_or_default()
        }
    };
    let yes = explain("SELECT * FROM console_items WHERE id = 3").await;
    assert_eq!(yes["cacheable"].as_deref(), Some("yes"), "{yes:?}");
    assert_eq!(yes["tables"].as_deref(), Some("public.console_items"));
    assert_eq!(yes["ttl"].as_deref(), Some("until invalidated"));
    assert_eq!(
        yes["normalized"].as_deref(),
        Some("SELECT * FROM console_items WHERE id = ?")
    );
    let ttl = explain("SELECT * FROM console_items /* pgcached:ttl=30s */").await;
    assert_eq!(ttl["cacheable"].as_deref(), Some("yes"));
    assert_eq!(ttl["ttl"].as_deref(), Some("30s"));
    for (sql, reason) in [
        ("SELECT now()", "volatile_function"),
        ("SELECT * FROM console_items FOR UPDATE", "locking_clause"),
        (
            "SELECT * FROM console_items /* pgcached:nocache */",
            "nocache_hint",
        ),
        (
            "SELECT * FROM console_items /* pgcached:ttl=later */",
            "invalid_hint",
        ),
        ("SELECT * FROM console_scratch", "unlogged_table"),
        ("SELECT * FROM console_parent", "unlogged_table"),
        ("SELECT * FROM pg_class", "system_catalog"),
        ("SELECT * FROM no_such_table", "unknown_relation"),
        ("UPDATE console_items SET name = 'x'", "write"),
        ("SET search_path = public", "session_state"),
    ] {
        let row = explain(sql).await;
        assert_eq!(row["cacheable"].as_deref(), Some("no"), "{sql}: {row:?}");
        assert_eq!(row["reason"].as_deref(), Some(reason), "{sql}: {row:?}");
        assert!(row["detail"].as_deref().is_some_and(|d| !d.is_empty()));
    }
    let error = admin
        .simple_query("DROP TABLE x")
        .await
        .expect_err("unknown");
    assert_eq!(error.code().map(|c| c.code()), Some("42601"));
}

#[tokio::test]
async fn drivers_that_use_the_extended_protocol_work_too() {
    let proxy = proxy(&[]);
    let admin = console(&proxy).await;
    // tokio-postgres prepares, describes and asks for binary results.
    let rows = admin
        .query("SHOW STATS", &[])
        .await
        .unwrap_or_else(|e| panic!("SHOW STATS, extended: {}", error_text(&e)));
    let figures: HashMap<String, f64> = rows
        .iter()
        .map(|row| (row.get::<_, String>("stat"), row.get::<_, f64>("value")))
        .collect();
    assert!(figures.contains_key("cache_hit_ratio"), "{figures:?}");
    let statement = admin.prepare("SHOW CLIENTS").await.expect("prepare");
    for _ in 0..3 {
        let clients = admin.query(&statement, &[]).await.expect("execute");
        assert!(clients.iter().any(|row| {
            row.get::<_, String>("database") == "pgcached" && row.get::<_, i64>("queries") >= 1
        }));
    }
    let error = admin
        .query("SHOW NOTHING", &[])
        .await
        .expect_err("unknown command");
    assert_eq!(error.code().map(|c| c.code()), Some("42601"));
    // After an error the session still answers, in both protocols.
    assert!(!stats(&admin).await.is_empty());
    assert!(admin.query("SHOW VERSION", &[]).await.is_ok());

    // asyncpg, which prepares every statement and sends parameters' types.
    let console_url = url(
        Endpoint::proxy(proxy.port()),
        SCRAM_USER,
        Some(SCRAM_PASSWORD),
        "pgcached",
    );
    let script = format!(
        "import asyncio, asyncpg\n\
         async def main():\n\
         \x20   c = await asyncpg.connect('{console_url}')\n\
         \x20   rows = await c.fetch('SHOW CACHE')\n\
         \x20   stats = {{r['stat']: r['value'] for r in await c.fetch('SHOW STATS')}}\n\
         \x20   try:\n\
         \x20       await c.fetch('SHOW STATS', 1)\n\
         \x20       refused = False\n\
         \x20   except Exception:\n\
         \x20       refused = True\n\
         \x20   print(len(rows) >= 0, stats['clients_open'] >= 1, refused)\n\
         \x20   await c.close()\n\
         asyncio.run(main())\n"
    );
    let mut command = pgcached_tests::clients::python();
    command.arg("-c").arg(script);
    let output = expect_success(
        &run_with_timeout(&mut command, 60),
        "asyncpg on the console",
    );
    assert_eq!(output.trim(), "True True True", "{output}");
}

#[tokio::test]
async fn invalidate_drops_results_pgcached_could_not_see_change() {
    let proxy = proxy(&["--replication", "off"]);
    let admin = console(&proxy).await;
    let app = app(&proxy).await;
    let direct = direct().await;
    let read = "SELECT name FROM console_items WHERE id = 11";
    direct
        .simple_query("UPDATE console_items SET name = 'item 11' WHERE id = 11")
        .await
        .expect("reset");
    warm(&app, &admin, read).await;
    direct
        .simple_query("UPDATE console_items SET name = 'changed behind' WHERE id = 11")
        .await
        .expect("update behind pgcached");
    assert_eq!(
        first_value(&app, read).await,
        "item 11",
        "replication is off: stale on purpose"
    );

    let done = rows(&admin, "INVALIDATE TABLE console_items").await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["database"].as_deref(), Some("app"));
    assert_eq!(done[0]["table"].as_deref(), Some("console_items"));
    assert_eq!(first_value(&app, read).await, "changed behind");
    let tables = rows(&admin, "SHOW TABLES").await;
    let items = tables
        .iter()
        .find(|row| row["table"].as_deref() == Some("public.console_items"))
        .unwrap_or_else(|| panic!("{tables:?}"));
    assert!(
        items["invalidations"]
            .as_deref()
            .and_then(|n| n.parse::<u64>().ok())
            >= Some(1)
    );
    assert!(items["last_change_seconds_ago"].is_some());

    warm(&app, &admin, read).await;
    direct
        .simple_query("UPDATE console_items SET name = 'changed again' WHERE id = 11")
        .await
        .expect("update behind pgcached");
    assert_eq!(first_value(&app, read).await, "changed behind");
    let dropped = rows(&admin, "INVALIDATE ALL").await;
    assert!(
        dropped[0]["entries_dropped"]
            .as_deref()
            .and_then(|n| n.parse::<u64>().ok())
            >= Some(1)
    );
    assert_eq!(first_value(&app, read).await, "changed again");
    assert!(stats(&admin).await["invalidations_admin"] >= 2.0);

    let error = admin
        .simple_query("INVALIDATE TABLE no_such_table")
        .await
        .expect_err("unknown table");
    assert_eq!(error.code().map(|c| c.code()), Some("42P01"));
    assert!(error_text(&error).contains("no_such_table"));
}

#[tokio::test]
async fn hostile_messages_cost_only_their_own_console_session() {
    use pgcached_tests::raw::{frame, login_to, query, read_until_ready};
    use std::io::Write;

    let proxy = TestProxy::with_config(caching_config_for(
        cluster(),
        &["--admin-users", "postgres"],
    ));
    let port = proxy.port();
    let outcome = tokio::task::spawn_blocking(move || {
        // Malformed extended-protocol messages: an error, skipped to Sync, session usable.
        let (mut stream, opening) = login_to(port, "postgres", "pgcached");
        assert_eq!(opening.last().map(|m| m.tag), Some(b'Z'), "console login");
        let mut batch = frame(b'B', b"\0\0\0\x05");
        batch.extend(frame(b'E', b"no_such_portal\0\0\0\0\0"));
        batch.extend(frame(b'S', b""));
        stream.write_all(&batch).expect("write");
        let answer = read_until_ready(&mut stream);
        let errors: Vec<String> = answer.iter().filter_map(|m| m.sqlstate()).collect();
        assert_eq!(
            errors,
            vec!["08P01".to_owned()],
            "one error, then skipped to Sync"
        );
        stream.write_all(&query("SHOW VERSION")).expect("write");
        let answer = read_until_ready(&mut stream);
        assert!(
            answer.iter().any(|m| m.tag == b'D'),
            "usable after the error"
        );

        // Thousands of prepared statements: refused past the limit, not stored.
        let mut batch = Vec::new();
        for i in 0..1100 {
            batch.extend(frame(b'P', format!("s{i}\0SHOW VERSION\0\0\0").as_bytes()));
        }
        batch.extend(frame(b'S', b""));
        stream.write_all(&batch).expect("write");
        let answer = read_until_ready(&mut stream);
        assert!(answer
            .iter()
            .any(|m| m.sqlstate().as_deref() == Some("08P01")));

        // An unknown message type ends the session with a FATAL error.
        stream.write_all(&frame(b'W', b"junk")).expect("write");
        let answer = read_until_ready(&mut stream);
        assert!(answer
            .iter()
            .any(|m| m.sqlstate().as_deref() == Some("08P01")));

        // A message announcing 512 MiB ends the session without pgcached reading it.
        let (mut stream, _) = login_to(port, "postgres", "pgcached");
        stream.write_all(&[b'Q', 0x20, 0, 0, 0]).expect("write");
        let answer = read_until_ready(&mut stream);
        assert!(answer
            .iter()
            .any(|m| m.sqlstate().as_deref() == Some("08P01")));
    });
    outcome.await.expect("hostile client");
    // Everyone else is still served.
    let admin = connect(&url(Endpoint::proxy(port), "postgres", None, "pgcached"))
        .await
        .expect("a fresh console session");
    assert!(!stats(&admin).await.is_empty());
    assert_eq!(first_value(&app(&proxy).await, "SELECT 2").await, "2");
}

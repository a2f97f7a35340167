//! Drivers from other ecosystems (psycopg 3, asyncpg, node-postgres) through pgcached: each script's JSON
//! transcript must equal the transcript of the same script run straight against PostgreSQL.
//! The scripts live in `tests/clients/`; `scripts/test` installs the drivers.

use pgcached_tests::certs;
use pgcached_tests::clients::{client_script, expect_success, python, run_with_timeout};
use pgcached_tests::proxy::{caching_config_for, config_for};
use pgcached_tests::{shared_cluster, TestProxy};

fn transcript(script: &str, port: u16, extra: &[&str]) -> serde_json::Value {
    let mut program = if script.ends_with(".js") {
        std::process::Command::new("node")
    } else {
        python()
    };
    let output = run_with_timeout(
        program
            .arg(client_script(script))
            .arg("127.0.0.1")
            .arg(port.to_string())
            .args(extra),
        120,
    );
    let stdout = expect_success(&output, script);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}"))
}

fn compare(script: &str) {
    let cluster = shared_cluster();
    let proxy = TestProxy::start(cluster);
    let direct = transcript(script, cluster.port(), &[]);
    let proxied = transcript(script, proxy.port(), &[]);
    assert_eq!(direct, proxied, "{script}: transcripts differ");
    // With the cache on, a second run is answered partly from the cache: still the same.
    let caching = TestProxy::with_config(caching_config_for(cluster, &[]));
    for round in 0..3 {
        let cached = transcript(script, caching.port(), &[]);
        assert_eq!(
            direct, cached,
            "{script}: transcript through the cache differs (run {round})"
        );
    }
    // The transcript is not vacuous: the checks really ran.
    let auth = &direct["auth"];
    assert_eq!(auth["scram_user:scram_secret"], "scram_user");
    assert_eq!(auth["md5_user:md5_secret"], "md5_user");
    assert!(auth["scram_user:wrong"].is_array(), "{auth}");
    assert!(direct["errors"][0].is_array());

    if script.ends_with(".js") {
        return;
    }
    let certs = certs::make(&["localhost", "127.0.0.1"]);
    let cert = certs.server_cert.display().to_string();
    let key = certs.server_key.display().to_string();
    let tls_proxy = TestProxy::with_config(config_for(
        cluster,
        &["--tls-cert", &cert, "--tls-key", &key],
    ));
    let tls = transcript(script, tls_proxy.port(), &["--tls"]);
    assert_eq!(tls["value"], "over tls");
    assert_eq!(tls["ssl_in_use"], true);
}

#[test]
fn psycopg3_behaves_the_same_through_pgcached() {
    compare("psycopg_check.py");
}

#[test]
fn asyncpg_behaves_the_same_through_pgcached() {
    compare("asyncpg_check.py");
}

#[test]
fn node_postgres_behaves_the_same_through_pgcached() {
    compare("node_pg_check.js");
}

/// asyncpg's `fetchrow` and `fetchval` execute with a row limit of one: outside a transaction
/// the portal ends at Sync, so the answer (first row, PortalSuspended) is cached like any
/// other; inside one (a cursor) it is relayed.
#[test]
fn asyncpg_fetchrow_is_served_from_the_cache() {
    let cluster = shared_cluster();
    cluster
        .psql(
            "app",
            "CREATE TABLE IF NOT EXISTS apg_fetchrow (id int PRIMARY KEY, name text);
             INSERT INTO apg_fetchrow VALUES (1, 'one'), (2, 'two') ON CONFLICT DO NOTHING;
             GRANT SELECT ON apg_fetchrow TO PUBLIC;",
        )
        .expect("setup");
    let caching = TestProxy::with_config(caching_config_for(cluster, &[]));
    let cache = caching.cache.as_ref().expect("cache on");
    let script = format!(
        "import asyncio, asyncpg, json\n\
         async def main():\n\
         \x20   c = await asyncpg.connect(host='127.0.0.1', port={port}, user='postgres', database='app')\n\
         \x20   rows = []\n\
         \x20   for _ in range(50):\n\
         \x20       rows.append(list(await c.fetchrow('SELECT id, name FROM apg_fetchrow WHERE id = $1', 1)))\n\
         \x20       await asyncio.sleep(0.005)\n\
         \x20   value = await c.fetchval('SELECT name FROM apg_fetchrow WHERE id = $1', 2)\n\
         \x20   await c.close()\n\
         \x20   print(json.dumps({{'rows': rows, 'value': value}}))\n\
         asyncio.run(main())\n",
        port = caching.port()
    );
    // A first run lets the statement's classification land (in the background, slower on a
    // loaded machine) and fills the entries; the second is counted.
    let warm = run_with_timeout(python().arg("-c").arg(&script), 60);
    expect_success(&warm, "asyncpg fetchrow (warm-up)");
    let before = cache.hits();
    let output = run_with_timeout(python().arg("-c").arg(&script), 60);
    let stdout = expect_success(&output, "asyncpg fetchrow");
    let out: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert!(
        out["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|row| row == &serde_json::json!([1, "one"])),
        "{out}"
    );
    assert_eq!(out["value"], "two");
    let hits = cache.hits() - before;
    assert!(hits >= 45, "{hits} of 50 fetchrow calls were cache hits");
}

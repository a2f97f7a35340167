//! Extended-protocol batches that reuse a name before their Sync, as pipelining clients do:
//! the unnamed statement parsed again, the unnamed portal bound again, a statement closed and
//! parsed again. Each Execute must run, be answered and be cached as the statement and values
//! it was bound to, on a cold cache and a warm one, exactly as PostgreSQL answers the same
//! bytes.

use std::io::Write;

use pgcached_local_cluster::LocalCluster;
use pgcached_tests::proxy::caching_config_for;
use pgcached_tests::raw::{frame, login, read_until_ready};
use pgcached_tests::{connect, url, Endpoint, TestProxy};

/// Parse (types left to the server), Bind (text values), Describe portal, Execute.
fn execution(statement: &str, sql: &str, values: &[&str]) -> Vec<u8> {
    let mut parse = format!("{statement}\0{sql}\0").into_bytes();
    parse.extend_from_slice(&[0, 0]);
    let mut out = frame(b'P', &parse);
    out.extend(bind(statement, values));
    out
}

fn bind(statement: &str, values: &[&str]) -> Vec<u8> {
    let mut bind = format!("\0{statement}\0").into_bytes();
    bind.extend_from_slice(&[0, 0]);
    bind.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for value in values {
        bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
        bind.extend_from_slice(value.as_bytes());
    }
    bind.extend_from_slice(&[0, 0]);
    let mut out = frame(b'B', &bind);
    out.extend(frame(b'D', b"P\0"));
    out.extend(frame(b'E', b"\0\0\0\0\0"));
    out
}

/// Each batch: what it does, its bytes, how many Syncs it holds.
fn batches() -> Vec<(&'static str, Vec<u8>, usize)> {
    let sync = frame(b'S', b"");
    let reparsed = [
        execution("", "SELECT v FROM t WHERE k = $1", &["1"]),
        execution("", "SELECT w FROM t WHERE k = $1", &["1"]),
        execution("", "SELECT v FROM t WHERE k = $1::int + 1", &["1"]),
        sync.clone(),
    ]
    .concat();
    let rebound = [
        execution("", "SELECT v FROM t WHERE k = $1", &["2"]),
        bind("", &["3"]),
        bind("", &["1"]),
        sync.clone(),
    ]
    .concat();
    let reclosed = [
        execution("s1", "SELECT v FROM t WHERE k = $1", &["3"]),
        frame(b'C', b"Ss1\0"),
        execution("s1", "SELECT w FROM t WHERE k = $1", &["3"]),
        frame(b'C', b"Ss1\0"),
        sync.clone(),
    ]
    .concat();
    let writes = [
        execution("", "UPDATE t SET n = n + 1 WHERE k = $1", &["1"]),
        execution("", "UPDATE t SET w = $1 || 'x' WHERE k = 2", &["w"]),
        execution("", "SELECT k, n, w FROM t ORDER BY k", &[]),
        sync.clone(),
    ]
    .concat();
    // A read of a row the batch changed, then a failure: the batch rolls back, and what the
    // read saw must not outlive it.
    let rolled_back = [
        execution("", "UPDATE t SET w = 'rolled back' WHERE k = $1", &["3"]),
        execution("", "SELECT w FROM t WHERE k = $1", &["3"]),
        execution("", "SELECT 1 / 0", &[]),
        sync.clone(),
        execution("", "SELECT w FROM t WHERE k = $1", &["3"]),
        sync,
    ]
    .concat();
    vec![
        ("unnamed statement parsed again", reparsed, 1),
        ("unnamed portal bound again", rebound, 1),
        ("statement closed and parsed again", reclosed, 1),
        ("writes parsed one after another", writes, 1),
        ("a read in a batch that rolls back", rolled_back, 2),
    ]
}

/// One backend message as compared: tag, SQLSTATE, DataRow bytes.
type Answer = (u8, Option<String>, Vec<u8>);

/// Each batch's answers, sent twice in a row on one connection.
fn answers(port: u16) -> Vec<(&'static str, Vec<Answer>)> {
    let (mut stream, _) = login(port, "postgres");
    let mut all = Vec::new();
    for (name, bytes, syncs) in batches() {
        for _ in 0..2 {
            stream.write_all(&bytes).expect("send");
            let messages = (0..syncs)
                .flat_map(|_| read_until_ready(&mut stream))
                .map(|m| {
                    let body = if m.tag == b'D' {
                        m.body.clone()
                    } else {
                        Vec::new()
                    };
                    (m.tag, m.sqlstate(), body)
                })
                .collect();
            all.push((name, messages));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_reusing_names_answer_as_postgres_does() {
    let cluster = LocalCluster::start(pgcached_tests::cluster::options()).expect("cluster");
    let direct = connect(&url(Endpoint::direct(&cluster), "postgres", None, "app"))
        .await
        .expect("direct");
    direct
        .batch_execute(
            "CREATE TABLE t (k int PRIMARY KEY, v text, w text, n int NOT NULL DEFAULT 0);
             INSERT INTO t VALUES (1, 'v1', 'w1', 0), (2, 'v2', 'w2', 0), (3, 'v3', 'w3', 0);",
        )
        .await
        .expect("schema");
    let port = cluster.port();
    let expected = tokio::task::spawn_blocking(move || answers(port))
        .await
        .expect("straight to PostgreSQL");
    direct
        .batch_execute("UPDATE t SET n = 0, w = 'w' || k")
        .await
        .expect("reset");
    let proxy = TestProxy::with_config(caching_config_for(&cluster, &["--replication", "off"]));
    let port = proxy.port();
    let through = tokio::task::spawn_blocking(move || answers(port))
        .await
        .expect("through pgcached");
    assert!(
        expected
            .iter()
            .all(|(_, messages)| messages.iter().any(|(tag, _, _)| *tag == b'D')),
        "every batch returns rows: {expected:?}"
    );
    for ((name, want), (_, got)) in expected.iter().zip(&through) {
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(expected.len(), through.len());
}

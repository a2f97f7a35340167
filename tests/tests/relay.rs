//! tokio-postgres through pgcached compared with the same calls straight to PostgreSQL:
//! simple and extended queries, types, errors, COPY, LISTEN/NOTIFY, cancel, authentication,
//! pipelining and messages larger than the streaming threshold.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pgcached_local_cluster::users;
use pgcached_tests::{connect, shared_cluster, url, Endpoint, TestProxy};
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

fn endpoints(proxy: &TestProxy) -> [Endpoint; 2] {
    [
        Endpoint::direct(shared_cluster()),
        Endpoint::proxy(proxy.port()),
    ]
}

fn superuser(endpoint: Endpoint) -> String {
    url(endpoint, "postgres", None, "app")
}

/// Rows of a simple query as text, with NULL as `None`.
async fn simple_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_protocol_results_equal_direct_results() {
    let proxy = TestProxy::start(shared_cluster());
    let sql = "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, 12345.678::numeric, \
               true, 'text é ✓', NULL::text, '\\x00ff'::bytea, '2024-02-29 12:34:56'::timestamp, \
               '2024-02-29 12:34:56+02'::timestamptz, '1 day 2 hours'::interval, \
               '2e3b1c4a-9b0f-4e8e-8b1a-1c2d3e4f5a6b'::uuid, '{\"a\": [1, 2]}'::jsonb, \
               ARRAY[1, 2, NULL]::int[], '192.168.0.1/24'::inet, 'infinity'::date; \
               SELECT g, md5(g::text) FROM generate_series(1, 500) g";
    let mut results = Vec::new();
    for endpoint in endpoints(&proxy) {
        let client = connect(&superuser(endpoint)).await.expect("connect");
        results.push(simple_rows(&client, sql).await);
    }
    assert_eq!(results[0].len(), 501);
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn extended_protocol_binary_results_equal_direct_results() {
    let proxy = TestProxy::start(shared_cluster());
    let mut results = Vec::new();
    for endpoint in endpoints(&proxy) {
        let client = connect(&superuser(endpoint)).await.expect("connect");
        let statement = client
            .prepare(
                "SELECT $1::int2, $2::int4, $3::int8, $4::float4, $5::float8, $6::bool, \
                 $7::text, $8::bytea, $9::text IS NULL, length($7::text)",
            )
            .await
            .expect("prepare");
        let bytes: Vec<u8> = (0..=255u8).collect();
        let mut rows = Vec::new();
        for i in 0..20i32 {
            let row = client
                .query_one(
                    &statement,
                    &[
                        &(i as i16),
                        &i,
                        &(i as i64 * 1_000_000_000),
                        &(i as f32 / 3.0),
                        &(i as f64 / 7.0),
                        &(i % 2 == 0),
                        &format!("value {i} ✓"),
                        &bytes,
                        &Option::<String>::None,
                    ],
                )
                .await
                .expect("query");
            rows.push((
                row.get::<_, i16>(0),
                row.get::<_, i32>(1),
                row.get::<_, i64>(2),
                row.get::<_, f32>(3).to_bits(),
                row.get::<_, f64>(4).to_bits(),
                row.get::<_, bool>(5),
                row.get::<_, String>(6),
                row.get::<_, Vec<u8>>(7),
                row.get::<_, bool>(8),
                row.get::<_, i32>(9),
            ));
        }
        results.push(rows);
    }
    assert_eq!(results[0].len(), 20);
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn errors_keep_their_sqlstate_and_the_session_goes_on() {
    let proxy = TestProxy::start(shared_cluster());
    for endpoint in endpoints(&proxy) {
        let client = connect(&superuser(endpoint)).await.expect("connect");
        let missing = client
            .simple_query("SELECT * FROM no_such_table")
            .await
            .expect_err("missing table");
        assert_eq!(
            missing.code().map(|c| c.code()),
            Some("42P01"),
            "{endpoint:?}"
        );
        let zero = client
            .query("SELECT 1 / $1::int", &[&0i32])
            .await
            .expect_err("division by zero");
        assert_eq!(zero.code().map(|c| c.code()), Some("22012"));
        let syntax = client.simple_query("SELEC 1").await.expect_err("syntax");
        assert_eq!(syntax.code().map(|c| c.code()), Some("42601"));
        let row = client
            .query_one("SELECT 41 + 1", &[])
            .await
            .expect("usable");
        assert_eq!(row.get::<_, i32>(0), 42);
    }
}

#[tokio::test]
async fn copy_in_and_out_round_trip() {
    let proxy = TestProxy::start(shared_cluster());
    let admin = connect(&superuser(Endpoint::direct(shared_cluster())))
        .await
        .expect("connect");
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS relay_copy; CREATE TABLE relay_copy (id int, note text, data bytea)",
        )
        .await
        .expect("create");
    let client = connect(&superuser(Endpoint::proxy(proxy.port())))
        .await
        .expect("connect");
    let sink = client
        .copy_in("COPY relay_copy FROM STDIN")
        .await
        .expect("copy in");
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("{i}\tnote {i} with tab\\there\t\\\\x{:04x}\n", i));
    }
    futures_util::pin_mut!(sink);
    for chunk in text.as_bytes().chunks(7_000) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("send");
    }
    let copied = sink.finish().await.expect("finish");
    assert_eq!(copied, 20_000);

    let mut outputs = Vec::new();
    for endpoint in endpoints(&proxy) {
        let client = connect(&superuser(endpoint)).await.expect("connect");
        let stream = client
            .copy_out("COPY (SELECT * FROM relay_copy ORDER BY id) TO STDOUT")
            .await
            .expect("copy out");
        let chunks: Vec<_> = stream.collect().await;
        let mut all = Vec::new();
        for chunk in chunks {
            all.extend_from_slice(&chunk.expect("chunk"));
        }
        outputs.push(all);
    }
    assert_eq!(outputs[0], text.as_bytes());
    assert_eq!(outputs[0], outputs[1]);

    // A COPY that fails midway reports the server's error and leaves the session usable.
    let sink = client
        .copy_in("COPY relay_copy (id) FROM STDIN")
        .await
        .expect("copy in");
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"not a number\n"))
        .await
        .expect("send");
    let error = sink.finish().await.expect_err("bad row");
    assert_eq!(error.code().map(|c| c.code()), Some("22P02"));
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .expect("usable")
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn notifications_reach_a_listener_through_the_proxy() {
    let proxy = TestProxy::start(shared_cluster());
    let (client, mut connection) =
        tokio_postgres::connect(&superuser(Endpoint::proxy(proxy.port())), NoTls)
            .await
            .expect("connect");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            let _ = tx.send(message);
        }
    });
    client
        .batch_execute("LISTEN relay_channel")
        .await
        .expect("listen");
    let notifier = connect(&superuser(Endpoint::direct(shared_cluster())))
        .await
        .expect("connect");
    notifier
        .batch_execute("NOTIFY relay_channel, 'hello through pgcached'")
        .await
        .expect("notify");
    // Also a notice, raised in the listener's own session.
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'a notice'; END $$")
        .await
        .expect("notice");
    let mut got_notification = false;
    let mut got_notice = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(got_notification && got_notice) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(AsyncMessage::Notification(n))) => {
                assert_eq!(n.channel(), "relay_channel");
                assert_eq!(n.payload(), "hello through pgcached");
                got_notification = true;
            }
            Ok(Some(AsyncMessage::Notice(n))) => {
                assert_eq!(n.message(), "a notice");
                got_notice = true;
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(got_notification, "notification not received");
    assert!(got_notice, "notice not received");
}

#[tokio::test]
async fn cancel_through_the_proxy_stops_the_query() {
    let proxy = TestProxy::start(shared_cluster());
    let client = connect(&superuser(Endpoint::proxy(proxy.port())))
        .await
        .expect("connect");
    let token = client.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let error = client
        .simple_query("SELECT pg_sleep(30)")
        .await
        .expect_err("cancelled");
    assert_eq!(error.code().map(|c| c.code()), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(20));
    canceller.await.expect("join").expect("cancel sent");
    let row = client.query_one("SELECT 7", &[]).await.expect("usable");
    assert_eq!(row.get::<_, i32>(0), 7);
}

/// libpq and asyncpg wait for their cancel connection to close, then send the next statement.
/// The close must mean PostgreSQL has the request (and ignores it for an idle session): a
/// cancel still on its way would stop that next statement instead.
#[test]
fn a_cancel_connection_closes_only_once_postgres_has_the_request() {
    use pgcached_tests::raw;
    use std::io::Write;
    const CANCEL_REQUEST_CODE: i32 = 80_877_102;
    let proxy = TestProxy::start(shared_cluster());
    let (mut session, greeting) = raw::login_to(proxy.port(), "postgres", "app");
    let key = greeting
        .iter()
        .find(|m| m.tag == b'K')
        .expect("BackendKeyData")
        .body
        .clone();
    for round in 0..10 {
        let mut cancel = raw::connect(proxy.port(), Duration::from_secs(10));
        let mut packet = 16i32.to_be_bytes().to_vec();
        packet.extend_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
        packet.extend_from_slice(&key);
        cancel.write_all(&packet).expect("cancel request");
        assert!(raw::is_closed(&mut cancel), "round {round}: not closed");
        session
            .write_all(&raw::query("SELECT pg_sleep(0.2)"))
            .expect("query");
        let reply = raw::read_until_ready(&mut session);
        let error = reply.iter().find(|m| m.tag == b'E');
        assert!(
            error.is_none(),
            "round {round}: the statement after the cancel failed: {:?}",
            error.and_then(|e| e.field(b'M'))
        );
        assert_eq!(reply.last().map(|m| m.tag), Some(b'Z'), "round {round}");
    }
}

#[tokio::test]
async fn every_auth_method_works_and_wrong_passwords_are_refused() {
    let proxy = TestProxy::start(shared_cluster());
    for endpoint in endpoints(&proxy) {
        for (user, password) in [
            (users::TRUST_USER, None),
            (users::MD5_USER, Some(users::MD5_PASSWORD)),
            (users::SCRAM_USER, Some(users::SCRAM_PASSWORD)),
        ] {
            let client = connect(&url(endpoint, user, password, "app"))
                .await
                .unwrap_or_else(|e| panic!("{user} via {endpoint:?}: {e}"));
            let row = client
                .query_one("SELECT current_user::text", &[])
                .await
                .expect("query");
            assert_eq!(row.get::<_, String>(0), user);
        }
        for user in [users::MD5_USER, users::SCRAM_USER] {
            let error = connect(&url(endpoint, user, Some("wrong"), "app"))
                .await
                .err()
                .unwrap_or_else(|| panic!("{user} with a wrong password got in via {endpoint:?}"));
            assert_eq!(
                error.code().map(|c| c.code()),
                Some("28P01"),
                "{user} via {endpoint:?}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn pipelined_queries_on_one_connection_all_complete_in_order() {
    let proxy = TestProxy::start(shared_cluster());
    let client = connect(&superuser(Endpoint::proxy(proxy.port())))
        .await
        .expect("connect");
    let statement = client.prepare("SELECT $1::int * 2").await.expect("prepare");
    let queries = (0..500i32).map(|i| {
        let client = &client;
        let statement = &statement;
        async move {
            client
                .query_one(statement, &[&i])
                .await
                .map(|r| r.get::<_, i32>(0))
        }
    });
    let results = futures_util::future::join_all(queries).await;
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.expect("query"), i as i32 * 2);
    }
}

#[tokio::test]
async fn messages_larger_than_the_streaming_threshold_pass_both_ways() {
    let proxy = TestProxy::start(shared_cluster());
    let client = connect(&superuser(Endpoint::proxy(proxy.port())))
        .await
        .expect("connect");
    let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let row = client
        .query_one(
            "SELECT $1::bytea, md5($1::bytea), length($1::bytea)",
            &[&payload],
        )
        .await
        .expect("large round trip");
    assert_eq!(row.get::<_, Vec<u8>>(0), payload);
    assert_eq!(row.get::<_, i32>(2), 5_000_000);
    let text = client
        .simple_query("SELECT repeat('x', 3000000)")
        .await
        .expect("large text");
    let row = text
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::len),
            _ => None,
        })
        .expect("row");
    assert_eq!(row, 3_000_000);
}

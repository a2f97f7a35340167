//! Bad input and failures cost one session: the client gets a clear ErrorResponse where the
//! protocol allows, and pgcached keeps serving everyone else.

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use pgcached_local_cluster::users;
use pgcached_tests::proxy::{config_for, config_with};
use pgcached_tests::raw::{self, frame, login, query, read_message, read_until_ready};
use pgcached_tests::{connect, shared_cluster, url, Endpoint, TestProxy};

/// The proxy still serves a normal client.
async fn assert_still_serving(proxy: &TestProxy) {
    let client = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("proxy still accepts clients");
    let row = client.query_one("SELECT 1", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 1);
}

fn first_error(messages: &[raw::Message]) -> Option<&raw::Message> {
    messages.iter().find(|m| m.tag == b'E')
}

#[tokio::test]
async fn garbage_startup_packets_get_a_protocol_violation() {
    let proxy = TestProxy::start(shared_cluster());
    // A length word far above the startup packet limit.
    let mut stream = raw::connect(proxy.port(), Duration::from_secs(5));
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let message = read_message(&mut stream).expect("an error response");
    assert_eq!(message.tag, b'E');
    assert_eq!(message.sqlstate().as_deref(), Some("08P01"));
    assert!(raw::is_closed(&mut stream));

    // A well-framed packet with an unknown protocol version.
    let mut stream = raw::connect(proxy.port(), Duration::from_secs(5));
    stream
        .write_all(&raw::startup_packet(0x0009_0000, &[("user", "postgres")]))
        .expect("write");
    let message = read_message(&mut stream).expect("an error response");
    assert_eq!(message.sqlstate().as_deref(), Some("0A000"));

    // A startup packet whose parameter list is not terminated.
    let mut stream = raw::connect(proxy.port(), Duration::from_secs(5));
    let mut packet = raw::startup_packet(196_608, &[("user", "postgres")]);
    packet.pop();
    packet.push(b'x');
    stream.write_all(&packet).expect("write");
    let message = read_message(&mut stream).expect("an error response");
    assert_eq!(message.sqlstate().as_deref(), Some("08P01"));
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn malformed_and_oversized_frames_end_only_their_session() {
    let proxy = TestProxy::start(shared_cluster());
    let bystander = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("bystander");
    for bad_header in [
        b"Q\0\0\0\x02".to_vec(),
        b"Q\x7f\xff\xff\xff".to_vec(),
        b"Q\xff\xff\xff\xf0".to_vec(),
    ] {
        let (mut stream, messages) = login(proxy.port(), users::TRUST_USER);
        assert_eq!(messages.last().map(|m| m.tag), Some(b'Z'), "{messages:?}");
        stream.write_all(&bad_header).expect("write");
        let reply = read_until_ready(&mut stream);
        let error = first_error(&reply).expect("an error response");
        assert_eq!(error.sqlstate().as_deref(), Some("08P01"));
        assert_eq!(error.field(b'S').as_deref(), Some("FATAL"));
        assert!(raw::is_closed(&mut stream));
    }
    let row = bystander
        .query_one("SELECT 2", &[])
        .await
        .expect("bystander");
    assert_eq!(row.get::<_, i32>(0), 2);
}

#[tokio::test]
async fn unknown_message_types_are_relayed_to_the_server() {
    let proxy = TestProxy::start(shared_cluster());
    let mut results = Vec::new();
    for port in [shared_cluster().port(), proxy.port()] {
        let (mut stream, _) = login(port, users::TRUST_USER);
        stream.write_all(&frame(b'y', b"whatever")).expect("write");
        let reply = read_until_ready(&mut stream);
        let error = first_error(&reply).map(|m| m.sqlstate());
        results.push(error);
    }
    assert_eq!(results[0], Some(Some("08P01".to_owned())));
    assert_eq!(results[0], results[1]);
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_startup_timeout() {
    let cluster = shared_cluster();
    let upstream = format!("postgres://127.0.0.1:{}?sslmode=disable", cluster.port());
    let proxy = TestProxy::with_config(config_with(&upstream, &[], "startup_timeout = \"1s\""));
    let started = Instant::now();
    let mut stream = raw::connect(proxy.port(), Duration::from_secs(10));
    assert!(raw::is_closed(&mut stream));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(8),
        "closed too late: {waited:?}"
    );
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn a_client_that_vanishes_mid_query_releases_its_server_connection() {
    let proxy = TestProxy::start(shared_cluster());
    let admin = connect(&url(
        Endpoint::direct(shared_cluster()),
        "postgres",
        None,
        "app",
    ))
    .await
    .expect("admin");
    let (mut stream, _) = login(proxy.port(), users::TRUST_USER);
    stream
        .write_all(&query("SELECT pg_sleep(1), 'vanishing client'"))
        .expect("query");
    std::thread::sleep(Duration::from_millis(200));
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%vanishing client%' \
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("activity");
        if row.get::<_, i64>(0) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "server connection still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_connection_failure_without_its_address() {
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let address = format!("127.0.0.1:{closed_port}");
    let proxy = TestProxy::with_config(config_with(
        &format!("postgres://{address}?sslmode=disable"),
        &["--admin-users", "postgres"],
        "",
    ));
    // A session, and the admin console (whose login needs PostgreSQL too).
    for database in ["app", "pgcached"] {
        let error = connect(&url(
            Endpoint::proxy(proxy.port()),
            "postgres",
            None,
            database,
        ))
        .await
        .expect_err("no server behind the proxy");
        assert_eq!(error.code().map(|c| c.code()), Some("08006"), "{error}");
        let told = pgcached_tests::clients::error_told(&error);
        assert!(told.contains("could not reach PostgreSQL"), "{told}");
        assert!(
            !told.contains(&address) && !told.contains(&closed_port.to_string()),
            "a client that has not logged in learns where PostgreSQL is: {told}"
        );
        assert!(
            !told.contains("refused"),
            "the I/O error reaches the client: {told}"
        );
    }
}

#[tokio::test]
async fn a_server_that_dies_mid_session_is_reported_and_others_go_on() {
    // A fake server that accepts the startup packet and then drops the connection.
    let fake = TcpListener::bind("127.0.0.1:0").expect("bind");
    let fake_port = fake.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in fake.incoming().take(1) {
            let mut stream = stream.expect("accept");
            let mut buf = [0u8; 512];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            drop(stream);
        }
    });
    let proxy = TestProxy::with_config(config_with(
        &format!("postgres://127.0.0.1:{fake_port}?sslmode=disable"),
        &[],
        "",
    ));
    let mut stream = raw::connect(proxy.port(), Duration::from_secs(10));
    stream
        .write_all(&raw::startup_packet(196_608, &[("user", "postgres")]))
        .expect("startup");
    let message = read_message(&mut stream).expect("an error response");
    assert_eq!(message.sqlstate().as_deref(), Some("08006"));
    assert!(raw::is_closed(&mut stream));

    // A real server terminating the backend: its own FATAL 57P01 reaches the client.
    let proxy = TestProxy::start(shared_cluster());
    let client = connect(&url(Endpoint::proxy(proxy.port()), "postgres", None, "app"))
        .await
        .expect("connect");
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let admin = connect(&url(
        Endpoint::direct(shared_cluster()),
        "postgres",
        None,
        "app",
    ))
    .await
    .expect("admin");
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate");
    let error = client
        .simple_query("SELECT 1")
        .await
        .expect_err("terminated session");
    if let Some(code) = error.code() {
        assert_eq!(code.code(), "57P01");
    }
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn clients_beyond_the_limit_are_refused_with_53300() {
    let config = config_for(shared_cluster(), &["--max-client-conn", "2"]);
    let proxy = TestProxy::with_config(config);
    let target = url(Endpoint::proxy(proxy.port()), "postgres", None, "app");
    let first = connect(&target).await.expect("first");
    let second = connect(&target).await.expect("second");
    let error = connect(&target).await.expect_err("third is refused");
    assert_eq!(error.code().map(|c| c.code()), Some("53300"), "{error}");
    drop(second);
    // The slot frees once the session has ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&target).await {
            Ok(third) => {
                third.query_one("SELECT 1", &[]).await.expect("query");
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("slot never freed: {e}"),
        }
    }
    first
        .query_one("SELECT 1", &[])
        .await
        .expect("first still works");
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_and_lets_busy_ones_finish() {
    let mut proxy = TestProxy::start(shared_cluster());
    let target = url(Endpoint::proxy(proxy.port()), "postgres", None, "app");
    let idle = connect(&target).await.expect("idle");
    let busy = connect(&target).await.expect("busy");
    let busy_query = tokio::spawn(async move {
        busy.query_one("SELECT pg_sleep(1.5)::text || 'finished'", &[])
            .await
            .map(|r| r.get::<_, String>(0))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.begin_shutdown();
    let finished = busy_query
        .await
        .expect("join")
        .expect("busy query completes");
    assert_eq!(finished, "finished");
    let error = idle
        .simple_query("SELECT 1")
        .await
        .expect_err("idle session was closed");
    if let Some(code) = error.code() {
        assert_eq!(code.code(), "57P01");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.is_finished() {
        assert!(Instant::now() < deadline, "proxy did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        connect(&target).await.is_err(),
        "no new clients after shutdown"
    );
}

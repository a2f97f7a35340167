//! The admin console from tests: a pgcached started with `--admin-users postgres`, commands
//! as rows of column name → value, and waiting for a database's replication state.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::clients::error_text;
use crate::{connect, url, Endpoint};

/// One row of a console answer.
pub type Row = HashMap<String, Option<String>>;

/// The flags that turn the console on for the trusted superuser.
pub const CONSOLE_FLAGS: [&str; 2] = ["--admin-users", "postgres"];

/// Logs in to the console of the pgcached on `port` as `postgres` (trusted by the test
/// cluster).
pub async fn console(port: u16) -> Client {
    connect(&url(Endpoint::proxy(port), "postgres", None, "pgcached"))
        .await
        .expect("admin console login")
}

/// Rows of a console command.
pub async fn rows(client: &Client, command: &str) -> Vec<Row> {
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

/// The `SHOW REPLICATION` row of `database`, if it has one.
pub async fn replication(client: &Client, database: &str) -> Option<Row> {
    rows(client, "SHOW REPLICATION")
        .await
        .into_iter()
        .find(|row| row["database"].as_deref() == Some(database))
}

/// Waits until `database`'s stream is in `state` (and, when given, shows `problem`); returns
/// its row. Panics with the last row seen after `limit`.
pub async fn wait_for_state(
    client: &Client,
    database: &str,
    state: &str,
    problem: Option<&str>,
    limit: Duration,
) -> Row {
    let started = Instant::now();
    loop {
        let row = replication(client, database).await;
        if let Some(row) = &row {
            if row["state"].as_deref() == Some(state)
                && (problem.is_none() || row["problem"].as_deref() == problem)
            {
                return row.clone();
            }
        }
        assert!(
            started.elapsed() < limit,
            "{database}: not {state} {problem:?} after {limit:?}: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `EXPLAIN CACHE DATABASE <database> <sql>`: its one row.
pub async fn explain(client: &Client, database: &str, sql: &str) -> Row {
    let mut all = rows(client, &format!("EXPLAIN CACHE DATABASE {database} {sql}")).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

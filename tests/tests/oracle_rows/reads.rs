//! The reads: their SQL, their answer in a committed state, and the reader tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgcached_tests::clients::error_text;
use pgcached_tests::history::{Observation, Row, State};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use crate::model::{emails, inline, int, simple_rows, sql_params, tags, text, Group, Param};
use crate::{Run, BOUND};
use pgcached_tests::random::Random;

/// What readers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    PersonById,
    PersonByEmail,
    PeopleIn,
    PeopleByTeam,
    OwnerJoin,
    PetsByOwner,
    PeopleRange,
    PetsCount,
    PairByKey,
    PairsIn,
    LooseByK,
    WideByTag,
    WideById,
    TotalById,
    EventById,
}

impl Kind {
    pub(crate) const ALL: [Kind; 15] = [
        Kind::PersonById,
        Kind::PersonByEmail,
        Kind::PeopleIn,
        Kind::PeopleByTeam,
        Kind::OwnerJoin,
        Kind::PetsByOwner,
        Kind::PeopleRange,
        Kind::PetsCount,
        Kind::PairByKey,
        Kind::PairsIn,
        Kind::LooseByK,
        Kind::WideByTag,
        Kind::WideById,
        Kind::TotalById,
        Kind::EventById,
    ];

    pub(crate) fn group(self) -> Group {
        match self {
            Kind::PersonById
            | Kind::PersonByEmail
            | Kind::PeopleIn
            | Kind::PeopleByTeam
            | Kind::OwnerJoin
            | Kind::PetsByOwner
            | Kind::PeopleRange
            | Kind::PetsCount => Group::People,
            Kind::PairByKey | Kind::PairsIn => Group::Pairs,
            Kind::LooseByK => Group::Loose,
            Kind::WideByTag | Kind::WideById => Group::Wide,
            Kind::TotalById | Kind::EventById => Group::Events,
        }
    }

    pub(crate) fn sql(self) -> &'static str {
        match self {
            Kind::PersonById => "SELECT email, team, v FROM people WHERE id = $1",
            Kind::PersonByEmail => "SELECT id, team, v FROM people WHERE email = $1",
            Kind::PeopleIn => "SELECT id, v FROM people WHERE id IN ($1, $2, $3)",
            Kind::PeopleByTeam => "SELECT id, v FROM people WHERE team = $1",
            Kind::OwnerJoin => {
                "SELECT p.id, p.v, u.v FROM pets p JOIN people u ON u.id = p.owner WHERE u.id = $1"
            }
            Kind::PetsByOwner => "SELECT id, v FROM pets WHERE owner = $1",
            Kind::PeopleRange => "SELECT id, v FROM people WHERE id BETWEEN $1 AND $2",
            Kind::PetsCount => "SELECT count(*), max(v) FROM pets",
            Kind::PairByKey => "SELECT v FROM pairs WHERE a = $1 AND b = $2",
            Kind::PairsIn => "SELECT a, v FROM pairs WHERE a IN ($1, $2) AND b = $3",
            Kind::LooseByK => "SELECT v FROM loose WHERE k = $1",
            Kind::WideByTag => "SELECT id, v FROM wide WHERE tag = $1",
            Kind::WideById => "SELECT tag, v FROM wide WHERE id = $1",
            Kind::TotalById => "SELECT v, n FROM totals WHERE id = $1",
            Kind::EventById => "SELECT v FROM events WHERE id = $1",
        }
    }

    /// Parameters: seven in eight reads go to a few hot values, so that their answers stay
    /// cached long enough between writes to be served (and so could be served stale).
    pub(crate) fn params(self, random: &mut Random) -> Vec<Param> {
        match self {
            Kind::PersonById | Kind::OwnerJoin | Kind::PetsByOwner => vec![int(random.hot(1, 14))],
            Kind::PersonByEmail => vec![text(format!("e{}@x", random.hot(1, 16)))],
            Kind::PeopleIn => (0..3).map(|_| int(random.hot(1, 14))).collect(),
            Kind::PeopleByTeam => vec![int(random.int(0, 3))],
            Kind::PeopleRange => {
                let low = random.hot(1, 12);
                vec![int(low), int(low + random.int(0, 3))]
            }
            Kind::PetsCount => vec![],
            Kind::PairByKey => vec![
                int(random.hot(1, 10)),
                text(format!("k{}", random.below(3))),
            ],
            Kind::PairsIn => vec![
                int(random.hot(1, 10)),
                int(random.hot(2, 10)),
                text(format!("k{}", random.below(3))),
            ],
            Kind::LooseByK => vec![int(random.hot(0, 7))],
            Kind::WideByTag => vec![text(random.pick(&tags()))],
            Kind::WideById => vec![int(random.hot(1, 10))],
            Kind::TotalById | Kind::EventById => vec![int(random.hot(1, 8))],
        }
    }
}

/// A read and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Query {
    pub(crate) kind: Kind,
    pub(crate) params: Vec<Param>,
}

impl Query {
    pub(crate) fn text(&self) -> String {
        inline(self.kind.sql(), &self.params)
    }
}

/// Rows of `table` in `state` whose column `index` matches `param`.
pub(crate) fn rows_where<'a>(
    state: &'a State,
    table: &str,
    index: usize,
    param: &'a Param,
) -> impl Iterator<Item = &'a Row> + 'a {
    state[table]
        .iter()
        .filter(move |r| param.matches(&r[index]))
}

pub(crate) fn pick_columns(row: &Row, columns: &[usize]) -> Row {
    columns.iter().map(|&i| row[i].clone()).collect()
}

/// What `query` answers in `state`, rows sorted.
pub(crate) fn answer(query: &Query, state: &State) -> Vec<Row> {
    let p = &query.params;
    let mut rows: Vec<Row> = match query.kind {
        Kind::PersonById => rows_where(state, "people", 0, &p[0])
            .map(|r| pick_columns(r, &[1, 2, 3]))
            .collect(),
        Kind::PersonByEmail => rows_where(state, "people", 1, &p[0])
            .map(|r| pick_columns(r, &[0, 2, 3]))
            .collect(),
        Kind::PeopleIn => state["people"]
            .iter()
            .filter(|r| p.iter().any(|param| param.matches(&r[0])))
            .map(|r| pick_columns(r, &[0, 3]))
            .collect(),
        Kind::PeopleByTeam => rows_where(state, "people", 2, &p[0])
            .map(|r| pick_columns(r, &[0, 3]))
            .collect(),
        Kind::OwnerJoin => rows_where(state, "people", 0, &p[0])
            .flat_map(|person| {
                rows_where(state, "pets", 1, &p[0])
                    .map(move |pet| vec![pet[0].clone(), pet[2].clone(), person[3].clone()])
            })
            .collect(),
        Kind::PetsByOwner => rows_where(state, "pets", 1, &p[0])
            .map(|r| pick_columns(r, &[0, 2]))
            .collect(),
        Kind::PeopleRange => {
            let (Param::Int(low), Param::Int(high)) = (&p[0], &p[1]) else {
                panic!("range of integers");
            };
            state["people"]
                .iter()
                .filter(|r| {
                    r[0].as_deref()
                        .and_then(|v| v.parse::<i32>().ok())
                        .is_some_and(|id| *low <= id && id <= *high)
                })
                .map(|r| pick_columns(r, &[0, 3]))
                .collect()
        }
        Kind::PetsCount => {
            let pets = &state["pets"];
            let max = pets
                .iter()
                .filter_map(|r| r[2].as_deref()?.parse::<i64>().ok())
                .max()
                .map(|v| v.to_string());
            vec![vec![Some(pets.len().to_string()), max]]
        }
        Kind::PairByKey => state["pairs"]
            .iter()
            .filter(|r| p[0].matches(&r[0]) && p[1].matches(&r[1]))
            .map(|r| pick_columns(r, &[2]))
            .collect(),
        Kind::PairsIn => state["pairs"]
            .iter()
            .filter(|r| (p[0].matches(&r[0]) || p[1].matches(&r[0])) && p[2].matches(&r[1]))
            .map(|r| pick_columns(r, &[0, 2]))
            .collect(),
        Kind::LooseByK => rows_where(state, "loose", 0, &p[0])
            .map(|r| pick_columns(r, &[1]))
            .collect(),
        Kind::WideByTag => rows_where(state, "wide", 1, &p[0])
            .map(|r| pick_columns(r, &[0, 2]))
            .collect(),
        Kind::WideById => rows_where(state, "wide", 0, &p[0])
            .map(|r| pick_columns(r, &[1, 2]))
            .collect(),
        Kind::TotalById => rows_where(state, "totals", 0, &p[0])
            .map(|r| pick_columns(r, &[1, 2]))
            .collect(),
        Kind::EventById => rows_where(state, "events", 0, &p[0])
            .map(|r| pick_columns(r, &[1]))
            .collect(),
    };
    rows.sort();
    rows
}

/// Every pinned read of `group` (what an external writer may wait for).
pub(crate) fn probes(group: Group) -> Vec<Query> {
    let q = |kind, params| Query { kind, params };
    match group {
        Group::People => (1..=14)
            .flat_map(|id| {
                [
                    q(Kind::PersonById, vec![int(id)]),
                    q(Kind::PetsByOwner, vec![int(id)]),
                ]
            })
            .chain(
                emails()
                    .into_iter()
                    .map(|e| q(Kind::PersonByEmail, vec![text(e)])),
            )
            .collect(),
        Group::Pairs => (1..=10)
            .flat_map(|a| {
                (0..3).map(move |b| q(Kind::PairByKey, vec![int(a), text(format!("k{b}"))]))
            })
            .collect(),
        Group::Loose => (0..=7).map(|k| q(Kind::LooseByK, vec![int(k)])).collect(),
        Group::Wide => (1..=10)
            .map(|id| q(Kind::WideById, vec![int(id)]))
            .chain(
                tags()
                    .into_iter()
                    .map(|t| q(Kind::WideByTag, vec![text(t)])),
            )
            .collect(),
        Group::Events => (1..=8)
            .flat_map(|id| {
                [
                    q(Kind::TotalById, vec![int(id)]),
                    q(Kind::EventById, vec![int(id)]),
                ]
            })
            .collect(),
    }
}

/// Reads `query` through pgcached once, recording what it answered.
pub(crate) async fn observe(run: &Run, client: &Client, query: &Query, how: &'static str) {
    let began = Instant::now();
    let rows = read_simple(client, query).await;
    run.observe(Observation {
        query: query.clone(),
        rows,
        began,
        ended: Instant::now(),
        how,
    });
}

/// Reads `query` through pgcached until it answers `expected` (a write made straight to
/// PostgreSQL acknowledged at `acked`), recording each read; at most [`BOUND`].
pub(crate) async fn wait_visible(
    run: &Run,
    client: &Client,
    query: &Query,
    expected: &[Row],
    acked: Instant,
) {
    loop {
        let began = Instant::now();
        let rows = read_simple(client, query).await;
        let ended = Instant::now();
        let done = rows == expected;
        run.observe(Observation {
            query: query.clone(),
            rows,
            began,
            ended,
            how: "simple, waiting for an external write",
        });
        if done {
            run.delays
                .lock()
                .expect("delays")
                .push(began.saturating_duration_since(acked));
            return;
        }
        if began > acked + BOUND {
            run.late.lock().expect("late").push(format!(
                "{} did not show {expected:?} within {BOUND:?} of an external write",
                query.text()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub(crate) async fn read_simple(client: &Client, query: &Query) -> Vec<Row> {
    let sql = query.text();
    let mut rows = simple_rows(
        client
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))),
    );
    rows.sort();
    rows
}

pub(crate) async fn read_prepared(
    client: &Client,
    statement: &Statement,
    query: &Query,
) -> Vec<Row> {
    let rows = client
        .query(statement, &sql_params(&query.params))
        .await
        .unwrap_or_else(|e| panic!("{}: {}", query.text(), error_text(&e)));
    let mut out: Vec<Row> = rows
        .iter()
        .map(|row| {
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| match *c.type_() {
                    Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                    Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                    Type::TEXT => row.get::<_, Option<String>>(i),
                    ref other => panic!("unexpected column type {other}"),
                })
                .collect()
        })
        .collect();
    out.sort();
    out
}

/// A random read, and whether it goes by the simple protocol.
pub(crate) fn next_read(random: &mut Random) -> (Query, bool) {
    let kind = random.pick(&Kind::ALL);
    let simple = random.chance(2);
    let params = kind.params(random);
    (Query { kind, params }, simple)
}

pub(crate) async fn reader(run: Arc<Run>, client: Client, seed: u64) {
    let mut random = Random::new(seed);
    let mut statements = HashMap::new();
    for kind in Kind::ALL {
        let statement = client
            .prepare(kind.sql())
            .await
            .unwrap_or_else(|e| panic!("prepare {}: {}", kind.sql(), error_text(&e)));
        statements.insert(kind, statement);
    }
    let read = |query: Query, simple: bool| {
        let (client, statements, run) = (&client, &statements, &run);
        async move {
            let began = Instant::now();
            let rows = if simple {
                read_simple(client, &query).await
            } else {
                read_prepared(client, &statements[&query.kind], &query).await
            };
            run.observe(Observation {
                query,
                rows,
                began,
                ended: Instant::now(),
                how: if simple { "simple" } else { "prepared" },
            });
        }
    };
    while Instant::now() < run.deadline {
        let (a, simple_a) = next_read(&mut random);
        if random.chance(8) {
            // Two reads in flight together on one connection.
            let (b, simple_b) = next_read(&mut random);
            tokio::join!(read(a, simple_a), read(b, simple_b));
        } else {
            read(a, simple_a).await;
        }
    }
}

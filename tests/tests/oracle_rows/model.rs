//! The tables: the schema, each group of tables read back as text, and parameter values.

use std::sync::Arc;

use pgcached_tests::clients::error_text;
use pgcached_tests::history::{Row, State};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, SimpleQueryMessage};

use pgcached_tests::random::Random;

pub(crate) const SCHEMA: &str = "
CREATE SEQUENCE ver;
CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL UNIQUE, team int NOT NULL,
                     v bigint NOT NULL);
INSERT INTO people SELECT g, 'e' || g || '@x', g % 3, nextval('ver') FROM generate_series(1, 10) g;
CREATE TABLE pets (id int PRIMARY KEY,
                   owner int NOT NULL REFERENCES people (id) ON DELETE CASCADE ON UPDATE CASCADE,
                   v bigint NOT NULL);
INSERT INTO pets SELECT g, g % 10 + 1, nextval('ver') FROM generate_series(1, 12) g;
CREATE TABLE pairs (a int, b text, v bigint NOT NULL, PRIMARY KEY (a, b));
INSERT INTO pairs SELECT g, 'k' || g % 3, nextval('ver') FROM generate_series(1, 8) g;
CREATE TABLE loose (k int, v bigint NOT NULL);
INSERT INTO loose SELECT g % 6, nextval('ver') FROM generate_series(1, 10) g;
CREATE TABLE wide (id int PRIMARY KEY, tag text NOT NULL, v bigint NOT NULL);
ALTER TABLE wide REPLICA IDENTITY FULL;
INSERT INTO wide SELECT g, 't' || g % 4, nextval('ver') FROM generate_series(1, 8) g;
CREATE TABLE events (id int PRIMARY KEY, v bigint NOT NULL);
CREATE TABLE totals (id int PRIMARY KEY, v bigint NOT NULL, n int NOT NULL);
CREATE FUNCTION tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    DELETE FROM totals WHERE id = OLD.id;
    RETURN OLD;
  END IF;
  INSERT INTO totals VALUES (NEW.id, NEW.v, 1)
    ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, n = totals.n + 1;
  RETURN NEW;
END $$;
CREATE TRIGGER tally AFTER INSERT OR UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION tally();
INSERT INTO events SELECT g, nextval('ver') FROM generate_series(1, 6) g;
GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;
";

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Param {
    Int(i32),
    Text(String),
}

impl Param {
    pub(crate) fn literal(&self) -> String {
        match self {
            Param::Int(n) => n.to_string(),
            Param::Text(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }

    pub(crate) fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Param::Int(n) => n,
            Param::Text(s) => s,
        }
    }

    pub(crate) fn matches(&self, text: &Option<String>) -> bool {
        match (self, text) {
            (Param::Int(n), Some(t)) => t.parse::<i32>().ok() == Some(*n),
            (Param::Text(s), Some(t)) => s == t,
            (_, None) => false,
        }
    }
}

pub(crate) fn int(n: i32) -> Param {
    Param::Int(n)
}

pub(crate) fn text(s: impl Into<String>) -> Param {
    Param::Text(s.into())
}

/// `sql` with `$n` replaced by the literals of `params`.
pub(crate) fn inline(sql: &str, params: &[Param]) -> String {
    let mut out = sql.to_owned();
    for (n, param) in params.iter().enumerate().rev() {
        out = out.replace(&format!("${}", n + 1), &param.literal());
    }
    out
}

pub(crate) fn sql_params(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(Param::sql).collect()
}

/// Tables written together: a write to one may change another (cascade, trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Group {
    People,
    Pairs,
    Loose,
    Wide,
    Events,
}

impl Group {
    pub(crate) const ALL: [Group; 5] = [
        Group::People,
        Group::Pairs,
        Group::Loose,
        Group::Wide,
        Group::Events,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// A group to write: `events` seldom, since its trigger makes every write to it invalidate
    /// the whole database (which would hide what the other groups test).
    pub(crate) fn weighted(random: &mut Random) -> Group {
        match random.below(25) {
            0..=8 => Group::People,
            9..=14 => Group::Pairs,
            15..=17 => Group::Loose,
            18..=23 => Group::Wide,
            _ => Group::Events,
        }
    }

    /// Each table of the group with the query reading it back in full.
    pub(crate) fn tables(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Group::People => &[
                (
                    "people",
                    "SELECT id, email, team, v FROM people ORDER BY id",
                ),
                ("pets", "SELECT id, owner, v FROM pets ORDER BY id"),
            ],
            Group::Pairs => &[("pairs", "SELECT a, b, v FROM pairs ORDER BY a, b")],
            Group::Loose => &[("loose", "SELECT k, v FROM loose ORDER BY k, v")],
            Group::Wide => &[("wide", "SELECT id, tag, v FROM wide ORDER BY id")],
            Group::Events => &[
                ("events", "SELECT id, v FROM events ORDER BY id"),
                ("totals", "SELECT id, v, n FROM totals ORDER BY id"),
            ],
        }
    }
}

pub(crate) fn simple_rows(messages: Vec<SimpleQueryMessage>) -> Vec<Row> {
    messages
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

/// The committed rows of `group`, read straight from PostgreSQL.
pub(crate) async fn read_back(direct: &Client, group: Group) -> Arc<State> {
    let mut state = State::new();
    for (table, sql) in group.tables() {
        let rows = direct
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
        state.insert(table, simple_rows(rows));
    }
    Arc::new(state)
}

pub(crate) fn column(rows: &[Row], index: usize) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r[index].clone())
        .collect::<Vec<_>>()
}

pub(crate) fn ints(rows: &[Row], index: usize) -> Vec<i32> {
    column(rows, index)
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// A value of `pool` not in `used`.
pub(crate) fn free<T: Clone + PartialEq>(random: &mut Random, pool: &[T], used: &[T]) -> Option<T> {
    let free: Vec<T> = pool.iter().filter(|v| !used.contains(v)).cloned().collect();
    (!free.is_empty()).then(|| random.pick(&free))
}

pub(crate) fn emails() -> Vec<String> {
    (1..=16).map(|n| format!("e{n}@x")).collect()
}

pub(crate) fn tags() -> Vec<String> {
    (0..5).map(|n| format!("t{n}")).collect()
}

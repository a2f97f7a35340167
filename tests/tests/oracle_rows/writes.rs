//! The writes of each group, chosen to be valid in the group's current rows.

use pgcached_tests::history::State;

use crate::model::{column, emails, free, inline, int, ints, tags, text, Group, Param};
use pgcached_tests::random::Random;

/// One write statement.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) sql: &'static str,
    pub(crate) params: Vec<Param>,
}

impl Write {
    pub(crate) fn new(sql: &'static str, params: Vec<Param>) -> Write {
        Write { sql, params }
    }

    pub(crate) fn text(&self) -> String {
        inline(self.sql, &self.params)
    }
}

/// A write to `group` that is valid in `state`. With `safe`, only writes that cannot fail
/// whatever the group's rows are (later statements of a transaction block, whose state the
/// writer does not know).
pub(crate) fn write_for(group: Group, state: &State, random: &mut Random, safe: bool) -> Write {
    match group {
        Group::People => people_write(state, random, safe),
        Group::Pairs => pairs_write(state, random, safe),
        Group::Loose => loose_write(state, random),
        Group::Wide => wide_write(state, random, safe),
        Group::Events => events_write(state, random, safe),
    }
}

pub(crate) fn people_write(state: &State, random: &mut Random, safe: bool) -> Write {
    let people = &state["people"];
    let pets = &state["pets"];
    let ids = ints(people, 0);
    let pet_ids = ints(pets, 0);
    let any_id = |random: &mut Random| random.int(1, 14);
    let choice = random.below(if safe { 6 } else { 13 });
    let by_id = |random: &mut Random| {
        Write::new(
            "UPDATE people SET v = nextval('ver') WHERE id = $1",
            vec![int(any_id(random))],
        )
    };
    match choice {
        0 => by_id(random),
        1 => Write::new(
            "UPDATE people SET v = nextval('ver') WHERE email = $1",
            vec![text(random.pick(&emails()))],
        ),
        2 => Write::new(
            "UPDATE people SET team = $1, v = nextval('ver') WHERE id = $2",
            vec![int(random.int(0, 3)), int(any_id(random))],
        ),
        3 => Write::new(
            "UPDATE people SET v = nextval('ver') WHERE id IN ($1, $2)",
            vec![int(any_id(random)), int(any_id(random))],
        ),
        4 => Write::new(
            "UPDATE pets SET v = nextval('ver') WHERE id = $1",
            vec![int(random.int(1, 20))],
        ),
        5 => Write::new(
            "UPDATE people SET v = nextval('ver') WHERE id + team = $1",
            vec![int(random.int(1, 16))],
        ),
        6 => match free(random, &emails(), &column(people, 1)) {
            Some(email) => Write::new(
                "UPDATE people SET email = $1, v = nextval('ver') WHERE id = $2",
                vec![text(email), int(random.pick(&ids))],
            ),
            None => by_id(random),
        },
        7 => match free(random, &(1..=14).collect::<Vec<_>>(), &ids) {
            Some(id) => Write::new(
                "UPDATE people SET id = $1, v = nextval('ver') WHERE id = $2",
                vec![int(id), int(random.pick(&ids))],
            ),
            None => by_id(random),
        },
        8 if ids.len() > 6 => Write::new(
            "DELETE FROM people WHERE id = $1",
            vec![int(random.pick(&ids))],
        ),
        8 | 9 => {
            let id = free(random, &(1..=14).collect::<Vec<_>>(), &ids);
            let email = free(random, &emails(), &column(people, 1));
            match (id, email) {
                (Some(id), Some(email)) if ids.len() < 13 => Write::new(
                    "INSERT INTO people (id, email, team, v) VALUES ($1, $2, $3, nextval('ver'))",
                    vec![int(id), text(email), int(random.int(0, 3))],
                ),
                _ => by_id(random),
            }
        }
        10 => match free(random, &(1..=20).collect::<Vec<_>>(), &pet_ids) {
            Some(pet) => Write::new(
                "INSERT INTO pets (id, owner, v) VALUES ($1, $2, nextval('ver'))",
                vec![int(pet), int(random.pick(&ids))],
            ),
            None => by_id(random),
        },
        11 if !pet_ids.is_empty() => Write::new(
            "UPDATE pets SET owner = $1, v = nextval('ver') WHERE id = $2",
            vec![int(random.pick(&ids)), int(random.pick(&pet_ids))],
        ),
        12 if pet_ids.len() > 3 => Write::new(
            "DELETE FROM pets WHERE id = $1",
            vec![int(random.pick(&pet_ids))],
        ),
        _ => by_id(random),
    }
}

pub(crate) fn pairs_write(state: &State, random: &mut Random, safe: bool) -> Write {
    let pairs = &state["pairs"];
    let keys: Vec<(i32, String)> = pairs
        .iter()
        .filter_map(|r| Some((r[0].as_ref()?.parse().ok()?, r[1].clone()?)))
        .collect();
    let all: Vec<(i32, String)> = (1..=10)
        .flat_map(|a| (0..3).map(move |b| (a, format!("k{b}"))))
        .collect();
    let by_key = |random: &mut Random| {
        let (a, b) = random.pick(&all);
        Write::new(
            "UPDATE pairs SET v = nextval('ver') WHERE a = $1 AND b = $2",
            vec![int(a), text(b)],
        )
    };
    match random.below(if safe { 2 } else { 6 }) {
        0 => by_key(random),
        1 => Write::new(
            "UPDATE pairs SET v = nextval('ver') WHERE a = $1",
            vec![int(random.int(1, 10))],
        ),
        2 if keys.len() > 4 => {
            let (a, b) = random.pick(&keys);
            Write::new(
                "DELETE FROM pairs WHERE a = $1 AND b = $2",
                vec![int(a), text(b)],
            )
        }
        2 | 3 => match free(random, &all, &keys) {
            Some((a, b)) if keys.len() < 20 => Write::new(
                "INSERT INTO pairs (a, b, v) VALUES ($1, $2, nextval('ver'))",
                vec![int(a), text(b)],
            ),
            _ => by_key(random),
        },
        4 if !keys.is_empty() => {
            let (a, b) = random.pick(&keys);
            let taken: Vec<String> = keys
                .iter()
                .filter(|(x, _)| *x == a)
                .map(|(_, y)| y.clone())
                .collect();
            let labels: Vec<String> = (0..3).map(|b| format!("k{b}")).collect();
            match free(random, &labels, &taken) {
                Some(to) => Write::new(
                    "UPDATE pairs SET b = $1, v = nextval('ver') WHERE a = $2 AND b = $3",
                    vec![text(to), int(a), text(b)],
                ),
                None => by_key(random),
            }
        }
        5 if keys.len() > 8 => Write::new(
            "DELETE FROM pairs WHERE a = $1",
            vec![int(random.pick(&keys).0)],
        ),
        _ => by_key(random),
    }
}

pub(crate) fn loose_write(state: &State, random: &mut Random) -> Write {
    let count = state["loose"].len();
    match random.below(4) {
        0 if count < 14 => Write::new(
            "INSERT INTO loose (k, v) VALUES ($1, nextval('ver'))",
            vec![int(random.int(0, 7))],
        ),
        2 => Write::new(
            "UPDATE loose SET k = $1, v = nextval('ver') WHERE k = $2",
            vec![int(random.int(0, 7)), int(random.int(0, 7))],
        ),
        3 if count > 5 => Write::new(
            "DELETE FROM loose WHERE k = $1",
            vec![int(random.int(0, 7))],
        ),
        _ => Write::new(
            "UPDATE loose SET v = nextval('ver') WHERE k = $1",
            vec![int(random.int(0, 7))],
        ),
    }
}

pub(crate) fn wide_write(state: &State, random: &mut Random, safe: bool) -> Write {
    let ids = ints(&state["wide"], 0);
    let by_id = |random: &mut Random| {
        Write::new(
            "UPDATE wide SET v = nextval('ver') WHERE id = $1",
            vec![int(random.int(1, 10))],
        )
    };
    match random.below(if safe { 3 } else { 5 }) {
        0 => by_id(random),
        1 => Write::new(
            "UPDATE wide SET tag = $1, v = nextval('ver') WHERE id = $2",
            vec![text(random.pick(&tags())), int(random.int(1, 10))],
        ),
        2 => Write::new(
            "UPDATE wide SET v = nextval('ver') WHERE tag = $1",
            vec![text(random.pick(&tags()))],
        ),
        3 if ids.len() > 4 => Write::new(
            "DELETE FROM wide WHERE id = $1",
            vec![int(random.pick(&ids))],
        ),
        _ => match free(random, &(1..=10).collect::<Vec<_>>(), &ids) {
            Some(id) => Write::new(
                "INSERT INTO wide (id, tag, v) VALUES ($1, $2, nextval('ver'))",
                vec![int(id), text(random.pick(&tags()))],
            ),
            None => by_id(random),
        },
    }
}

pub(crate) fn events_write(state: &State, random: &mut Random, safe: bool) -> Write {
    let ids = ints(&state["events"], 0);
    let by_id = |random: &mut Random| {
        Write::new(
            "UPDATE events SET v = nextval('ver') WHERE id = $1",
            vec![int(random.int(1, 8))],
        )
    };
    match random.below(if safe { 1 } else { 4 }) {
        1 if ids.len() > 3 => Write::new(
            "DELETE FROM events WHERE id = $1",
            vec![int(random.pick(&ids))],
        ),
        2 => match free(random, &(1..=8).collect::<Vec<_>>(), &ids) {
            Some(id) => Write::new(
                "INSERT INTO events (id, v) VALUES ($1, nextval('ver'))",
                vec![int(id)],
            ),
            None => by_id(random),
        },
        _ => by_id(random),
    }
}

//! What a proxied write's acknowledgement invalidates.
//!
//! Classification resolves a write once into a [`WriteEffect`]: its target table (with the
//! catalog's facts when its rows can be pinned), the other tables it reaches as whole tables
//! (cascades, descendants), and what its text says about the rows it changes. When PostgreSQL
//! acknowledges the write, [`bumps`] turns that into counters to bump, against the column sets
//! registered for the target at that moment (any read looked up before then registered its set
//! before its lookup, so none is missed):
//!
//! - the target's rows counter, always (reads of the whole table);
//! - per column set: the keys of the changed rows when the text gives them exactly (a DELETE or
//!   an UPDATE whose WHERE pins the set's columns and that sets none of them; an INSERT whose
//!   VALUES give every column of the set), else the whole set;
//! - every reached table as a whole table.
//!
//! Text values are keys only when the session sent them in UTF-8 ([`Encoding::Utf8`]), as reads'
//! keys and the stream's row images are: the same bytes from a LATIN1 session name another
//! string (`C3 A9` is `é` in UTF-8 and `Ã©` in LATIN1), so such a write bumps its text sets
//! whole.

use std::sync::Arc;

use pgcached_cache::{ColumnSetId, Generations, KeyHash, TableId};

use super::canonical::PinType;
use super::keys::{combinations, key_hash};
use super::reads::{Parameters, MAX_KEYS_PER_PIN};
use super::registry::PinRegistry;
use crate::catalog::tables::TableFacts;
use crate::sql::pins::Constant;

/// What a write's text says about the rows it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowsWritten {
    /// Rows inserted: the target's columns they give (in order), and per row each column's
    /// value when it is a constant.
    Insert {
        /// Column names, in the VALUES order.
        columns: Vec<String>,
        /// The rows.
        rows: Vec<Vec<Option<Constant>>>,
        /// `ON CONFLICT`: an existing row may change instead, whatever its keys.
        upsert: bool,
    },
    /// Rows updated: the columns set, and the constants the WHERE clause pins columns to.
    Update {
        /// Columns set.
        set: Vec<String>,
        /// Pinned columns with their constants.
        pins: Vec<(String, Vec<Constant>)>,
    },
    /// Rows deleted: the constants the WHERE clause pins columns to.
    Delete {
        /// Pinned columns with their constants.
        pins: Vec<(String, Vec<Constant>)>,
    },
    /// Rows the text does not tell (INSERT ... SELECT, MERGE, ...).
    Unknown,
}

/// A write's effect, resolved against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteEffect {
    /// The table written.
    pub target: TableId,
    /// Its facts, when its rows can be pinned (else it is invalidated as a whole table).
    pub facts: Option<Arc<TableFacts>>,
    /// Tables reached as whole tables (cascades, descendants).
    pub whole: Vec<TableId>,
    /// What the text says of the rows.
    pub rows: RowsWritten,
}

/// How the session that sent a write encodes text, while the write was sent and acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (what reads pin text in, and what the stream sends): text values are keys.
    Utf8,
    /// Anything else, or not known throughout: text values name unknown keys.
    Other,
}

/// One counter to bump.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bump {
    /// Every read of the table.
    Table(TableId),
    /// Reads of the whole table.
    Rows(TableId),
    /// Reads pinning rows of the table by this column set.
    ColumnSet(TableId, ColumnSetId),
    /// Reads pinning this row key.
    Key(KeyHash),
}

impl Bump {
    /// Applies the bump for a change made through this pgcached.
    pub fn apply(&self, generations: &Generations) {
        match self {
            Bump::Table(table) => generations.bump_table(table),
            Bump::Rows(table) => generations.bump_table_rows(table),
            Bump::ColumnSet(table, set) => generations.bump_column_set(table, *set),
            Bump::Key(key) => generations.bump_key(*key),
        }
    }

    /// Applies the bump for a change the stream reported at `position`.
    pub fn apply_at(&self, generations: &Generations, position: u64) {
        match self {
            Bump::Table(table) => generations.bump_table_at(table, position),
            Bump::Rows(table) => generations.bump_table_rows_at(table, position),
            Bump::ColumnSet(table, set) => generations.bump_column_set_at(table, *set, position),
            Bump::Key(key) => generations.bump_key_at(*key, position),
        }
    }

    /// The bumps without repeats, in their first order.
    pub fn distinct(bumps: Vec<Bump>) -> Vec<Bump> {
        let mut seen = std::collections::HashSet::with_capacity(bumps.len());
        bumps
            .into_iter()
            .filter(|b| seen.insert(b.clone()))
            .collect()
    }

    /// True for an invalidation narrower than a whole table (a column set or a key).
    pub fn is_row_level(&self) -> bool {
        matches!(self, Bump::ColumnSet(..) | Bump::Key(_))
    }
}

/// The counters a write's acknowledgement bumps.
pub fn bumps(
    effect: &WriteEffect,
    registry: &PinRegistry,
    parameters: Option<Parameters<'_>>,
    encoding: Encoding,
) -> Vec<Bump> {
    let mut out: Vec<Bump> = effect.whole.iter().cloned().map(Bump::Table).collect();
    if effect.facts.is_none() {
        out.push(Bump::Table(effect.target.clone()));
        return out;
    }
    out.push(Bump::Rows(effect.target.clone()));
    let Some(sets) = registry.of_table(&effect.target) else {
        return out;
    };
    for set in &sets.sets {
        let text_unknown = encoding == Encoding::Other
            && set
                .columns
                .iter()
                .any(|(_, pin_type)| *pin_type == PinType::Text);
        let keys = if text_unknown {
            None
        } else {
            keys_written(effect, &set.columns, set.id, parameters)
        };
        match keys {
            Some(keys) => out.extend(keys.into_iter().map(Bump::Key)),
            None => out.push(Bump::ColumnSet(effect.target.clone(), set.id)),
        }
    }
    out
}

/// The keys of column set `columns` the write changes, when its text gives them exactly.
fn keys_written(
    effect: &WriteEffect,
    columns: &[(String, PinType)],
    set: ColumnSetId,
    parameters: Option<Parameters<'_>>,
) -> Option<Vec<KeyHash>> {
    let canonical = |constant: &Constant, pin_type: PinType| -> Option<Vec<u8>> {
        match constant {
            Constant::Parameter(n) => parameters?.canonical(*n, pin_type),
            other => pin_type.canonical_constant(other),
        }
    };
    let (pins, assigned): (&[(String, Vec<Constant>)], &[String]) = match &effect.rows {
        RowsWritten::Update { set, pins } => (pins, set),
        RowsWritten::Delete { pins } => (pins, &[]),
        RowsWritten::Insert {
            columns: listed,
            rows,
            upsert: false,
        } => {
            let mut keys = Vec::with_capacity(rows.len());
            for row in rows {
                let mut values: Vec<Vec<u8>> = Vec::with_capacity(columns.len());
                for (name, pin_type) in columns {
                    let position = listed.iter().position(|column| column == name)?;
                    values.push(canonical(row.get(position)?.as_ref()?, *pin_type)?);
                }
                keys.push(key_hash(&effect.target, set, &values));
            }
            return Some(keys);
        }
        RowsWritten::Insert { upsert: true, .. } | RowsWritten::Unknown => return None,
    };
    // A row whose pinned columns are set gets new keys the text may not tell.
    if columns.iter().any(|(name, _)| assigned.contains(name)) {
        return None;
    }
    let mut values: Vec<Vec<Vec<u8>>> = Vec::with_capacity(columns.len());
    for (name, pin_type) in columns {
        let (_, constants) = pins.iter().find(|(column, _)| column == name)?;
        let mut canonicals = Vec::with_capacity(constants.len());
        for constant in constants {
            canonicals.push(canonical(constant, *pin_type)?);
        }
        values.push(canonicals);
    }
    let combos = combinations(&values, MAX_KEYS_PER_PIN)?;
    Some(
        combos
            .iter()
            .map(|v| key_hash(&effect.target, set, v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pins::registry::Identity;

    fn users() -> TableId {
        TableId {
            database: Arc::from("app"),
            oid: 7,
        }
    }

    fn facts() -> Arc<TableFacts> {
        Arc::new(TableFacts {
            oid: 7,
            columns: vec![
                ("id".into(), Some(PinType::Integer)),
                ("email".into(), Some(PinType::Text)),
                ("name".into(), Some(PinType::Text)),
            ],
            identity: Identity::Key(vec!["id".into()]),
        })
    }

    fn registry() -> (PinRegistry, ColumnSetId, ColumnSetId) {
        let registry = PinRegistry::default();
        let id = registry
            .register(
                &users(),
                &[("id".into(), PinType::Integer)],
                Identity::Nothing,
            )
            .expect("id");
        let email = registry
            .register(
                &users(),
                &[("email".into(), PinType::Text)],
                Identity::Nothing,
            )
            .expect("email");
        (registry, id, email)
    }

    fn effect(rows: RowsWritten) -> WriteEffect {
        WriteEffect {
            target: users(),
            facts: Some(facts()),
            whole: vec![],
            rows,
        }
    }

    fn key(set: ColumnSetId, value: &str) -> Bump {
        Bump::Key(key_hash(&users(), set, &[value.as_bytes()]))
    }

    #[test]
    fn an_update_by_key_bumps_that_key_and_the_sets_it_cannot_tell() {
        let (registry, id, email) = registry();
        let update = effect(RowsWritten::Update {
            set: vec!["name".into()],
            pins: vec![("id".into(), vec![Constant::Parameter(1)])],
        });
        let values = [(0, Some(b"42".to_vec()))];
        let bumps = bumps(
            &update,
            &registry,
            Some(Parameters {
                values: &values,
                declared: &[],
            }),
            Encoding::Utf8,
        );
        assert_eq!(
            bumps,
            vec![
                Bump::Rows(users()),
                key(id, "42"),
                Bump::ColumnSet(users(), email),
            ]
        );
    }

    #[test]
    fn setting_a_pinned_column_bumps_its_whole_set() {
        let (registry, id, _) = registry();
        let update = effect(RowsWritten::Update {
            set: vec!["id".into()],
            pins: vec![("id".into(), vec![Constant::Integer("1".into())])],
        });
        assert!(
            bumps(&update, &registry, None, Encoding::Utf8).contains(&Bump::ColumnSet(users(), id))
        );
    }

    #[test]
    fn inserts_with_constants_bump_their_keys() {
        let (registry, id, email) = registry();
        let insert = effect(RowsWritten::Insert {
            columns: vec!["id".into(), "email".into()],
            rows: vec![
                vec![
                    Some(Constant::Integer("5".into())),
                    Some(Constant::String("a@b".into())),
                ],
                vec![Some(Constant::Integer("6".into())), None],
            ],
            upsert: false,
        });
        let bumps = bumps(&insert, &registry, None, Encoding::Utf8);
        assert!(bumps.contains(&key(id, "5")));
        assert!(bumps.contains(&key(id, "6")));
        assert!(
            bumps.contains(&Bump::ColumnSet(users(), email)),
            "the second row's email is not a constant"
        );
    }

    #[test]
    fn unknown_rows_and_unpinnable_targets_bump_wide() {
        let (registry, id, email) = registry();
        let unknown = effect(RowsWritten::Unknown);
        assert_eq!(
            bumps(&unknown, &registry, None, Encoding::Utf8),
            vec![
                Bump::Rows(users()),
                Bump::ColumnSet(users(), id),
                Bump::ColumnSet(users(), email)
            ]
        );
        let mut whole = effect(RowsWritten::Delete { pins: vec![] });
        whole.facts = None;
        whole.whole = vec![TableId {
            database: Arc::from("app"),
            oid: 8,
        }];
        let bumps = bumps(&whole, &registry, None, Encoding::Utf8);
        assert!(bumps.contains(&Bump::Table(users())));
        assert!(bumps.iter().all(|b| !b.is_row_level()));
    }

    #[test]
    fn text_from_a_session_not_in_utf8_names_no_key() {
        let (registry, id, email) = registry();
        let delete = effect(RowsWritten::Delete {
            pins: vec![
                ("id".into(), vec![Constant::Integer("4".into())]),
                ("email".into(), vec![Constant::String("\u{e9}@x".into())]),
            ],
        });
        let utf8 = bumps(&delete, &registry, None, Encoding::Utf8);
        assert!(utf8.contains(&key(email, "\u{e9}@x")));
        let other = bumps(&delete, &registry, None, Encoding::Other);
        assert!(other.contains(&key(id, "4")), "integers are the same");
        assert!(
            other.contains(&Bump::ColumnSet(users(), email)),
            "the bytes may name another string: the whole set"
        );
    }
}

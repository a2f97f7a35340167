//! What a write changes, as far as its text tells: the table it writes, the rows its WHERE
//! clause pins, the columns it sets, the rows it inserts.
//!
//! When pgcached relays a write, it invalidates what the write can reach as soon as PostgreSQL
//! acknowledges it. The narrowest safe answer comes from the statement itself: `UPDATE users SET
//! name = $1 WHERE id = $2` changes rows with that `id` only, and no row's `id`; `INSERT INTO t
//! (a, b) VALUES (1, 2)` adds a row whose keys are known. The catalog then says what else the
//! write can reach (partitions, cascades, triggers, rules), and anything not understood reaches
//! the whole database.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Delete, Expr, FromTable, FunctionArguments, Insert, ObjectName, SetExpr,
    Statement, TableFactor, TableObject, Update, Visit, Visitor,
};

use super::names::{split, FunctionName, RelationName};
use super::pins::{self, Constant, PinClass};

/// The shape of a write, when its text tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteShape {
    /// The table written.
    pub target: RelationName,
    /// How.
    pub kind: WriteKind,
}

/// How a write changes its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteKind {
    /// `INSERT`.
    Insert {
        /// The columns listed, or `None` for the table's columns in order.
        columns: Option<Vec<String>>,
        /// The rows of a `VALUES` list (each value a constant or not), or `None` for any other
        /// source (`SELECT`, `DEFAULT VALUES`).
        rows: Option<Vec<Vec<Option<Constant>>>>,
        /// `ON CONFLICT ... DO UPDATE` may change an existing row instead.
        upsert: bool,
    },
    /// `UPDATE`.
    Update {
        /// The columns it sets.
        set: Vec<String>,
        /// The rows its WHERE clause pins (empty: unknown rows).
        pins: Vec<PinClass>,
    },
    /// `DELETE`.
    Delete {
        /// The rows its WHERE clause pins (empty: unknown rows).
        pins: Vec<PinClass>,
    },
}

/// What a write statement tells pgcached.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteInfo {
    /// Its shape, when its text tells it.
    pub shape: Option<WriteShape>,
    /// The functions it calls: one outside `pg_catalog` may write anything.
    pub functions: Vec<FunctionName>,
}

/// What a write statement tells: its shape and the functions it calls.
pub fn info(statement: &Statement) -> WriteInfo {
    let mut functions = Functions::default();
    let _ = statement.visit(&mut functions);
    WriteInfo {
        shape: if functions.unreadable {
            None
        } else {
            shape(statement)
        },
        functions: functions.names,
    }
}

/// Collects the functions a statement calls.
#[derive(Default)]
struct Functions {
    names: Vec<FunctionName>,
    /// A call whose name is not a plain identifier.
    unreadable: bool,
}

impl Visitor for Functions {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            match split(&function.name) {
                Some((schema, name)) => {
                    let arity = match &function.args {
                        FunctionArguments::List(list) => u16::try_from(list.args.len()).ok(),
                        _ => None,
                    };
                    let name = FunctionName {
                        schema,
                        name,
                        arity,
                    };
                    if !self.names.contains(&name) {
                        self.names.push(name);
                    }
                }
                None => self.unreadable = true,
            }
        }
        ControlFlow::Continue(())
    }
}

/// The shape of a write statement, or `None` when it cannot be told (MERGE, COPY, DDL, a
/// data-modifying CTE, UPDATE ... FROM, DELETE ... USING, several tables).
pub fn shape(statement: &Statement) -> Option<WriteShape> {
    match statement {
        Statement::Insert(insert) => insert_shape(insert),
        Statement::Update(update) => update_shape(update),
        Statement::Delete(delete) => delete_shape(delete),
        _ => None,
    }
}

fn relation(name: &ObjectName) -> Option<RelationName> {
    let (schema, name) = split(name)?;
    Some(RelationName { schema, name })
}

fn insert_shape(insert: &Insert) -> Option<WriteShape> {
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let target = relation(name)?;
    let columns = if insert.columns.is_empty() {
        None
    } else {
        let mut names = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            names.push(split(column).filter(|(q, _)| q.is_none())?.1);
        }
        Some(names)
    };
    let rows = insert.source.as_ref().and_then(|source| {
        if source.with.is_some() {
            return None;
        }
        match &*source.body {
            SetExpr::Values(values) => Some(
                values
                    .rows
                    .iter()
                    .map(|row| row.content.iter().map(pins::constant_of).collect())
                    .collect(),
            ),
            _ => None,
        }
    });
    Some(WriteShape {
        target,
        kind: WriteKind::Insert {
            columns,
            rows,
            upsert: insert.on.is_some(),
        },
    })
}

fn update_shape(update: &Update) -> Option<WriteShape> {
    if update.from.is_some() || !update.table.joins.is_empty() {
        return None;
    }
    let (target, qualifier) = named(&update.table.relation)?;
    let mut set = Vec::with_capacity(update.assignments.len());
    for assignment in &update.assignments {
        match &assignment.target {
            AssignmentTarget::ColumnName(name) => set.push(column_name(name)?),
            AssignmentTarget::Tuple(names) => {
                for name in names {
                    set.push(column_name(name)?);
                }
            }
        }
    }
    Some(WriteShape {
        target,
        kind: WriteKind::Update {
            set,
            pins: where_pins(update.selection.as_ref(), &qualifier),
        },
    })
}

fn delete_shape(delete: &Delete) -> Option<WriteShape> {
    if delete.using.is_some() || !delete.tables.is_empty() {
        return None;
    }
    let from = match &delete.from {
        FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
    };
    let [only] = from.as_slice() else {
        return None;
    };
    if !only.joins.is_empty() {
        return None;
    }
    let (target, qualifier) = named(&only.relation)?;
    Some(WriteShape {
        target,
        kind: WriteKind::Delete {
            pins: where_pins(delete.selection.as_ref(), &qualifier),
        },
    })
}

/// A named target with how columns may qualify it (its alias, else its name).
fn named(factor: &TableFactor) -> Option<(RelationName, String)> {
    let TableFactor::Table {
        name, alias, args, ..
    } = factor
    else {
        return None;
    };
    if args.is_some() {
        return None;
    }
    let target = relation(name)?;
    let qualifier = match alias {
        Some(alias) if !alias.columns.is_empty() => return None,
        Some(alias) => super::names::fold(&alias.name),
        None => target.name.clone(),
    };
    Some((target, qualifier))
}

fn column_name(name: &ObjectName) -> Option<String> {
    split(name).map(|(_, column)| column)
}

/// The classes of the WHERE clause whose columns all belong to the target.
fn where_pins(selection: Option<&Expr>, qualifier: &str) -> Vec<PinClass> {
    let Some(selection) = selection else {
        return Vec::new();
    };
    pins::classes_of(selection)
        .into_iter()
        .filter_map(|mut class| {
            class
                .columns
                .retain(|c| c.qualifier.as_deref().is_none_or(|q| q == qualifier));
            (!class.columns.is_empty()).then_some(class)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn shape_of(sql: &str) -> Option<WriteShape> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        shape(&statements[0])
    }

    #[test]
    fn updates_say_what_they_set_and_which_rows_they_pin() {
        let shape = shape_of("UPDATE users u SET name = $1, (a, b) = (1, 2) WHERE u.id = $2")
            .expect("shape");
        assert_eq!(shape.target.name, "users");
        let WriteKind::Update { set, pins } = shape.kind else {
            panic!("not an update");
        };
        assert_eq!(set, vec!["name", "a", "b"]);
        assert_eq!(pins.len(), 1);
        assert_eq!(pins[0].columns[0].column, "id");
        assert_eq!(pins[0].constants, vec![Constant::Parameter(2)]);
        let WriteKind::Update { pins, .. } = shape_of("UPDATE t SET x = 1").expect("shape").kind
        else {
            panic!("not an update");
        };
        assert!(pins.is_empty(), "every row");
    }

    #[test]
    fn inserts_list_their_rows_when_they_are_values() {
        let shape = shape_of("INSERT INTO shop.orders (id, user_id) VALUES (1, $1), (2, now())")
            .expect("shape");
        assert_eq!(shape.target.schema.as_deref(), Some("shop"));
        let WriteKind::Insert {
            columns,
            rows,
            upsert,
        } = shape.kind
        else {
            panic!("not an insert");
        };
        assert_eq!(columns, Some(vec!["id".to_owned(), "user_id".to_owned()]));
        let rows = rows.expect("values");
        assert_eq!(
            rows[0],
            vec![
                Some(Constant::Integer("1".into())),
                Some(Constant::Parameter(1))
            ]
        );
        assert_eq!(rows[1][1], None, "not a constant");
        assert!(!upsert);
        let WriteKind::Insert { rows, upsert, .. } =
            shape_of("INSERT INTO t SELECT * FROM u ON CONFLICT DO NOTHING")
                .expect("shape")
                .kind
        else {
            panic!("not an insert");
        };
        assert_eq!(rows, None);
        assert!(upsert);
    }

    #[test]
    fn the_functions_a_write_calls_are_listed() {
        let statements = Parser::parse_sql(
            &PostgreSqlDialect {},
            "UPDATE t SET x = audit.stamp(now()) WHERE id = 1",
        )
        .expect("parses");
        let info = info(&statements[0]);
        let names: Vec<String> = info.functions.iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, vec!["stamp", "now"]);
        assert_eq!(info.functions[0].schema.as_deref(), Some("audit"));
        assert!(info.shape.is_some());
    }

    #[test]
    fn deletes_pin_rows_and_unreadable_writes_have_no_shape() {
        let WriteKind::Delete { pins } = shape_of("DELETE FROM t WHERE k IN (1, 2) AND v > 0")
            .expect("shape")
            .kind
        else {
            panic!("not a delete");
        };
        assert_eq!(pins[0].constants.len(), 2);
        for sql in [
            "UPDATE t SET x = 1 FROM u WHERE t.id = u.id",
            "DELETE FROM t USING u WHERE t.id = u.id",
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            "TRUNCATE t",
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
        ] {
            assert_eq!(shape_of(sql), None, "{sql}");
        }
    }
}

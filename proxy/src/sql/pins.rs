//! Which rows a read pins: columns of its FROM relations compared for equality with constants.
//!
//! A read whose WHERE clause says `id = 42` (or `id IN (1, 2)`, or `a = 5 AND b = $1`) depends
//! only on the rows with those values, not on the whole table: a change to any other row cannot
//! change its result. This module finds such pins syntactically; the catalog then decides which
//! of them hold (the column exists, its type's equality is exact, the relation is a plain table).
//!
//! What counts, and why it is safe:
//! - Only a single `SELECT` (no set operation) with a FROM list of named relations and joins
//!   among them. Anything else (a derived table, a function, nested joins) pins nothing.
//! - Only top-level conjuncts of WHERE, and of the ON condition of inner joins: the result's rows
//!   all satisfy them. (An outer join's ON condition does not filter the preserved side.)
//! - Equalities `column = constant`, `column IN (constants)` and `column = column` form classes;
//!   every column of a class holding constants is pinned to all of them (a superset of the values
//!   that can match, which only invalidates too much).
//! - Constants are integer literals, string literals, `true`/`false` and parameters (`$n`). A
//!   cast, an expression or NULL is not a constant here.
//!
//! Subqueries elsewhere in the statement do not undo a pin (the WHERE conjunct still filters the
//! outer rows); the relations they read are dependencies as whole tables.

use sqlparser::ast::{
    BinaryOperator, Expr, InTarget, JoinConstraint, JoinOperator, Query, SetExpr, TableFactor,
    UnaryOperator, Value,
};

use super::names::{fold, split, RelationName};

/// Most constants one class may collect.
const MAX_CONSTANTS: usize = 64;

/// A constant a column is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Constant {
    /// An integer literal as written, with its sign (`-5`).
    Integer(String),
    /// A string literal's value (quotes removed, `''` undoubled).
    String(String),
    /// `true` or `false`.
    Boolean(bool),
    /// A parameter, `$n` (1-based).
    Parameter(u16),
}

/// A column reference as written: `column`, `alias.column` or `schema.table.column`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnRef {
    /// The relation qualifier, if written (alias, table, or `schema.table`).
    pub qualifier: Option<String>,
    /// The column name (folded).
    pub column: String,
}

/// A relation of the top-level FROM list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromRelation {
    /// The relation's name.
    pub name: RelationName,
    /// How columns refer to it: its alias, else its name.
    pub qualifier: String,
}

/// Columns known equal to one another and to these constants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PinClass {
    /// The columns of the class.
    pub columns: Vec<ColumnRef>,
    /// The constants they are compared with (not empty).
    pub constants: Vec<Constant>,
}

/// The pins of a read, before the catalog has judged them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pins {
    /// The top-level FROM relations, in order.
    pub relations: Vec<FromRelation>,
    /// The classes that hold constants.
    pub classes: Vec<PinClass>,
}

impl Pins {
    /// True when nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The relation a column reference names: by qualifier, or the only relation when
    /// unqualified and alone. `None` when it cannot be told syntactically (the catalog may
    /// still tell an unqualified column of a join apart by who has it).
    pub fn relation_of(&self, column: &ColumnRef) -> Option<usize> {
        match &column.qualifier {
            Some(qualifier) => {
                let mut found = self.relations.iter().enumerate().filter(|(_, r)| {
                    r.qualifier == *qualifier
                        || r.name.schema.as_ref().is_some_and(|s| {
                            format!("{s}.{}", r.name.name) == *qualifier
                                && r.qualifier == r.name.name
                        })
                });
                let first = found.next()?;
                found.next().is_none().then_some(first.0)
            }
            None if self.relations.len() == 1 => Some(0),
            None => None,
        }
    }
}

/// The pins of a query (empty when it has none, or cannot be read for them).
pub fn of_query(query: &Query) -> Pins {
    if query.with.is_some() {
        return Pins::default();
    }
    let SetExpr::Select(select) = &*query.body else {
        return Pins::default();
    };
    let mut relations = Vec::new();
    let mut equalities: Vec<&Expr> = Vec::new();
    for from in &select.from {
        if !add_relation(&from.relation, &mut relations) {
            return Pins::default();
        }
        for join in &from.joins {
            if !add_relation(&join.relation, &mut relations) {
                return Pins::default();
            }
            if let JoinOperator::Join(JoinConstraint::On(on))
            | JoinOperator::Inner(JoinConstraint::On(on)) = &join.join_operator
            {
                conjuncts(on, &mut equalities);
            }
        }
    }
    if relations.is_empty() {
        return Pins::default();
    }
    if let Some(selection) = &select.selection {
        conjuncts(selection, &mut equalities);
    }
    let mut classes = Classes::default();
    for expr in equalities {
        classes.add(expr);
    }
    Pins {
        relations,
        classes: classes.finish(),
    }
}

/// Adds `constants` to the list of `column`'s constants in `columns` (per column, without
/// repeats).
pub fn add_constants(
    columns: &mut Vec<(String, Vec<Constant>)>,
    column: &str,
    constants: &[Constant],
) {
    match columns.iter_mut().find(|(name, _)| name == column) {
        Some((_, known)) => {
            for constant in constants {
                if !known.contains(constant) {
                    known.push(constant.clone());
                }
            }
        }
        None => columns.push((column.to_owned(), constants.to_vec())),
    }
}

/// The classes of a condition's top-level conjuncts (a write's WHERE clause).
pub fn classes_of(condition: &Expr) -> Vec<PinClass> {
    let mut equalities = Vec::new();
    conjuncts(condition, &mut equalities);
    let mut classes = Classes::default();
    for expr in equalities {
        classes.add(expr);
    }
    classes.finish()
}

/// The constant an expression is, if it is one (see the module docs).
pub fn constant_of(expr: &Expr) -> Option<Constant> {
    constant(expr)
}

/// Adds a named relation of the FROM list; false for anything else (derived tables, table
/// functions, nested joins, column aliases that rename the relation's columns).
fn add_relation(factor: &TableFactor, relations: &mut Vec<FromRelation>) -> bool {
    let TableFactor::Table {
        name, alias, args, ..
    } = factor
    else {
        return false;
    };
    if args.is_some() {
        return false;
    }
    let Some((schema, table)) = split(name) else {
        return false;
    };
    let qualifier = match alias {
        Some(alias) if !alias.columns.is_empty() => return false,
        Some(alias) => fold(&alias.name),
        None => table.clone(),
    };
    relations.push(FromRelation {
        name: RelationName {
            schema,
            name: table,
        },
        qualifier,
    });
    true
}

/// Collects the top-level conjuncts of `expr` (split at AND, through parentheses).
fn conjuncts<'a>(expr: &'a Expr, out: &mut Vec<&'a Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

fn column(expr: &Expr) -> Option<ColumnRef> {
    match expr {
        Expr::Identifier(ident) => Some(ColumnRef {
            qualifier: None,
            column: fold(ident),
        }),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [relation, column] => Some(ColumnRef {
                qualifier: Some(fold(relation)),
                column: fold(column),
            }),
            [schema, relation, column] => Some(ColumnRef {
                qualifier: Some(format!("{}.{}", fold(schema), fold(relation))),
                column: fold(column),
            }),
            _ => None,
        },
        Expr::Nested(inner) => column(inner),
        _ => None,
    }
}

fn constant(expr: &Expr) -> Option<Constant> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, false) if text.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Constant::Integer(text.clone()))
            }
            Value::SingleQuotedString(text) => Some(Constant::String(text.clone())),
            Value::Boolean(b) => Some(Constant::Boolean(*b)),
            Value::Placeholder(text) => text
                .strip_prefix('$')
                .and_then(|n| n.parse::<u16>().ok())
                .filter(|n| *n > 0)
                .map(Constant::Parameter),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match constant(expr)? {
            Constant::Integer(digits) => Some(Constant::Integer(format!("-{digits}"))),
            _ => None,
        },
        Expr::Nested(inner) => constant(inner),
        _ => None,
    }
}

/// Union-find over column references, with the constants of each class.
#[derive(Default)]
struct Classes {
    columns: Vec<ColumnRef>,
    parent: Vec<usize>,
    constants: Vec<Vec<Constant>>,
    /// A class collected too many constants: it pins nothing.
    overflow: Vec<bool>,
}

impl Classes {
    fn index(&mut self, column: ColumnRef) -> usize {
        if let Some(i) = self.columns.iter().position(|c| *c == column) {
            return i;
        }
        self.columns.push(column);
        self.parent.push(self.parent.len());
        self.constants.push(Vec::new());
        self.overflow.push(false);
        self.columns.len() - 1
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn add_constants(&mut self, i: usize, constants: Vec<Constant>) {
        let root = self.root(i);
        for constant in constants {
            if !self.constants[root].contains(&constant) {
                self.constants[root].push(constant);
            }
        }
        if self.constants[root].len() > MAX_CONSTANTS {
            self.overflow[root] = true;
        }
    }

    fn add(&mut self, expr: &Expr) {
        match expr {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => match (column(left), column(right), constant(left), constant(right)) {
                (Some(a), Some(b), _, _) => {
                    let (a, b) = (self.index(a), self.index(b));
                    let (ra, rb) = (self.root(a), self.root(b));
                    if ra != rb {
                        self.parent[rb] = ra;
                        let moved = std::mem::take(&mut self.constants[rb]);
                        self.overflow[ra] |= self.overflow[rb];
                        self.add_constants(ra, moved);
                    }
                }
                (Some(a), None, _, Some(value)) | (None, Some(a), Some(value), _) => {
                    let a = self.index(a);
                    self.add_constants(a, vec![value]);
                }
                _ => {}
            },
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } => {
                let Some(a) = column(expr) else { return };
                let values: Option<Vec<Constant>> = list.iter().map(constant).collect();
                if let Some(values) = values.filter(|v| !v.is_empty()) {
                    let a = self.index(a);
                    self.add_constants(a, values);
                }
            }
            _ => {}
        }
    }

    fn finish(mut self) -> Vec<PinClass> {
        let mut classes: Vec<(usize, PinClass)> = Vec::new();
        for i in 0..self.columns.len() {
            let root = self.root(i);
            if self.constants[root].is_empty() || self.overflow[root] {
                continue;
            }
            match classes.iter_mut().find(|(r, _)| *r == root) {
                Some((_, class)) => class.columns.push(self.columns[i].clone()),
                None => classes.push((
                    root,
                    PinClass {
                        columns: vec![self.columns[i].clone()],
                        constants: self.constants[root].clone(),
                    },
                )),
            }
        }
        classes.into_iter().map(|(_, class)| class).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::Statement;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn pins(sql: &str) -> Pins {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        match &statements[0] {
            Statement::Query(query) => of_query(query),
            other => panic!("not a query: {other:?}"),
        }
    }

    fn col(qualifier: Option<&str>, column: &str) -> ColumnRef {
        ColumnRef {
            qualifier: qualifier.map(str::to_owned),
            column: column.to_owned(),
        }
    }

    #[test]
    fn equalities_and_in_lists_pin_columns() {
        let p = pins("SELECT * FROM users WHERE id = 42");
        assert_eq!(p.relations[0].qualifier, "users");
        assert_eq!(
            p.classes,
            vec![PinClass {
                columns: vec![col(None, "id")],
                constants: vec![Constant::Integer("42".into())]
            }]
        );
        let p = pins("SELECT * FROM t WHERE (a = -5 AND B = $2) AND c IN ('x', 'y''s') AND d > 3");
        assert_eq!(p.classes.len(), 3);
        assert_eq!(p.classes[0].constants, vec![Constant::Integer("-5".into())]);
        assert_eq!(p.classes[1].columns, vec![col(None, "b")]);
        assert_eq!(p.classes[1].constants, vec![Constant::Parameter(2)]);
        assert_eq!(
            p.classes[2].constants,
            vec![Constant::String("x".into()), Constant::String("y's".into())]
        );
    }

    #[test]
    fn joins_carry_pins_through_equal_columns() {
        let p = pins("SELECT * FROM orders o JOIN users u ON u.id = o.user_id WHERE o.user_id = 7");
        assert_eq!(p.relations.len(), 2);
        assert_eq!(p.classes.len(), 1);
        let class = &p.classes[0];
        assert!(class.columns.contains(&col(Some("u"), "id")));
        assert!(class.columns.contains(&col(Some("o"), "user_id")));
        assert_eq!(p.relation_of(&col(Some("u"), "id")), Some(1));
        assert_eq!(
            p.relation_of(&col(None, "id")),
            None,
            "ambiguous without the catalog"
        );
    }

    #[test]
    fn outer_join_conditions_do_not_pin_but_where_does() {
        let p = pins("SELECT * FROM a LEFT JOIN b ON b.aid = a.id WHERE a.id = 1");
        assert_eq!(p.classes.len(), 1);
        assert_eq!(p.classes[0].columns, vec![col(Some("a"), "id")]);
    }

    #[test]
    fn what_cannot_be_a_pin_is_not_one() {
        for sql in [
            "SELECT * FROM t WHERE id > 5",
            "SELECT * FROM t WHERE id = 5 OR id = 6",
            "SELECT * FROM t WHERE id = 5.5",
            "SELECT * FROM t WHERE id = '5'::int",
            "SELECT * FROM t WHERE id = NULL",
            "SELECT * FROM t WHERE id NOT IN (1, 2)",
            "SELECT * FROM t WHERE lower(name) = 'x'",
            "SELECT * FROM (SELECT * FROM t) s WHERE id = 1",
            "SELECT * FROM generate_series(1, 3) g WHERE g = 1",
            "SELECT * FROM t AS x(a, b) WHERE a = 1",
            "WITH c AS (SELECT 1) SELECT * FROM t WHERE id = 1",
            "SELECT * FROM t WHERE id = 1 UNION SELECT * FROM t WHERE id = 2",
            "SELECT 1 WHERE 1 = 1",
        ] {
            assert!(pins(sql).is_empty(), "{sql}");
        }
    }

    #[test]
    fn a_subquery_elsewhere_keeps_the_outer_pin() {
        let p = pins("SELECT * FROM t WHERE id = 3 AND EXISTS (SELECT 1 FROM u WHERE u.x = t.x)");
        assert_eq!(p.classes.len(), 1);
        assert_eq!(p.classes[0].columns, vec![col(None, "id")]);
    }

    #[test]
    fn qualifiers_name_aliases_tables_and_schemas() {
        let p = pins("SELECT * FROM shop.orders WHERE shop.orders.id = 1 AND orders.n = 2");
        assert_eq!(p.relation_of(&col(Some("shop.orders"), "id")), Some(0));
        assert_eq!(p.relation_of(&col(Some("orders"), "n")), Some(0));
        assert_eq!(p.relation_of(&col(Some("other"), "n")), None);
    }
}

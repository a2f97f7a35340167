//! What a read depends on: relations, functions, and the syntax that makes it uncacheable.
//!
//! One pass of sqlparser's visitor over the query collects every relation in FROM clauses
//! (including subqueries, CTE bodies, set operations), every function call (including table
//! functions in FROM and the SQL-standard niladic forms such as `CURRENT_TIMESTAMP`), and notes
//! locking clauses, `SELECT INTO`, data-modifying CTEs and time-dependent literals.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArguments, Query, Select, SetExpr, Statement, TableFactor, Value, ValueWithSpan,
    Visit, Visitor,
};

use super::names::{fold, split, FunctionName, RelationName};
use crate::bypass::BypassReason;

/// The relations and functions a read uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadDeps {
    /// Relations read, without names that refer to the query's own CTEs. Deduplicated.
    pub relations: Vec<RelationName>,
    /// Functions called. Deduplicated.
    pub functions: Vec<FunctionName>,
    /// The rows of its FROM relations it pins by equality (empty: none).
    pub pins: super::pins::Pins,
    /// How many times each relation appears in the query (top-level FROM or anywhere else).
    pub occurrences: Vec<(RelationName, usize)>,
}

/// String literals whose cast to a date/time type depends on the clock.
const TIME_WORDS: [&str; 4] = ["now", "today", "tomorrow", "yesterday"];

#[derive(Default)]
struct Collector {
    relations: Vec<RelationName>,
    /// How many times each relation name appears (a FROM item anywhere in the query).
    occurrences: Vec<(RelationName, usize)>,
    functions: Vec<FunctionName>,
    ctes: HashSet<String>,
    reason: Option<BypassReason>,
}

impl Collector {
    fn refuse(&mut self, reason: BypassReason) -> ControlFlow<()> {
        self.reason.get_or_insert(reason);
        ControlFlow::Break(())
    }

    fn function(
        &mut self,
        name: &sqlparser::ast::ObjectName,
        arity: Option<usize>,
    ) -> ControlFlow<()> {
        match split(name) {
            Some((schema, name)) => {
                let arity = arity.and_then(|n| u16::try_from(n).ok());
                let function = FunctionName {
                    schema,
                    name,
                    arity,
                };
                if !self.functions.contains(&function) {
                    self.functions.push(function);
                }
                ControlFlow::Continue(())
            }
            None => self.refuse(BypassReason::UnsupportedName),
        }
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if !query.locks.is_empty() || query.for_clause.is_some() {
            return self.refuse(BypassReason::LockingClause);
        }
        if matches!(
            *query.body,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ) {
            return self.refuse(BypassReason::DataModifyingCte);
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(fold(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if select.into.is_some() {
            return self.refuse(BypassReason::SelectInto);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        // The read itself is visited as a Query: any statement inside it modifies data.
        self.refuse(BypassReason::DataModifyingCte)
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args, .. } = factor {
            if let Some(args) = args {
                return self.function(name, Some(args.args.len()));
            }
            match split(name) {
                Some((schema, name)) => {
                    let relation = RelationName { schema, name };
                    match self.occurrences.iter_mut().find(|(r, _)| *r == relation) {
                        Some((_, count)) => *count += 1,
                        None => self.occurrences.push((relation.clone(), 1)),
                    }
                    if !self.relations.contains(&relation) {
                        self.relations.push(relation);
                    }
                }
                None => return self.refuse(BypassReason::UnsupportedName),
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            let arity = match &function.args {
                FunctionArguments::List(list) => Some(list.args.len()),
                FunctionArguments::None | FunctionArguments::Subquery(_) => None,
            };
            return self.function(&function.name, arity);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
        if let Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) = &value.value {
            let word = text.trim().to_ascii_lowercase();
            if TIME_WORDS.contains(&word.as_str()) {
                return self.refuse(BypassReason::TimeLiteral);
            }
        }
        ControlFlow::Continue(())
    }
}

/// Collects a query's dependencies, or the reason it can never be cached.
pub fn dependencies(query: &Query) -> Result<ReadDeps, BypassReason> {
    let mut collector = Collector::default();
    let _ = query.visit(&mut collector);
    if let Some(reason) = collector.reason {
        return Err(reason);
    }
    // A name that matches one of the query's CTEs refers to the CTE, if unqualified.
    let ctes = collector.ctes;
    let relations = collector
        .relations
        .into_iter()
        .filter(|r| r.schema.is_some() || !ctes.contains(&r.name))
        .collect();
    Ok(ReadDeps {
        relations,
        functions: collector.functions,
        pins: super::pins::of_query(query),
        occurrences: collector.occurrences,
    })
}

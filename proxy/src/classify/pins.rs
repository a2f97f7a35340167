//! Resolving a read's pins against the catalog: which of its FROM relations it reads only at
//! some keys, and which it depends on as whole tables (and why).
//!
//! A pin holds for a relation that is exactly one plain table ([`TableFacts`]), on columns it
//! has whose type's equality is exact, with constants that are canonical for that type (or
//! parameters, checked per execution). The column set is registered before the read is
//! classified as cacheable, so no lookup ever precedes its registration. A table is left out of
//! the whole-table dependencies only when every appearance of it in the query is pinned and the
//! query reads no view or partitioned table that could read it too.

use std::sync::Arc;

use pgcached_cache::TableId;

use crate::catalog::tables::TableFacts;
use crate::catalog::{Catalog, CatalogError};
use crate::pins::reads::{PinColumn, PinValue, RowPin};
use crate::pins::{PinRegistry, PinType};
use crate::sql::pins::{add_constants, ColumnRef, Constant};
use crate::sql::ReadDeps;

/// Why a table is a dependency as a whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeReason {
    /// No equality with constants on columns that can be pinned.
    NoEquality,
    /// Not a plain table (a view's base, a partition, a table with descendants, a name found
    /// in several schemas).
    NotPlainTable,
    /// It appears in the query unpinned too (a subquery, a self-join, a view).
    ReadElsewhere,
    /// The table already has the most column sets pgcached tracks.
    TooManySets,
}

impl WholeReason {
    /// What `EXPLAIN CACHE` says.
    pub fn explain(self) -> &'static str {
        match self {
            WholeReason::NoEquality => "no equality with constants on a column that can be pinned",
            WholeReason::NotPlainTable => {
                "not a plain table (view, partition, inheritance, or several schemas)"
            }
            WholeReason::ReadElsewhere => "read elsewhere in the statement without a pin",
            WholeReason::TooManySets => "the table has too many pinned column sets already",
        }
    }
}

/// A read's dependencies as the catalog resolved them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedDependencies {
    /// Tables depended on whole, with why.
    pub whole: Vec<(TableId, WholeReason)>,
    /// Rows pinned by key.
    pub pins: Vec<RowPin>,
}

/// Resolves the pins of `deps` in `database`, whose tables (all dependencies) are `tables`.
pub async fn resolve(
    catalog: &Catalog,
    registry: &PinRegistry,
    database: &str,
    deps: &ReadDeps,
    tables: &[TableId],
) -> Result<ResolvedDependencies, CatalogError> {
    let all_whole = |reason| ResolvedDependencies {
        whole: tables.iter().map(|t| (t.clone(), reason)).collect(),
        pins: Vec::new(),
    };
    if deps.pins.is_empty() {
        return Ok(all_whole(WholeReason::NoEquality));
    }
    let mut facts: Vec<Option<Arc<TableFacts>>> = Vec::with_capacity(deps.pins.relations.len());
    for relation in &deps.pins.relations {
        facts.push(catalog.table_facts(database, &relation.name).await?);
    }
    // Every relation the query reads must be a plain table for a pin to narrow anything: a view
    // or partitioned table could read the same table unpinned.
    let mut only_plain = true;
    for relation in &deps.relations {
        if catalog.table_facts(database, relation).await?.is_none() {
            only_plain = false;
        }
    }
    // Per FROM relation: its pinned columns and their constants.
    let mut pinned: Vec<Vec<(String, Vec<Constant>)>> = vec![Vec::new(); facts.len()];
    for class in &deps.pins.classes {
        for column in &class.columns {
            let Some(index) = relation_of(deps, &facts, column) else {
                continue;
            };
            add_constants(&mut pinned[index], &column.column, &class.constants);
        }
    }
    let database_id: Arc<str> = Arc::from(database);
    let mut pins = Vec::new();
    let mut pinned_instances: Vec<(u32, usize)> = Vec::new();
    let mut refused: Vec<(u32, WholeReason)> = Vec::new();
    for (index, columns) in pinned.into_iter().enumerate() {
        let Some(table_facts) = &facts[index] else {
            continue;
        };
        let table = TableId {
            database: Arc::clone(&database_id),
            oid: table_facts.oid,
        };
        let mut set: Vec<(String, PinType, Vec<PinValue>)> = Vec::new();
        for (name, constants) in columns {
            let Some(pin_type) = table_facts.pin_type(&name) else {
                continue;
            };
            let values: Option<Vec<PinValue>> = constants
                .iter()
                .map(|constant| match constant {
                    Constant::Parameter(n) => Some(PinValue::Parameter(*n)),
                    other => pin_type.canonical_constant(other).map(PinValue::Canonical),
                })
                .collect();
            if let Some(values) = values {
                set.push((name, pin_type, values));
            }
        }
        if set.is_empty() {
            continue;
        }
        set.sort_by(|a, b| a.0.cmp(&b.0));
        let columns: Vec<(String, PinType)> = set.iter().map(|(n, t, _)| (n.clone(), *t)).collect();
        let Some(id) = registry.register(&table, &columns, table_facts.identity.clone()) else {
            refused.push((table_facts.oid, WholeReason::TooManySets));
            continue;
        };
        pins.push(RowPin {
            table,
            set: id,
            columns: set
                .into_iter()
                .map(|(_, pin_type, values)| PinColumn { pin_type, values })
                .collect(),
        });
        match pinned_instances
            .iter_mut()
            .find(|(oid, _)| *oid == table_facts.oid)
        {
            Some((_, count)) => *count += 1,
            None => pinned_instances.push((table_facts.oid, 1)),
        }
    }
    let mut whole = Vec::new();
    for table in tables {
        let reason = if let Some((_, reason)) = refused.iter().find(|(oid, _)| *oid == table.oid) {
            Some(*reason)
        } else {
            match pinned_instances.iter().find(|(oid, _)| *oid == table.oid) {
                None if facts.iter().flatten().any(|f| f.oid == table.oid) => {
                    Some(WholeReason::NoEquality)
                }
                None => Some(WholeReason::NotPlainTable),
                Some((_, count)) => {
                    let appearances = appearances_of(deps, &facts, table.oid);
                    (!only_plain || appearances != *count).then_some(WholeReason::ReadElsewhere)
                }
            }
        };
        if let Some(reason) = reason {
            whole.push((table.clone(), reason));
        }
    }
    Ok(ResolvedDependencies { whole, pins })
}

/// How many times the query names the relation whose facts have `oid`.
fn appearances_of(deps: &ReadDeps, facts: &[Option<Arc<TableFacts>>], oid: u32) -> usize {
    let names: Vec<_> = deps
        .pins
        .relations
        .iter()
        .zip(facts)
        .filter(|(_, f)| f.as_ref().is_some_and(|f| f.oid == oid))
        .map(|(relation, _)| &relation.name)
        .collect();
    deps.occurrences
        .iter()
        .filter(|(name, _)| names.contains(&name))
        .map(|(_, count)| *count)
        .sum()
}

/// The FROM relation a column reference belongs to: by qualifier, or, unqualified, the one
/// relation that has a column of that name (all relations' columns must be known).
fn relation_of(
    deps: &ReadDeps,
    facts: &[Option<Arc<TableFacts>>],
    column: &ColumnRef,
) -> Option<usize> {
    if let Some(index) = deps.pins.relation_of(column) {
        return facts[index]
            .as_ref()
            .is_some_and(|f| f.has_column(&column.column))
            .then_some(index);
    }
    if column.qualifier.is_some() || facts.iter().any(Option::is_none) {
        return None;
    }
    let mut owners = facts
        .iter()
        .enumerate()
        .filter(|(_, f)| f.as_ref().is_some_and(|f| f.has_column(&column.column)));
    let (index, _) = owners.next()?;
    owners.next().is_none().then_some(index)
}

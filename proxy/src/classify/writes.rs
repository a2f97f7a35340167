//! Resolving a write against the catalog: what its acknowledgement invalidates.
//!
//! The text gives the target and the rows ([`crate::sql::write`]); the catalog says whether the
//! target's rows can be pinned and what else the write reaches ([`WriteReach`]). Anything the
//! catalog cannot bound (triggers, rules, functions outside `pg_catalog`, views) reaches the
//! whole database.

use std::sync::Arc;

use pgcached_cache::TableId;

use super::WriteClass;
use crate::catalog::tables::WriteReach;
use crate::catalog::{Catalog, CatalogError};
use crate::pins::writes::{RowsWritten, WriteEffect};
use crate::sql::pins::{add_constants, Constant, PinClass};
use crate::sql::write::{WriteInfo, WriteKind};

/// What a write with this text does in `database`.
pub async fn resolve(
    catalog: &Catalog,
    database: &str,
    info: &WriteInfo,
) -> Result<WriteClass, CatalogError> {
    let Some(shape) = &info.shape else {
        return Ok(WriteClass::Database);
    };
    let reach = catalog
        .write_reach(database, &shape.target, &info.functions)
        .await?;
    let WriteReach::Known {
        target,
        facts,
        whole,
    } = reach
    else {
        return Ok(WriteClass::Database);
    };
    let database_id: Arc<str> = Arc::from(database);
    let table = |oid: u32| TableId {
        database: Arc::clone(&database_id),
        oid,
    };
    let rows = match &shape.kind {
        WriteKind::Insert {
            columns,
            rows,
            upsert,
        } => match (rows, columns, &facts) {
            (Some(rows), Some(columns), _) => RowsWritten::Insert {
                columns: columns.clone(),
                rows: rows.clone(),
                upsert: *upsert,
            },
            (Some(rows), None, Some(facts)) => RowsWritten::Insert {
                columns: facts.columns.iter().map(|(name, _)| name.clone()).collect(),
                rows: rows.clone(),
                upsert: *upsert,
            },
            _ => RowsWritten::Unknown,
        },
        WriteKind::Update { set, pins } => RowsWritten::Update {
            set: set.clone(),
            pins: columns_of(pins),
        },
        WriteKind::Delete { pins } => RowsWritten::Delete {
            pins: columns_of(pins),
        },
    };
    Ok(WriteClass::Known(Arc::new(WriteEffect {
        target: table(target),
        facts,
        whole: whole.into_iter().map(table).collect(),
        rows,
    })))
}

/// Each pinned column of the target with its constants (classes from the WHERE clause).
fn columns_of(classes: &[PinClass]) -> Vec<(String, Vec<Constant>)> {
    let mut columns = Vec::new();
    for class in classes {
        for column in &class.columns {
            add_constants(&mut columns, &column.column, &class.constants);
        }
    }
    columns
}

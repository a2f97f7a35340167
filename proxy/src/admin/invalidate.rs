//! `INVALIDATE TABLE <name>` and `INVALIDATE ALL`: drop cached results by hand, without a
//! restart (after a fix made where pgcached cannot see it, say a table written with
//! replication off).
//!
//! Both go through the generations, as every other invalidation does: a fill already in flight
//! that read the old rows is refused too.

use std::sync::Arc;

use pgcached_cache::TableId;

use super::frames::{ColumnType, ResultSet};
use super::CommandFailed;
use crate::session::SessionContext;
use crate::sql::names::RelationName;
use crate::stats::InvalidationSource;
use crate::wire::error_response::sqlstate;

/// Invalidates every table called `name` (`table` in any schema, or `schema.table`) in every
/// database pgcached has cached reads for.
pub async fn table(
    name: &RelationName,
    context: &SessionContext,
) -> Result<ResultSet, CommandFailed> {
    let shared = super::cache_of(context)?;
    let generations = shared.cache.generations();
    let databases = generations.databases();
    let mut invalidated = 0u64;
    let mut notices = Vec::new();
    let mut result = ResultSet::new(&[
        ("database", ColumnType::Text),
        ("table", ColumnType::Text),
        ("oid", ColumnType::Int),
    ]);
    for database in &databases {
        let oids = match shared
            .classifier
            .catalog()
            .find_tables(database, name.schema.as_deref(), &name.name)
            .await
        {
            Ok(oids) => oids,
            Err(e) => {
                // Fail towards dropping: nothing of this database may be served stale.
                generations.bump_database(database);
                shared.metrics.invalidation(InvalidationSource::Admin, 1);
                notices.push(format!(
                    "cannot read the catalog of database {database:?} ({e}): all of its cached results were dropped"
                ));
                continue;
            }
        };
        for oid in oids {
            let table = TableId {
                database: Arc::clone(database),
                oid,
            };
            generations.bump_table(&table);
            shared.metrics.table_invalidated(&table);
            invalidated += 1;
            result.push(vec![
                Some(database.to_string()),
                Some(name.to_string()),
                Some(oid.to_string()),
            ]);
        }
    }
    if invalidated == 0 && notices.is_empty() {
        let message = if databases.is_empty() {
            format!("no table \"{name}\": nothing has been cached yet")
        } else {
            let list: Vec<&str> = databases.iter().map(|d| &**d).collect();
            format!(
                "no table \"{name}\" in the databases pgcached caches ({})",
                list.join(", ")
            )
        };
        return Err(CommandFailed::new(sqlstate::UNDEFINED_TABLE, message));
    }
    shared
        .metrics
        .invalidation(InvalidationSource::Admin, invalidated);
    result.tag = format!("INVALIDATE {invalidated}");
    result.notices = notices;
    Ok(result)
}

/// Drops every cached result.
pub fn all(context: &SessionContext) -> Result<ResultSet, CommandFailed> {
    let shared = super::cache_of(context)?;
    let generations = shared.cache.generations();
    // Bump first: fills in flight are refused, then the memory is released.
    for database in generations.databases() {
        generations.bump_database(&database);
    }
    let dropped = shared.cache.len();
    shared.cache.clear();
    shared.metrics.invalidation(InvalidationSource::Admin, 1);
    let mut result = ResultSet::new(&[("entries_dropped", ColumnType::Int)]);
    result.push(vec![Some(dropped.to_string())]);
    result.tag = format!("INVALIDATE {dropped}");
    Ok(result)
}

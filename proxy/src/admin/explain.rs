//! `EXPLAIN CACHE <statement>`: would pgcached cache this statement, and if not, exactly why.
//!
//! The statement goes through the same classification the query path uses (syntax, hints,
//! the catalog's verdict on every relation and function, the table rules), but waits for the
//! catalog instead of relaying meanwhile, and remembers nothing. The statement is not run.

use pgcached_cache::Feed;

use super::dependencies;
use super::frames::{ColumnType, ResultSet};
use super::CommandFailed;
use crate::bypass::BypassReason;
use crate::classify::Class;
use crate::session::SessionContext;
use crate::sql::text;
use crate::wire::error_response::sqlstate;

/// What a cacheable verdict means for the person asking.
const CACHEABLE: &str = "cached per database, role, session settings, statement text and parameter values; served until a write changes what it depends on (depends_on)";

/// The reason column and the detail column of a verdict: `None` is cacheable.
fn verdict(reason: Option<BypassReason>) -> (Option<String>, Option<String>) {
    match reason {
        None => (Some("cacheable".to_owned()), Some(CACHEABLE.to_owned())),
        Some(reason) => (
            Some(reason.label().to_owned()),
            Some(reason.explain().to_owned()),
        ),
    }
}

/// Schema-qualified names of these tables, or the error `EXPLAIN CACHE` gives.
async fn names_of(
    shared: &crate::session::caching::CacheShared,
    database: &str,
    oids: &[u32],
) -> Result<Vec<(u32, String)>, CommandFailed> {
    match shared
        .classifier
        .catalog()
        .table_names(database, oids)
        .await
    {
        Ok(found) => Ok(found
            .into_iter()
            .map(|(oid, name)| (oid, name.to_string()))
            .collect()),
        Err(e) => Err(CommandFailed::new(
            sqlstate::INTERNAL_ERROR,
            format!("cannot read the catalog of database {database:?}: {e}"),
        )),
    }
}

/// Answers `EXPLAIN CACHE`.
pub async fn explain(
    database: Option<String>,
    sql: &str,
    context: &SessionContext,
) -> Result<ResultSet, CommandFailed> {
    let database = database.unwrap_or_else(|| context.console.database.clone());
    let mut result = ResultSet::new(&[
        ("cacheable", ColumnType::Text),
        ("reason", ColumnType::Text),
        ("detail", ColumnType::Text),
        ("database", ColumnType::Text),
        ("tables", ColumnType::Text),
        ("depends_on", ColumnType::Text),
        ("ttl", ColumnType::Text),
        ("normalized", ColumnType::Text),
    ]);
    let normalized = Some(text::scan(sql).normalized);
    let Some(shared) = &context.cache else {
        let (reason, detail) = verdict(Some(BypassReason::CacheOff));
        result.push(vec![
            Some("no".to_owned()),
            reason,
            detail,
            Some(database),
            None,
            None,
            None,
            normalized,
        ]);
        return Ok(result);
    };
    let class = shared
        .classifier
        .classify_now(&database, sql)
        .await
        .map_err(|e| {
            CommandFailed::new(
                sqlstate::INTERNAL_ERROR,
                format!("cannot judge the statement in database {database:?}: {e}"),
            )
        })?;
    let row = match &class {
        Class::Cacheable(read) => {
            let oids: Vec<u32> = read.tables.iter().map(|t| t.oid).collect();
            let found = names_of(shared, &database, &oids).await?;
            let mut names: Vec<String> = found.iter().map(|(_, name)| name.clone()).collect();
            names.sort();
            names.dedup();
            let depends_on = dependencies::of_read(read, &found);
            let ttl = read.ttl.or(shared.cache.config().ttl);
            // The statement is cacheable; whether the database's feed lets it be served now is
            // said too, with the reason a lookup would give.
            let (cacheable, reason, ttl) =
                match shared.cache.generations().feed(&database) {
                    Feed::Live => (
                        "yes",
                        None,
                        Some(ttl.map_or_else(
                            || "until invalidated".to_owned(),
                            |ttl| format!("{ttl:?}"),
                        )),
                    ),
                    Feed::Down => ("no", Some(BypassReason::ReplicationDown), None),
                    Feed::Bounded(bound) if bound.is_zero() => {
                        ("no", Some(BypassReason::NoChangeFeed), None)
                    }
                    Feed::Bounded(bound) => (
                        "yes",
                        None,
                        Some(format!(
                            "{:?} (no change feed: --cache-ttl-unreplicated)",
                            ttl.map_or(bound, |ttl| ttl.min(bound))
                        )),
                    ),
                };
            let (reason, detail) = verdict(reason);
            vec![
                Some(cacheable.to_owned()),
                reason,
                detail,
                Some(database),
                Some(names.join(", ")),
                Some(depends_on),
                ttl,
                normalized,
            ]
        }
        Class::Write(write) => {
            let oids = dependencies::write_tables(write);
            let found = names_of(shared, &database, &oids).await?;
            let (reason, detail) = verdict(Some(BypassReason::Write));
            vec![
                Some("no".to_owned()),
                reason,
                detail,
                Some(database),
                None,
                Some(dependencies::of_write(write, &found)),
                None,
                normalized,
            ]
        }
        other => {
            let (reason, detail) = verdict(other.bypass_reason());
            vec![
                Some("no".to_owned()),
                reason,
                detail,
                Some(database),
                None,
                None,
                None,
                normalized,
            ]
        }
    };
    result.push(row);
    Ok(result)
}

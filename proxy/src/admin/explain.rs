//! `EXPLAIN CACHE <statement>`: would pgcached cache this statement, and if not, exactly why.
//!
//! The statement goes through the same classification the query path uses (syntax, hints,
//! the catalog's verdict on every relation and function, the table rules), but waits for the
//! catalog instead of relaying meanwhile, and remembers nothing. The statement is not run.

use pgcached_cache::Feed;

use super::dependencies;
use super::frames::{ColumnType, ResultSet};
use super::CommandFailed;
use crate::classify::Class;
use crate::session::SessionContext;
use crate::sql::text;
use crate::wire::error_response::sqlstate;

/// A reason label and what it means for the person asking.
pub fn describe(reason: &str) -> &'static str {
    match reason {
        "cacheable" => "cached per database, role, session settings, statement text and parameter values; served until a write to one of its tables",
        "classifying" => "not judged yet",
        "volatile_function" => "calls a function that is not IMMUTABLE (pg_proc.provolatile): its result may change without any write",
        "session_state" => "changes session state (SET, RESET, SET ROLE, DISCARD ...): relayed, and later reads of the session are keyed by the new state",
        "temporary_objects" => "creates temporary objects: the session's reads are kept apart from everyone else's",
        "transaction_control" => "transaction control: relayed",
        "write" => "writes data or changes the schema: relayed, and what it can change (depends_on) is invalidated when PostgreSQL acknowledges it",
        "not_a_read" => "not a single read pgcached understands (CALL, DO, several statements ...): relayed",
        "nocache_hint" => "the statement carries a /* pgcached:nocache */ hint",
        "invalid_hint" => "a pgcached: hint in its comments cannot be read (use pgcached:nocache or pgcached:ttl=30s); not cached until it is fixed",
        "table_denied" => "reads a table listed in --cache-deny-tables",
        "table_not_allowed" => "reads a table not listed in --cache-allow-tables",
        "catalog_unavailable" => "pgcached cannot read the catalog (check the credentials in --upstream): nothing is cached until it can",
        "unknown_relation" => "names a relation the catalog does not know (yet)",
        "system_catalog" => "reads a system catalog (pg_catalog, information_schema): its rows change without logical replication",
        "temporary_table" => "reads a temporary table",
        "unlogged_table" => "reads an unlogged table: its changes are not in the replication stream",
        "unknown_persistence" | "unsupported_relation" => "reads a relation of a kind pgcached does not cache",
        "foreign_table" => "reads a foreign table: its rows change outside this database",
        "sequence" => "reads a sequence",
        "view_calls_volatile_function" => "reads a view that calls a function that is not IMMUTABLE",
        "view_over_unlogged_or_temporary" => "reads a view over an unlogged or temporary table",
        "view_too_deep" => "reads views nested too deeply to expand",
        "locking_clause" => "has a locking clause (FOR UPDATE / FOR SHARE)",
        "time_literal" => "uses a time literal ('now', 'today' ...) whose value changes",
        "unsupported_name" => "uses a name form pgcached cannot resolve",
        "select_into" => "SELECT INTO creates a table: a write",
        "data_modifying_cte" => "a WITH clause modifies data: a write",
        "multi_statement" => "several statements in one string",
        "empty" => "an empty statement",
        "copy_to" => "COPY TO is streamed, not cached",
        "show" => "SHOW reads session settings, not tables",
        "explain" => "EXPLAIN output depends on planner state",
        "listen_notify" => "LISTEN/NOTIFY is session signalling",
        "cache_off" => "caching is off (--cache off)",
        "not_published" => "reads a table whose changes the publication named by --publication does not carry (not in it, a row filter, or an action among insert/update/delete/truncate not published), so writes made elsewhere would never be seen: add the table to the publication (ALTER PUBLICATION ... ADD TABLE ...), or run without --publication to follow every table with test_decoding",
        "replication_down" => "the database's change stream is not running right now (starting, or lost and reconnecting): nothing is served from the cache until it is back (SHOW REPLICATION says why)",
        "no_change_feed" => "the database has no working change stream (SHOW REPLICATION says what to fix) and --cache-ttl-unreplicated is 0: nothing is cached for it until the stream works",
        _ => "not cacheable",
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
        result.push(vec![
            Some("no".to_owned()),
            Some("cache_off".to_owned()),
            Some(describe("cache_off").to_owned()),
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
                        "cacheable",
                        Some(ttl.map_or_else(
                            || "until invalidated".to_owned(),
                            |ttl| format!("{ttl:?}"),
                        )),
                    ),
                    Feed::Down => ("no", "replication_down", None),
                    Feed::Bounded(bound) if bound.is_zero() => ("no", "no_change_feed", None),
                    Feed::Bounded(bound) => (
                        "yes",
                        "cacheable",
                        Some(format!(
                            "{:?} (no change feed: --cache-ttl-unreplicated)",
                            ttl.map_or(bound, |ttl| ttl.min(bound))
                        )),
                    ),
                };
            vec![
                Some(cacheable.to_owned()),
                Some(reason.to_owned()),
                Some(describe(reason).to_owned()),
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
            vec![
                Some("no".to_owned()),
                Some("write".to_owned()),
                Some(describe("write").to_owned()),
                Some(database),
                None,
                Some(dependencies::of_write(write, &found)),
                None,
                normalized,
            ]
        }
        other => {
            let reason = other.bypass_reason();
            let detail = describe(reason).to_owned();
            vec![
                Some("no".to_owned()),
                Some(reason.to_owned()),
                Some(detail),
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

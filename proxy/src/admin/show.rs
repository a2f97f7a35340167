//! `SHOW ...`: pgcached's own figures as result sets.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use pgcached_cache::TableId;

use super::command::Show;
use super::frames::{ColumnType, ResultSet};
use super::CommandFailed;
use crate::config::{CacheMode, Config};
use crate::session::SessionContext;
use crate::stats::{Counters, InvalidationSource, QueryKind};

/// Entries listed by `SHOW CACHE`, most hits first.
const CACHE_ROWS: usize = 50;
/// Tables listed by `SHOW TABLES`, most invalidations first.
const TABLE_ROWS: usize = 1000;

/// Answers one `SHOW`.
pub async fn show(what: Show, context: &SessionContext) -> Result<ResultSet, CommandFailed> {
    match what {
        Show::Stats => Ok(stats(context)),
        Show::Cache => cache(context).await,
        Show::Tables => tables(context).await,
        Show::Clients => Ok(clients(context)),
        Show::Replication => Ok(replication(context)),
        Show::SharedCache => Ok(shared_cache(context)),
        Show::Upstream => Ok(super::upstream::show(context)),
        Show::Replicas => Ok(super::replicas::show(context)),
        Show::Config => Ok(config(context)),
        Show::Version => {
            let mut result = ResultSet::new(&[("version", ColumnType::Text)]);
            result.push(vec![Some(format!(
                "pgcached {}",
                env!("CARGO_PKG_VERSION")
            ))]);
            Ok(result)
        }
        Show::Help => Ok(help()),
    }
}

fn text(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

fn seconds_since(time: SystemTime) -> Option<String> {
    let age = SystemTime::now().duration_since(time).unwrap_or_default();
    Some(format!("{:.3}", age.as_secs_f64()))
}

fn help() -> ResultSet {
    let mut result = ResultSet::new(&[("command", ColumnType::Text), ("shows", ColumnType::Text)]);
    for (command, what) in [
        ("SHOW STATS", "totals since start: queries by kind, hits, misses, time saved, invalidations"),
        ("SHOW CACHE", "the cached entries with the most hits: statement without literals, tables, hits, bytes, age"),
        ("SHOW TABLES", "tables cached reads depend on: generation, invalidations, last change"),
        ("SHOW CLIENTS", "open sessions"),
        ("SHOW REPLICATION", "one logical-decoding stream per database: state, what the cache serves meanwhile, lag, problem and what to fix"),
        ("SHOW SHARED CACHE", "the shared tier (--shared-cache): up or down, hits, misses, refusals, errors, what each database's stream recorded"),
        ("SHOW UPSTREAM", "the hosts of --upstream: which one is in use, primary or standby, system identifier and timeline, changes of server"),
        ("SHOW REPLICAS", "the read replicas (--replica): usable or why not, replay position, lag, connections, misses filled, where the others went"),
        ("SHOW CONFIG", "effective settings"),
        ("SHOW VERSION", "pgcached's version"),
        ("EXPLAIN CACHE [DATABASE <db>] <statement>", "whether the statement would be cached, and if not, why"),
        ("INVALIDATE TABLE <table or schema.table>", "drops cached results that read the table, in every database"),
        ("INVALIDATE ALL", "drops every cached result"),
    ] {
        result.push(vec![text(command), text(what)]);
    }
    result
}

fn stats(context: &SessionContext) -> ResultSet {
    let counters: &Counters = &context.metrics.counters;
    let mut result = ResultSet::new(&[("stat", ColumnType::Text), ("value", ColumnType::Float)]);
    let mut row = |name: &str, value: f64| {
        result.push(vec![text(name), text(value)]);
    };
    for kind in QueryKind::ALL {
        row(
            &format!("queries_{}", kind.label()),
            counters.queries(kind) as f64,
        );
    }
    let hits = Counters::get(&counters.hits);
    let misses = Counters::get(&counters.misses);
    row("cache_hits", hits as f64);
    row("cache_misses", misses as f64);
    let ratio = if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    };
    row("cache_hit_ratio", (ratio * 10_000.0).round() / 10_000.0);
    row("cache_hit_bytes", Counters::get(&counters.hit_bytes) as f64);
    row(
        "db_time_saved_seconds",
        Counters::get(&counters.saved_micros) as f64 / 1e6,
    );
    row("cache_fills", Counters::get(&counters.fills) as f64);
    if let Some(shared) = &context.cache {
        row("cache_entries", shared.cache.len() as f64);
        row("cache_bytes", shared.cache.weight_bytes() as f64);
        row("cache_evictions", shared.cache.evictions() as f64);
        row("classify_memo_entries", shared.classifier.len() as f64);
        row("statements_parsed", shared.classifier.parses() as f64);
    }
    for source in InvalidationSource::ALL {
        row(
            &format!("invalidations_{}", source.label()),
            counters.invalidations(source) as f64,
        );
    }
    row(
        "upstream_errors",
        Counters::get(&counters.upstream_errors) as f64,
    );
    row("sessions_total", Counters::get(&counters.sessions) as f64);
    row("clients_open", context.clients.len() as f64);
    row(
        "uptime_seconds",
        (context.console.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    );
    result
}

fn name_of(names: &HashMap<TableId, String>, table: &TableId) -> String {
    names
        .get(table)
        .cloned()
        .unwrap_or_else(|| format!("oid {}", table.oid))
}

async fn cache(context: &SessionContext) -> Result<ResultSet, CommandFailed> {
    let shared = super::cache_of(context)?;
    let mut entries = shared.cache.entries();
    entries.sort_by(|a, b| {
        b.hits
            .load(Ordering::Relaxed)
            .cmp(&a.hits.load(Ordering::Relaxed))
            .then_with(|| b.response.len().cmp(&a.response.len()))
    });
    entries.truncate(CACHE_ROWS);
    let all_tables: Vec<TableId> = entries
        .iter()
        .flat_map(|e| e.tables.iter().cloned())
        .collect();
    let names = shared.classifier.catalog().names_of(&all_tables).await;
    let mut result = ResultSet::new(&[
        ("query", ColumnType::Text),
        ("database", ColumnType::Text),
        ("tables", ColumnType::Text),
        ("hits", ColumnType::Int),
        ("bytes", ColumnType::Int),
        ("age_seconds", ColumnType::Float),
        ("cost_ms", ColumnType::Float),
        ("expires_in_seconds", ColumnType::Float),
    ]);
    let now = Instant::now();
    for entry in entries {
        let mut tables: Vec<String> = entry.tables.iter().map(|t| name_of(&names, t)).collect();
        tables.sort();
        tables.dedup();
        let database = entry.tables.first().map(|t| t.database.to_string());
        result.push(vec![
            text(&entry.label),
            database,
            text(tables.join(", ")),
            text(entry.hits.load(Ordering::Relaxed)),
            text(entry.response.len() + entry.meta.len()),
            text(format!(
                "{:.3}",
                now.saturating_duration_since(entry.filled_at).as_secs_f64()
            )),
            text(format!("{:.3}", entry.cost.as_secs_f64() * 1000.0)),
            entry
                .expires_at
                .map(|at| format!("{:.3}", at.saturating_duration_since(now).as_secs_f64())),
        ]);
    }
    Ok(result)
}

async fn tables(context: &SessionContext) -> Result<ResultSet, CommandFailed> {
    let shared = super::cache_of(context)?;
    let activity = shared.metrics.tables.busiest();
    let generations: HashMap<TableId, u64> =
        shared.cache.generations().tables().into_iter().collect();
    let mut rows: Vec<TableId> = activity.iter().map(|(t, _)| t.clone()).collect();
    let mut quiet: Vec<TableId> = generations
        .keys()
        .filter(|t| shared.metrics.tables.get(t).is_none())
        .cloned()
        .collect();
    quiet.sort();
    rows.extend(quiet);
    rows.truncate(TABLE_ROWS);
    let names = shared.classifier.catalog().names_of(&rows).await;
    let mut result = ResultSet::new(&[
        ("database", ColumnType::Text),
        ("table", ColumnType::Text),
        ("oid", ColumnType::Int),
        ("generation", ColumnType::Int),
        ("invalidations", ColumnType::Int),
        ("last_change_seconds_ago", ColumnType::Float),
    ]);
    for table in rows {
        let activity = shared.metrics.tables.get(&table);
        result.push(vec![
            text(&table.database),
            text(name_of(&names, &table)),
            text(table.oid),
            text(generations.get(&table).copied().unwrap_or(0)),
            text(activity.map_or(0, |a| a.invalidations)),
            activity.and_then(|a| seconds_since(a.last_change)),
        ]);
    }
    Ok(result)
}

fn clients(context: &SessionContext) -> ResultSet {
    let mut result = ResultSet::new(&[
        ("id", ColumnType::Int),
        ("user", ColumnType::Text),
        ("database", ColumnType::Text),
        ("application_name", ColumnType::Text),
        ("address", ColumnType::Text),
        ("tls", ColumnType::Text),
        ("connected_seconds", ColumnType::Float),
        ("queries", ColumnType::Int),
        ("cache_hits", ColumnType::Int),
    ]);
    for client in context.clients.list() {
        result.push(vec![
            text(client.id),
            text(&client.user),
            text(&client.database),
            text(&client.application),
            text(client.peer),
            text(if client.tls { "yes" } else { "no" }),
            seconds_since(client.connected_at),
            text(client.queries.load(Ordering::Relaxed)),
            text(client.hits.load(Ordering::Relaxed)),
        ]);
    }
    result
}

fn replication(context: &SessionContext) -> ResultSet {
    let mut result = ResultSet::new(&[
        ("database", ColumnType::Text),
        ("mode", ColumnType::Text),
        ("decoding", ColumnType::Text),
        ("state", ColumnType::Text),
        ("cache", ColumnType::Text),
        ("lag_ms", ColumnType::Float),
        ("last_change_seconds_ago", ColumnType::Float),
        ("transactions", ColumnType::Int),
        ("reconnects", ColumnType::Int),
        ("problem", ColumnType::Text),
        ("detail", ColumnType::Text),
    ]);
    let Some(shared) = &context.cache else {
        result
            .notices
            .push("caching is off (--cache off): no stream is needed".to_owned());
        return result;
    };
    let mode = format!("{:?}", shared.replication.mode()).to_lowercase();
    let decoding = shared.replication.decoding().describe();
    for stream in shared.replication.status() {
        result.push(vec![
            text(&stream.database),
            text(&mode),
            text(&decoding),
            text(stream.state),
            text(&stream.serving),
            stream.lag_seconds.map(|lag| format!("{:.3}", lag * 1000.0)),
            stream.last_change.and_then(seconds_since),
            text(stream.transactions),
            text(stream.reconnects),
            stream.problem.map(str::to_owned),
            stream.detail.clone(),
        ]);
    }
    if result.rows.is_empty() {
        result
            .notices
            .push("no database has been used through pgcached yet".to_owned());
    }
    result
}

fn shared_cache(context: &SessionContext) -> ResultSet {
    let mut result = ResultSet::new(&[("name", ColumnType::Text), ("value", ColumnType::Text)]);
    let Some(shared) = context.cache.as_ref().and_then(|c| c.shared.as_ref()) else {
        result
            .notices
            .push("no shared cache (--shared-cache is not set)".to_owned());
        return result;
    };
    let report = shared.report();
    let mut row = |name: &str, value: Option<String>| result.push(vec![text(name), value]);
    row("url", text(&report.url));
    row("state", text(report.health.state));
    row("state_seconds", report.health.since.and_then(seconds_since));
    row("outages", text(report.health.outages));
    row("last_error", report.health.last_error.clone());
    row("hits", text(report.hits));
    row("misses", text(report.misses));
    row("refused", text(report.refused));
    for (reason, count) in &report.reasons {
        row(&format!("refused {reason}"), text(count));
    }
    row("errors", text(report.errors));
    row("written", text(report.written));
    for (database, live, since, recorded, floor) in &report.databases {
        let lsn = |p: u64| format!("{:X}/{:X}", p >> 32, p & 0xffff_ffff);
        row(
            &format!("database {database}"),
            Some(format!(
                "stream {}, from {}, recorded up to {}, floor {floor}",
                if *live { "live" } else { "down" },
                lsn(*since),
                lsn(*recorded)
            )),
        );
    }
    result
}

fn config(context: &SessionContext) -> ResultSet {
    let mut result = ResultSet::new(&[("setting", ColumnType::Text), ("value", ColumnType::Text)]);
    for (name, value) in &context.console.settings {
        result.push(vec![text(name), text(value)]);
    }
    result
}

/// The effective settings as `SHOW CONFIG` lists them; the upstream password is never shown.
pub fn settings(config: &Config) -> Vec<(&'static str, String)> {
    let upstream = &config.upstream;
    let duration = |d: std::time::Duration| format!("{d:?}");
    let list = |items: &[String]| {
        if items.is_empty() {
            "(none)".to_owned()
        } else {
            items.join(",")
        }
    };
    let tables = |items: &[crate::sql::names::RelationName]| {
        list(&items.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    vec![
        ("listen", config.listen.to_string()),
        ("upstream", upstream.address()),
        (
            "upstream_user",
            upstream.user.clone().unwrap_or_else(|| "(none)".to_owned()),
        ),
        (
            "upstream_password",
            if upstream.password.is_some() {
                "(set)"
            } else {
                "(none)"
            }
            .to_owned(),
        ),
        (
            "upstream_database",
            upstream
                .database
                .clone()
                .unwrap_or_else(|| "(none)".to_owned()),
        ),
        ("upstream_sslmode", upstream.sslmode.as_str().to_owned()),
        (
            "upstream_target_session_attrs",
            upstream.target_session_attrs.as_str().to_owned(),
        ),
        ("metrics_listen", config.metrics_listen.to_string()),
        (
            "tls",
            if config.tls_cert.is_some() {
                "on"
            } else {
                "off"
            }
            .to_owned(),
        ),
        (
            "log_format",
            format!("{:?}", config.log_format).to_lowercase(),
        ),
        ("max_client_conn", config.max_client_conn.to_string()),
        ("shutdown_timeout", duration(config.shutdown_timeout)),
        ("startup_timeout", duration(config.startup_timeout)),
        (
            "cache",
            match config.cache.mode {
                CacheMode::On => "on",
                CacheMode::Off => "off",
            }
            .to_owned(),
        ),
        ("cache_size", config.cache.size.to_string()),
        ("cache_max_entry", config.cache.max_entry.to_string()),
        (
            "cache_ttl",
            config.cache.ttl.map_or_else(|| "none".to_owned(), duration),
        ),
        ("cache_allow_tables", tables(&config.cache.allow_tables)),
        ("cache_deny_tables", tables(&config.cache.deny_tables)),
        (
            "replication",
            format!("{:?}", config.cache.replication).to_lowercase(),
        ),
        (
            "publication",
            config
                .cache
                .publication
                .clone()
                .unwrap_or_else(|| "(none: test_decoding)".to_owned()),
        ),
        (
            "cache_ttl_unreplicated",
            duration(config.cache.ttl_unreplicated),
        ),
        ("admin_users", list(&config.admin_users)),
        (
            "shared_cache",
            config
                .shared_cache
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), |s| s.url.redacted()),
        ),
        (
            "shared_cache_ttl",
            config
                .shared_cache
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| duration(s.ttl)),
        ),
        (
            "shared_cache_max_entry",
            config
                .shared_cache
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| s.max_entry.to_string()),
        ),
        (
            "shared_cache_timeout",
            config
                .shared_cache
                .as_ref()
                .map_or_else(|| "-".to_owned(), |s| duration(s.timeout)),
        ),
        (
            "replicas",
            match config.replicas.urls.is_empty() {
                true => "(none)".to_owned(),
                false => config
                    .replicas
                    .urls
                    .iter()
                    .map(|url| url.address())
                    .collect::<Vec<_>>()
                    .join(","),
            },
        ),
        ("replica_pool_size", config.replicas.pool_size.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn settings_show_libpq_spellings_and_never_the_password() {
        let cli = crate::config::Cli::parse_from([
            "pgcached",
            "--upstream",
            "postgres://pgcached:hunter2@db:5432/app?sslmode=verify-full&sslrootcert=system",
            "--cache-deny-tables",
            "sessions,audit.log",
        ]);
        let config = Config::resolve(&cli, &crate::config::FileConfig::default()).expect("config");
        let settings: std::collections::HashMap<&str, String> =
            settings(&config).into_iter().collect();
        assert_eq!(settings["upstream_sslmode"], "verify-full");
        assert_eq!(settings["upstream_password"], "(set)");
        assert_eq!(settings["upstream"], "db:5432");
        assert_eq!(settings["cache_deny_tables"], "sessions,audit.log");
        assert_eq!(settings["admin_users"], "(none)");
        assert!(settings.values().all(|v| !v.contains("hunter2")));
    }
}

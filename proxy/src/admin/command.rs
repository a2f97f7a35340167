//! The admin console's command language: a handful of statements in the manner of PgBouncer's.
//!
//! ```text
//! SHOW STATS | CACHE | TABLES | CLIENTS | REPLICATION | SHARED CACHE | UPSTREAM | REPLICAS | CONFIG | VERSION | HELP
//! EXPLAIN CACHE [DATABASE <name>] <statement>
//! INVALIDATE TABLE <table or schema.table>
//! INVALIDATE ALL
//! ```
//!
//! Keywords are case-insensitive; a trailing semicolon is allowed.

/// What `SHOW` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Totals since start.
    Stats,
    /// The entries with the most hits.
    Cache,
    /// Tables with their generation and invalidations.
    Tables,
    /// Open sessions.
    Clients,
    /// Replication streams.
    Replication,
    /// The shared tier.
    SharedCache,
    /// The upstream hosts.
    Upstream,
    /// The read replicas.
    Replicas,
    /// Effective settings.
    Config,
    /// pgcached's version.
    Version,
    /// The commands.
    Help,
}

use crate::sql::names::{parse_relation, RelationName};

/// A parsed console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW ...`.
    Show(Show),
    /// `EXPLAIN CACHE [DATABASE db] <sql>`.
    ExplainCache {
        /// The database to judge it in; the console's default when `None`.
        database: Option<String>,
        /// The statement.
        sql: String,
    },
    /// `INVALIDATE TABLE [schema.]table`.
    InvalidateTable(RelationName),
    /// `INVALIDATE ALL`.
    InvalidateAll,
    /// Nothing but whitespace and semicolons.
    Empty,
}

/// A command the console does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

/// Parses one command.
pub fn parse(text: &str) -> Result<Command, CommandError> {
    let text = text
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    let (first, rest) = next_word(text);
    match first.to_ascii_uppercase().as_str() {
        "SHOW" => parse_show(rest),
        "EXPLAIN" => {
            let (second, rest) = next_word(rest);
            if !second.eq_ignore_ascii_case("CACHE") {
                return Err(unknown(text));
            }
            parse_explain(rest)
        }
        "INVALIDATE" => {
            let (second, rest) = next_word(rest);
            match second.to_ascii_uppercase().as_str() {
                "ALL" if rest.is_empty() => Ok(Command::InvalidateAll),
                "TABLE" => parse_table_name(rest).map(Command::InvalidateTable),
                _ => Err(CommandError(
                    "usage: INVALIDATE TABLE <table or schema.table> | INVALIDATE ALL".to_owned(),
                )),
            }
        }
        _ => Err(unknown(text)),
    }
}

fn parse_show(rest: &str) -> Result<Command, CommandError> {
    let (what, extra) = next_word(rest);
    if what.eq_ignore_ascii_case("SHARED") {
        let (second, extra) = next_word(extra);
        if second.eq_ignore_ascii_case("CACHE") && extra.is_empty() {
            return Ok(Command::Show(Show::SharedCache));
        }
        return Err(unknown(rest));
    }
    if !extra.is_empty() {
        return Err(unknown(rest));
    }
    let show = match what.to_ascii_uppercase().as_str() {
        "STATS" => Show::Stats,
        "CACHE" => Show::Cache,
        "TABLES" => Show::Tables,
        "CLIENTS" => Show::Clients,
        "REPLICATION" => Show::Replication,
        "UPSTREAM" => Show::Upstream,
        "REPLICAS" => Show::Replicas,
        "CONFIG" => Show::Config,
        "VERSION" => Show::Version,
        "HELP" | "" => Show::Help,
        _ => {
            return Err(CommandError(format!(
                "unknown SHOW {what:?}: try SHOW HELP"
            )))
        }
    };
    Ok(Command::Show(show))
}

fn parse_explain(rest: &str) -> Result<Command, CommandError> {
    let (word, after) = next_word(rest);
    let (database, sql) = if word.eq_ignore_ascii_case("DATABASE") {
        let (name, sql) = next_word(after);
        if name.is_empty() {
            return Err(CommandError(
                "usage: EXPLAIN CACHE [DATABASE <name>] <statement>".to_owned(),
            ));
        }
        (Some(unquote(name)), sql)
    } else {
        (None, rest)
    };
    if sql.trim().is_empty() {
        return Err(CommandError(
            "usage: EXPLAIN CACHE [DATABASE <name>] <statement>".to_owned(),
        ));
    }
    Ok(Command::ExplainCache {
        database,
        sql: sql.trim().to_owned(),
    })
}

fn parse_table_name(rest: &str) -> Result<RelationName, CommandError> {
    if rest.trim().is_empty() {
        return Err(CommandError(
            "usage: INVALIDATE TABLE <table or schema.table>".to_owned(),
        ));
    }
    parse_relation(rest).ok_or_else(|| {
        CommandError(format!(
            "invalid table name {:?}: use table or schema.table (quote mixed case: \"Name\")",
            rest.trim()
        ))
    })
}

/// `"Name"` → `Name`; an unquoted name is folded to lower case, as PostgreSQL folds it.
fn unquote(word: &str) -> String {
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => word.to_lowercase(),
    }
}

/// The first whitespace-separated word and the trimmed rest.
fn next_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

fn unknown(text: &str) -> CommandError {
    let shown: String = text.chars().take(60).collect();
    CommandError(format!(
        "unknown admin console command {shown:?}: try SHOW HELP"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively() {
        assert_eq!(parse("show stats;"), Ok(Command::Show(Show::Stats)));
        assert_eq!(parse("  SHOW   Cache  ;; "), Ok(Command::Show(Show::Cache)));
        assert_eq!(parse("SHOW"), Ok(Command::Show(Show::Help)));
        assert_eq!(parse("show upstream"), Ok(Command::Show(Show::Upstream)));
        assert_eq!(parse("SHOW replicas;"), Ok(Command::Show(Show::Replicas)));
        assert_eq!(
            parse("show shared  cache;"),
            Ok(Command::Show(Show::SharedCache))
        );
        assert!(parse("SHOW SHARED").is_err());
        assert!(parse("SHOW SHARED CACHE NOW").is_err());
        assert_eq!(parse(";"), Ok(Command::Empty));
        assert_eq!(parse("invalidate all"), Ok(Command::InvalidateAll));
        assert_eq!(
            parse("INVALIDATE TABLE Public.Orders"),
            Ok(Command::InvalidateTable(RelationName {
                schema: Some("public".to_owned()),
                name: "orders".to_owned()
            }))
        );
        assert_eq!(
            parse("INVALIDATE TABLE \"Mixed Case\""),
            Ok(Command::InvalidateTable(RelationName {
                schema: None,
                name: "Mixed Case".to_owned()
            }))
        );
        assert_eq!(
            parse("INVALIDATE TABLE shop.\"Odd \"\"Name\"\"\""),
            Ok(Command::InvalidateTable(RelationName {
                schema: Some("shop".to_owned()),
                name: "Odd \"Name\"".to_owned()
            }))
        );
    }

    #[test]
    fn explain_keeps_the_statement_text() {
        assert_eq!(
            parse("EXPLAIN CACHE SELECT * FROM t WHERE a = 'X';"),
            Ok(Command::ExplainCache {
                database: None,
                sql: "SELECT * FROM t WHERE a = 'X'".to_owned()
            })
        );
        assert_eq!(
            parse("explain cache database app select 1"),
            Ok(Command::ExplainCache {
                database: Some("app".to_owned()),
                sql: "select 1".to_owned()
            })
        );
    }

    #[test]
    fn mistakes_are_explained() {
        for bad in [
            "SELECT 1",
            "SHOW TABLE",
            "SHOW STATS now",
            "EXPLAIN SELECT 1",
            "EXPLAIN CACHE",
            "EXPLAIN CACHE DATABASE",
            "INVALIDATE",
            "INVALIDATE TABLE",
            "INVALIDATE TABLE a.b.c",
            "INVALIDATE TABLE a b",
            "INVALIDATE ALL now",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}

//! What a statement does to transaction isolation: which level a block starts at, and which
//! level the session's next transactions get.
//!
//! A cached result is what a statement starting now would see in READ COMMITTED, where every
//! statement takes a new snapshot. In REPEATABLE READ and SERIALIZABLE the snapshot is taken
//! once and must hold, so the cache path must know the level of every statement it serves:
//! `BEGIN ISOLATION LEVEL ...`, `SET TRANSACTION ...`, `SET SESSION CHARACTERISTICS AS
//! TRANSACTION ...`, `SET default_transaction_isolation`, `RESET`, `DISCARD ALL`. A value it
//! cannot read is [`IsolationSetting::Unknown`]: the cache path then serves nothing.

use sqlparser::ast::{
    ContextModifier, DiscardObject, Expr, ObjectName, Reset, Set, Statement,
    TransactionIsolationLevel, TransactionMode,
};

/// A transaction isolation level as PostgreSQL runs it (READ UNCOMMITTED runs as READ
/// COMMITTED). Ordered from the weakest to the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isolation {
    /// Each statement takes its own snapshot.
    ReadCommitted,
    /// One snapshot for the whole transaction.
    RepeatableRead,
    /// One snapshot, and serializable execution.
    Serializable,
}

impl Isolation {
    /// A level as `SET` or `SHOW` spell it (`read committed`, `'REPEATABLE READ'`, ...).
    pub fn parse(text: &str) -> Option<Isolation> {
        let text = text.trim().trim_matches(|c| c == '\'' || c == '"').trim();
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == '\\')
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["read", "committed"] | ["read", "uncommitted"] => Some(Isolation::ReadCommitted),
            ["repeatable", "read"] => Some(Isolation::RepeatableRead),
            ["serializable"] => Some(Isolation::Serializable),
            _ => None,
        }
    }

    fn of(level: &TransactionIsolationLevel) -> Option<Isolation> {
        match level {
            TransactionIsolationLevel::ReadUncommitted
            | TransactionIsolationLevel::ReadCommitted => Some(Isolation::ReadCommitted),
            TransactionIsolationLevel::RepeatableRead => Some(Isolation::RepeatableRead),
            TransactionIsolationLevel::Serializable => Some(Isolation::Serializable),
            TransactionIsolationLevel::Snapshot => None,
        }
    }
}

/// What a transaction-control statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStep {
    /// `BEGIN` / `START TRANSACTION`, with the level it names (one PostgreSQL does not have
    /// counts as SERIALIZABLE: the statement fails, or runs at a level not modelled).
    Begin(Option<Isolation>),
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`; `chain` when `AND CHAIN` may start the next
    /// block at once (with the same level).
    End {
        /// `AND [NO] CHAIN` was written.
        chain: bool,
    },
    /// `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`: the block and its level go on.
    Savepoint,
}

/// What a statement that changes session state does to isolation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationSetting {
    /// Nothing (`SET search_path`, `SET ROLE`, ...).
    Untouched,
    /// The level of the session's next transactions: `Some` level set, or `None` back to
    /// the session's start (`RESET`, `SET ... TO DEFAULT`, `RESET ALL`, `DISCARD ALL`).
    Default(Option<Isolation>),
    /// The current transaction's level (`SET TRANSACTION ISOLATION LEVEL`,
    /// `SET transaction_isolation`).
    Current(Isolation),
    /// Changes isolation in a way not read here.
    Unknown,
}

/// The setting that holds the level of the session's next transactions.
pub const DEFAULT_SETTING: &str = "default_transaction_isolation";
/// The setting that holds the current transaction's level.
const CURRENT_SETTING: &str = "transaction_isolation";

/// The transaction step of a transaction-control statement.
pub(crate) fn step(statement: &Statement) -> Option<TransactionStep> {
    Some(match statement {
        Statement::StartTransaction { modes, .. } => TransactionStep::Begin(level_of(modes)),
        Statement::Commit { chain, .. } => TransactionStep::End { chain: *chain },
        Statement::Rollback {
            savepoint: Some(_), ..
        }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => TransactionStep::Savepoint,
        Statement::Rollback { chain, .. } => TransactionStep::End { chain: *chain },
        _ => return None,
    })
}

/// What a session-state statement does to isolation.
pub(crate) fn setting(statement: &Statement) -> IsolationSetting {
    match statement {
        Statement::Set(Set::SetTransaction {
            modes,
            snapshot,
            session,
        }) => {
            let named = modes.iter().find_map(|mode| match mode {
                TransactionMode::IsolationLevel(level) => Some(Isolation::of(level)),
                TransactionMode::AccessMode(_) => None,
            });
            match (named, *session) {
                (Some(None), _) => IsolationSetting::Unknown,
                (Some(Some(level)), true) => IsolationSetting::Default(Some(level)),
                (None, true) => IsolationSetting::Untouched,
                // SET TRANSACTION SNAPSHOT needs REPEATABLE READ or stronger.
                (Some(Some(level)), false) if snapshot.is_some() => {
                    IsolationSetting::Current(level.max(Isolation::RepeatableRead))
                }
                (Some(Some(level)), false) => IsolationSetting::Current(level),
                (None, false) if snapshot.is_some() => {
                    IsolationSetting::Current(Isolation::RepeatableRead)
                }
                (None, false) => IsolationSetting::Untouched,
            }
        }
        Statement::Set(Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        }) => assignment(*scope, variable, values),
        Statement::Set(other) => {
            // Other forms (several variables at once, ...): only their text can tell.
            if mentions_isolation(&other.to_string()) {
                IsolationSetting::Unknown
            } else {
                IsolationSetting::Untouched
            }
        }
        Statement::Reset(reset) => match &reset.reset {
            Reset::ALL => IsolationSetting::Default(None),
            Reset::SessionAuthorization => IsolationSetting::Untouched,
            Reset::ConfigurationParameter(name) => match setting_name(name).as_str() {
                DEFAULT_SETTING => IsolationSetting::Default(None),
                CURRENT_SETTING => IsolationSetting::Unknown,
                _ => IsolationSetting::Untouched,
            },
        },
        Statement::Discard {
            object_type: DiscardObject::ALL,
        } => IsolationSetting::Default(None),
        _ => IsolationSetting::Untouched,
    }
}

/// `SET [SESSION | LOCAL] name = value`.
fn assignment(
    scope: Option<ContextModifier>,
    variable: &ObjectName,
    values: &[Expr],
) -> IsolationSetting {
    let name = setting_name(variable);
    if name != DEFAULT_SETTING && name != CURRENT_SETTING {
        return IsolationSetting::Untouched;
    }
    let text = values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let value = if text.eq_ignore_ascii_case("default") {
        None
    } else {
        match Isolation::parse(&text) {
            Some(level) => Some(level),
            None => return IsolationSetting::Unknown,
        }
    };
    match (name.as_str(), scope, value) {
        // SET LOCAL default_transaction_isolation lasts until the block ends and starts no
        // block: no later transaction runs at it.
        (DEFAULT_SETTING, Some(ContextModifier::Local), _) => IsolationSetting::Untouched,
        (DEFAULT_SETTING, _, value) => IsolationSetting::Default(value),
        (_, _, Some(level)) => IsolationSetting::Current(level),
        (_, _, None) => IsolationSetting::Unknown,
    }
}

fn setting_name(name: &ObjectName) -> String {
    name.to_string().trim_matches('"').to_ascii_lowercase()
}

/// The level the transaction modes name; one PostgreSQL does not have counts as the strongest.
fn level_of(modes: &[TransactionMode]) -> Option<Isolation> {
    modes.iter().find_map(|mode| match mode {
        TransactionMode::IsolationLevel(level) => {
            Some(Isolation::of(level).unwrap_or(Isolation::Serializable))
        }
        TransactionMode::AccessMode(_) => None,
    })
}

/// True when a text may change isolation in a way only running it would show: it names
/// isolation, the session's transaction characteristics, `set_config`, or resets settings.
pub fn mentions_isolation(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "isolation",
        "characteristics",
        "set_config",
        "reset",
        "discard",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// The command tag PostgreSQL completes a transaction-control statement with, as a cache path
/// answering it locally must: `BEGIN` (for `BEGIN`), `START TRANSACTION`, `COMMIT` (for
/// `COMMIT` and `END`) or `ROLLBACK` (for `ROLLBACK` and `ABORT`). Read from the statement's
/// first word, after comments; `None` for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionTag {
    /// `BEGIN`.
    Begin,
    /// `START TRANSACTION`.
    StartTransaction,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
}

impl CompletionTag {
    /// The tag of `sql`'s transaction-control statement, by its first word.
    pub fn of(sql: &[u8]) -> Option<CompletionTag> {
        let word = first_word(sql)?;
        let is = |name: &str| word.eq_ignore_ascii_case(name.as_bytes());
        Some(if is("begin") {
            CompletionTag::Begin
        } else if is("start") {
            CompletionTag::StartTransaction
        } else if is("commit") || is("end") {
            CompletionTag::Commit
        } else if is("rollback") || is("abort") {
            CompletionTag::Rollback
        } else {
            return None;
        })
    }
}

/// The first word of `sql`, after whitespace and comments (`--` to the end of the line, and
/// `/* ... */`, which nest in PostgreSQL).
fn first_word(sql: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        if rest[0].is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with(b"--") {
            i += rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        } else if rest.starts_with(b"/*") {
            // An unterminated comment reads to the end: no word.
            i = super::text::block_comment_end(sql, i);
        } else {
            let len = rest
                .iter()
                .position(|b| !b.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            return (len > 0).then(|| &rest[..len]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn statement(sql: &str) -> Statement {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql);
        assert_eq!(statements.len(), 1, "{sql}");
        statements.remove(0)
    }

    #[test]
    fn levels_are_read_as_postgresql_spells_them() {
        assert_eq!(
            Isolation::parse("'read committed'"),
            Some(Isolation::ReadCommitted)
        );
        assert_eq!(
            Isolation::parse("READ UNCOMMITTED"),
            Some(Isolation::ReadCommitted)
        );
        assert_eq!(
            Isolation::parse("repeatable\\ read"),
            Some(Isolation::RepeatableRead)
        );
        assert_eq!(
            Isolation::parse(" Serializable "),
            Some(Isolation::Serializable)
        );
        assert_eq!(Isolation::parse("snapshot"), None);
        assert!(Isolation::ReadCommitted < Isolation::Serializable);
    }

    #[test]
    fn transaction_steps() {
        for (sql, expected) in [
            ("BEGIN", TransactionStep::Begin(None)),
            ("START TRANSACTION", TransactionStep::Begin(None)),
            (
                "BEGIN ISOLATION LEVEL REPEATABLE READ",
                TransactionStep::Begin(Some(Isolation::RepeatableRead)),
            ),
            (
                "START TRANSACTION READ ONLY, ISOLATION LEVEL SERIALIZABLE",
                TransactionStep::Begin(Some(Isolation::Serializable)),
            ),
            (
                "BEGIN TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
                TransactionStep::Begin(Some(Isolation::ReadCommitted)),
            ),
            ("COMMIT", TransactionStep::End { chain: false }),
            ("END", TransactionStep::End { chain: false }),
            ("ROLLBACK", TransactionStep::End { chain: false }),
            ("COMMIT AND CHAIN", TransactionStep::End { chain: true }),
            ("SAVEPOINT a", TransactionStep::Savepoint),
            ("RELEASE SAVEPOINT a", TransactionStep::Savepoint),
            ("ROLLBACK TO SAVEPOINT a", TransactionStep::Savepoint),
        ] {
            assert_eq!(step(&statement(sql)), Some(expected), "{sql}");
        }
    }

    #[test]
    fn settings() {
        use IsolationSetting::*;
        for (sql, expected) in [
            (
                "SET default_transaction_isolation = 'serializable'",
                Default(Some(Isolation::Serializable)),
            ),
            (
                "SET SESSION default_transaction_isolation TO 'repeatable read'",
                Default(Some(Isolation::RepeatableRead)),
            ),
            (
                "SET default_transaction_isolation TO DEFAULT",
                Default(None),
            ),
            (
                "SET LOCAL default_transaction_isolation = 'serializable'",
                Untouched,
            ),
            (
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
                Default(Some(Isolation::Serializable)),
            ),
            (
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                Current(Isolation::RepeatableRead),
            ),
            (
                "SET transaction_isolation = 'serializable'",
                Current(Isolation::Serializable),
            ),
            ("SET TRANSACTION READ ONLY", Untouched),
            ("RESET default_transaction_isolation", Default(None)),
            ("RESET ALL", Default(None)),
            ("DISCARD ALL", Default(None)),
            ("DISCARD PLANS", Untouched),
            ("SET search_path = app", Untouched),
            ("SET default_transaction_isolation = 'bogus'", Unknown),
        ] {
            assert_eq!(setting(&statement(sql)), expected, "{sql}");
        }
    }

    #[test]
    fn texts_that_may_change_isolation() {
        assert!(mentions_isolation(
            "DO $$ BEGIN PERFORM set_config('x', 'y', false); END $$"
        ));
        assert!(mentions_isolation("SET a = 1; RESET ALL"));
        assert!(!mentions_isolation("SELECT 1; SELECT 2"));
    }

    #[test]
    fn completion_tags_follow_the_first_word() {
        for (sql, tag) in [
            ("BEGIN", Some(CompletionTag::Begin)),
            (
                "  begin isolation level read committed",
                Some(CompletionTag::Begin),
            ),
            (
                "/* a /* nested */ comment */ BEGIN",
                Some(CompletionTag::Begin),
            ),
            (
                "-- hello\nstart transaction",
                Some(CompletionTag::StartTransaction),
            ),
            ("END", Some(CompletionTag::Commit)),
            ("commit;", Some(CompletionTag::Commit)),
            ("ABORT", Some(CompletionTag::Rollback)),
            ("rollback", Some(CompletionTag::Rollback)),
            ("SELECT 1", None),
            ("/* unterminated", None),
            ("", None),
        ] {
            assert_eq!(CompletionTag::of(sql.as_bytes()), tag, "{sql}");
        }
    }
}

//! Syntactic analysis of one SQL text: what kind of statement it is and, for a read, what it
//! depends on. It never consults the server; the catalog has the final word on reads
//! ([`crate::catalog`]). Anything not understood comes out as not cacheable.
//!
//! Layout:
//! - this file: [`analyze`] and the statement kinds.
//! - [`read`]: the dependencies of a read (relations, functions) and syntax that forbids caching.
//! - [`names`]: identifiers folded as PostgreSQL folds them.
//! - [`pins`]: the rows a read pins by equality on columns.
//! - [`write`]: what a write changes: its table, pinned rows, set columns, inserted rows.
//! - [`shape`]: a text with its literals replaced by parameters (a lexer pass, no parse).
//! - [`text`]: `pgcached:` hints in comments, and the text with its literals removed.
//! - [`transaction`]: what a statement does to transaction isolation.

pub mod catalog_change;
pub mod database_ddl;
pub mod names;
pub mod pins;
pub mod read;
pub mod shape;
pub mod text;
pub mod transaction;
pub mod write;

use crate::bypass::BypassReason;

use sqlparser::ast::{ObjectName, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use names::{FunctionName, RelationName};
pub use read::ReadDeps;
pub use transaction::{CompletionTag, Isolation, IsolationSetting, TransactionStep};

/// Nesting depth at which parsing gives up (and the statement is relayed uncached).
const RECURSION_LIMIT: usize = 48;

/// The result of [`analyze`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// The statement's kind.
    pub kind: StatementKind,
}

/// What kind of statement a text holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// A single SELECT / VALUES / TABLE query that may be cached if the catalog agrees.
    Read(ReadDeps),
    /// A read that is never cached, with the reason.
    UncacheableRead(BypassReason),
    /// Changes session state (SET, RESET, SET ROLE, SET SESSION AUTHORIZATION, DISCARD, LOAD),
    /// with what it does to transaction isolation.
    SessionState(IsolationSetting),
    /// Creates temporary objects.
    CreatesTempObjects,
    /// Transaction control.
    TransactionControl(TransactionStep),
    /// Writes data or changes the schema; for INSERT, UPDATE and DELETE, what the text tells.
    Write(write::WriteInfo),
    /// Anything else that parses.
    Other,
    /// sqlparser could not parse it.
    Unparsable,
}

/// Analyzes one SQL text.
pub fn analyze(sql: &str) -> Analysis {
    let dialect = PostgreSqlDialect {};
    let parsed = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements());
    let kind = match parsed {
        Err(_) => StatementKind::Unparsable,
        Ok(statements) => match statements.as_slice() {
            [] => StatementKind::UncacheableRead(BypassReason::Empty),
            [statement] => kind_of(statement),
            _ => StatementKind::UncacheableRead(BypassReason::MultiStatement),
        },
    };
    Analysis { kind }
}

fn is_temp_schema(name: &ObjectName) -> bool {
    matches!(names::split(name), Some((Some(schema), _)) if schema == "pg_temp")
}

fn kind_of(statement: &Statement) -> StatementKind {
    match statement {
        Statement::Query(query) => match read::dependencies(query) {
            Ok(deps) => StatementKind::Read(deps),
            Err(reason) => StatementKind::UncacheableRead(reason),
        },
        Statement::Set(_)
        | Statement::Reset { .. }
        | Statement::Discard { .. }
        | Statement::Load { .. } => StatementKind::SessionState(transaction::setting(statement)),
        // `COMMIT AND CHAIN` makes the block's writes visible to everyone while its
        // ReadyForQuery still says "in a block" (a new one began, at the same level): the writes
        // must take effect in the cache at its acknowledgement, so it counts as a write whose
        // reach (the block's) is not told here. As a write it changes no transaction state, so
        // the chained block keeps the level it had.
        Statement::Commit { chain: true, .. } => StatementKind::Write(write::WriteInfo::default()),
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => match transaction::step(statement) {
            Some(step) => StatementKind::TransactionControl(step),
            None => StatementKind::Other,
        },
        Statement::CreateTable(table) if table.temporary || is_temp_schema(&table.name) => {
            StatementKind::CreatesTempObjects
        }
        Statement::CreateView(view) if view.temporary || is_temp_schema(&view.name) => {
            StatementKind::CreatesTempObjects
        }
        Statement::CreateSequence {
            temporary, name, ..
        } if *temporary || is_temp_schema(name) => StatementKind::CreatesTempObjects,
        Statement::Copy { to: true, .. } => StatementKind::UncacheableRead(BypassReason::CopyTo),
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => {
            StatementKind::UncacheableRead(BypassReason::Show)
        }
        Statement::Explain { analyze: false, .. } | Statement::ExplainTable { .. } => {
            StatementKind::UncacheableRead(BypassReason::Explain)
        }
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } | Statement::NOTIFY { .. } => {
            StatementKind::UncacheableRead(BypassReason::ListenNotify)
        }
        Statement::Insert { .. } | Statement::Update { .. } | Statement::Delete { .. } => {
            StatementKind::Write(write::info(statement))
        }
        Statement::Merge { .. }
        | Statement::Truncate { .. }
        | Statement::Copy { .. }
        | Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateIndex(_)
        | Statement::CreateSequence { .. }
        | Statement::CreatePolicy { .. }
        | Statement::CreateRule { .. }
        | Statement::CreateTrigger { .. }
        | Statement::AlterTable { .. }
        | Statement::AlterView { .. }
        | Statement::AlterPolicy { .. }
        | Statement::AlterRole { .. }
        | Statement::Drop { .. }
        | Statement::DropPolicy { .. }
        | Statement::DropRule { .. }
        | Statement::DropTrigger { .. }
        | Statement::Grant { .. }
        | Statement::Revoke { .. }
        | Statement::GrantRole { .. }
        | Statement::RevokeRole { .. }
        | Statement::RenameTable { .. }
        | Statement::RefreshMaterializedView { .. }
        | Statement::Comment { .. }
        | Statement::Explain { .. } => StatementKind::Write(write::WriteInfo::default()),
        _ => StatementKind::Other,
    }
}

#[cfg(test)]
mod tests;

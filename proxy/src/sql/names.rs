//! Relation and function names with PostgreSQL's identifier rules: unquoted identifiers fold
//! to lower case, quoted ones keep their case.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

/// A relation named by a statement, possibly schema-qualified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelationName {
    /// Schema, if the statement gave one.
    pub schema: Option<String>,
    /// Relation name.
    pub name: String,
}

/// A function called by a statement, possibly schema-qualified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionName {
    /// Schema, if the statement gave one.
    pub schema: Option<String>,
    /// Function name.
    pub name: String,
    /// Number of arguments in the call; `None` for the SQL-standard forms without parentheses
    /// (`CURRENT_TIMESTAMP`) and subquery arguments.
    pub arity: Option<u16>,
}

/// An identifier as PostgreSQL resolves it.
pub fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The last two identifier parts of a name: (schema, name). `None` if the name has a part that
/// is not a plain identifier.
pub fn split(name: &ObjectName) -> Option<(Option<String>, String)> {
    let mut parts = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(ident) => parts.push(fold(ident)),
            ObjectNamePart::Function(_) => return None,
        }
    }
    let last = parts.pop()?;
    Some((parts.pop(), last))
}

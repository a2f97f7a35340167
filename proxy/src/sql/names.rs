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

impl std::fmt::Display for RelationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Reads `table` or `schema.table` as written by a person (a flag, a console command):
/// unquoted parts fold to lower case, `"Quoted"` parts keep their case (`""` is a quote).
/// `None` for anything else: empty parts, more than two parts, text after the name.
pub fn parse_relation(text: &str) -> Option<RelationName> {
    let mut parts: Vec<String> = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == '.' || c.is_whitespace() || c == '"' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => break,
            Some(_) => return None,
        }
    }
    let name = parts.pop()?;
    let schema = parts.pop();
    parts.is_empty().then_some(RelationName { schema, name })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_written_by_people_fold_like_sql() {
        let parse = |t| parse_relation(t).map(|r| r.to_string());
        assert_eq!(parse("Orders"), Some("orders".to_owned()));
        assert_eq!(parse(" Shop.Orders "), Some("shop.orders".to_owned()));
        assert_eq!(parse("\"Mixed Case\""), Some("Mixed Case".to_owned()));
        assert_eq!(
            parse_relation("shop.\"a.b\""),
            Some(RelationName {
                schema: Some("shop".to_owned()),
                name: "a.b".to_owned()
            })
        );
        assert_eq!(parse("\"say \"\"hi\"\"\""), Some("say \"hi\"".to_owned()));
        for bad in [
            "", "a.b.c", "a..b", ".a", "a.", "my table", "\"open", "a\"b\"",
        ] {
            assert_eq!(parse_relation(bad), None, "{bad}");
        }
    }
}

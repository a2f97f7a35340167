//! Statements that need a database with no other connection: `DROP DATABASE x`,
//! `ALTER DATABASE x RENAME TO y`, `CREATE DATABASE y … TEMPLATE x`.
//!
//! PostgreSQL refuses them while anyone else is connected to `x`, and `DROP DATABASE` while a
//! logical slot on `x` is active. pgcached keeps a replication stream and a control connection
//! to every database its clients use; a session about to send one of these statements first
//! has pgcached close its own ([`crate::release`]). Only the statement's start is read, as
//! PostgreSQL's grammar has it; anything else is not one of these.

/// The database that `sql` needs free of other connections, folded as PostgreSQL folds it.
pub fn database_to_free(sql: &str) -> Option<String> {
    let mut words = Words::new(sql);
    // Every Query and Parse passes here: anything else ends at its first word.
    let first = words.keyword()?;
    if !["drop", "alter", "create"]
        .iter()
        .any(|verb| first.eq_ignore_ascii_case(verb))
    {
        return None;
    }
    let second = words.keyword()?;
    if !second.eq_ignore_ascii_case("database") {
        return None;
    }
    if first.eq_ignore_ascii_case("drop") {
        let name = words.name()?;
        if name.eq_ignore_ascii_case("if") {
            let exists = words.keyword()?;
            return exists
                .eq_ignore_ascii_case("exists")
                .then(|| words.name())?;
        }
        return Some(name);
    }
    if first.eq_ignore_ascii_case("alter") {
        let name = words.name()?;
        let rename = words.keyword()?;
        return rename.eq_ignore_ascii_case("rename").then_some(name);
    }
    if first.eq_ignore_ascii_case("create") {
        words.name()?;
        while let Some(word) = words.keyword() {
            if word.eq_ignore_ascii_case("template") {
                words.equals();
                return words.name();
            }
        }
    }
    None
}

/// Words and names of a statement's text, comments and whitespace skipped.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(sql: &'a str) -> Words<'a> {
        Words { rest: sql }
    }

    fn skip_blanks(&mut self) {
        loop {
            let trimmed = self.rest.trim_start();
            if let Some(comment) = trimmed.strip_prefix("--") {
                self.rest = comment.find('\n').map_or("", |end| &comment[end..]);
            } else if trimmed.starts_with("/*") {
                let end = super::text::block_comment_end(trimmed.as_bytes(), 0);
                self.rest = &trimmed[end.min(trimmed.len())..];
            } else {
                self.rest = trimmed;
                return;
            }
        }
    }

    /// The next bare word (letters, digits, `_`, `$`), or `None` at anything else.
    fn keyword(&mut self) -> Option<&'a str> {
        self.skip_blanks();
        let end = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(self.rest.len());
        if end == 0 {
            // Not a word: consume one character so a caller scanning on moves forward.
            let mut chars = self.rest.chars();
            chars.next()?;
            self.rest = chars.as_str();
            return Some("");
        }
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word)
    }

    /// An optional `=`.
    fn equals(&mut self) {
        self.skip_blanks();
        if let Some(rest) = self.rest.strip_prefix('=') {
            self.rest = rest;
        }
    }

    /// The next identifier as PostgreSQL folds it: a bare one in lower case, a quoted one as
    /// written (`""` is `"`).
    fn name(&mut self) -> Option<String> {
        self.skip_blanks();
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices();
            while let Some((at, c)) = chars.next() {
                if c != '"' {
                    name.push(c);
                    continue;
                }
                if quoted[at + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                    continue;
                }
                self.rest = &quoted[at + 1..];
                return (!name.is_empty()).then_some(name);
            }
            return None;
        }
        let word = self.keyword()?;
        (!word.is_empty()).then(|| word.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::database_to_free;

    #[test]
    fn the_database_each_statement_needs_free() {
        for (sql, database) in [
            ("DROP DATABASE scratch", "scratch"),
            ("drop database if exists Scratch", "scratch"),
            (
                "DROP DATABASE \"Mixed \"\"Case\"\"\" WITH (FORCE)",
                "Mixed \"Case\"",
            ),
            (
                "/* teardown */ DROP -- now\n DATABASE test_app;",
                "test_app",
            ),
            ("ALTER DATABASE old RENAME TO new", "old"),
            ("CREATE DATABASE copy TEMPLATE source", "source"),
            (
                "CREATE DATABASE copy WITH OWNER = app ENCODING 'UTF8' TEMPLATE = \"Src\"",
                "Src",
            ),
        ] {
            assert_eq!(database_to_free(sql).as_deref(), Some(database), "{sql}");
        }
    }

    #[test]
    fn other_statements_need_nothing() {
        for sql in [
            "DROP TABLE database",
            "CREATE DATABASE fresh",
            "ALTER DATABASE app SET work_mem = '64MB'",
            "ALTER DATABASE app OWNER TO someone",
            "SELECT 'DROP DATABASE x'",
            "DROP DATABASE",
            "DROP DATABASE IF EXISTS",
            "",
        ] {
            assert_eq!(database_to_free(sql), None, "{sql}");
        }
    }
}

//! Which statements may change the catalog: what a classification was judged against.
//!
//! A classification names tables by OID. `DROP TABLE t; CREATE TABLE t (...)` gives `t` a new
//! OID, so a write judged before the DDL bumps the old table while a read judged after it
//! depends on the new one: the write would not invalidate the read. The catalog watcher finds
//! such changes within a poll; a statement relayed through pgcached that may change the
//! catalog makes its acknowledgement forget every classification at once, before the client
//! hears of it, so the session's next statements are judged against the new catalog.
//!
//! The test is by each statement's first keyword, over the whole text (a simple query may hold
//! several statements): `CREATE`, `DROP`, `ALTER`, `DO` and `CALL` (which run anything),
//! `IMPORT` (foreign tables) and `SECURITY` (labels); and a `SELECT … INTO`, which creates a
//! table. `VACUUM`, `REINDEX`, `TRUNCATE` or `GRANT` move no OID and judge no statement
//! differently (a `GRANT`'s effect on results is the bump every statement of unknown reach
//! makes).

/// True when a statement of `sql` may change the catalog: it starts with one of
/// [`CATALOG_KEYWORDS`], or it is a `SELECT … INTO` (which creates a table).
pub fn may_change_catalog(sql: &str) -> bool {
    let mut first: &[u8] = b"";
    let mut previous: &[u8] = b"";
    for word in words(sql.as_bytes()) {
        match word {
            Word::First(word) => {
                if is_any(word, &CATALOG_KEYWORDS) {
                    return true;
                }
                first = word;
                previous = word;
            }
            Word::Later(word) => {
                let selects = is_any(first, &["SELECT", "WITH"]);
                if selects
                    && word.eq_ignore_ascii_case(b"INTO")
                    && !is_any(previous, &["INSERT", "MERGE"])
                {
                    return true;
                }
                previous = word;
            }
        }
    }
    false
}

/// First keywords of statements that may change what a classification was judged against.
const CATALOG_KEYWORDS: [&str; 7] = [
    "CREATE", "DROP", "ALTER", "DO", "CALL", "IMPORT", "SECURITY",
];

fn is_any(word: &[u8], keywords: &[&str]) -> bool {
    keywords
        .iter()
        .any(|keyword| word.eq_ignore_ascii_case(keyword.as_bytes()))
}

/// A bare word of a statement (quoted text, comments and dollar-quoted bodies are skipped).
enum Word<'a> {
    /// The statement's first word.
    First(&'a [u8]),
    /// Any later one.
    Later(&'a [u8]),
}

/// The bare words of `sql`, statement by statement: statements are separated by `;` outside
/// quotes, dollar quotes and comments.
fn words(sql: &[u8]) -> impl Iterator<Item = Word<'_>> {
    let mut i = 0;
    let mut at_start = true;
    std::iter::from_fn(move || {
        while i < sql.len() {
            let c = sql[i];
            let rest = &sql[i..];
            if rest.starts_with(b"--") {
                i = sql[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(sql.len(), |n| i + n + 1);
            } else if rest.starts_with(b"/*") {
                i = super::text::block_comment_end(sql, i);
            } else if c.is_ascii_whitespace() {
                i += 1;
            } else if c == b';' {
                at_start = true;
                i += 1;
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let end = sql[i..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$'))
                    .map_or(sql.len(), |n| i + n);
                let word = &sql[i..end];
                i = end;
                // E'...' strings: the quote right after is the string's.
                if sql.get(end) == Some(&b'\'') && word.eq_ignore_ascii_case(b"e") {
                    i = closing_quote(sql, end + 1, b'\'', true);
                    at_start = false;
                    continue;
                }
                let first = std::mem::replace(&mut at_start, false);
                return Some(if first {
                    Word::First(word)
                } else {
                    Word::Later(word)
                });
            } else {
                at_start = false;
                i = skip_token(sql, i);
            }
        }
        None
    })
}

/// The index after the token at `i`: a quoted string or identifier, a dollar-quoted body, or
/// one byte.
fn skip_token(sql: &[u8], i: usize) -> usize {
    match sql[i] {
        b'\'' => closing_quote(sql, i + 1, b'\'', false),
        b'"' => closing_quote(sql, i + 1, b'"', false),
        b'$' => match dollar_tag(sql, i) {
            Some(tag) => {
                let body = i + tag.len();
                sql[body..]
                    .windows(tag.len())
                    .position(|w| w == tag)
                    .map_or(sql.len(), |n| body + n + tag.len())
            }
            None => i + 1,
        },
        _ => i + 1,
    }
}

/// The index after the quote closing a quoted token whose body starts at `from` (a doubled
/// quote is part of the body).
fn closing_quote(sql: &[u8], from: usize, quote: u8, escapes: bool) -> usize {
    let mut j = from;
    while j < sql.len() {
        if escapes && sql[j] == b'\\' {
            j += 2;
        } else if sql[j] == quote {
            if sql.get(j + 1) == Some(&quote) {
                j += 2;
            } else {
                return j + 1;
            }
        } else {
            j += 1;
        }
    }
    sql.len()
}

/// The `$tag$` opening a dollar-quoted body at `i`, if that is one.
fn dollar_tag(sql: &[u8], i: usize) -> Option<&[u8]> {
    let close = sql[i + 1..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))?;
    let end = i + 1 + close;
    (sql.get(end) == Some(&b'$') && !sql[i + 1..end].first().is_some_and(u8::is_ascii_digit))
        .then(|| &sql[i..=end])
}

#[cfg(test)]
mod tests {
    use super::may_change_catalog;

    #[test]
    fn ddl_and_code_blocks_may_change_the_catalog() {
        for sql in [
            "CREATE TABLE t (a int)",
            "  drop table t",
            "/* migration */ ALTER TABLE t RENAME TO u",
            "-- note\nCreate index on t (a)",
            "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
            "CALL rebuild()",
            "INSERT INTO log VALUES (1); DROP TABLE t",
            "SELECT 1;create view v as select 1",
            "IMPORT FOREIGN SCHEMA s FROM SERVER x INTO public",
            "SELECT * INTO archive FROM t",
            "WITH x AS (SELECT 1) SELECT * INTO copy FROM x",
        ] {
            assert!(may_change_catalog(sql), "{sql}");
        }
    }

    #[test]
    fn other_statements_and_quoted_keywords_do_not() {
        for sql in [
            "SELECT * FROM t",
            "INSERT INTO t VALUES ('drop table t; create')",
            "UPDATE t SET a = 1 WHERE b = E'\\'; DROP TABLE t'",
            "SELECT $x$; drop table t $x$",
            "SELECT \"; drop\" FROM t",
            "SELECT 1 -- ; drop table t",
            "SELECT 1 /* ; drop table t */",
            "VACUUM t",
            "TRUNCATE t",
            "GRANT SELECT ON t TO r",
            "SELECT created, dropped FROM t",
            "INSERT INTO t SELECT * FROM u",
            "WITH moved AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM moved",
            "SELECT 'into' FROM t",
            "",
        ] {
            assert!(!may_change_catalog(sql), "{sql}");
        }
    }
}

//! A statement's shape: its text with literals replaced by parameters, found by a lexer pass
//! (no parse).
//!
//! Applications that inline literals (pgbench `-M simple`, psycopg 2, PDO, ORMs' raw queries)
//! send a new text for every value: `... WHERE aid = 1`, `... WHERE aid = 2`. Classifying each
//! text would parse each one; classifying the shape `... WHERE aid = $1` parses once. The
//! literals of each execution then play the part of parameters, after the statement's own
//! (`$1` .. `$n`): a shape's pins and a write's keys take their values from them.
//!
//! What is replaced: integer and decimal number literals, and standard string literals
//! (`'...'`, with `''` for a quote). Everything else is kept as written: identifiers, keywords
//! (`TRUE`, `NULL`), comments (hints live there), escape strings (`E'...'`), dollar-quoted,
//! bit and Unicode strings, and string literals whose value is a time word (`'now'`, `'today'`,
//! ...: classification must see those to refuse them). A text with no literal to replace has
//! no shape of its own; a text the lexer cannot follow (an unterminated string or comment) has
//! none either, and is classified as written.

/// String literals kept as written: their cast to a date/time type depends on the clock.
const TIME_WORDS: [&str; 4] = ["now", "today", "tomorrow", "yesterday"];

/// A literal of one execution, in the order of its parameter number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// A number as written (`42`, `1.5`).
    Number(String),
    /// A string's value (quotes removed, `''` undoubled).
    String(String),
}

impl Literal {
    /// The value as a text-format parameter would carry it.
    pub fn text(&self) -> &[u8] {
        match self {
            Literal::Number(text) | Literal::String(text) => text.as_bytes(),
        }
    }
}

/// A text's shape and its literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The text with each literal replaced by `$k`.
    pub text: String,
    /// The parameter number of the first literal (one past the text's own highest `$n`).
    pub first_literal: u16,
    /// The literals, in order.
    pub literals: Vec<Literal>,
}

/// The shape of `sql`, when it has literals to replace and the lexer can follow it.
pub fn of(sql: &str) -> Option<Shape> {
    let bytes = sql.as_bytes();
    let mut highest = 0u16;
    // First pass: the highest parameter number, and whether the text is readable.
    let mut i = 0;
    while i < bytes.len() {
        match token(bytes, i)? {
            Token::Parameter(n, end) => {
                highest = highest.max(n);
                i = end;
            }
            Token::Other(end) | Token::Number(end) | Token::String(end) => i = end,
        }
    }
    let first_literal = highest.checked_add(1)?;
    let mut text = String::with_capacity(sql.len());
    let mut literals = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (literal, end) = match token(bytes, i)? {
            Token::Number(end) => (Some(Literal::Number(sql[i..end].to_owned())), end),
            Token::String(end) => {
                let value = sql[i + 1..end - 1].replace("''", "'");
                let word = value.trim().to_ascii_lowercase();
                if TIME_WORDS.contains(&word.as_str()) {
                    (None, end)
                } else {
                    (Some(Literal::String(value)), end)
                }
            }
            Token::Parameter(_, end) | Token::Other(end) => (None, end),
        };
        match literal {
            Some(literal) => {
                let number = u16::try_from(literals.len())
                    .ok()
                    .and_then(|n| first_literal.checked_add(n))?;
                text.push('$');
                text.push_str(&number.to_string());
                literals.push(literal);
            }
            None => text.push_str(&sql[i..end]),
        }
        i = end;
    }
    (!literals.is_empty()).then_some(Shape {
        text,
        first_literal,
        literals,
    })
}

/// One lexical unit, by where it ends.
enum Token {
    /// A `$n` parameter.
    Parameter(u16, usize),
    /// A number literal.
    Number(usize),
    /// A standard string literal `'...'`.
    String(usize),
    /// Anything kept as written.
    Other(usize),
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The token starting at `i`; `None` when the text cannot be followed.
fn token(bytes: &[u8], i: usize) -> Option<Token> {
    let rest = &bytes[i..];
    let c = rest[0];
    if rest.starts_with(b"--") {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |p| i + p);
        return Some(Token::Other(end));
    }
    if rest.starts_with(b"/*") {
        return block_comment(bytes, i).map(Token::Other);
    }
    if c == b'\'' {
        return quoted(bytes, i, b'\'').map(Token::String);
    }
    if c == b'"' {
        return quoted(bytes, i, b'"').map(Token::Other);
    }
    if c == b'$' {
        let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 {
            let end = i + 1 + digits;
            if bytes.get(end).is_some_and(|b| is_identifier_byte(*b)) {
                return None;
            }
            let n: u16 = std::str::from_utf8(&rest[1..=digits]).ok()?.parse().ok()?;
            return Some(Token::Parameter(n, end));
        }
        return dollar_quoted(bytes, i).map(Token::Other);
    }
    if is_identifier_byte(c) && !c.is_ascii_digit() {
        let len = rest.iter().take_while(|b| is_identifier_byte(**b)).count();
        // E'...', B'...', X'...', U&'...': kept whole, escapes and all.
        let word = &rest[..len];
        if bytes.get(i + len) == Some(&b'\'') && len == 1 {
            let escape = word[0].eq_ignore_ascii_case(&b'e');
            return special_string(bytes, i + len, escape).map(Token::Other);
        }
        if len == 1 && word[0].eq_ignore_ascii_case(&b'u') && rest.get(1..3) == Some(b"&'") {
            return quoted(bytes, i + 2, b'\'').map(Token::Other);
        }
        return Some(Token::Other(i + len));
    }
    if c.is_ascii_digit() || (c == b'.' && rest.get(1).is_some_and(u8::is_ascii_digit)) {
        let mut end = i;
        let mut seen_dot = false;
        let mut seen_exponent = false;
        while let Some(&b) = bytes.get(end) {
            if b.is_ascii_digit() {
                end += 1;
            } else if b == b'.' && !seen_dot && !seen_exponent {
                // `1..2` is not a number followed by a dot.
                if bytes.get(end + 1) == Some(&b'.') {
                    break;
                }
                seen_dot = true;
                end += 1;
            } else if (b == b'e' || b == b'E') && !seen_exponent {
                let sign = matches!(bytes.get(end + 1), Some(b'+' | b'-'));
                let digit_at = end + 1 + usize::from(sign);
                if !bytes.get(digit_at).is_some_and(u8::is_ascii_digit) {
                    break;
                }
                seen_exponent = true;
                end = digit_at;
            } else {
                break;
            }
        }
        // A number run into an identifier (`1abc`) is kept as written.
        if bytes.get(end).is_some_and(|b| is_identifier_byte(*b)) {
            let len = bytes[end..]
                .iter()
                .take_while(|b| is_identifier_byte(**b))
                .count();
            return Some(Token::Other(end + len));
        }
        return Some(Token::Number(end));
    }
    // One byte of anything else (operators, punctuation, whitespace, UTF-8 continuation).
    let width = std::str::from_utf8(&bytes[i..])
        .ok()
        .and_then(|s| s.chars().next())
        .map_or(1, char::len_utf8);
    Some(Token::Other(i + width))
}

/// The end of a quoted run starting at `i` (the quote doubles itself inside).
fn quoted(bytes: &[u8], i: usize, quote: u8) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match bytes.get(j)? {
            b if *b == quote && bytes.get(j + 1) == Some(&quote) => j += 2,
            b if *b == quote => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end of `E'...'` (backslash escapes) or `B'...'`/`X'...'` starting at the quote `i`.
fn special_string(bytes: &[u8], i: usize, escape: bool) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match bytes.get(j)? {
            b'\\' if escape => j += 2,
            b'\'' if bytes.get(j + 1) == Some(&b'\'') => j += 2,
            b'\'' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The end of a (nested) block comment starting at `i`.
fn block_comment(bytes: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < bytes.len() {
        if bytes[j..].starts_with(b"/*") {
            depth += 1;
            j += 2;
        } else if bytes[j..].starts_with(b"*/") {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return Some(j);
            }
        } else {
            j += 1;
        }
    }
    None
}

/// The end of a dollar-quoted string `$tag$...$tag$` starting at `i`, or of a lone `$`.
fn dollar_quoted(bytes: &[u8], i: usize) -> Option<usize> {
    let tag_len = bytes[i + 1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b >= 0x80)
        .count();
    if bytes.get(i + 1 + tag_len) != Some(&b'$') {
        return Some(i + 1);
    }
    let tag = &bytes[i..i + tag_len + 2];
    let body = i + tag.len();
    let end = bytes[body..].windows(tag.len()).position(|w| w == tag)?;
    Some(body + end + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_text(sql: &str) -> Option<String> {
        of(sql).map(|s| s.text)
    }

    #[test]
    fn literals_become_parameters_after_the_texts_own() {
        let shape = of("SELECT v FROM t WHERE k = 42 AND s = 'it''s' AND x = $1").expect("shape");
        assert_eq!(
            shape.text,
            "SELECT v FROM t WHERE k = $2 AND s = $3 AND x = $1"
        );
        assert_eq!(shape.first_literal, 2);
        assert_eq!(
            shape.literals,
            vec![Literal::Number("42".into()), Literal::String("it's".into())]
        );
        assert_eq!(
            shape_text("SELECT * FROM t WHERE k = 1"),
            shape_text("SELECT * FROM t WHERE k = 99999"),
            "texts differing in their literals share one shape"
        );
        assert_eq!(
            shape_text("SELECT 1.5, .5, 1e10, 2E-3"),
            Some("SELECT $1, $2, $3, $4".into())
        );
    }

    #[test]
    fn what_classification_must_see_is_kept() {
        assert_eq!(
            shape_text("SELECT 'now'::timestamptz, 'x'"),
            Some("SELECT 'now'::timestamptz, $1".into())
        );
        assert_eq!(
            shape_text("SELECT E'a\\'b', B'101', X'1f', U&'d\\0061t', $$x 'y'$$, $t$z$t$, 5"),
            Some("SELECT E'a\\'b', B'101', X'1f', U&'d\\0061t', $$x 'y'$$, $t$z$t$, $1".into())
        );
        assert_eq!(
            shape_text(
                "SELECT /* pgcached:ttl=5s */ a1, \"col 2\", t2.c FROM t2 WHERE n = 3 -- 4\n"
            ),
            Some(
                "SELECT /* pgcached:ttl=5s */ a1, \"col 2\", t2.c FROM t2 WHERE n = $1 -- 4\n"
                    .into()
            )
        );
        assert_eq!(shape_text("SELECT a FROM t"), None, "nothing to replace");
        assert_eq!(shape_text("SELECT true, NULL"), None);
    }

    #[test]
    fn texts_the_lexer_cannot_follow_have_no_shape() {
        for sql in [
            "SELECT 'unterminated",
            "SELECT /* open",
            "SELECT $$ body",
            "SELECT \"open",
            "SELECT $1abc, 2",
        ] {
            assert_eq!(of(sql), None, "{sql}");
        }
        assert_eq!(
            shape_text("SELECT 1abc"),
            None,
            "a number run into a name is kept"
        );
        assert_eq!(
            shape_text("SELECT 'é', 'ü' || 7"),
            Some("SELECT $1, $2 || $3".into())
        );
    }
}

//! A light pass over a statement's text, without parsing it: the `pgcached:` hints in its
//! comments, and the text with its literals removed (what `SHOW CACHE` shows).
//!
//! Hints let an application steer caching with a comment and no code change:
//! `/* pgcached:nocache */` keeps a statement out of the cache, `/* pgcached:ttl=30s */` serves
//! its results for at most that long. Several hints may share a comment, separated by spaces or
//! commas. Only comments count: the same words inside a string literal are data. A hint that
//! cannot be read keeps the statement out of the cache (and `EXPLAIN CACHE` says why), rather
//! than caching it for a time nobody asked for.
//!
//! The normalized text replaces string, dollar-quoted and numeric literals with `?`, drops
//! comments and collapses whitespace: statements that differ only in their literals read the
//! same, and no literal value (a password, an e-mail address) is ever shown.

use std::time::Duration;

/// Longest normalized text kept, in bytes.
const MAX_NORMALIZED: usize = 500;

/// What the comments of a statement ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hints {
    /// `pgcached:nocache`.
    pub nocache: bool,
    /// `pgcached:ttl=<duration>`.
    pub ttl: Option<Duration>,
    /// A `pgcached:` hint that could not be read, as written.
    pub invalid: Option<String>,
}

/// The result of [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Hints found in comments.
    pub hints: Hints,
    /// The text without literals and comments.
    pub normalized: String,
}

/// Reads the hints and the normalized text of `sql`.
pub fn scan(sql: &str) -> Scanned {
    let bytes = sql.as_bytes();
    let mut hints = Hints::default();
    let mut out = String::with_capacity(sql.len().min(MAX_NORMALIZED));
    let mut i = 0;
    let mut pending_space = false;
    let push = |out: &mut String, text: &str, pending_space: &mut bool| {
        if *pending_space && !out.is_empty() {
            out.push(' ');
        }
        *pending_space = false;
        out.push_str(text);
    };
    while i < bytes.len() {
        let c = bytes[i];
        let rest = &bytes[i..];
        if rest.starts_with(b"/*") {
            let end = block_comment_end(bytes, i);
            read_hints(block_comment_body(sql, i, end), &mut hints);
            i = end;
            pending_space = true;
        } else if rest.starts_with(b"--") {
            let end = memchr(bytes, i, b'\n').unwrap_or(bytes.len());
            read_hints(sql.get(i + 2..end).unwrap_or(""), &mut hints);
            i = end;
            pending_space = true;
        } else if c.is_ascii_whitespace() {
            i += 1;
            pending_space = true;
        } else if c == b'\'' || ((c == b'E' || c == b'e') && rest.get(1) == Some(&b'\'')) {
            let start = if c == b'\'' { i } else { i + 1 };
            i = quoted_end(bytes, start, b'\'', c != b'\'');
            push(&mut out, "?", &mut pending_space);
        } else if c == b'"' {
            let end = quoted_end(bytes, i, b'"', false);
            push(
                &mut out,
                sql.get(i..end).unwrap_or("\""),
                &mut pending_space,
            );
            i = end;
        } else if c == b'$' && dollar_tag(bytes, i).is_some() {
            let tag_len = dollar_tag(bytes, i).unwrap_or(1);
            let tag = &bytes[i..i + tag_len];
            let body = i + tag_len;
            i = find(bytes, body, tag).map_or(bytes.len(), |at| at + tag_len);
            push(&mut out, "?", &mut pending_space);
        } else if c.is_ascii_digit() && !previous_is_word(&out, pending_space) {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            push(&mut out, "?", &mut pending_space);
        } else {
            let start = i;
            i += utf8_len(c);
            push(
                &mut out,
                sql.get(start..i.min(sql.len())).unwrap_or(""),
                &mut pending_space,
            );
        }
        if out.len() > MAX_NORMALIZED {
            let mut cut = MAX_NORMALIZED;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            // Keep reading comments for hints; the text is long enough.
            while i < bytes.len() {
                match (bytes[i..].starts_with(b"/*"), bytes[i..].starts_with(b"--")) {
                    (true, _) => {
                        let end = block_comment_end(bytes, i);
                        read_hints(block_comment_body(sql, i, end), &mut hints);
                        i = end;
                    }
                    (_, true) => {
                        let end = memchr(bytes, i, b'\n').unwrap_or(bytes.len());
                        read_hints(sql.get(i + 2..end).unwrap_or(""), &mut hints);
                        i = end;
                    }
                    _ if bytes[i] == b'\'' => i = quoted_end(bytes, i, b'\'', false),
                    _ => i += 1,
                }
            }
            break;
        }
    }
    Scanned {
        hints,
        normalized: out,
    }
}

fn read_hints(comment: &str, hints: &mut Hints) {
    for word in comment.split(|c: char| c.is_whitespace() || c == ',') {
        let Some(hint) = word
            .get(..9)
            .filter(|prefix| prefix.eq_ignore_ascii_case("pgcached:"))
            .and_then(|_| word.get(9..))
        else {
            continue;
        };
        if hint.eq_ignore_ascii_case("nocache") {
            hints.nocache = true;
        } else if let Some(value) = hint
            .get(..4)
            .filter(|key| key.eq_ignore_ascii_case("ttl="))
            .and_then(|_| hint.get(4..))
        {
            match crate::config::duration::parse(value) {
                Ok(ttl) if !ttl.is_zero() => hints.ttl = Some(ttl),
                _ => hints.invalid = Some(word.to_owned()),
            }
        } else {
            hints.invalid = Some(word.to_owned());
        }
    }
}

/// The text of the comment opened at `start` and ending before `end` (without `/*`, `*/`).
fn block_comment_body(sql: &str, start: usize, end: usize) -> &str {
    let body_end = if sql.as_bytes()[..end].ends_with(b"*/") && end >= start + 4 {
        end - 2
    } else {
        end
    };
    sql.get(start + 2..body_end).unwrap_or("")
}

/// Index just past the `*/` closing the comment opened at `start` (comments nest in SQL).
pub(crate) fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Index just past the quote closing the one at `start`; `backslash` for E'' strings.
fn quoted_end(bytes: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if backslash && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The length of a `$tag$` opening at `start`, if there is one (`$1` is a parameter, not a tag).
fn dollar_tag(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    (bytes.get(i) == Some(&b'$')).then_some(i + 1 - start)
}

fn previous_is_word(out: &str, pending_space: bool) -> bool {
    !pending_space
        && out
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

fn memchr(bytes: &[u8], from: usize, needle: u8) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|b| *b == needle)
        .map(|p| p + from)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_comments_are_removed() {
        let scanned = scan(
            "SELECT name, 'secret'   FROM users /* note */ WHERE id = 42 AND t1.c = E'it\\'s' \
             AND x = $$dollar$$ AND y = $tag$a$b$tag$ AND z = $1 AND 1.5e3 > 0 -- tail",
        );
        assert_eq!(
            scanned.normalized,
            "SELECT name, ? FROM users WHERE id = ? AND t1.c = ? AND x = ? AND y = ? AND z = $1 \
             AND ? > ?"
        );
        assert_eq!(scanned.hints, Hints::default());
    }

    #[test]
    fn hints_are_read_from_comments_only() {
        let nocache = scan("SELECT * FROM t /* pgcached:nocache */");
        assert!(nocache.hints.nocache);
        let ttl = scan("/* pgcached:ttl=30s */ SELECT * FROM t");
        assert_eq!(ttl.hints.ttl, Some(Duration::from_secs(30)));
        assert!(!ttl.hints.nocache);
        let both = scan("SELECT 1 -- pgcached:ttl=500ms, pgcached:nocache");
        assert!(both.hints.nocache);
        assert_eq!(both.hints.ttl, Some(Duration::from_millis(500)));
        let in_string = scan("SELECT '/* pgcached:nocache */' FROM t");
        assert_eq!(in_string.hints, Hints::default());
        let bad = scan("SELECT 1 /* pgcached:ttl=soon */");
        assert_eq!(bad.hints.invalid.as_deref(), Some("pgcached:ttl=soon"));
        let zero = scan("SELECT 1 /* pgcached:ttl=0s */");
        assert!(zero.hints.invalid.is_some());
        let unknown = scan("SELECT 1 /* pgcached:forever */");
        assert_eq!(unknown.hints.invalid.as_deref(), Some("pgcached:forever"));
        let nested = scan("SELECT 1 /* outer /* inner */ pgcached:nocache */");
        assert!(nested.hints.nocache);
        let upper = scan("SELECT 1 /* PGCACHED:NOCACHE */ /* PgCached:TTL=2s */");
        assert!(upper.hints.nocache);
        assert_eq!(upper.hints.ttl, Some(Duration::from_secs(2)));
        let other = scan("SELECT 1 /* pgcache:nocache see pgcached-docs */");
        assert_eq!(other.hints, Hints::default());
    }

    #[test]
    fn identifiers_with_digits_are_kept() {
        assert_eq!(
            scan("SELECT c2 FROM \"T 1\" WHERE col_3=7").normalized,
            "SELECT c2 FROM \"T 1\" WHERE col_3=?"
        );
    }

    #[test]
    fn long_texts_are_cut_but_late_hints_still_count() {
        let long = format!("SELECT {} FROM t /* pgcached:nocache */", "a, ".repeat(400));
        let scanned = scan(&long);
        assert!(scanned.normalized.len() <= MAX_NORMALIZED + '…'.len_utf8());
        assert!(scanned.normalized.ends_with('…'));
        assert!(scanned.hints.nocache);
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for text in [
            "SELECT '",
            "SELECT $a$ x",
            "SELECT /* x",
            "SELECT /* é",
            "SELECT /*/",
            "SELECT E'\\",
            "SELECT E'\\é",
            "é'",
            "$",
            "--",
        ] {
            let _ = scan(text);
        }
    }
}

//! The session-state fingerprint, part of every cache key.
//!
//! Two sessions may share a cached result only if everything that can change the result is the
//! same for both: database and authenticated role (separate key parts), and the session state.
//! The fingerprint stands for the session state: the startup parameters, followed by the text
//! of every statement that changed state since (`SET`, `RESET`, `SET ROLE`, `DISCARD`, ...).
//! It is kept as the full bytes, not a hash, so that no two different states can ever collide.
//!
//! When a session does something whose effect on its state cannot be known (a call to
//! `set_config`, a `DO` block, creating temporary tables), its fingerprint becomes private: a
//! process-unique nonce is appended, so from then on it shares entries with no other session.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fingerprint longer than this turns private instead of growing further.
pub const MAX_FINGERPRINT: usize = 8 * 1024;

/// Startup parameters that cannot change a query's result: they are left out of the key.
const IGNORED_PARAMETERS: [&str; 3] = ["user", "database", "application_name"];

static NONCE: AtomicU64 = AtomicU64::new(1);

/// A fingerprint read back ([`Fingerprint::replay`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replay<'a> {
    /// Startup parameters (user, database and application_name are not among them).
    pub(crate) parameters: Vec<(&'a str, &'a str)>,
    /// Statements that changed the state since, in order.
    pub(crate) statements: Vec<&'a [u8]>,
}

/// The bytes that stand for a session's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    bytes: Vec<u8>,
    private: bool,
}

impl Fingerprint {
    /// The state right after startup.
    pub fn from_startup(parameters: &BTreeMap<String, String>) -> Fingerprint {
        let mut fingerprint = Fingerprint {
            bytes: Vec::new(),
            private: false,
        };
        for (name, value) in parameters {
            if IGNORED_PARAMETERS.contains(&name.as_str()) {
                continue;
            }
            fingerprint.append(b'p', name.as_bytes());
            fingerprint.append(b'v', value.as_bytes());
        }
        fingerprint
    }

    /// Records a statement that changed session state.
    pub fn fold(&mut self, statement: &[u8]) {
        if self.bytes.len() + statement.len() > MAX_FINGERPRINT {
            self.make_private();
            return;
        }
        self.append(b's', statement);
    }

    /// Makes this session's entries its own from now on.
    pub fn make_private(&mut self) {
        if self.private {
            return;
        }
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
        self.append(b'n', &nonce.to_be_bytes());
        self.private = true;
    }

    /// True once private.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// What brings another connection of the same role and database to this state: its
    /// startup parameters, then its statements in order. `None` once private (the state is
    /// not known).
    pub(crate) fn replay(&self) -> Option<Replay<'_>> {
        if self.private {
            return None;
        }
        let mut replay = Replay::default();
        let mut name: Option<&str> = None;
        let mut rest = self.bytes.as_slice();
        while let [kind, a, b, c, d, tail @ ..] = rest {
            let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            let data = tail.get(..length)?;
            rest = &tail[length..];
            match kind {
                b'p' => name = Some(std::str::from_utf8(data).ok()?),
                b'v' => replay
                    .parameters
                    .push((name.take()?, std::str::from_utf8(data).ok()?)),
                b's' => replay.statements.push(data),
                _ => return None,
            }
        }
        rest.is_empty().then_some(replay)
    }

    /// The fingerprint as key material.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn append(&mut self, kind: u8, data: &[u8]) {
        // `replay` reads these parts back.
        self.bytes.push(kind);
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn user_database_and_application_name_do_not_split_sessions() {
        let a = Fingerprint::from_startup(&params(&[("user", "a"), ("application_name", "x")]));
        let b = Fingerprint::from_startup(&params(&[("user", "b"), ("database", "d")]));
        assert_eq!(a, b);
        let c = Fingerprint::from_startup(&params(&[("DateStyle", "ISO, DMY")]));
        assert_ne!(a, c);
    }

    #[test]
    fn statements_and_privacy_change_the_fingerprint() {
        let mut a = Fingerprint::from_startup(&BTreeMap::new());
        let mut b = a.clone();
        a.fold(b"SET search_path = s1");
        assert_ne!(a, b);
        b.fold(b"SET search_path = s1");
        assert_eq!(a, b);
        a.make_private();
        b.make_private();
        assert_ne!(a, b, "two private sessions never share");
    }

    #[test]
    fn parts_are_unambiguous() {
        let mut a = Fingerprint::from_startup(&BTreeMap::new());
        let mut b = a.clone();
        a.fold(b"SET a");
        a.fold(b"=1");
        b.fold(b"SET a=1");
        assert_ne!(a, b);
    }

    #[test]
    fn a_fingerprint_replays_what_made_it() {
        let mut a = Fingerprint::from_startup(&params(&[
            ("user", "u"),
            ("DateStyle", "ISO, DMY"),
            ("options", "-c search_path=s"),
        ]));
        a.fold(b"SET TIME ZONE 'UTC'");
        a.fold(b"SET ROLE reader");
        let replay = a.replay().expect("not private");
        assert_eq!(
            replay.parameters,
            [("DateStyle", "ISO, DMY"), ("options", "-c search_path=s")]
        );
        assert_eq!(
            replay.statements,
            [&b"SET TIME ZONE 'UTC'"[..], &b"SET ROLE reader"[..]]
        );
        a.make_private();
        assert!(a.replay().is_none(), "a private state is unknown");
    }

    #[test]
    fn overlong_fingerprints_turn_private() {
        let mut a = Fingerprint::from_startup(&BTreeMap::new());
        for _ in 0..200 {
            a.fold(&[b'x'; 100]);
        }
        assert!(a.is_private());
        assert!(a.as_bytes().len() <= MAX_FINGERPRINT + 200);
    }
}

//! Prepared statements and portals as the client sees them.
//!
//! The cache path answers an Execute from the statement text and Bind arguments it stands for,
//! so it keeps, per name, the client's Parse (to re-send when the server's unnamed statement is
//! another one) and Bind. A session with more statements than [`MAX_STATEMENTS`] stops caching
//! rather than grow pgcached's memory without bound.

use std::collections::HashMap;

use bytes::Bytes;

use crate::wire::extended::{Bind, Parse};

/// A session with more prepared statements than this loses its cache path.
pub(crate) const MAX_STATEMENTS: usize = 10_000;

/// A prepared statement as the client sees it.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    /// The Parse frame, to re-send if the server's unnamed statement is another one.
    pub(crate) parse: Bytes,
    /// Query text.
    pub(crate) sql: Bytes,
    /// Parameter type OIDs as sent.
    pub(crate) param_types: Bytes,
}

/// A portal as the client sees it.
#[derive(Debug, Clone)]
pub(crate) struct Portal {
    /// The statement it binds.
    pub(crate) statement: Bytes,
    /// Parameter formats, values and result formats, as sent.
    pub(crate) arguments: Bytes,
    /// The Bind frame, to re-send if the server never got it.
    pub(crate) bind: Bytes,
    /// Executed since its Bind: a later Execute goes on where that one stopped.
    pub(crate) executed: bool,
}

/// `part` (a slice of `frame`) as the same bytes of `own`, a copy of `frame`; a part that is
/// not inside `frame` is copied.
fn rebase(frame: &Bytes, own: &Bytes, part: &Bytes) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if !part.is_empty() && end <= frame.len() => own.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

/// The registry of one session.
#[derive(Debug, Default)]
pub(crate) struct Statements {
    statements: HashMap<Bytes, Statement>,
    portals: HashMap<Bytes, Portal>,
    /// The Parse frame of the server's current unnamed statement.
    server_unnamed: Option<Bytes>,
    /// Portals whose latest Bind was answered locally inside a transaction block, where
    /// portals outlive Sync: the server does not have them (or has an older one of the name).
    stale_portals: std::collections::HashSet<Bytes>,
}

impl Statements {
    /// True when another statement would pass the limit.
    pub(crate) fn is_full(&self) -> bool {
        self.statements.len() >= MAX_STATEMENTS
    }

    /// Records a Parse (its frame is `frame`). The statement keeps a copy of the frame: a
    /// slice of it would keep the whole read buffer it arrived in (16 KiB or more) alive for as
    /// long as the statement, and would make the relay allocate a new buffer for every read.
    pub(crate) fn parsed(&mut self, parse: &Parse, frame: &Bytes) {
        let own = Bytes::copy_from_slice(frame);
        self.statements.insert(
            rebase(frame, &own, &parse.name),
            Statement {
                sql: rebase(frame, &own, &parse.sql),
                param_types: rebase(frame, &own, &parse.param_types),
                parse: own,
            },
        );
    }

    /// Records a Bind (its frame is `frame`); false when its statement is unknown here.
    pub(crate) fn bound(&mut self, bind: &Bind, frame: &Bytes) -> bool {
        self.portals.insert(
            bind.portal.clone(),
            Portal {
                statement: bind.statement.clone(),
                arguments: bind.arguments.clone(),
                bind: frame.clone(),
                executed: false,
            },
        );
        self.statements.contains_key(&bind.statement)
    }

    /// An Execute of `portal` ran (upstream or answered here); true if one had run before
    /// since its Bind (this one resumes it).
    pub(crate) fn executed(&mut self, portal: &Bytes) -> bool {
        match self.portals.get_mut(portal) {
            Some(portal) => std::mem::replace(&mut portal.executed, true),
            None => false,
        }
    }

    /// A Bind of `portal` went to the server.
    pub(crate) fn server_bound(&mut self, portal: &Bytes) {
        self.stale_portals.remove(portal);
    }

    /// These portals were bound by a batch answered locally inside a transaction block.
    pub(crate) fn answered_in_block<'a>(&mut self, portals: impl Iterator<Item = &'a Bytes>) {
        self.stale_portals.extend(portals.cloned());
    }

    /// For an Execute or Describe of `portal` going to the server: its Bind frame and
    /// statement name, when the server does not have it (it was answered locally).
    pub(crate) fn rebind(&mut self, portal: &Bytes) -> Option<(Bytes, Bytes)> {
        if !self.stale_portals.remove(portal) {
            return None;
        }
        let portal = self.portals.get(portal)?;
        Some((portal.bind.clone(), portal.statement.clone()))
    }

    /// Forgets a statement (`kind` `S`) or portal (`P`) closed by the client.
    pub(crate) fn closed(&mut self, kind: u8, name: &Bytes) {
        if kind == b'S' {
            self.statements.remove(name);
        } else {
            self.portals.remove(name);
        }
    }

    /// The statement named `name`.
    pub(crate) fn statement(&self, name: &Bytes) -> Option<&Statement> {
        self.statements.get(name)
    }

    /// The statement and portal an Execute of `portal` runs.
    pub(crate) fn execution(&self, portal: &Bytes) -> Option<(&Statement, &Portal)> {
        let portal = self.portals.get(portal)?;
        let statement = self.statements.get(&portal.statement)?;
        Some((statement, portal))
    }

    /// Portals end with the transaction (outside a block: at Sync).
    pub(crate) fn transaction_ended(&mut self) {
        self.portals.clear();
        self.stale_portals.clear();
    }

    /// Forgets everything (DISCARD ALL, DEALLOCATE, or caching stopped).
    pub(crate) fn clear(&mut self) {
        self.statements.clear();
        self.portals.clear();
        self.stale_portals.clear();
        self.server_unnamed = None;
    }

    /// The server's unnamed statement is now the one this Parse frame prepares (kept as the
    /// statement's own copy when it is the client's unnamed statement, else copied).
    pub(crate) fn server_prepared_unnamed(&mut self, frame: &Bytes) {
        let kept = match self.statements.get(&Bytes::new()) {
            Some(statement) if statement.parse == frame => statement.parse.clone(),
            _ => Bytes::copy_from_slice(frame),
        };
        self.server_unnamed = Some(kept);
    }

    /// The server's unnamed statement is gone (a simple Query pgcached sends drops it).
    pub(crate) fn server_unnamed_dropped(&mut self) {
        self.server_unnamed = None;
    }

    /// For a Bind of `statement`: the Parse to re-send first when the server's unnamed
    /// statement is not the client's (it was answered locally, or replaced since).
    pub(crate) fn reparse_for(&mut self, statement: &Bytes) -> Option<Bytes> {
        if !statement.is_empty() {
            return None;
        }
        let parse = self.statements.get(statement)?.parse.clone();
        if self.server_unnamed.as_ref() == Some(&parse) {
            return None;
        }
        self.server_unnamed = Some(parse.clone());
        Some(parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_parse_owns_its_bytes() {
        let mut buffer = bytes::BytesMut::with_capacity(256);
        buffer.extend_from_slice(b"P\0\0\0\x17s1\0SELECT $1\0\0\x01\0\0\0\x17");
        let frame = buffer.split_to(24).freeze();
        let parse = Parse {
            name: frame.slice(5..7),
            sql: frame.slice(8..17),
            param_types: frame.slice(18..24),
        };
        let mut statements = Statements::default();
        statements.parsed(&parse, &frame);
        let statement = statements
            .statement(&Bytes::from_static(b"s1"))
            .expect("recorded");
        assert_eq!(statement.parse, frame);
        assert_eq!(&statement.sql[..], b"SELECT $1");
        assert_eq!(statement.param_types, parse.param_types);
        // Nothing recorded points into the read buffer: it is free to be reused.
        drop((frame, parse));
        assert!(
            buffer.try_reclaim(200),
            "the read buffer is no longer shared"
        );
    }
}

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

    /// Records a Parse (its frame is `frame`).
    pub(crate) fn parsed(&mut self, parse: &Parse, frame: &Bytes) {
        self.statements.insert(
            parse.name.clone(),
            Statement {
                parse: frame.clone(),
                sql: parse.sql.clone(),
                param_types: parse.param_types.clone(),
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

    /// The server's unnamed statement is now the one this Parse frame prepares.
    pub(crate) fn server_prepared_unnamed(&mut self, frame: &Bytes) {
        self.server_unnamed = Some(frame.clone());
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

//! The extended query protocol on the admin console, for drivers that always use it
//! (tokio-postgres, asyncpg, pgjdbc): Parse, Bind, Describe, Execute, Close, Sync.
//!
//! Console commands take no parameters. A command runs at Bind (its result is kept in the
//! portal, so Describe and Execute see the same rows); Describe of a statement runs it too,
//! except `INVALIDATE`, whose columns are known without running it. After an error, messages
//! are skipped up to Sync, as PostgreSQL does.
//!
//! Legal sequence per batch: `(Parse | Bind | Describe | Execute | Close | Flush)* Sync`; a
//! Bind must name a statement parsed earlier, an Execute or Describe portal a portal bound
//! earlier; the unnamed portal ends at Sync.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::command::{self, Command};
use super::frames::{self, ColumnType, ResultSet};
use super::{execute, CommandFailed};
use crate::session::SessionContext;
use crate::wire::error_response::sqlstate;
use crate::wire::extended;
use crate::wire::fixed;

/// Prepared statements or portals a console session may hold.
const MAX_NAMED: usize = 1000;

/// A bound command and how far its rows have been sent.
struct Portal {
    result: ResultSet,
    formats: Vec<i16>,
    sent: usize,
}

/// The extended-protocol state of one console session.
#[derive(Default)]
pub struct Extended {
    statements: HashMap<Bytes, Command>,
    portals: HashMap<Bytes, Portal>,
    /// An error was sent in this batch: skip to Sync.
    failed: bool,
}

impl Extended {
    /// Handles one extended-protocol message (not Sync); appends the answer to `out`.
    pub async fn on_message(
        &mut self,
        tag: u8,
        frame: &Bytes,
        context: &SessionContext,
        out: &mut BytesMut,
    ) {
        if self.failed {
            return;
        }
        let answer = match tag {
            b'P' => self.parse(frame),
            b'B' => self.bind(frame, context).await,
            b'D' => self.describe(frame, context, out).await,
            b'E' => self.execute(frame, out),
            b'C' => self.close(frame, out),
            b'H' => Ok(()),
            _ => Err(CommandFailed::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "the admin console does not take function calls",
            )),
        };
        match answer {
            Ok(()) if tag == b'P' => out.extend_from_slice(fixed::PARSE_COMPLETE),
            Ok(()) if tag == b'B' => out.extend_from_slice(fixed::BIND_COMPLETE),
            Ok(()) => {}
            Err(e) => {
                self.failed = true;
                out.extend_from_slice(&frames::error(e.code, &e.message));
            }
        }
    }

    /// Sync: the batch is over; the unnamed portal closes and errors stop being skipped.
    pub fn sync(&mut self) {
        self.failed = false;
        self.portals.remove(&Bytes::new());
    }

    fn parse(&mut self, frame: &Bytes) -> Result<(), CommandFailed> {
        let parse = extended::parse(frame).ok_or_else(malformed)?;
        let text = std::str::from_utf8(&parse.sql).map_err(|_| {
            CommandFailed::new(
                sqlstate::PROTOCOL_VIOLATION,
                "query text is not valid UTF-8",
            )
        })?;
        let command =
            command::parse(text).map_err(|e| CommandFailed::new(sqlstate::SYNTAX_ERROR, e.0))?;
        if !parse.name.is_empty() && self.statements.len() >= MAX_NAMED {
            return Err(too_many());
        }
        self.statements.insert(parse.name, command);
        Ok(())
    }

    async fn bind(&mut self, frame: &Bytes, context: &SessionContext) -> Result<(), CommandFailed> {
        let bind = extended::bind(frame).ok_or_else(malformed)?;
        let layout = extended::bind_layout(&bind.arguments).ok_or_else(malformed)?;
        if layout.parameters > 0 {
            return Err(CommandFailed::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "admin console commands take no parameters",
            ));
        }
        let command = self
            .statements
            .get(&bind.statement)
            .cloned()
            .ok_or_else(|| unknown("prepared statement", &bind.statement))?;
        if !bind.portal.is_empty() && self.portals.len() >= MAX_NAMED {
            return Err(too_many());
        }
        let result = execute(command, context).await?;
        self.portals.insert(
            bind.portal,
            Portal {
                result,
                formats: layout.result_formats,
                sent: 0,
            },
        );
        Ok(())
    }

    async fn describe(
        &mut self,
        frame: &Bytes,
        context: &SessionContext,
        out: &mut BytesMut,
    ) -> Result<(), CommandFailed> {
        let target = extended::target(frame).ok_or_else(malformed)?;
        if target.kind == b'P' {
            let portal = self
                .portals
                .get(&target.name)
                .ok_or_else(|| unknown("portal", &target.name))?;
            portal.result.encode_description(out, &portal.formats);
            return Ok(());
        }
        let command = self
            .statements
            .get(&target.name)
            .cloned()
            .ok_or_else(|| unknown("prepared statement", &target.name))?;
        let shape = match command {
            Command::InvalidateTable(_) => ResultSet::new(&[
                ("database", ColumnType::Text),
                ("table", ColumnType::Text),
                ("oid", ColumnType::Int),
            ]),
            Command::InvalidateAll => ResultSet::new(&[("entries_dropped", ColumnType::Int)]),
            other => execute(other, context).await?,
        };
        out.extend_from_slice(fixed::NO_PARAMETERS);
        shape.encode_description(out, &[]);
        Ok(())
    }

    fn execute(&mut self, frame: &Bytes, out: &mut BytesMut) -> Result<(), CommandFailed> {
        let execute = extended::execute(frame).ok_or_else(malformed)?;
        let portal = self
            .portals
            .get_mut(&execute.portal)
            .ok_or_else(|| unknown("portal", &execute.portal))?;
        let total = portal.result.rows.len();
        if portal.sent == 0 {
            portal.result.encode_notices(out);
        }
        let end = match usize::try_from(execute.max_rows) {
            Ok(limit) if limit > 0 => (portal.sent + limit).min(total),
            _ => total,
        };
        portal
            .result
            .encode_rows(out, portal.sent, end, &portal.formats);
        portal.sent = end;
        if end < total {
            out.extend_from_slice(fixed::PORTAL_SUSPENDED);
        } else {
            portal.result.encode_complete(out);
        }
        Ok(())
    }

    fn close(&mut self, frame: &Bytes, out: &mut BytesMut) -> Result<(), CommandFailed> {
        let target = extended::target(frame).ok_or_else(malformed)?;
        if target.kind == b'S' {
            self.statements.remove(&target.name);
        } else {
            self.portals.remove(&target.name);
        }
        out.extend_from_slice(fixed::CLOSE_COMPLETE);
        Ok(())
    }
}

fn malformed() -> CommandFailed {
    CommandFailed::new(
        sqlstate::PROTOCOL_VIOLATION,
        "malformed extended-protocol message",
    )
}

fn too_many() -> CommandFailed {
    CommandFailed::new(
        sqlstate::PROTOCOL_VIOLATION,
        "too many prepared statements or portals on the admin console",
    )
}

fn unknown(what: &str, name: &[u8]) -> CommandFailed {
    CommandFailed::new(
        "26000",
        format!(
            "{what} \"{}\" does not exist",
            String::from_utf8_lossy(name)
        ),
    )
}

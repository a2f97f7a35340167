//! Decoder of pgoutput's messages, protocol version 1 (PostgreSQL docs, "Logical Replication
//! Message Formats").
//!
//! Begin (`B`) and Commit (`C`) frame a transaction. Relation (`R`) describes a relation (its
//! OID, names, replica identity and columns) before its first change in a session and again
//! after it changes; the decoder keeps the column names so that tuple data can be named.
//! Insert (`I`), Update (`U`: optional `K` old key or `O` old row, then `N` new row), Delete
//! (`D`: `K` or `O`) and Truncate (`T`: several OIDs) are the changes. Origin (`O`), Type (`Y`)
//! and Message (`M`) name no change. Anything else is an error.

use std::collections::HashMap;

use bytes::{Buf, Bytes};

use crate::change::{Change, ChangeKind, Column, RelationRef, RowImage, Value};
use crate::wire::Lsn;

/// A decoded pgoutput message, as far as the stream needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A transaction begins.
    Begin {
        /// Its (top-level) transaction id.
        xid: u32,
    },
    /// It commits.
    Commit {
        /// End of the commit record.
        end_lsn: Lsn,
        /// Commit time, µs since 2000-01-01.
        time_micros: i64,
    },
    /// Row changes.
    Changes(Vec<Change>),
    /// Not a change (Relation, Origin, Type, Message).
    Other,
}

/// A message that is not what pgoutput sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its kind needs.
    #[error("truncated pgoutput {0} message")]
    Truncated(&'static str),
    /// A message type pgoutput does not send with protocol version 1.
    #[error("unknown pgoutput message type {0:#04x}")]
    UnknownTag(u8),
    /// A change of a relation no Relation message described.
    #[error("pgoutput change of relation {0} without its Relation message")]
    UnknownRelation(u32),
    /// Tuple data that does not fit its relation.
    #[error("pgoutput tuple data of relation {0} does not match its columns")]
    BadTuple(u32),
}

/// What a Relation message said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationInfo {
    /// Schema name.
    pub namespace: String,
    /// Relation name.
    pub name: String,
    /// Replica identity: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Columns, in order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Its name.
    pub name: String,
    /// Part of the replica identity's key (flag 1).
    pub key: bool,
}

/// Decodes one session's messages (keeps the relations described so far).
#[derive(Debug, Default)]
pub struct Decoder {
    relations: HashMap<u32, RelationInfo>,
}

struct Reader {
    bytes: Bytes,
    what: &'static str,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.bytes.len() < n {
            Err(DecodeError::Truncated(self.what))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.bytes.get_u8())
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        self.need(2)?;
        Ok(self.bytes.get_i16())
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.bytes.get_u32())
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        self.need(4)?;
        Ok(self.bytes.get_i32())
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.bytes.get_u64())
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .ok_or(DecodeError::Truncated(self.what))?;
        let text = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes.advance(end + 1);
        Ok(text)
    }

    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.bytes.split_to(n))
    }
}

impl Decoder {
    /// What a Relation message said about `oid`, if one did.
    pub fn relation(&self, oid: u32) -> Option<&RelationInfo> {
        self.relations.get(&oid)
    }

    /// Decodes one whole message.
    pub fn decode(&mut self, data: Bytes) -> Result<Message, DecodeError> {
        self.decode_inner(data, true)
    }

    /// Decodes the start of a message too large to keep: a change's relation and kind are
    /// read, its row images are not.
    pub fn decode_prefix(&mut self, data: Bytes) -> Result<Message, DecodeError> {
        self.decode_inner(data, false)
    }

    fn decode_inner(&mut self, data: Bytes, complete: bool) -> Result<Message, DecodeError> {
        let Some(&tag) = data.first() else {
            return Err(DecodeError::Truncated("empty"));
        };
        let mut reader = Reader {
            bytes: data.slice(1..),
            what: "pgoutput",
        };
        match tag {
            b'B' => {
                reader.what = "Begin";
                let _final_lsn = reader.u64()?;
                let _commit_time = reader.u64()?;
                let xid = reader.u32()?;
                Ok(Message::Begin { xid })
            }
            b'C' => {
                reader.what = "Commit";
                let _flags = reader.u8()?;
                let _commit_lsn = reader.u64()?;
                let end_lsn = Lsn(reader.u64()?);
                let time_micros = reader.u64()? as i64;
                Ok(Message::Commit {
                    end_lsn,
                    time_micros,
                })
            }
            b'R' if complete => {
                reader.what = "Relation";
                let oid = reader.u32()?;
                let namespace = reader.string()?;
                let name = reader.string()?;
                let replica_identity = reader.u8()?;
                let count = reader.i16()?;
                let mut columns = Vec::with_capacity(count.max(0) as usize);
                for _ in 0..count {
                    let flags = reader.u8()?;
                    columns.push(RelationColumn {
                        name: reader.string()?,
                        key: flags & 1 != 0,
                    });
                    let _type_oid = reader.u32()?;
                    let _typmod = reader.i32()?;
                }
                self.relations.insert(
                    oid,
                    RelationInfo {
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    },
                );
                Ok(Message::Other)
            }
            b'O' | b'Y' | b'M' => Ok(Message::Other),
            b'I' | b'U' | b'D' => {
                reader.what = "change";
                let oid = reader.u32()?;
                let kind = match tag {
                    b'I' => ChangeKind::Insert,
                    b'U' => ChangeKind::Update,
                    _ => ChangeKind::Delete,
                };
                let Some(relation) = self.relations.get(&oid) else {
                    return Err(DecodeError::UnknownRelation(oid));
                };
                if !complete {
                    return Ok(Message::Changes(vec![Change::without_images(
                        RelationRef::Oid(oid),
                        kind,
                    )]));
                }
                let mut old = None;
                let mut new = None;
                loop {
                    if reader.bytes.is_empty() {
                        break;
                    }
                    match reader.u8()? {
                        b'K' if kind != ChangeKind::Insert && old.is_none() => {
                            old = Some(tuple(&mut reader, relation, oid, true)?);
                        }
                        b'O' if kind != ChangeKind::Insert && old.is_none() => {
                            old = Some(tuple(&mut reader, relation, oid, false)?);
                        }
                        b'N' if kind != ChangeKind::Delete && new.is_none() => {
                            new = Some(tuple(&mut reader, relation, oid, false)?);
                        }
                        _ => return Err(DecodeError::BadTuple(oid)),
                    }
                }
                let complete_change = match kind {
                    ChangeKind::Delete => old.is_some(),
                    _ => new.is_some(),
                };
                if !complete_change {
                    return Err(DecodeError::BadTuple(oid));
                }
                Ok(Message::Changes(vec![Change {
                    relation: RelationRef::Oid(oid),
                    kind,
                    old,
                    new,
                }]))
            }
            b'T' => {
                reader.what = "Truncate";
                let count = reader.u32()?;
                let _options = reader.u8()?;
                reader.need(count as usize * 4)?;
                let mut changes = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    changes.push(Change::without_images(
                        RelationRef::Oid(reader.u32()?),
                        ChangeKind::Truncate,
                    ));
                }
                Ok(Message::Changes(changes))
            }
            tag => Err(DecodeError::UnknownTag(tag)),
        }
    }
}

/// TupleData: a column count, then per column `n` null, `u` unchanged TOAST, `t` text. An old
/// key (`K`) carries every column, the non-key ones as null: only the key columns are kept,
/// since the others are not known.
fn tuple(
    reader: &mut Reader,
    relation: &RelationInfo,
    oid: u32,
    key_only: bool,
) -> Result<RowImage, DecodeError> {
    let count = reader.i16()?;
    if count < 0 || count as usize != relation.columns.len() {
        return Err(DecodeError::BadTuple(oid));
    }
    let mut image = RowImage {
        columns: Vec::with_capacity(count as usize),
    };
    for column in &relation.columns {
        let value = match reader.u8()? {
            b'n' => Value::Null,
            b'u' => Value::UnchangedToast,
            b't' => {
                let length = reader.i32()?;
                if length < 0 {
                    return Err(DecodeError::BadTuple(oid));
                }
                Value::Text(reader.take(length as usize)?)
            }
            _ => return Err(DecodeError::BadTuple(oid)),
        };
        if key_only && !column.key {
            continue;
        }
        image.columns.push(Column {
            name: column.name.clone(),
            value,
        });
    }
    Ok(image)
}

#[cfg(test)]
mod tests;

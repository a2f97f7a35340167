//! One replication connection (`replication=database`), already authenticated: simple queries
//! (replication commands such as `IDENTIFY_SYSTEM` and `CREATE_REPLICATION_SLOT`, and plain
//! SQL, which such a connection also accepts), then `START_REPLICATION` and the copy stream:
//! XLogData (`w`) and primary keepalives (`k`) from the server, standby status updates (`r`)
//! from us.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;

use crate::wire::{self, Lsn, MessageReader, ReadError, ServerError};
use crate::ReplicationIo;

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_OFFSET: Duration = Duration::from_secs(946_684_800);

/// Why a command or the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// PostgreSQL answered with an ErrorResponse.
    #[error("{0}")]
    Server(ServerError),
    /// The connection failed or broke the protocol.
    #[error("{0}")]
    Read(#[from] ReadError),
    /// Writing failed.
    #[error("{0}")]
    Write(std::io::Error),
    /// A message that has no place here.
    #[error("unexpected message {tag:#04x} {context}")]
    Unexpected {
        /// Its tag.
        tag: u8,
        /// Where.
        context: &'static str,
    },
    /// A message too short for its kind.
    #[error("malformed {0} message")]
    Malformed(&'static str),
}

/// One row of a query result, text values.
pub type Row = Vec<Option<Bytes>>;

/// What the copy stream delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMessage {
    /// Decoded output of the plugin for one change, begin or commit.
    XLogData {
        /// WAL position the data is for (for a commit: the end of the commit record).
        start: Lsn,
        /// The plugin's output, or its first bytes when `cut`.
        data: Bytes,
        /// True when the message was too large to keep whole.
        cut: bool,
    },
    /// The server's keepalive.
    Keepalive {
        /// The server's WAL position sent so far.
        wal_end: Lsn,
        /// The server wants a status update now.
        reply: bool,
    },
    /// The server ended the copy stream.
    End,
}

/// An authenticated replication connection.
pub struct Session {
    io: Box<dyn ReplicationIo>,
    reader: MessageReader,
}

impl Session {
    /// Wraps a connection that has just received its first ReadyForQuery.
    pub fn new(io: Box<dyn ReplicationIo>) -> Session {
        Session {
            io,
            reader: MessageReader::default(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.io
            .write_all(bytes)
            .await
            .map_err(SessionError::Write)?;
        self.io.flush().await.map_err(SessionError::Write)
    }

    /// Runs a simple query and returns its rows; an error is returned after the server's
    /// ReadyForQuery, so the connection stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, SessionError> {
        self.send(&wire::query(sql)).await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let message = self.reader.next(&mut self.io).await?;
            match message.tag {
                b'D' => rows.push(data_row(message.body)?),
                b'E' => error = Some(ServerError::parse(&message.body)),
                b'Z' => break,
                b'T' | b'C' | b'I' | b'N' | b'S' => {}
                tag => {
                    return Err(SessionError::Unexpected {
                        tag,
                        context: "in a query result",
                    })
                }
            }
        }
        match error {
            Some(error) => Err(SessionError::Server(error)),
            None => Ok(rows),
        }
    }

    /// The first value of the first row of a query.
    pub async fn value(&mut self, sql: &str) -> Result<Option<String>, SessionError> {
        let rows = self.simple_query(sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Sends `START_REPLICATION ...` and waits for the copy stream to begin.
    pub async fn start_replication(&mut self, command: &str) -> Result<(), SessionError> {
        self.send(&wire::query(command)).await?;
        loop {
            let message = self.reader.next(&mut self.io).await?;
            match message.tag {
                b'W' => return Ok(()),
                b'E' => return Err(SessionError::Server(ServerError::parse(&message.body))),
                b'N' | b'S' => {}
                tag => {
                    return Err(SessionError::Unexpected {
                        tag,
                        context: "before the copy stream",
                    })
                }
            }
        }
    }

    /// The next message of the copy stream. Cancel-safe.
    pub async fn next(&mut self) -> Result<StreamMessage, SessionError> {
        loop {
            let message = self.reader.next(&mut self.io).await?;
            match message.tag {
                b'd' => return copy_data(message.body, message.cut),
                b'c' => return Ok(StreamMessage::End),
                b'E' => return Err(SessionError::Server(ServerError::parse(&message.body))),
                b'N' | b'S' => {}
                tag => {
                    return Err(SessionError::Unexpected {
                        tag,
                        context: "in the copy stream",
                    })
                }
            }
        }
    }

    /// Tells the server everything up to `lsn` is processed.
    pub async fn send_status(&mut self, lsn: Lsn) -> Result<(), SessionError> {
        self.send(&wire::standby_status(lsn, now_micros())).await
    }

    /// Ends the stream and the connection politely (best effort).
    pub async fn close(mut self) {
        let _ = self.send(&wire::copy_done()).await;
        let _ = self.send(&wire::terminate()).await;
        let _ = self.io.shutdown().await;
    }
}

fn data_row(mut body: Bytes) -> Result<Row, SessionError> {
    if body.len() < 2 {
        return Err(SessionError::Malformed("DataRow"));
    }
    let count = body.get_i16();
    let mut row = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        if body.len() < 4 {
            return Err(SessionError::Malformed("DataRow"));
        }
        let length = body.get_i32();
        if length < 0 {
            row.push(None);
            continue;
        }
        let length = length as usize;
        if body.len() < length {
            return Err(SessionError::Malformed("DataRow"));
        }
        row.push(Some(body.split_to(length)));
    }
    Ok(row)
}

fn copy_data(mut body: Bytes, cut: bool) -> Result<StreamMessage, SessionError> {
    match body.first() {
        Some(b'w') if body.len() >= 25 => {
            body.advance(1);
            let start = Lsn(body.get_u64());
            let _wal_end = body.get_u64();
            let _send_time = body.get_i64();
            Ok(StreamMessage::XLogData {
                start,
                data: body,
                cut,
            })
        }
        Some(b'k') if body.len() >= 18 && !cut => {
            body.advance(1);
            let wal_end = Lsn(body.get_u64());
            let _send_time = body.get_i64();
            Ok(StreamMessage::Keepalive {
                wal_end,
                reply: body.get_u8() != 0,
            })
        }
        Some(b'w') => Err(SessionError::Malformed("XLogData")),
        Some(b'k') => Err(SessionError::Malformed("keepalive")),
        _ => Err(SessionError::Malformed("CopyData")),
    }
}

/// Now, in µs since 2000-01-01.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH + POSTGRES_EPOCH_OFFSET)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_data_messages() {
        let mut xlog = vec![b'w'];
        xlog.extend_from_slice(&0x10u64.to_be_bytes());
        xlog.extend_from_slice(&0x20u64.to_be_bytes());
        xlog.extend_from_slice(&7i64.to_be_bytes());
        xlog.extend_from_slice(b"BEGIN");
        assert_eq!(
            copy_data(Bytes::from(xlog), false).expect("xlogdata"),
            StreamMessage::XLogData {
                start: Lsn(0x10),
                data: Bytes::from_static(b"BEGIN"),
                cut: false
            }
        );
        let mut keepalive = vec![b'k'];
        keepalive.extend_from_slice(&0x30u64.to_be_bytes());
        keepalive.extend_from_slice(&7i64.to_be_bytes());
        keepalive.push(1);
        assert_eq!(
            copy_data(Bytes::from(keepalive), false).expect("keepalive"),
            StreamMessage::Keepalive {
                wal_end: Lsn(0x30),
                reply: true
            }
        );
        assert!(copy_data(Bytes::from_static(b"w\0\0"), false).is_err());
        assert!(copy_data(Bytes::from_static(b"x"), false).is_err());
    }

    #[test]
    fn data_rows() {
        let body = Bytes::from_static(b"\0\x02\0\0\0\x02ab\xff\xff\xff\xff");
        assert_eq!(
            data_row(body).expect("row"),
            vec![Some(Bytes::from_static(b"ab")), None]
        );
        assert!(data_row(Bytes::from_static(b"\0\x01\0\0\0\x09ab")).is_err());
    }
}

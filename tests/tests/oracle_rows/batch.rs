//! Several writes in one request: one simple Query message holding several statements, or
//! several extended-protocol executions before a single Sync. Either way PostgreSQL runs them
//! in one implicit transaction that commits at the end of the request, or not at all when one
//! statement fails; tokio-postgres sends a Sync after every execution, so the extended form is
//! written frame by frame here.

use pgcached_tests::raw::{frame, login, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::model::Param;
use crate::writes::Write;

/// A statement that fails when it runs (division by zero), ending a batch with a rollback.
pub(crate) const FAILING: &str = "SELECT 1 / 0";

/// The SQLSTATE [`FAILING`] fails with.
pub(crate) const DIVISION_BY_ZERO: &str = "22012";

/// A connection speaking the wire protocol frame by frame.
pub(crate) struct RawConn {
    stream: TcpStream,
}

impl RawConn {
    /// Logs in as `postgres` (trust) to `app` on `port`.
    pub(crate) fn login(port: u16) -> RawConn {
        let (stream, messages) = login(port, "postgres");
        assert_eq!(
            messages.last().map(|m| m.tag),
            Some(b'Z'),
            "raw login: {messages:?}"
        );
        stream.set_nonblocking(true).expect("nonblocking");
        RawConn {
            stream: TcpStream::from_std(stream).expect("tokio stream"),
        }
    }

    /// Sends Parse/Bind/Execute for each write (and for [`FAILING`] last, with `fail`), then one
    /// Sync; returns the SQLSTATE of the first error, if any.
    pub(crate) async fn extended(&mut self, writes: &[Write], fail: bool) -> Option<String> {
        let mut out = Vec::new();
        for write in writes {
            execution(&mut out, write.sql, &write.params);
        }
        if fail {
            execution(&mut out, FAILING, &[]);
        }
        out.extend(frame(b'S', &[]));
        self.stream.write_all(&out).await.expect("send batch");
        let mut error = None;
        loop {
            let message = self.read().await;
            match message.tag {
                b'E' if error.is_none() => error = Some(message.sqlstate().unwrap_or_default()),
                b'Z' => return error,
                _ => {}
            }
        }
    }

    async fn read(&mut self) -> Message {
        let mut header = [0u8; 5];
        self.stream
            .read_exact(&mut header)
            .await
            .expect("read header");
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut body = vec![0u8; (len as usize).saturating_sub(4)];
        self.stream.read_exact(&mut body).await.expect("read body");
        Message {
            tag: header[0],
            body,
        }
    }
}

/// Appends Parse (unnamed, types left to the server), Bind (text parameters) and Execute.
fn execution(out: &mut Vec<u8>, sql: &str, params: &[Param]) {
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    out.extend(frame(b'P', &parse));
    let mut bind = vec![0u8, 0u8, 0, 0];
    bind.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for param in params {
        let value = match param {
            Param::Int(n) => n.to_string(),
            Param::Text(s) => s.clone(),
        };
        bind.extend_from_slice(&(value.len() as i32).to_be_bytes());
        bind.extend_from_slice(value.as_bytes());
    }
    bind.extend_from_slice(&[0, 0]);
    out.extend(frame(b'B', &bind));
    out.extend(frame(b'E', &[0, 0, 0, 0, 0]));
}

//! A minimal raw wire-protocol client, for sending what well-behaved drivers never send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One backend message: tag and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message type byte.
    pub tag: u8,
    /// Body without tag and length.
    pub body: Vec<u8>,
}

impl Message {
    /// The SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn sqlstate(&self) -> Option<String> {
        self.field(b'C')
    }

    /// A field of an ErrorResponse or NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                return None;
            }
            let end = tail.iter().position(|b| *b == 0)?;
            if c == code {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }
}

/// A startup packet for `version` (e.g. 196608 for 3.0) with these parameters.
pub fn startup_packet(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// A tagged frontend message.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A simple Query message.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    frame(b'Q', &body)
}

/// Connects with a read timeout of `timeout`.
pub fn connect(port: u16, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads one backend message; `None` on EOF, timeout or error.
pub fn read_message(stream: &mut TcpStream) -> Option<Message> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).ok()?;
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let mut body = vec![0u8; (len as usize).saturating_sub(4)];
    stream.read_exact(&mut body).ok()?;
    Some(Message {
        tag: header[0],
        body,
    })
}

/// Reads messages until ReadyForQuery (included), an EOF, or a timeout.
pub fn read_until_ready(stream: &mut TcpStream) -> Vec<Message> {
    let mut messages = Vec::new();
    while let Some(m) = read_message(stream) {
        let done = m.tag == b'Z';
        messages.push(m);
        if done {
            break;
        }
    }
    messages
}

/// Connects as a trust user to database `app` and reads up to the first ReadyForQuery.
pub fn login(port: u16, user: &str) -> (TcpStream, Vec<Message>) {
    login_to(port, user, "app")
}

/// Connects as a trust user to `database` and reads up to the first ReadyForQuery.
pub fn login_to(port: u16, user: &str, database: &str) -> (TcpStream, Vec<Message>) {
    login_to_with(port, user, database, &[])
}

/// Like [`login_to`], with more startup parameters (`client_encoding`, ...).
pub fn login_to_with(
    port: u16,
    user: &str,
    database: &str,
    params: &[(&str, &str)],
) -> (TcpStream, Vec<Message>) {
    let mut stream = connect(port, Duration::from_secs(10));
    let mut all = vec![("user", user), ("database", database)];
    all.extend_from_slice(params);
    stream
        .write_all(&startup_packet(196_608, &all))
        .expect("startup");
    let messages = read_until_ready(&mut stream);
    (stream, messages)
}

/// True when the peer has closed the connection (EOF or reset) within the read timeout.
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

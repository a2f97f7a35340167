//! Startup-phase packets: untagged, an Int32 length then an Int32 code.
//!
//! Before the first StartupMessage a client may send SSLRequest, GSSENCRequest or CancelRequest,
//! all of the same untagged shape. This module classifies one packet; the session decides what to
//! answer.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use pgwire::messages::startup::Startup;
use pgwire::messages::{DecodeContext, Message};

/// Longest startup packet accepted, as in PostgreSQL (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;
/// Shortest startup-phase packet: length + code.
pub const MIN_STARTUP_PACKET_LEN: usize = 8;

/// Request code of an SSLRequest.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// Request code of a GSSENCRequest.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Request code of a CancelRequest.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// One startup-phase packet, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption (never offered).
    GssEncRequest,
    /// A cancel request; the raw packet is forwarded to the server as is.
    CancelRequest(Bytes),
    /// A StartupMessage for protocol 3.x; forwarded to the server as is.
    Startup(StartupMessage),
}

/// A StartupMessage: the raw bytes to forward plus the parameters pgcached reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// The packet exactly as received, length word included.
    pub raw: Bytes,
    /// Protocol version requested, as (major, minor).
    pub version: (u16, u16),
    /// Startup parameters (`user`, `database`, `application_name`, GUCs, ...).
    pub parameters: BTreeMap<String, String>,
}

impl StartupMessage {
    /// The role the client connects as.
    pub fn user(&self) -> &str {
        self.parameters
            .get("user")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The database the client connects to; PostgreSQL defaults it to the user name.
    pub fn database(&self) -> &str {
        match self.parameters.get("database") {
            Some(db) if !db.is_empty() => db,
            _ => self.user(),
        }
    }

    /// A startup parameter, if the client sent it.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The same StartupMessage with `database` replaced (for the admin console, whose
    /// authentication is checked against a real database).
    pub fn with_database(&self, database: &str) -> Bytes {
        let mut body = Vec::with_capacity(self.raw.len() + database.len());
        let (major, minor) = self.version;
        body.extend_from_slice(&((u32::from(major) << 16) | u32::from(minor)).to_be_bytes());
        for (name, value) in &self.parameters {
            let value = if name == "database" { database } else { value };
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        if !self.parameters.contains_key("database") {
            body.extend_from_slice(b"database\0");
            body.extend_from_slice(database.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = Vec::with_capacity(body.len() + 4);
        packet.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        packet.extend_from_slice(&body);
        Bytes::from(packet)
    }

    /// True for a walsender (replication) connection.
    pub fn is_replication(&self) -> bool {
        self.parameters
            .get("replication")
            .is_some_and(|v| !v.eq_ignore_ascii_case("false") && v != "0" && v != "off")
    }
}

/// A startup packet no server would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupPacketError {
    /// The length word is out of range.
    #[error("invalid length of startup packet: {0}")]
    BadLength(i64),
    /// A protocol version other than 3.x.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.2")]
    UnsupportedVersion { major: u16, minor: u16 },
    /// The packet body does not parse.
    #[error("invalid startup packet layout: {0}")]
    Malformed(String),
}

/// Validates the length word of a startup-phase packet and returns the packet's total size.
pub fn packet_len(length_word: [u8; 4]) -> Result<usize, StartupPacketError> {
    let length = i32::from_be_bytes(length_word);
    if length < MIN_STARTUP_PACKET_LEN as i32 || length as usize > MAX_STARTUP_PACKET_LEN {
        return Err(StartupPacketError::BadLength(i64::from(length)));
    }
    Ok(length as usize)
}

/// Classifies one complete startup-phase packet (length word included).
pub fn classify(packet: Bytes) -> Result<StartupPacket, StartupPacketError> {
    if packet.len() < MIN_STARTUP_PACKET_LEN {
        return Err(StartupPacketError::BadLength(packet.len() as i64));
    }
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    match code {
        SSL_REQUEST_CODE => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => Ok(StartupPacket::CancelRequest(packet)),
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupPacketError::UnsupportedVersion { major, minor });
            }
            let parameters = decode_parameters(&packet)?;
            Ok(StartupPacket::Startup(StartupMessage {
                raw: packet,
                version: (major, minor),
                parameters,
            }))
        }
    }
}

fn decode_parameters(packet: &Bytes) -> Result<BTreeMap<String, String>, StartupPacketError> {
    // PostgreSQL requires the parameter list to end with an empty name.
    if packet.last() != Some(&0) {
        return Err(StartupPacketError::Malformed(
            "missing terminator".to_owned(),
        ));
    }
    let mut buf = BytesMut::from(&packet[..]);
    let context = DecodeContext::default();
    match Startup::decode(&mut buf, &context) {
        Ok(Some(startup)) => Ok(startup.parameters),
        Ok(None) => Err(StartupPacketError::Malformed("truncated".to_owned())),
        Err(e) => Err(StartupPacketError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Bytes {
        let mut v = Vec::new();
        v.extend_from_slice(&((8 + body.len()) as i32).to_be_bytes());
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        Bytes::from(v)
    }

    #[test]
    fn startup_message_parameters_are_read() {
        let p = packet(196_608, b"user\0alice\0database\0shop\0\0");
        match classify(p.clone()) {
            Ok(StartupPacket::Startup(m)) => {
                assert_eq!(m.user(), "alice");
                assert_eq!(m.database(), "shop");
                assert_eq!(m.version, (3, 0));
                assert_eq!(m.raw, p);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn database_defaults_to_user() {
        let p = packet(196_610, b"user\0bob\0\0");
        match classify(p) {
            Ok(StartupPacket::Startup(m)) => {
                assert_eq!(m.database(), "bob");
                assert_eq!(m.version, (3, 2));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn requests_are_recognised() {
        assert_eq!(
            classify(packet(SSL_REQUEST_CODE, b"")),
            Ok(StartupPacket::SslRequest)
        );
        assert_eq!(
            classify(packet(GSSENC_REQUEST_CODE, b"")),
            Ok(StartupPacket::GssEncRequest)
        );
        assert!(matches!(
            classify(packet(CANCEL_REQUEST_CODE, &[0; 8])),
            Ok(StartupPacket::CancelRequest(_))
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            classify(packet(0x0002_0000, b"")),
            Err(StartupPacketError::UnsupportedVersion { major: 2, .. })
        ));
        assert!(classify(packet(196_608, b"user\0x")).is_err());
        assert!(packet_len(1_000_000i32.to_be_bytes()).is_err());
        assert!(packet_len(4i32.to_be_bytes()).is_err());
        assert_eq!(packet_len(8i32.to_be_bytes()), Ok(8));
    }
}

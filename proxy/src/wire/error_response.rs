//! ErrorResponse messages that pgcached originates itself.
//!
//! pgcached relays the server's errors untouched; it writes its own only when the server cannot
//! answer (unreachable, gone, shutting down, limits) or the client broke the protocol. They carry
//! a real SQLSTATE so that drivers classify them as they would the server's.

use bytes::{Bytes, BytesMut};
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::Message;

/// SQLSTATE codes pgcached uses for the errors it originates.
pub mod sqlstate {
    /// A malformed frame or startup packet.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// The upstream server cannot be reached or was lost.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// pgcached is shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// `--max-client-conn` reached.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// A role the admin console does not admit.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// The client asked for something pgcached cannot do.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// An admin console command pgcached does not understand.
    pub const SYNTAX_ERROR: &str = "42601";
    /// `INVALIDATE TABLE` named no table pgcached can find.
    pub const UNDEFINED_TABLE: &str = "42P01";
    /// A console command that needs something not in place (caching off, no database yet).
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    /// pgcached could not do what the command asked (catalog unreachable, ...).
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// How bad an originated error is; FATAL errors end the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The session ends after this error.
    Fatal,
    /// The current statement failed; the session goes on.
    Error,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
        }
    }
}

/// Encodes an ErrorResponse (`E`) with severity, SQLSTATE and message.
pub fn encode(severity: Severity, code: &str, message: &str) -> Bytes {
    encode_with(severity, code, message, None, None)
}

/// Encodes an ErrorResponse with a detail line and a hint (what to do), when given.
pub fn encode_with(
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) -> Bytes {
    let mut fields = vec![
        (b'S', severity.as_str().to_owned()),
        (b'V', severity.as_str().to_owned()),
        (b'C', code.to_owned()),
        (b'M', format!("pgcached: {message}")),
    ];
    if let Some(detail) = detail {
        fields.push((b'D', detail.to_owned()));
    }
    if let Some(hint) = hint {
        fields.push((b'H', hint.to_owned()));
    }
    let response = ErrorResponse::new(fields);
    let mut buf = BytesMut::with_capacity(response.message_length() + 1);
    if response.encode(&mut buf).is_err() {
        // Only a message over 2 GiB fails to encode; fall back to a fixed text.
        return encode_fallback(severity, code);
    }
    buf.freeze()
}

fn encode_fallback(severity: Severity, code: &str) -> Bytes {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity.as_str()),
        (b'V', severity.as_str()),
        (b'C', code),
        (b'M', "pgcached: error"),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_has_tag_length_and_fields() {
        let bytes = encode(
            Severity::Fatal,
            sqlstate::CONNECTION_FAILURE,
            "upstream lost",
        );
        assert_eq!(bytes[0], b'E');
        let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len + 1, bytes.len());
        let body = &bytes[5..];
        assert!(body.windows(6).any(|w| w == b"C08006"));
        assert!(body.windows(6).any(|w| w == b"SFATAL"));
        assert_eq!(body.last(), Some(&0));
    }
}

/// A field (`S` severity, `C` code, `M` message, ...) of an ErrorResponse or NoticeResponse
/// frame (tag and length included), if present and NUL-terminated.
pub fn field(frame: &[u8], code: u8) -> Option<&[u8]> {
    let mut fields = frame.get(5..)?;
    while let Some((&kind, rest)) = fields.split_first() {
        if kind == 0 {
            return None;
        }
        let end = rest.iter().position(|b| *b == 0)?;
        if kind == code {
            return Some(&rest[..end]);
        }
        fields = &rest[end + 1..];
    }
    None
}

/// The SQLSTATE class (its first two characters) of an ErrorResponse or NoticeResponse frame,
/// if the frame has a well-formed `C` field. Only the 36×36 possible classes come out, so the
/// result is safe as a metric label.
pub fn sqlstate_class(frame: &[u8]) -> Option<[u8; 2]> {
    let code = field(frame, b'C')?;
    let class = [*code.first()?, *code.get(1)?];
    let valid = class
        .iter()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
    valid.then_some(class)
}

#[cfg(test)]
mod sqlstate_tests {
    use super::*;

    #[test]
    fn the_class_comes_from_the_code_field() {
        let frame = encode(Severity::Error, "22012", "division by zero");
        assert_eq!(sqlstate_class(&frame), Some(*b"22"));
        let frame = encode(Severity::Fatal, "57P01", "terminating");
        assert_eq!(sqlstate_class(&frame), Some(*b"57"));
    }

    #[test]
    fn malformed_frames_have_no_class() {
        assert_eq!(sqlstate_class(b"E\0\0\0\x04"), None);
        assert_eq!(sqlstate_class(b"E\0\0\0\x09Cxx\0\0"), None);
        assert_eq!(sqlstate_class(b"E\0\0\0\x08C2"), None);
        assert_eq!(sqlstate_class(b""), None);
    }
}

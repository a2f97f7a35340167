//! The authentication messages of the login phase: `R` requests from the server, `p` answers
//! from the client.
//!
//! Most of them are relayed untouched. The SASL ones are read and, when pgcached takes part in
//! the SCRAM exchange, written: AuthenticationSASL (its mechanism list), SASLContinue and
//! SASLFinal, and the client's SASLInitialResponse and SASLResponse.

use bytes::{BufMut, Bytes, BytesMut};

/// AuthenticationOk.
pub const OK: i32 = 0;
/// AuthenticationCleartextPassword.
pub const CLEARTEXT_PASSWORD: i32 = 3;
/// AuthenticationSASL: the mechanism list.
pub const SASL: i32 = 10;
/// AuthenticationSASLContinue: the server's first message.
pub const SASL_CONTINUE: i32 = 11;
/// AuthenticationSASLFinal: the server's final message.
pub const SASL_FINAL: i32 = 12;

/// The request code of an Authentication (`R`) frame.
pub fn request_code(frame: &[u8]) -> Option<i32> {
    let code = frame.get(5..9)?;
    Some(i32::from_be_bytes([code[0], code[1], code[2], code[3]]))
}

/// True when the client must answer this request with a `p` message.
pub fn expects_answer(code: i32) -> bool {
    // Ok, SASLFinal: nothing to answer. Every other request (passwords, GSS, SSPI, SASL) is
    // answered, as is any request this version does not know (the server will say if not).
    !matches!(code, OK | SASL_FINAL)
}

/// The data after the request code (SASLContinue and SASLFinal payloads).
pub fn request_data(frame: &[u8]) -> &[u8] {
    frame.get(9..).unwrap_or(&[])
}

/// The password of a PasswordMessage (`p`) answering AuthenticationCleartextPassword.
pub fn password(frame: &[u8]) -> Option<String> {
    let body = frame.get(5..)?;
    let text = body.strip_suffix(&[0])?;
    String::from_utf8(text.to_vec()).ok()
}

/// The mechanisms of an AuthenticationSASL frame.
pub fn sasl_mechanisms(frame: &[u8]) -> Option<Vec<String>> {
    let mut rest = frame.get(9..)?;
    let mut mechanisms = Vec::new();
    loop {
        let end = rest.iter().position(|b| *b == 0)?;
        if end == 0 {
            return Some(mechanisms);
        }
        mechanisms.push(std::str::from_utf8(&rest[..end]).ok()?.to_owned());
        rest = &rest[end + 1..];
    }
}

/// AuthenticationSASL offering `mechanisms`, in order.
pub fn encode_sasl(mechanisms: &[&str]) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i32(SASL);
    for mechanism in mechanisms {
        body.put_slice(mechanism.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    message(b'R', &body)
}

/// AuthenticationSASLContinue or AuthenticationSASLFinal carrying `data`.
pub fn encode_sasl_step(code: i32, data: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(4 + data.len());
    body.put_i32(code);
    body.put_slice(data);
    message(b'R', &body)
}

/// A SASLInitialResponse: the mechanism chosen and its first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse {
    /// The mechanism the client chose.
    pub mechanism: String,
    /// The client's first message.
    pub data: Bytes,
}

/// Reads a SASLInitialResponse (`p`) frame.
pub fn sasl_initial_response(frame: &Bytes) -> Option<SaslInitialResponse> {
    let body = frame.get(5..)?;
    let end = body.iter().position(|b| *b == 0)?;
    let mechanism = std::str::from_utf8(&body[..end]).ok()?.to_owned();
    let length = body.get(end + 1..end + 5)?;
    let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    let start = 5 + end + 5;
    let data = match usize::try_from(length) {
        Ok(length) if start + length == frame.len() => frame.slice(start..),
        Err(_) if length == -1 && start == frame.len() => Bytes::new(),
        _ => return None,
    };
    Some(SaslInitialResponse { mechanism, data })
}

/// A SASLInitialResponse for `mechanism` with `data`.
pub fn encode_sasl_initial_response(mechanism: &str, data: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(mechanism.len() + 5 + data.len());
    body.put_slice(mechanism.as_bytes());
    body.put_u8(0);
    body.put_i32(i32::try_from(data.len()).unwrap_or(i32::MAX));
    body.put_slice(data);
    message(b'p', &body)
}

/// The payload of a SASLResponse (`p`) frame.
pub fn sasl_response(frame: &[u8]) -> &[u8] {
    frame.get(5..).unwrap_or(&[])
}

/// A SASLResponse carrying `data`.
pub fn encode_sasl_response(data: &[u8]) -> Bytes {
    message(b'p', data)
}

fn message(tag: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(tag);
    out.put_i32(i32::try_from(body.len() + 4).unwrap_or(i32::MAX));
    out.put_slice(body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mechanism_list_round_trips() {
        let frame = encode_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        assert_eq!(request_code(&frame), Some(SASL));
        assert_eq!(
            sasl_mechanisms(&frame),
            Some(vec![
                "SCRAM-SHA-256-PLUS".to_owned(),
                "SCRAM-SHA-256".to_owned()
            ])
        );
        assert_eq!(
            sasl_mechanisms(b"R\0\0\0\x0a\0\0\0\x0aX"),
            None,
            "unterminated"
        );
    }

    #[test]
    fn initial_responses_round_trip_and_bad_lengths_are_refused() {
        let frame = encode_sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc");
        let read = sasl_initial_response(&frame).expect("parses");
        assert_eq!(read.mechanism, "SCRAM-SHA-256");
        assert_eq!(&read.data[..], b"n,,n=,r=abc");
        let mut cut = frame.to_vec();
        cut.pop();
        assert!(sasl_initial_response(&Bytes::from(cut)).is_none());
        let steps = encode_sasl_step(SASL_CONTINUE, b"r=abc,s=c2FsdA==,i=4096");
        assert_eq!(request_code(&steps), Some(SASL_CONTINUE));
        assert_eq!(request_data(&steps), b"r=abc,s=c2FsdA==,i=4096");
        assert_eq!(sasl_response(&encode_sasl_response(b"c=biws")), b"c=biws");
    }

    #[test]
    fn only_ok_and_final_need_no_answer() {
        assert!(!expects_answer(OK));
        assert!(!expects_answer(SASL_FINAL));
        for code in [
            3, // cleartext password
            5, // MD5 password
            7,
            8,
            9,
            SASL,
            SASL_CONTINUE,
        ] {
            assert!(expects_answer(code), "{code}");
        }
    }
}

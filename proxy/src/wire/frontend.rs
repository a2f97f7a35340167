//! Frontend (client-to-server) messages, decoded once at the relay's boundary.
//!
//! A frame from the client is read into a [`FrontendMessage`]: its tag as a [`FrontendTag`]
//! (so `b'S'` here is Sync, never the backend's ParameterStatus) and, for the messages the cache
//! path inspects, their fields as slices of the frame's `Bytes`: nothing is copied or
//! re-encoded, and no branch of the session has to read the frame again.

use bytes::Bytes;

use super::extended::{self, Bind, Execute, Parse, Target};

/// The tag byte of a frontend message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendTag {
    /// `Q` Query.
    Query,
    /// `P` Parse.
    Parse,
    /// `B` Bind.
    Bind,
    /// `D` Describe.
    Describe,
    /// `E` Execute.
    Execute,
    /// `C` Close.
    Close,
    /// `S` Sync.
    Sync,
    /// `H` Flush.
    Flush,
    /// `F` FunctionCall.
    FunctionCall,
    /// `d` CopyData.
    CopyData,
    /// `c` CopyDone.
    CopyDone,
    /// `f` CopyFail.
    CopyFail,
    /// `X` Terminate.
    Terminate,
    /// `p` a password, SASL or GSS message.
    Password,
    /// Any other byte: not a message a client may send after startup.
    Unknown(u8),
}

impl FrontendTag {
    /// The tag of a byte.
    pub fn of(byte: u8) -> FrontendTag {
        match byte {
            b'Q' => FrontendTag::Query,
            b'P' => FrontendTag::Parse,
            b'B' => FrontendTag::Bind,
            b'D' => FrontendTag::Describe,
            b'E' => FrontendTag::Execute,
            b'C' => FrontendTag::Close,
            b'S' => FrontendTag::Sync,
            b'H' => FrontendTag::Flush,
            b'F' => FrontendTag::FunctionCall,
            b'd' => FrontendTag::CopyData,
            b'c' => FrontendTag::CopyDone,
            b'f' => FrontendTag::CopyFail,
            b'X' => FrontendTag::Terminate,
            b'p' => FrontendTag::Password,
            other => FrontendTag::Unknown(other),
        }
    }

    /// True for the messages of an extended-protocol batch (up to, not including, Sync).
    pub fn is_extended(self) -> bool {
        matches!(
            self,
            FrontendTag::Parse
                | FrontendTag::Bind
                | FrontendTag::Describe
                | FrontendTag::Execute
                | FrontendTag::Close
                | FrontendTag::Flush
        )
    }
}

/// What a frontend frame says, as far as the session needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend {
    /// A simple Query with its text (no terminator).
    Query { sql: Bytes },
    /// Parse.
    Parse(Parse),
    /// Bind.
    Bind(Bind),
    /// Describe of a statement (`S`) or portal (`P`).
    Describe(Target),
    /// Execute.
    Execute(Execute),
    /// Close of a statement or portal.
    Close(Target),
    /// Any other message, or one of the above that does not parse.
    Other,
}

/// A frontend frame: the bytes to relay and what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendMessage {
    /// The whole frame, tag and length included.
    pub bytes: Bytes,
    /// Its tag.
    pub tag: FrontendTag,
    /// Its fields, when the tag is one the cache path reads and the body parses.
    pub message: Frontend,
}

impl FrontendMessage {
    /// Decodes a whole frame (tag, length, body).
    pub fn decode(bytes: Bytes) -> FrontendMessage {
        let tag = FrontendTag::of(bytes.first().copied().unwrap_or(0));
        let message = match tag {
            FrontendTag::Query => extended::query_text(&bytes)
                .map(|sql| Frontend::Query { sql })
                .unwrap_or(Frontend::Other),
            FrontendTag::Parse => extended::parse(&bytes)
                .map(Frontend::Parse)
                .unwrap_or(Frontend::Other),
            FrontendTag::Bind => extended::bind(&bytes)
                .map(Frontend::Bind)
                .unwrap_or(Frontend::Other),
            FrontendTag::Describe => extended::target(&bytes)
                .map(Frontend::Describe)
                .unwrap_or(Frontend::Other),
            FrontendTag::Execute => extended::execute(&bytes)
                .map(Frontend::Execute)
                .unwrap_or(Frontend::Other),
            FrontendTag::Close => extended::target(&bytes)
                .map(Frontend::Close)
                .unwrap_or(Frontend::Other),
            _ => Frontend::Other,
        };
        FrontendMessage {
            bytes,
            tag,
            message,
        }
    }

    /// True when the tag is one whose fields the cache path reads but the body did not parse.
    pub fn is_unreadable(&self) -> bool {
        self.message == Frontend::Other
            && matches!(
                self.tag,
                FrontendTag::Query
                    | FrontendTag::Parse
                    | FrontendTag::Bind
                    | FrontendTag::Describe
                    | FrontendTag::Execute
                    | FrontendTag::Close
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::test_frame as frame;

    #[test]
    fn frames_are_decoded_once_into_typed_messages() {
        let query = FrontendMessage::decode(frame(b'Q', b"SELECT 1\0"));
        assert_eq!(query.tag, FrontendTag::Query);
        assert_eq!(
            query.message,
            Frontend::Query {
                sql: Bytes::from_static(b"SELECT 1")
            }
        );
        let sync = FrontendMessage::decode(frame(b'S', b""));
        assert_eq!(sync.tag, FrontendTag::Sync);
        assert_eq!(sync.message, Frontend::Other);
        assert!(!sync.is_unreadable());
        let execute = FrontendMessage::decode(frame(b'E', b"\0\0\0\0\0"));
        assert!(matches!(
            execute.message,
            Frontend::Execute(Execute { max_rows: 0, .. })
        ));
    }

    #[test]
    fn malformed_bodies_are_unreadable_and_unknown_tags_are_kept() {
        let bad = FrontendMessage::decode(frame(b'E', b"\0\0\0"));
        assert!(bad.is_unreadable());
        let odd = FrontendMessage::decode(frame(b'z', b""));
        assert_eq!(odd.tag, FrontendTag::Unknown(b'z'));
        assert!(!FrontendTag::Sync.is_extended());
        assert!(FrontendTag::Flush.is_extended());
    }
}

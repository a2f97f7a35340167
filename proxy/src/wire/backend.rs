//! Backend (server-to-client) message tags, and the two fields the session reads from them:
//! the transaction status of ReadyForQuery and the severity of an ErrorResponse.
//!
//! Tags are typed by direction: `b'S'` here is ParameterStatus and `b'D'` is DataRow, never the
//! frontend's Sync or Describe.

use super::error_response;

/// The tag byte of a backend message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendTag {
    /// `Z` ReadyForQuery.
    ReadyForQuery,
    /// `E` ErrorResponse.
    ErrorResponse,
    /// `N` NoticeResponse.
    NoticeResponse,
    /// `S` ParameterStatus.
    ParameterStatus,
    /// `A` NotificationResponse.
    Notification,
    /// `1` ParseComplete.
    ParseComplete,
    /// `2` BindComplete.
    BindComplete,
    /// `3` CloseComplete.
    CloseComplete,
    /// `t` ParameterDescription.
    ParameterDescription,
    /// `T` RowDescription.
    RowDescription,
    /// `n` NoData.
    NoData,
    /// `D` DataRow.
    DataRow,
    /// `C` CommandComplete.
    CommandComplete,
    /// `I` EmptyQueryResponse.
    EmptyQuery,
    /// `s` PortalSuspended.
    PortalSuspended,
    /// `G`, `H`, `W`: CopyInResponse, CopyOutResponse, CopyBothResponse.
    CopyResponse,
    /// `d` CopyData, `c` CopyDone.
    CopyData,
    /// Anything else (BackendKeyData, FunctionCallResponse, NegotiateProtocolVersion, ...).
    Other(u8),
}

impl BackendTag {
    /// The tag of a byte.
    pub fn of(byte: u8) -> BackendTag {
        match byte {
            b'Z' => BackendTag::ReadyForQuery,
            b'E' => BackendTag::ErrorResponse,
            b'N' => BackendTag::NoticeResponse,
            b'S' => BackendTag::ParameterStatus,
            b'A' => BackendTag::Notification,
            b'1' => BackendTag::ParseComplete,
            b'2' => BackendTag::BindComplete,
            b'3' => BackendTag::CloseComplete,
            b't' => BackendTag::ParameterDescription,
            b'T' => BackendTag::RowDescription,
            b'n' => BackendTag::NoData,
            b'D' => BackendTag::DataRow,
            b'C' => BackendTag::CommandComplete,
            b'I' => BackendTag::EmptyQuery,
            b's' => BackendTag::PortalSuspended,
            b'G' | b'H' | b'W' => BackendTag::CopyResponse,
            b'd' | b'c' => BackendTag::CopyData,
            other => BackendTag::Other(other),
        }
    }
}

/// The transaction status a ReadyForQuery reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InBlock,
    /// `E`: in a failed transaction block (statements are refused until it ends).
    Failed,
}

impl TransactionStatus {
    /// The status of a ReadyForQuery frame (tag and length included); a frame too short to say
    /// is taken as idle, as it ends the request either way.
    pub fn of_ready(frame: &[u8]) -> TransactionStatus {
        match frame.get(5) {
            Some(b'T') => TransactionStatus::InBlock,
            Some(b'E') => TransactionStatus::Failed,
            _ => TransactionStatus::Idle,
        }
    }
}

/// True for an ErrorResponse whose severity is FATAL or PANIC: PostgreSQL closes after it.
pub fn is_fatal(frame: &[u8]) -> bool {
    // `V` (never localized) when the server sends it, else `S`.
    let severity =
        error_response::field(frame, b'V').or_else(|| error_response::field(frame, b'S'));
    matches!(severity, Some(b"FATAL" | b"PANIC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::error_response::{encode, Severity};

    #[test]
    fn tags_are_read_as_the_backend_means_them() {
        assert_eq!(BackendTag::of(b'S'), BackendTag::ParameterStatus);
        assert_eq!(BackendTag::of(b'D'), BackendTag::DataRow);
        assert_eq!(BackendTag::of(b'W'), BackendTag::CopyResponse);
        assert_eq!(BackendTag::of(b'K'), BackendTag::Other(b'K'));
    }

    #[test]
    fn ready_status_and_fatal_errors_are_read() {
        assert_eq!(
            TransactionStatus::of_ready(b"Z\0\0\0\x05T"),
            TransactionStatus::InBlock
        );
        assert_eq!(
            TransactionStatus::of_ready(b"Z\0\0\0\x05E"),
            TransactionStatus::Failed
        );
        assert_eq!(
            TransactionStatus::of_ready(b"Z\0\0\0\x05I"),
            TransactionStatus::Idle
        );
        assert!(!is_fatal(&encode(Severity::Error, "42P01", "no table")));
        assert!(is_fatal(&encode(Severity::Fatal, "57P01", "terminating")));
    }
}

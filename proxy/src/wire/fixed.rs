//! Backend messages whose bytes never vary, written by pgcached itself: by the cache path when it
//! answers a request locally, and by the admin console.

/// ReadyForQuery, idle.
pub const READY_IDLE: &[u8] = b"Z\0\0\0\x05I";
/// ReadyForQuery, in a transaction block.
pub const READY_IN_BLOCK: &[u8] = b"Z\0\0\0\x05T";
/// ParseComplete.
pub const PARSE_COMPLETE: &[u8] = b"1\0\0\0\x04";
/// BindComplete.
pub const BIND_COMPLETE: &[u8] = b"2\0\0\0\x04";
/// CloseComplete.
pub const CLOSE_COMPLETE: &[u8] = b"3\0\0\0\x04";
/// PortalSuspended.
pub const PORTAL_SUSPENDED: &[u8] = b"s\0\0\0\x04";
/// EmptyQueryResponse.
pub const EMPTY_QUERY: &[u8] = b"I\0\0\0\x04";
/// ParameterDescription with no parameters.
pub const NO_PARAMETERS: &[u8] = b"t\0\0\0\x06\0\0";
/// NoData.
pub const NO_DATA: &[u8] = b"n\0\0\0\x04";
/// CommandComplete `BEGIN`.
pub const COMPLETE_BEGIN: &[u8] = b"C\0\0\0\x0aBEGIN\0";
/// CommandComplete `START TRANSACTION`.
pub const COMPLETE_START_TRANSACTION: &[u8] = b"C\0\0\0\x16START TRANSACTION\0";
/// CommandComplete `COMMIT`.
pub const COMPLETE_COMMIT: &[u8] = b"C\0\0\0\x0bCOMMIT\0";
/// CommandComplete `ROLLBACK`.
pub const COMPLETE_ROLLBACK: &[u8] = b"C\0\0\0\x0dROLLBACK\0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_field_counts_the_frame_without_its_tag() {
        for frame in [
            READY_IDLE,
            READY_IN_BLOCK,
            PARSE_COMPLETE,
            BIND_COMPLETE,
            CLOSE_COMPLETE,
            PORTAL_SUSPENDED,
            EMPTY_QUERY,
            NO_PARAMETERS,
            NO_DATA,
            COMPLETE_BEGIN,
            COMPLETE_START_TRANSACTION,
            COMPLETE_COMMIT,
            COMPLETE_ROLLBACK,
        ] {
            let length = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
            assert_eq!(length, frame.len() - 1, "{frame:?}");
        }
    }
}

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

//! Reading the relation ids out of pgoutput messages.
//!
//! pgcached needs only to know which tables a transaction touched: Insert (`I`), Update (`U`)
//! and Delete (`D`) carry the relation OID right after the tag; Truncate (`T`) carries a count,
//! an options byte and the OIDs. Begin and Commit arrive as separate events. Everything else
//! (Relation, Type, Origin, Message) names no change.

/// The relations a pgoutput message reports as changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Rows of these relations changed.
    Relations(Vec<u32>),
    /// Not a change.
    None,
    /// A change message too short to read: the transaction's tables are unknown.
    Malformed,
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    let bytes = data.get(offset..offset + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Decodes the relations a pgoutput message changes.
pub fn change(data: &[u8]) -> Change {
    match data.first() {
        Some(b'I' | b'U' | b'D') => match u32_at(data, 1) {
            Some(oid) => Change::Relations(vec![oid]),
            None => Change::Malformed,
        },
        Some(b'T') => {
            let Some(count) = u32_at(data, 1) else {
                return Change::Malformed;
            };
            let mut oids = Vec::with_capacity(count.min(1024) as usize);
            for i in 0..count as usize {
                match u32_at(data, 6 + 4 * i) {
                    Some(oid) => oids.push(oid),
                    None => return Change::Malformed,
                }
            }
            Change::Relations(oids)
        }
        _ => Change::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_changes_name_their_relation() {
        assert_eq!(
            change(b"I\0\0\x40\x01N..."),
            Change::Relations(vec![0x4001])
        );
        assert_eq!(change(b"U\0\0\x40\x02K"), Change::Relations(vec![0x4002]));
        assert_eq!(change(b"D\0\0\x40\x03K"), Change::Relations(vec![0x4003]));
    }

    #[test]
    fn truncate_names_every_relation() {
        let mut message = vec![b'T'];
        message.extend_from_slice(&2u32.to_be_bytes());
        message.push(1);
        message.extend_from_slice(&10u32.to_be_bytes());
        message.extend_from_slice(&11u32.to_be_bytes());
        assert_eq!(change(&message), Change::Relations(vec![10, 11]));
        assert_eq!(change(&message[..9]), Change::Malformed);
    }

    #[test]
    fn other_messages_are_not_changes() {
        assert_eq!(change(b"R\0\0\x40\x01public\0t\0"), Change::None);
        assert_eq!(change(b""), Change::None);
        assert_eq!(change(b"I\0\0"), Change::Malformed);
    }
}

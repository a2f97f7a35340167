//! Writes whose reach is known invalidate the keys they change, at their acknowledgement, and
//! keep everything else.

use std::sync::Arc;

use super::*;
use crate::classify::{Class, WriteClass};
use crate::pins::writes::{RowsWritten, WriteEffect};
use crate::pins::PinRegistry;
use crate::sql::pins::Constant;

const ROW_1: &str = "SELECT v FROM t WHERE k = 1";
const ROW_2: &str = "SELECT v FROM t WHERE k = 2";
const UPDATE_1: &str = "UPDATE t SET v = 'x' WHERE k = 1";

fn shared() -> Shared {
    let registry = Arc::new(PinRegistry::default());
    let effect = WriteEffect {
        target: TableId {
            database: Arc::from(DATABASE),
            oid: 100,
        },
        facts: Some(Arc::new(crate::catalog::tables::TableFacts {
            oid: 100,
            columns: vec![
                ("k".into(), Some(crate::pins::PinType::Integer)),
                ("v".into(), Some(crate::pins::PinType::Text)),
            ],
            identity: crate::pins::Identity::Key(vec!["k".into()]),
        })),
        whole: vec![],
        rows: RowsWritten::Update {
            set: vec!["v".into()],
            pins: vec![("k".into(), vec![Constant::Integer("1".into())])],
        },
    };
    let classes = Classes::default()
        .pinned_read(ROW_1, 100, "1", &registry)
        .pinned_read(ROW_2, 100, "2", &registry)
        .read("SELECT count(*) FROM t", 100)
        .with(UPDATE_1, Class::Write(WriteClass::Known(Arc::new(effect))))
        .with("BEGIN", begin(None))
        .with("COMMIT", end());
    Shared::with_registry(classes, registry)
}

#[test]
fn a_write_by_key_invalidates_its_row_and_the_whole_table_reads_only() {
    let shared = shared();
    let mut session = shared.session();
    session.read_through(ROW_1, "a");
    session.read_through(ROW_2, "b");
    session.read_through("SELECT count(*) FROM t", "2");
    session.client(&[query(UPDATE_1)]);
    assert_eq!(session.sent(), b"Q");
    session.server_all(&[command_complete("UPDATE 1"), ready(b'I')]);
    session.answered();
    for (sql, hit) in [
        (ROW_2, true),
        (ROW_1, false),
        ("SELECT count(*) FROM t", false),
    ] {
        session.client(&[query(sql)]);
        assert_eq!(session.sent().is_empty(), hit, "{sql}");
        if !hit {
            session.server_all(&simple_answer("new"));
        }
        session.answered();
    }
}

#[test]
fn a_write_in_a_block_invalidates_its_keys_again_at_commit() {
    let shared = shared();
    let mut writer = shared.session();
    writer.begin_here("BEGIN");
    writer.client(&[query(UPDATE_1)]);
    assert_eq!(writer.sent(), b"Q", "the update follows the deferred BEGIN");
    writer.server_all(&[command_complete("UPDATE 1"), ready(b'T')]);
    // Another session fills row 1 while the block is open (it sees the committed old row).
    let mut reader = shared.session();
    reader.read_through(ROW_1, "a");
    reader.read_through(ROW_2, "b");
    writer.client(&[query("COMMIT")]);
    writer.server_all(&[command_complete("COMMIT"), ready(b'I')]);
    reader.client(&[query(ROW_1)]);
    assert_eq!(reader.sent(), b"Q", "the commit invalidated row 1 again");
    reader.server_all(&simple_answer("x"));
    reader.client(&[query(ROW_2)]);
    assert!(reader.sent().is_empty(), "row 2 kept");
}

//! Transaction blocks: reads inside them are relayed; writes inside them invalidate when each
//! step is acknowledged and again when the block ends.

use super::*;
use crate::classify::{Class, WriteClass};

const READ: &str = "SELECT v FROM t WHERE k = 1";
const WRITE: &str = "UPDATE t SET v = 'two' WHERE k = 1";

fn classes() -> Classes {
    Classes::default()
        .read(READ, 100)
        .with("BEGIN", Class::TransactionControl)
        .with("COMMIT", Class::TransactionControl)
        .with("ROLLBACK", Class::TransactionControl)
        .with(WRITE, Class::Write(WriteClass::Database))
}

#[test]
fn reads_inside_a_transaction_block_are_relayed() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    let mut session = shared.session();
    session.client(&[query("BEGIN")]);
    session.server_all(&[command_complete("BEGIN"), ready(b'T')]);
    session.sent();
    session.client(&[query(READ)]);
    assert_eq!(
        session.sent(),
        b"Q",
        "not answered from the cache inside the block"
    );
    session.server_all(&[
        row_description(),
        data_row("one"),
        command_complete("SELECT 1"),
        ready(b'T'),
    ]);
    session.client(&[parse("", READ), bind("", "", ""), execute("", 0), sync()]);
    assert_eq!(
        session.sent(),
        b"PBES",
        "extended batches stream inside the block"
    );
}

#[test]
fn a_write_in_a_block_invalidates_at_its_step_and_at_commit() {
    let shared = Shared::new(classes());
    let mut writer = shared.session();
    writer.client(&[query("BEGIN")]);
    writer.server_all(&[command_complete("BEGIN"), ready(b'T')]);
    writer.client(&[query(WRITE)]);
    writer.server_all(&[command_complete("UPDATE 1"), ready(b'T')]);
    // A read filled while the block is open (it sees the old committed row).
    let mut reader = shared.session();
    reader.read_through(READ, "one");
    assert_eq!(shared.store.len(), 1);
    writer.client(&[query("COMMIT")]);
    writer.server_all(&[command_complete("COMMIT"), ready(b'I')]);
    reader.sent();
    reader.client(&[query(READ)]);
    assert_eq!(reader.sent(), b"Q", "the commit invalidated it");
}

#[test]
fn a_session_that_ends_with_an_unacknowledged_write_invalidates() {
    let shared = Shared::new(classes());
    let mut reader = shared.session();
    reader.read_through(READ, "one");
    let mut writer = shared.session();
    writer.client(&[query(WRITE)]);
    writer.machine.end();
    reader.sent();
    reader.client(&[query(READ)]);
    assert_eq!(reader.sent(), b"Q", "the write may have committed");
}

#[test]
fn a_session_that_only_read_ends_without_invalidating() {
    let shared = Shared::new(classes());
    let mut reader = shared.session();
    reader.read_through(READ, "one");
    reader.machine.end();
    let mut next = shared.session();
    next.client(&[query(READ)]);
    assert!(next.sent().is_empty());
}

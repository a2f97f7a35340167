//! Transaction blocks: READ COMMITTED blocks read from the cache and fill it until they write
//! what a read depends on; REPEATABLE READ and SERIALIZABLE are never served; writes inside a
//! block invalidate when each step is acknowledged and again when the block ends.

use std::sync::Arc;

use super::*;
use crate::classify::{Class, WriteClass};
use crate::pins::writes::{RowsWritten, WriteEffect};
use crate::session::caching::transaction::Level;
use crate::sql::Isolation::{ReadCommitted, RepeatableRead, Serializable};
use crate::sql::IsolationSetting;

const READ: &str = "SELECT v FROM t WHERE k = 1";
const OTHER_READ: &str = "SELECT w FROM u";
const PREPARED: &str = "SELECT v FROM t WHERE k = $1";
const WRITE: &str = "UPDATE t SET v = 'two' WHERE k = 1";
const WRITE_OTHER_TABLE: &str = "UPDATE z SET a = 1";
const UNKNOWN_WRITE: &str = "SELECT do_things()";

/// A write to table `oid` whose rows the text does not tell.
pub(super) fn write_to(oid: u32) -> Class {
    Class::Write(WriteClass::Known(Arc::new(WriteEffect {
        target: TableId {
            database: Arc::from(DATABASE),
            oid,
        },
        facts: None,
        whole: vec![],
        rows: RowsWritten::Unknown,
    })))
}

/// `filler` runs `PREPARED` with `1` through the extended protocol, outside a block: the
/// entry the tests then hit.
fn fill_prepared(filler: &mut Session) {
    filler.client(&[
        parse("", PREPARED),
        bind("", "", "1"),
        execute("", 0),
        sync(),
    ]);
    filler.server_all(&[
        parse_complete(),
        bind_complete(),
        data_row("one"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
}

fn classes() -> Classes {
    Classes::default()
        .read(READ, 100)
        .read(OTHER_READ, 200)
        .read(PREPARED, 100)
        .with("BEGIN", begin(None))
        .with(
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            begin(Some(RepeatableRead)),
        )
        .with(
            "BEGIN ISOLATION LEVEL READ COMMITTED",
            begin(Some(ReadCommitted)),
        )
        .with("COMMIT", end())
        .with("ROLLBACK", end())
        .with(
            "SAVEPOINT a",
            Class::TransactionControl(crate::sql::TransactionStep::Savepoint),
        )
        .with(
            "SET default_transaction_isolation = 'serializable'",
            Class::SessionState(IsolationSetting::Default(Some(Serializable))),
        )
        .with(
            "RESET default_transaction_isolation",
            Class::SessionState(IsolationSetting::Default(None)),
        )
        .with(
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            Class::SessionState(IsolationSetting::Current(Serializable)),
        )
        .with(WRITE, write_to(100))
        .with(WRITE_OTHER_TABLE, write_to(300))
        .with(UNKNOWN_WRITE, Class::Write(WriteClass::Database))
        .read("SELECT 1/0", 999)
}

/// Runs a simple statement answered with its command tag and status.
fn run(session: &mut Session, sql: &str, tag: &str, status: u8) {
    session.client(&[query(sql)]);
    assert_eq!(session.sent(), b"Q", "{sql} is relayed");
    session.server_all(&[command_complete(tag), ready(status)]);
    session.answered();
}

/// The frames answered for `sql`, and whether PostgreSQL was asked.
fn read(session: &mut Session, sql: &str, status: u8) -> (Vec<Bytes>, bool) {
    session.client(&[query(sql)]);
    let relayed = !session.sent().is_empty();
    if relayed {
        session.server_all(&[
            row_description(),
            data_row("one"),
            command_complete("SELECT 1"),
            ready(status),
        ]);
    }
    (session.answered_frames(), relayed)
}

#[test]
fn a_read_committed_block_reads_from_the_cache() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    let mut session = shared.session();
    session.begin_here("BEGIN");
    let (answer, relayed) = read(&mut session, READ, b'T');
    assert!(!relayed, "answered from the cache inside the block");
    assert_eq!(answer.last(), Some(&ready(b'T')), "the block goes on");
    assert_eq!(shared.hits(), 1);
    // Extended batches too.
    fill_prepared(&mut filler);
    session.client(&[
        parse("", PREPARED),
        bind("", "", "1"),
        execute("", 0),
        sync(),
    ]);
    assert!(session.sent().is_empty());
    let answer = session.answered_frames();
    assert_eq!(answer.last(), Some(&ready(b'T')));
    assert_eq!(shared.hits(), 2);
}

#[test]
fn a_read_committed_block_fills_the_cache() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.begin_here("BEGIN");
    let (_, relayed) = read(&mut session, READ, b'T');
    assert!(relayed);
    assert_eq!(shared.store.len(), 1, "filled at the block's ReadyForQuery");
    let mut other = shared.session();
    let (_, relayed) = read(&mut other, READ, b'I');
    assert!(!relayed);
}

#[test]
fn after_writing_a_table_the_block_reads_it_from_postgresql() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    filler.read_through(OTHER_READ, "w");
    let mut session = shared.session();
    session.begin_here("BEGIN");
    run(&mut session, WRITE, "UPDATE 1", b'T');
    // Its own uncommitted row: relayed, and never filled.
    for _ in 0..2 {
        let (_, relayed) = read(&mut session, READ, b'T');
        assert!(relayed, "the block may see its own uncommitted row");
    }
    let mut other = shared.session();
    let (_, relayed) = read(&mut other, READ, b'I');
    assert!(relayed, "the block filled nothing for others to see");
    // A table the block did not write is still served.
    let (_, relayed) = read(&mut session, OTHER_READ, b'T');
    assert!(!relayed);
    run(&mut session, "COMMIT", "COMMIT", b'I');
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(relayed, "the commit invalidated the read");
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(!relayed, "and it is cached again after the block");
}

#[test]
fn a_write_of_unknown_reach_stops_every_read_of_the_block() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.begin_here("BEGIN");
    run(&mut session, UNKNOWN_WRITE, "SELECT 1", b'T');
    let (_, relayed) = read(&mut session, OTHER_READ, b'T');
    assert!(relayed);
    assert!(shared.store.is_empty());
}

#[test]
fn a_rolled_back_block_leaves_nothing_of_its_rows() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.begin_here("BEGIN");
    run(&mut session, WRITE, "UPDATE 1", b'T');
    read(&mut session, READ, b'T');
    run(&mut session, "ROLLBACK", "ROLLBACK", b'I');
    assert!(
        shared.store.is_empty(),
        "nothing read after the write was kept"
    );
}

#[test]
fn repeatable_read_blocks_are_never_served_nor_filled() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    let mut session = shared.session();
    run(
        &mut session,
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "BEGIN",
        b'T',
    );
    let (_, relayed) = read(&mut session, READ, b'T');
    assert!(relayed, "its snapshot must hold");
    let (_, relayed) = read(&mut session, OTHER_READ, b'T');
    assert!(relayed);
    assert_eq!(shared.store.len(), 1, "nothing filled from it");
    run(&mut session, "COMMIT", "COMMIT", b'I');
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(!relayed, "after the block, served again");
}

#[test]
fn set_transaction_makes_the_block_serializable() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    let mut session = shared.session();
    session.begin_here("BEGIN");
    run(
        &mut session,
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET",
        b'T',
    );
    let (_, relayed) = read(&mut session, READ, b'T');
    assert!(relayed);
}

#[test]
fn a_serializable_default_is_never_served_not_even_outside_blocks() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    let mut session = shared.session();
    run(
        &mut session,
        "SET default_transaction_isolation = 'serializable'",
        "SET",
        b'I',
    );
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(relayed);
    run(&mut session, "BEGIN", "BEGIN", b'T');
    let (_, relayed) = read(&mut session, READ, b'T');
    assert!(relayed, "the block got the default");
    run(&mut session, "COMMIT", "COMMIT", b'I');
    run(
        &mut session,
        "RESET default_transaction_isolation",
        "RESET",
        b'I',
    );
    // Its settings changed its key; back at read committed it fills and hits again.
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(relayed);
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(!relayed, "back to read committed");
}

#[test]
fn an_inherited_serializable_default_is_never_served() {
    let mut shared = Shared::new(classes());
    shared.inherited = Level::Known(Serializable);
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    assert!(
        shared.store.is_empty(),
        "a serializable session fills nothing"
    );
    shared.inherited = Level::Known(ReadCommitted);
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    shared.inherited = Level::Known(Serializable);
    let mut session = shared.session();
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(relayed);
    shared.inherited = Level::Unknown;
    let mut session = shared.session();
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(relayed, "a level not known serves nothing");
}

#[test]
fn a_failed_block_is_not_served() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    let mut session = shared.session();
    session.begin_here("BEGIN");
    session.client(&[query("SELECT 1/0")]);
    session.sent();
    session.server_all(&[error("22012"), ready(b'E')]);
    session.answered();
    session.client(&[query(READ)]);
    assert_eq!(session.sent(), b"Q", "PostgreSQL refuses it, as it should");
    session.server_all(&[error("25P02"), ready(b'E')]);
    run(&mut session, "ROLLBACK", "ROLLBACK", b'I');
    let (_, relayed) = read(&mut session, READ, b'I');
    assert!(!relayed);
}

#[test]
fn savepoints_keep_the_block_reading_from_the_cache() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    filler.read_through(READ, "one");
    let mut session = shared.session();
    session.begin_here("BEGIN");
    run(&mut session, "SAVEPOINT a", "SAVEPOINT", b'T');
    let (_, relayed) = read(&mut session, READ, b'T');
    assert!(!relayed);
}

#[test]
fn a_batch_that_begins_a_block_captures_its_reads_by_the_level_it_names() {
    let shared = Shared::new(classes());
    let batch = |begin: &str| {
        vec![
            parse("", begin),
            bind("", "", ""),
            execute("", 0),
            parse("", PREPARED),
            bind("", "", "1"),
            execute("", 0),
            sync(),
        ]
    };
    let answer = vec![
        parse_complete(),
        bind_complete(),
        command_complete("BEGIN"),
        parse_complete(),
        bind_complete(),
        data_row("one"),
        command_complete("SELECT 1"),
        ready(b'T'),
    ];
    let mut session = shared.session();
    session.client(&batch("BEGIN ISOLATION LEVEL REPEATABLE READ"));
    assert_eq!(session.sent(), b"PBEPBES");
    session.server_all(&answer);
    assert!(
        shared.store.is_empty(),
        "a repeatable read block fills nothing"
    );
    run(&mut session, "COMMIT", "COMMIT", b'I');
    session.client(&batch("BEGIN ISOLATION LEVEL READ COMMITTED"));
    assert_eq!(session.sent(), b"PBEPBES");
    session.server_all(&answer);
    assert_eq!(shared.store.len(), 1, "a read committed block fills");
}

#[test]
fn a_portal_answered_locally_in_a_block_is_bound_on_the_server_before_it_is_used() {
    let shared = Shared::new(classes());
    let mut filler = shared.session();
    fill_prepared(&mut filler);
    let mut session = shared.session();
    session.begin_here("BEGIN");
    session.client(&[
        parse("", PREPARED),
        bind("", "", "1"),
        execute("", 0),
        sync(),
    ]);
    assert!(session.sent().is_empty(), "answered locally");
    session.answered();
    // The portal outlives Sync in the block: executing it again must reach a server that has
    // it.
    session.client(&[execute("", 0), sync()]);
    assert_eq!(
        session.sent(),
        b"PBES",
        "the statement and the portal are bound on the server first"
    );
    assert_eq!(session.server(parse_complete()), ServerAction::Drop);
    assert_eq!(session.server(bind_complete()), ServerAction::Drop);
    session.server_all(&[command_complete("SELECT 0"), ready(b'T')]);
    assert_eq!(session.answered(), b"CZ");
}

#[test]
fn a_write_in_a_block_invalidates_at_its_step_and_at_commit() {
    let shared = Shared::new(classes());
    let mut writer = shared.session();
    writer.begin_here("BEGIN");
    run(&mut writer, WRITE, "UPDATE 1", b'T');
    // A read filled while the block is open (it sees the old committed row).
    let mut reader = shared.session();
    reader.read_through(READ, "one");
    assert_eq!(shared.store.len(), 1);
    run(&mut writer, "COMMIT", "COMMIT", b'I');
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

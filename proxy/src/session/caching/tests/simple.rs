//! The simple Query path: miss, fill, hit; reads that are not cached; state changes; writes.

use super::*;
use crate::classify::{Class, WriteClass};

const READ: &str = "SELECT v FROM t WHERE k = 1";

#[test]
fn a_miss_is_relayed_and_filled_and_the_next_query_is_a_hit() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    session.client(&[query(READ)]);
    assert_eq!(session.sent(), b"Q", "the miss goes to PostgreSQL");
    session.server_all(&simple_answer("one"));
    assert_eq!(session.answered(), b"TDCZ");
    assert_eq!(shared.store.len(), 1, "filled at ReadyForQuery");
    assert_eq!((shared.hits(), shared.misses()), (0, 1));

    session.client(&[query(READ)]);
    assert!(session.sent().is_empty(), "a hit does not touch PostgreSQL");
    let answer = session.answered_frames();
    assert_eq!(
        answer.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"TDCZ",
        "stored bytes plus ReadyForQuery"
    );
    assert_eq!(answer[1], data_row("one"));
    assert_eq!(shared.hits(), 1);
    assert_eq!(shared.queries(QueryKind::ReadCached), 2);
    assert!(session.machine.is_idle());
}

#[test]
fn another_session_of_the_same_role_and_state_shares_the_entry() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut first = shared.session();
    first.read_through(READ, "one");
    let mut second = shared.session();
    second.client(&[query(READ)]);
    assert!(second.sent().is_empty());
    assert_eq!(second.answered(), b"TDCZ");
}

#[test]
fn reads_that_are_not_cacheable_are_relayed_and_never_filled() {
    let shared = Shared::new(Classes::default().with(
        "SELECT now()",
        Class::CallsVolatile {
            may_change_session: false,
            may_change_isolation: false,
        },
    ));
    let mut session = shared.session();
    for _ in 0..2 {
        session.client(&[query("SELECT now()")]);
        assert_eq!(session.sent(), b"Q");
        session.server_all(&simple_answer("12:00"));
    }
    assert!(shared.store.is_empty());
    assert_eq!(shared.queries(QueryKind::ReadUncacheable), 2);
}

#[test]
fn a_set_changes_the_key_so_entries_are_not_shared_across_states() {
    let shared = Shared::new(
        Classes::default()
            .read(READ, 100)
            .with("SET search_path = other", set()),
    );
    let mut plain = shared.session();
    plain.read_through(READ, "public");
    let mut changed = shared.session();
    changed.client(&[query("SET search_path = other")]);
    assert_eq!(changed.sent(), b"Q");
    changed.server_all(&[command_complete("SET"), ready(b'I')]);
    changed.client(&[query(READ)]);
    assert_eq!(changed.sent(), b"Q", "a miss in the other state");
}

#[test]
fn a_write_invalidates_before_its_acknowledgement_reaches_the_client() {
    let shared = Shared::new(
        Classes::default()
            .read(READ, 100)
            .with("UPDATE t SET v = 'two'", Class::Write(WriteClass::Database)),
    );
    let mut session = shared.session();
    session.read_through(READ, "one");
    session.client(&[query("UPDATE t SET v = 'two'")]);
    assert_eq!(session.sent(), b"Q");
    session.server_all(&[command_complete("UPDATE 1")]);
    // Another session reads before the write is acknowledged: still the old entry.
    let mut other = shared.session();
    other.client(&[query(READ)]);
    assert!(other.sent().is_empty());
    session.server_all(&[ready(b'I')]);
    other.answered();
    other.client(&[query(READ)]);
    assert_eq!(
        other.sent(),
        b"Q",
        "after the acknowledgement the entry is gone"
    );
    assert_eq!(shared.queries(QueryKind::Write), 1);
}

#[test]
fn pipelined_queries_are_not_answered_out_of_order() {
    let shared = Shared::new(
        Classes::default()
            .read(READ, 100)
            .with("UPDATE t SET v = 'two'", Class::Write(WriteClass::Database)),
    );
    let mut session = shared.session();
    session.read_through(READ, "one");
    // The write is still unanswered when the read arrives: the read must wait its turn.
    session.client(&[query("UPDATE t SET v = 'two'"), query(READ)]);
    assert_eq!(session.sent(), b"QQ");
    session.server_all(&[command_complete("UPDATE 1"), ready(b'I')]);
    session.server_all(&simple_answer("two"));
    let answered = session.answered_frames();
    assert_eq!(answered.len(), 6);
    assert_eq!(answered[3], data_row("two"));
}

#[test]
fn an_unknown_message_stops_caching_and_every_ready_invalidates() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    session.read_through(READ, "one");
    session.client(&[frame(b'z', b"")]);
    assert_eq!(session.sent(), b"z", "relayed as is");
    session.client(&[query(READ)]);
    assert_eq!(session.sent(), b"Q", "no more hits for this session");
    session.server_all(&simple_answer("one"));
    let mut other = shared.session();
    other.client(&[query(READ)]);
    assert_eq!(
        other.sent(),
        b"Q",
        "its ReadyForQuery invalidated the database"
    );
}

#[test]
fn function_calls_and_oversized_queries_count_as_writes() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    session.read_through(READ, "one");
    session.client(&[frame(b'F', b"\0\0\0\x01\0\0\0\0\0\0")]);
    assert_eq!(session.sent(), b"F");
    session.server_all(&[frame(b'V', b"\xff\xff\xff\xff"), ready(b'I')]);
    let mut other = shared.session();
    other.client(&[query(READ)]);
    assert_eq!(other.sent(), b"Q", "a function call may write: invalidated");
}

#[test]
fn ddl_forgets_classifications_before_its_acknowledgement_reaches_the_client() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    session.read_through(READ, "one");
    session.client(&[query("DROP TABLE t; CREATE TABLE t (v text)")]);
    assert_eq!(session.sent(), b"Q");
    session.server_all(&[
        command_complete("DROP TABLE"),
        command_complete("CREATE TABLE"),
    ]);
    assert_eq!(
        shared.catalog_changes(),
        0,
        "not before the acknowledgement"
    );
    session.server_all(&[ready(b'I')]);
    assert_eq!(shared.catalog_changes(), 1);
    session.answered();
    // Statements of unknown reach that move no OID invalidate without forgetting.
    session.client(&[query("VACUUM t")]);
    session.server_all(&[command_complete("VACUUM"), ready(b'I')]);
    session.answered();
    assert_eq!(shared.catalog_changes(), 1);
    let mut other = shared.session();
    other.client(&[query(READ)]);
    assert_eq!(other.sent(), b"Q", "the database was invalidated too");
}

//! Answers that spoil a capture (notices, errors, parameter changes, COPY, empty queries), and
//! errors in the middle of a batch.

use super::*;

const READ: &str = "SELECT v FROM t WHERE k = 1";
const READ_EXTENDED: &str = "SELECT v FROM t WHERE k = $1";

#[test]
fn a_result_with_a_notice_or_parameter_change_is_not_filled() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    for spoiler in [notice(), frame(b'S', b"TimeZone\0UTC\0")] {
        session.client(&[query(READ)]);
        session.server_all(&[row_description(), spoiler, data_row("one")]);
        session.server_all(&[command_complete("SELECT 1"), ready(b'I')]);
        assert!(shared.store.is_empty());
    }
}

#[test]
fn an_error_is_relayed_and_nothing_is_filled() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    session.client(&[query(READ)]);
    session.server_all(&[
        row_description(),
        data_row("one"),
        error("22012"),
        ready(b'I'),
    ]);
    assert!(shared.store.is_empty());
    assert_eq!(session.answered(), b"TDEZ");
    assert!(session.machine.is_idle());
}

#[test]
fn an_error_mid_batch_skips_to_sync_and_the_next_batch_is_followed() {
    let shared = Shared::new(Classes::default().read(READ_EXTENDED, 7));
    let mut session = shared.session();
    session.client(&[
        parse("", READ_EXTENDED),
        bind("", "", "1"),
        execute("", 0),
        bind("", "", "2"),
        execute("", 0),
        sync(),
    ]);
    assert_eq!(session.sent(), b"PBEBES");
    // The first Execute fails; PostgreSQL skips the rest up to Sync.
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        error("22012"),
        ready(b'I'),
    ]);
    assert!(shared.store.is_empty());
    assert!(session.machine.is_idle());
    // The session still attributes answers correctly.
    session.client(&[
        parse("", READ_EXTENDED),
        bind("", "", "3"),
        execute("", 0),
        sync(),
    ]);
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        data_row("three"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(shared.store.len(), 1);
}

#[test]
fn copy_out_answers_are_relayed_and_never_captured() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    session.client(&[query(READ)]);
    session.server_all(&[
        frame(b'H', b"\0\0\x01\0\0"),
        frame(b'd', b"one\n"),
        frame(b'c', b""),
        command_complete("COPY 1"),
        ready(b'I'),
    ]);
    assert!(shared.store.is_empty());
    assert_eq!(session.answered(), b"HdcCZ");
}

#[test]
fn an_empty_query_is_not_filled() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    session.client(&[query(READ)]);
    session.server_all(&[frame(b'I', b""), ready(b'I')]);
    assert!(shared.store.is_empty());
}

#[test]
fn an_unexpected_answer_stops_caching_for_the_session() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut session = shared.session();
    // A BindComplete nobody asked for: the conversation is no longer understood.
    session.server_all(&[bind_complete()]);
    session.client(&[query(READ)]);
    session.server_all(&simple_answer("one"));
    assert!(
        shared.store.is_empty(),
        "nothing is filled once track is lost"
    );
}

//! Extended-protocol batches: all hit, partial hit, Describe, Flush, row limits, unnamed and
//! named statements, portals, Close.

use super::*;

const READ: &str = "SELECT v FROM t WHERE k = $1";

/// The server's answer to Parse, Bind, Describe portal, Execute, Sync with one row.
fn batch_answer(value: &str) -> Vec<Bytes> {
    vec![
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row(value),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]
}

fn batch(key: &str) -> Vec<Bytes> {
    vec![
        parse("", READ),
        bind("", "", key),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]
}

fn filled(shared: &Shared, key: &str, value: &str) {
    let mut session = shared.session();
    session.client(&batch(key));
    assert_eq!(session.sent(), b"PBDES");
    session.server_all(&batch_answer(value));
}

#[test]
fn a_batch_is_held_to_sync_then_relayed_whole_and_captured() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    let mut session = shared.session();
    let frames = batch("1");
    session.client(&frames[..4]);
    assert!(session.sent().is_empty(), "held until Sync");
    assert!(!session.machine.is_idle());
    session.client(&frames[4..]);
    assert_eq!(session.sent(), b"PBDES");
    session.server_all(&batch_answer("one"));
    assert_eq!(shared.store.len(), 1);
}

#[test]
fn a_batch_whose_every_execute_hits_is_answered_locally() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    session.client(&batch("1"));
    assert!(session.sent().is_empty(), "PostgreSQL is not touched");
    let answer = session.answered_frames();
    assert_eq!(
        answer.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"12TDCZ",
        "ParseComplete, BindComplete, the stored RowDescription, rows, ReadyForQuery"
    );
    assert_eq!(answer[3], data_row("one"));
    assert_eq!(shared.hits(), 1);
    // Other parameter values are other keys.
    session.client(&batch("2"));
    assert_eq!(session.sent(), b"PBDES");
}

#[test]
fn a_batch_with_a_miss_is_relayed_whole_and_only_the_miss_is_captured() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    let mut frames = vec![parse("", READ)];
    for key in ["1", "2"] {
        frames.push(bind("", "", key));
        frames.push(describe(b'P', ""));
        frames.push(execute("", 0));
    }
    frames.push(sync());
    session.client(&frames);
    assert_eq!(
        session.sent(),
        b"PBDEBDES",
        "one hit, one miss: relayed whole"
    );
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row("one"),
        command_complete("SELECT 1"),
        bind_complete(),
        row_description(),
        data_row("two"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(session.answered().len(), 10, "every answer relayed");
    assert_eq!(shared.store.len(), 2, "the miss was filled");
    assert_eq!((shared.hits(), shared.misses()), (0, 2));
    // Both are hits now, in one batch: each Execute of the portal bound twice is answered
    // with its own values' rows.
    session.client(&frames);
    assert!(session.sent().is_empty());
    let answer = session.answered_frames();
    assert_eq!(
        answer.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"12TDC2TDCZ"
    );
    assert_eq!(
        (&answer[3], &answer[7]),
        (&data_row("one"), &data_row("two"))
    );
}

#[test]
fn describe_statement_named_parse_and_close_are_always_relayed() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    session.client(&[parse("", READ), describe(b'S', ""), sync()]);
    assert_eq!(session.sent(), b"PDS");
    session.server_all(&[
        parse_complete(),
        parameter_description(),
        row_description(),
        ready(b'I'),
    ]);
    session.client(&[
        parse("s1", READ),
        bind("", "s1", "1"),
        execute("", 0),
        sync(),
    ]);
    assert_eq!(session.sent(), b"PBES", "a named Parse reaches the server");
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        data_row("one"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    // The named statement is prepared on the server: later batches using it can be answered.
    session.client(&[bind("", "s1", "1"), execute("", 0), sync()]);
    assert!(session.sent().is_empty(), "answered from the cache");
    session.answered();
    session.client(&[close(b'S', "s1"), sync()]);
    assert_eq!(session.sent(), b"CS");
    session.server_all(&[close_complete(), ready(b'I')]);
}

#[test]
fn flush_releases_a_held_batch_at_once() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    session.client(&[parse("", READ), bind("", "", "1"), flush()]);
    assert_eq!(
        session.sent(),
        b"PBH",
        "the client waits for answers before Sync"
    );
    session.server_all(&[parse_complete(), bind_complete()]);
    session.client(&[execute("", 0), sync()]);
    assert_eq!(session.sent(), b"ES");
}

#[test]
fn a_row_limit_outside_a_block_is_cached_with_its_portal_suspended() {
    let shared = Shared::new(Classes::default().read(READ, 7).with("BEGIN", begin(None)));
    let mut session = shared.session();
    let limited = || vec![parse("", READ), bind("", "", "1"), execute("", 1), sync()];
    session.client(&limited());
    assert_eq!(session.sent(), b"PBES");
    let rows = [data_row("one"), portal_suspended()];
    session.server_all(&[parse_complete(), bind_complete()]);
    session.server_all(&rows);
    session.server_all(&[ready(b'I')]);
    assert_eq!(shared.store.len(), 1, "its first row and PortalSuspended");
    session.answered();
    session.client(&limited());
    assert!(session.sent().is_empty(), "a hit");
    assert_eq!(
        session.answered_frames(),
        vec![
            parse_complete(),
            bind_complete(),
            rows[0].clone(),
            rows[1].clone(),
            ready(b'I')
        ]
    );
    // The whole result is another answer, under another key.
    session.client(&[parse("", READ), bind("", "", "1"), execute("", 0), sync()]);
    assert_eq!(session.sent(), b"PBES", "a miss");
}

#[test]
fn a_portal_executed_again_in_its_batch_is_not_its_statements_result() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    let mut session = shared.session();
    session.client(&[
        parse("", READ),
        bind("", "", "1"),
        execute("", 1),
        execute("", 1),
        sync(),
    ]);
    assert_eq!(session.sent(), b"PBEES");
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        data_row("one"),
        portal_suspended(),
        data_row("two"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(shared.store.len(), 1, "only the first Execute's rows");
    // A held batch executing its portal twice goes to PostgreSQL even when the first is a hit.
    session.answered();
    session.client(&[
        parse("", READ),
        bind("", "", "1"),
        execute("", 1),
        execute("", 1),
        sync(),
    ]);
    assert_eq!(session.sent(), b"PBEES");
}

#[test]
fn a_row_limit_inside_a_block_is_relayed_and_not_captured() {
    let shared = Shared::new(
        Classes::default()
            .read(READ, 7)
            .with("BEGIN ISOLATION LEVEL READ COMMITTED", begin(None)),
    );
    let mut session = shared.session();
    session.client(&[query("BEGIN ISOLATION LEVEL READ COMMITTED")]);
    session.answered();
    session.client(&[parse("", READ), bind("", "", "1"), execute("", 1), sync()]);
    assert_eq!(
        session.sent(),
        b"PBES",
        "the portal may be read on after Sync"
    );
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        data_row("one"),
        portal_suspended(),
        ready(b'T'),
    ]);
    assert!(shared.store.is_empty());
}

#[test]
fn an_unnamed_statement_answered_locally_is_prepared_again_before_a_miss() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    session.client(&batch("1"));
    assert!(session.sent().is_empty());
    session.answered();
    // A Bind of the unnamed statement with other values: the server never saw this Parse.
    session.client(&[bind("", "", "2"), execute("", 0), sync()]);
    let sent = session.sent_frames();
    assert_eq!(
        sent.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"PBES",
        "the Parse is sent first"
    );
    assert_eq!(sent[0], parse("", READ));
    assert_eq!(
        session.server(parse_complete()),
        ServerAction::Drop,
        "the client never asked for that ParseComplete"
    );
    session.server_all(&[
        bind_complete(),
        data_row("two"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(session.answered(), b"2DCZ");
}

#[test]
fn an_execute_of_an_unknown_portal_is_relayed_for_postgres_to_refuse() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    let mut session = shared.session();
    session.client(&[execute("nowhere", 0), sync()]);
    assert_eq!(session.sent(), b"ES");
    session.server_all(&[error("34000"), ready(b'I')]);
    assert_eq!(session.answered(), b"EZ");
    assert!(session.machine.is_idle());
}

#[test]
fn portals_end_at_sync_outside_a_transaction_block() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    session.client(&batch("1"));
    session.answered();
    // The portal of that batch is gone: an Execute of it cannot be answered here.
    session.client(&[execute("", 0), sync()]);
    assert_eq!(session.sent(), b"ES");
}

#[test]
fn a_described_portal_without_rows_replays_its_no_data() {
    const WRITE_LIKE: &str = "SELECT FROM t WHERE k = $1";
    let shared = Shared::new(Classes::default().read(WRITE_LIKE, 7));
    let mut session = shared.session();
    let frames = [
        parse("", WRITE_LIKE),
        bind("", "", "1"),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ];
    session.client(&frames);
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        no_data(),
        command_complete("SELECT 0"),
        ready(b'I'),
    ]);
    session.sent();
    session.answered();
    session.client(&frames);
    assert!(session.sent().is_empty());
    assert_eq!(session.answered(), b"12nCZ");
}

#[test]
fn a_batch_preparing_the_unnamed_statement_twice_answers_each_execute_with_its_own() {
    const A: &str = "SELECT a FROM t WHERE k = $1";
    const B: &str = "SELECT b FROM t WHERE k = $1";
    let shared = Shared::new(Classes::default().read(A, 7).read(B, 7));
    let batch = vec![
        parse("", A),
        bind("", "", "1"),
        execute("", 0),
        parse("", B),
        bind("", "", "1"),
        execute("", 0),
        sync(),
    ];
    let mut session = shared.session();
    session.client(&batch);
    assert_eq!(
        session.sent(),
        b"PBEPBES",
        "relayed as sent: no statement re-prepared out of order"
    );
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        data_row("a"),
        command_complete("SELECT 1"),
        parse_complete(),
        bind_complete(),
        data_row("b"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(shared.store.len(), 2);
    let mut other = shared.session();
    other.client(&batch);
    assert!(other.sent().is_empty());
    let answer = other.answered_frames();
    let rows: Vec<&Bytes> = answer.iter().filter(|f| f[0] == b'D').collect();
    assert_eq!(rows, vec![&data_row("a"), &data_row("b")]);
}

#[test]
fn an_execute_of_a_portal_the_batch_did_not_bind_goes_to_postgresql() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    session.client(&batch("1"));
    assert!(session.sent().is_empty());
    session.answered();
    session.client(&[execute("", 0), sync()]);
    assert_eq!(
        session.sent(),
        b"ES",
        "only PostgreSQL knows that portal now"
    );
}

const OTHER_READ: &str = "SELECT w FROM u WHERE k = $1";

/// What a batch of one Execute of `sql` with `key` answers, locally.
fn answered_value(shared: &Shared, sql: &str, key: &str) -> Bytes {
    let mut session = shared.session();
    session.client(&[
        parse("", sql),
        bind("", "", key),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    assert!(session.sent().is_empty(), "{sql} ({key}) is cached");
    session.answered_frames()[3].clone()
}

#[test]
fn the_unnamed_statement_parsed_again_in_a_batch_keeps_each_execute_its_own_statement() {
    let shared = Shared::new(Classes::default().read(READ, 7).read(OTHER_READ, 8));
    let frames = [
        parse("", READ),
        bind("", "", "1"),
        describe(b'P', ""),
        execute("", 0),
        parse("", OTHER_READ),
        bind("", "", "1"),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ];
    let mut session = shared.session();
    session.client(&frames);
    let sent = session.sent_frames();
    assert_eq!(
        sent.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"PBDEPBDES",
        "relayed in order, no statement re-prepared in between"
    );
    assert_eq!(
        (&sent[0], &sent[4]),
        (&parse("", READ), &parse("", OTHER_READ))
    );
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row("of t"),
        command_complete("SELECT 1"),
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row("of u"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(session.answered(), b"12TDC12TDCZ");
    assert_eq!(shared.store.len(), 2);
    assert_eq!(answered_value(&shared, READ, "1"), data_row("of t"));
    assert_eq!(answered_value(&shared, OTHER_READ, "1"), data_row("of u"));
    // Both cached: answered locally, each Execute with its own statement's rows.
    session.client(&frames);
    assert!(session.sent().is_empty());
    let answer = session.answered_frames();
    assert_eq!(
        answer.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"12TDC12TDCZ"
    );
    assert_eq!(
        (&answer[3], &answer[8]),
        (&data_row("of t"), &data_row("of u"))
    );
}

#[test]
fn a_portal_bound_again_in_a_batch_keeps_each_execute_its_own_values() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    filled(&shared, "2", "two");
    let mut session = shared.session();
    session.client(&[
        parse("", READ),
        bind("", "", "1"),
        describe(b'P', ""),
        execute("", 0),
        bind("", "", "2"),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    assert!(session.sent().is_empty(), "every Execute hits");
    let answer = session.answered_frames();
    assert_eq!(
        answer.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"12TDC2TDCZ"
    );
    assert_eq!(
        (&answer[3], &answer[7]),
        (&data_row("one"), &data_row("two")),
        "each Execute answered with the values it was bound to"
    );
}

#[test]
fn a_statement_closed_and_parsed_again_in_a_batch_is_relayed_in_order() {
    let shared = Shared::new(Classes::default().read(READ, 7).read(OTHER_READ, 8));
    let mut session = shared.session();
    session.client(&[
        parse("s1", READ),
        bind("", "s1", "1"),
        describe(b'P', ""),
        execute("", 0),
        close(b'S', "s1"),
        parse("s1", OTHER_READ),
        bind("", "s1", "1"),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    assert_eq!(session.sent(), b"PBDECPBDES");
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row("of t"),
        command_complete("SELECT 1"),
        close_complete(),
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row("of u"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(answered_value(&shared, READ, "1"), data_row("of t"));
    assert_eq!(answered_value(&shared, OTHER_READ, "1"), data_row("of u"));
}

#[test]
fn a_batch_closing_its_portal_is_answered_locally_and_a_later_execute_of_it_is_relayed() {
    let shared = Shared::new(Classes::default().read(READ, 7));
    filled(&shared, "1", "one");
    let mut session = shared.session();
    // sqlx: Parse, Bind, Describe, Execute, Close portal, Sync.
    session.client(&[
        parse("", READ),
        bind("", "", "1"),
        describe(b'P', ""),
        execute("", 0),
        close(b'P', ""),
        sync(),
    ]);
    assert!(session.sent().is_empty(), "PostgreSQL is not touched");
    let answer = session.answered_frames();
    assert_eq!(
        answer.iter().map(|f| f[0]).collect::<Vec<_>>(),
        b"12TDC3Z",
        "CloseComplete in its place"
    );
    assert_eq!(shared.hits(), 1);
    // The closed portal is gone: executing it again is PostgreSQL's to refuse (the unnamed
    // statement, answered locally, is prepared on the server first).
    session.client(&[bind("", "", "1"), close(b'P', ""), execute("", 0), sync()]);
    assert_eq!(session.sent(), b"PBCES");
}

#[test]
fn a_pipelined_write_goes_upstream_before_sync() {
    // A client pipelining many Bind/Execute pairs of a write (asyncpg's executemany) stops
    // sending once an error comes back; held to Sync, the error would come only at the end.
    const WRITE: &str = "INSERT INTO t VALUES ($1)";
    let shared = Shared::new(
        Classes::default()
            .read(READ, 7)
            .with(WRITE, Class::Write(crate::classify::WriteClass::Database)),
    );
    let mut session = shared.session();
    session.client(&[parse("", WRITE), bind("", "", "1"), execute("", 0)]);
    assert!(session.sent().is_empty(), "a lone Execute is held to Sync");
    session.client(&[bind("", "", "2"), execute("", 0)]);
    assert_eq!(
        session.sent(),
        b"PBEBE",
        "relayed at the write's second Execute"
    );
    session.client(&[bind("", "", "3"), execute("", 0)]);
    assert_eq!(session.sent(), b"BE", "the rest of the batch streams");
    session.client(&[sync()]);
    assert_eq!(session.sent(), b"S");
    // A batch of reads is still held to Sync.
    let mut reader = shared.session();
    let frames = batch("1");
    reader.client(&frames[..4]);
    assert!(reader.sent().is_empty());
}

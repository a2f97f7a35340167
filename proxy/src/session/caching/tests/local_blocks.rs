//! READ COMMITTED blocks begun by the session itself: a block of hits never reaches
//! PostgreSQL; the first statement that needs the server goes after the BEGIN, and only once
//! PostgreSQL has opened the block.

use super::*;
use crate::sql::Isolation::RepeatableRead;

const READ: &str = "SELECT v FROM t WHERE k = 1";
const PREPARED: &str = "SELECT v FROM t WHERE k = $1";
const WRITE: &str = "UPDATE t SET v = 'two' WHERE k = 1";

fn classes() -> Classes {
    Classes::default()
        .read(READ, 100)
        .read(PREPARED, 100)
        .with("BEGIN", begin(None))
        .with("START TRANSACTION", begin(None))
        .with(
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            begin(Some(RepeatableRead)),
        )
        .with("COMMIT", end())
        .with("ROLLBACK", end())
        .with(WRITE, super::transactions::write_to(100))
}

/// A pgjdbc-style batch: BEGIN, then the prepared read with `value`, described, one Sync.
fn begin_and_read(value: &str) -> Vec<Bytes> {
    vec![
        parse("", "BEGIN"),
        bind("", "", ""),
        execute("", 0),
        parse("", PREPARED),
        bind("", "", value),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]
}

/// Fills `PREPARED` with `value`, described, outside a block.
fn fill_described(session: &mut Session, value: &str) {
    session.client(&[
        parse("", PREPARED),
        bind("", "", value),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    assert_eq!(session.sent(), b"PBDES");
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row("one"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    session.answered();
}

#[test]
fn a_block_of_hits_never_reaches_postgresql() {
    let shared = Shared::new(classes());
    shared.session().read_through(READ, "one");
    let mut session = shared.session();
    for (begin, end, tag) in [
        ("BEGIN", "COMMIT", "COMMIT"),
        ("START TRANSACTION", "ROLLBACK", "ROLLBACK"),
    ] {
        session.client(&[query(begin)]);
        assert!(session.sent().is_empty());
        let completed = if begin == "BEGIN" { "BEGIN" } else { begin };
        assert_eq!(
            session.answered_frames(),
            vec![command_complete(completed), ready(b'T')]
        );
        session.client(&[query(READ)]);
        assert!(session.sent().is_empty(), "a hit in the block");
        assert_eq!(session.answered_frames().last(), Some(&ready(b'T')));
        session.client(&[query(end)]);
        assert!(session.sent().is_empty(), "the block ends here too");
        assert_eq!(
            session.answered_frames(),
            vec![command_complete(tag), ready(b'I')]
        );
    }
    assert_eq!(session.begins_sent, 0);
    assert_eq!(shared.hits(), 2);
}

#[test]
fn the_first_statement_that_needs_postgresql_waits_for_the_begin() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.begin_here("BEGIN");
    session.client(&[query(WRITE)]);
    let sent = split(session.upstream.take_all());
    assert_eq!(sent, vec![query("BEGIN")], "the BEGIN goes alone");
    assert_eq!(
        session.server(command_complete("BEGIN")),
        ServerAction::Drop
    );
    assert!(session.upstream.take_all().is_empty(), "the write waits");
    assert_eq!(session.server(ready(b'T')), ServerAction::Drop);
    assert_eq!(
        split(session.upstream.take_all()),
        vec![query(WRITE)],
        "released once the block is open"
    );
    assert!(session.answered().is_empty(), "the client saw none of it");
    session.server_all(&[command_complete("UPDATE 1"), ready(b'T')]);
    assert_eq!(session.answered(), b"CZ");
    // From now on the block is PostgreSQL's: COMMIT is relayed.
    session.client(&[query("COMMIT")]);
    assert_eq!(session.sent(), b"Q");
    session.server_all(&[command_complete("COMMIT"), ready(b'I')]);
    assert_eq!(session.answered(), b"CZ");
}

#[test]
fn a_begin_that_fails_sends_nothing_after_it_and_closes_the_session() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.begin_here("BEGIN");
    session.client(&[query(WRITE)]);
    assert_eq!(split(session.upstream.take_all()), vec![query("BEGIN")]);
    assert_eq!(session.server(error("57014")), ServerAction::Forward);
    assert_eq!(session.server(ready(b'I')), ServerAction::Drop);
    assert!(session.machine.begin_failed());
    assert!(
        session.upstream.take_all().is_empty(),
        "the write never ran outside the block"
    );
}

#[test]
fn a_misses_batch_in_a_deferred_block_is_prepared_again_on_the_server() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    fill_described(&mut session, "1");
    session.begin_here("BEGIN");
    // A Bind of the unnamed statement without a Parse: the BEGIN sent ahead (a simple Query)
    // dropped the server's unnamed statement, so it is prepared again first.
    session.client(&[bind("", "", "2"), execute("", 0), sync()]);
    assert_eq!(session.sent(), b"PBES");
    assert_eq!(session.server(parse_complete()), ServerAction::Drop);
    session.server_all(&[
        bind_complete(),
        data_row("two"),
        command_complete("SELECT 1"),
        ready(b'T'),
    ]);
    assert_eq!(session.answered(), b"2DCZ");
    assert_eq!(session.begins_sent, 1);
}

#[test]
fn a_batch_that_begins_a_block_and_hits_is_answered_whole() {
    let shared = Shared::new(classes());
    fill_described(&mut shared.session(), "1");
    let mut session = shared.session();
    session.client(&begin_and_read("1"));
    assert!(session.sent().is_empty(), "BEGIN and the hit answered here");
    let answer = session.answered_frames();
    assert_eq!(
        answer[..3],
        [parse_complete(), bind_complete(), command_complete("BEGIN")]
    );
    assert_eq!(answer.last(), Some(&ready(b'T')));
    assert_eq!(shared.hits(), 1);
    // The driver's COMMIT, in a batch of its own.
    session.client(&[
        parse("", "COMMIT"),
        bind("", "", ""),
        execute("", 0),
        sync(),
    ]);
    assert!(session.sent().is_empty());
    assert_eq!(
        session.answered_frames(),
        vec![
            parse_complete(),
            bind_complete(),
            command_complete("COMMIT"),
            ready(b'I')
        ]
    );
    // A miss in the same shape of batch relays it whole, BEGIN included.
    session.client(&begin_and_read("2"));
    assert_eq!(session.sent(), b"PBEPBDES");
    assert_eq!(session.begins_sent, 0);
}

#[test]
fn a_describe_of_a_begun_portal_is_answered_with_no_data() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.client(&[
        parse("", "BEGIN"),
        bind("", "", ""),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    assert!(session.sent().is_empty());
    assert_eq!(
        session.answered_frames(),
        vec![
            parse_complete(),
            bind_complete(),
            no_data(),
            command_complete("BEGIN"),
            ready(b'T')
        ]
    );
}

#[test]
fn blocks_that_cannot_be_served_begin_on_the_server() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.client(&[query("BEGIN ISOLATION LEVEL REPEATABLE READ")]);
    assert_eq!(session.sent(), b"Q", "its snapshot is PostgreSQL's to take");
    session.server_all(&[command_complete("BEGIN"), ready(b'T')]);
    session.answered();
    session.client(&[query("COMMIT")]);
    assert_eq!(session.sent(), b"Q");
    session.server_all(&[command_complete("COMMIT"), ready(b'I')]);
    session.answered();
    // A BEGIN pipelined behind a request in flight is relayed.
    session.client(&[query(WRITE), query("BEGIN")]);
    assert_eq!(session.sent(), b"QQ");
    // And none with --defer-begin off.
    let mut shared = Shared::new(classes());
    shared.defer_begin = false;
    let mut session = shared.session();
    session.client(&[query("BEGIN")]);
    assert_eq!(session.sent(), b"Q");
}

#[test]
fn terminate_in_a_deferred_block_goes_alone() {
    let shared = Shared::new(classes());
    let mut session = shared.session();
    session.begin_here("BEGIN");
    session.client(&[frame(b'X', b"")]);
    assert_eq!(split(session.upstream.take_all()), vec![frame(b'X', b"")]);
}

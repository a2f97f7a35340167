//! Statements being judged: the first execution of a new read waits for the catalog's verdict
//! (bounded), so it can be captured, and what its verdict says applies to the session; so does
//! a new write, so that its acknowledgement invalidates only what it reaches.

use super::*;

const READ: &str = "SELECT v FROM t WHERE k = 1";
const PREPARED: &str = "SELECT v FROM t WHERE k = $1";

#[tokio::test]
async fn a_read_being_judged_waits_for_its_verdict_then_is_captured() {
    let shared = Shared::new(Classes::default().judging(READ, cacheable(READ, 100)));
    let mut session = shared.session();
    session.client(&[query(READ), query("SELECT 2")]);
    assert!(session.machine.parked().is_some(), "waits for the verdict");
    assert!(session.sent().is_empty(), "nothing went upstream meanwhile");
    shared.judge(READ);
    let wait = &mut session.machine.parked().expect("parked").wait;
    assert!(wait.as_mut().await, "the verdict ended the wait");
    session.resume();
    assert_eq!(
        session.sent(),
        b"QQ",
        "the read, then the query sent meanwhile"
    );
    session.server_all(&simple_answer("one"));
    assert_eq!(
        shared.store.len(),
        1,
        "the first execution filled the cache"
    );
    assert_eq!(shared.misses(), 1);
    let mut other = shared.session();
    other.client(&[query(READ)]);
    assert!(other.sent().is_empty());
    assert_eq!(other.answered(), b"TDCZ");
}

#[tokio::test]
async fn a_verdict_that_does_not_come_lets_the_read_go_uncached() {
    let shared = Shared::new(Classes::default().judging(READ, cacheable(READ, 100)));
    let mut session = shared.session();
    session.client(&[query(READ)]);
    let wait = &mut session.machine.parked().expect("parked").wait;
    assert!(!wait.as_mut().await, "timed out");
    session.resume();
    assert_eq!(session.sent(), b"Q", "relayed without waiting again");
    session.server_all(&simple_answer("one"));
    assert!(shared.store.is_empty(), "not judged: not cached");
    assert_eq!(shared.queries(QueryKind::ReadUncacheable), 1);
}

#[tokio::test]
async fn a_held_batch_waits_at_sync_for_the_verdict_on_its_statements() {
    let shared = Shared::new(Classes::default().judging(PREPARED, cacheable(PREPARED, 100)));
    let mut session = shared.session();
    session.client(&[
        parse("", PREPARED),
        bind("", "", "1"),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    assert!(session.machine.parked().is_some(), "parked at Sync");
    assert!(session.sent().is_empty());
    shared.judge(PREPARED);
    let wait = &mut session.machine.parked().expect("parked").wait;
    assert!(wait.as_mut().await);
    session.resume();
    assert_eq!(session.sent(), b"PBDES");
    session.server_all(&[
        parse_complete(),
        bind_complete(),
        row_description(),
        data_row("one"),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    assert_eq!(shared.store.len(), 1, "captured on its first execution");
}

#[tokio::test]
async fn a_write_being_judged_waits_and_then_invalidates_only_what_it_reaches() {
    const WRITE: &str = "UPDATE t SET v = 'two' WHERE k = 1";
    const OTHER: &str = "SELECT v FROM other";
    let shared = Shared::new(
        Classes::default()
            .with(OTHER, cacheable(OTHER, 200))
            .judging(WRITE, super::transactions::write_to(100)),
    );
    let mut warm = shared.session();
    warm.client(&[query(OTHER)]);
    warm.server_all(&simple_answer("other"));
    assert_eq!(shared.store.len(), 1);

    let mut session = shared.session();
    session.client(&[query(WRITE)]);
    assert!(
        session.machine.parked().is_some(),
        "the write waits for its verdict"
    );
    assert!(session.sent().is_empty());
    shared.judge(WRITE);
    let wait = &mut session.machine.parked().expect("parked").wait;
    assert!(wait.as_mut().await);
    session.resume();
    assert_eq!(session.sent(), b"Q");
    session.server_all(&[command_complete("UPDATE 1"), ready(b'I')]);
    let mut reader = shared.session();
    reader.client(&[query(OTHER)]);
    assert!(
        reader.sent().is_empty(),
        "a table the write does not reach keeps its entries"
    );
}

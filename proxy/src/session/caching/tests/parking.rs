//! Single flight: a session whose read is being filled by another waits for that fill (parked),
//! then is answered from it; what its client sent meanwhile is handled in order afterwards.

use super::*;

const READ: &str = "SELECT v FROM t WHERE k = 1";

#[tokio::test]
async fn a_concurrent_identical_miss_waits_for_the_fill_and_then_hits() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut filler = shared.session();
    filler.client(&[query(READ)]);
    assert_eq!(filler.sent(), b"Q");
    let mut waiter = shared.session();
    waiter.client(&[query(READ), query("SELECT 2")]);
    assert!(waiter.machine.parked().is_some(), "parked behind the fill");
    assert!(waiter.sent().is_empty(), "neither query went upstream");
    assert!(!waiter.machine.is_idle());

    filler.server_all(&simple_answer("one"));
    let wait = &mut waiter.machine.parked().expect("parked").wait;
    assert!(wait.as_mut().await, "the wait ends with the fill");
    waiter.resume();
    assert_eq!(waiter.answered(), b"TDCZ", "answered from the fill");
    assert_eq!(
        waiter.sent(),
        b"Q",
        "then the query sent meanwhile, in order"
    );
    assert_eq!(shared.hits(), 1);
    assert_eq!(shared.misses(), 1);
}

#[tokio::test]
async fn an_abandoned_fill_lets_the_waiter_go_upstream_without_waiting_twice() {
    let shared = Shared::new(Classes::default().read(READ, 100));
    let mut filler = shared.session();
    filler.client(&[query(READ)]);
    let mut waiter = shared.session();
    waiter.client(&[query(READ)]);
    assert!(waiter.machine.parked().is_some());
    // The filler's query fails: its guard is dropped and the flight ends without an entry.
    filler.server_all(&[error("57014"), ready(b'I')]);
    let wait = &mut waiter.machine.parked().expect("parked").wait;
    assert!(wait.as_mut().await);
    waiter.resume();
    assert_eq!(waiter.sent(), b"Q", "relayed itself");
    assert!(waiter.machine.parked().is_none());
}

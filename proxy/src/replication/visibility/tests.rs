use super::*;
use crate::pins::writes::Bump;
use pgcached_cache::TableId;

fn table() -> TableId {
    TableId {
        database: Arc::from("app"),
        oid: 7,
    }
}

#[test]
fn snapshots_read_as_postgres_prints_them() {
    assert_eq!(
        Snapshot::parse("10:20:12,15"),
        Some(Snapshot {
            xmin: 10,
            xmax: 20,
            running: vec![12, 15]
        })
    );
    assert_eq!(
        Snapshot::parse("795:795:"),
        Some(Snapshot {
            xmin: 795,
            xmax: 795,
            running: Vec::new()
        })
    );
    for bad in ["", "1:2", "1:2:3:4", "a:2:", "5:4:", "1:9:3,x"] {
        assert_eq!(Snapshot::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn a_transaction_has_ended_unless_the_snapshot_lists_it_or_has_not_reached_it() {
    let snapshot = Snapshot::parse("10:20:12,15").expect("snapshot");
    assert!(snapshot.has_ended(9), "below xmin");
    assert!(snapshot.has_ended(11), "between, not listed");
    assert!(!snapshot.has_ended(12), "listed as running");
    assert!(!snapshot.has_ended(15), "listed as running");
    assert!(snapshot.has_ended(19));
    assert!(!snapshot.has_ended(20), "xmax: not assigned yet");
}

#[test]
fn stream_ids_are_placed_in_the_snapshots_epoch() {
    // xmax in epoch 3 just past the wrap: the stream's id 0xFFFF_FFF0 is of epoch 2.
    let xmax = (3u64 << 32) + 5;
    let running = (2u64 << 32) + 0xFFFF_FFF0;
    let snapshot = Snapshot::parse(&format!("{running}:{xmax}:{running}")).expect("snapshot");
    assert!(
        !snapshot.has_ended(0xFFFF_FFF0),
        "the running one, across the wrap"
    );
    assert!(snapshot.has_ended(0xFFFF_FFF1));
    assert!(snapshot.has_ended(4), "epoch 3, below xmax");
    assert!(!snapshot.has_ended(5), "xmax itself");
}

/// Snapshots handed out in order; an empty list means the server cannot be asked.
struct Scripted(Mutex<Vec<Result<Snapshot, ()>>>);

impl SnapshotSource for Scripted {
    fn snapshot<'a>(&'a self, _database: &'a str) -> SnapshotFuture<'a> {
        let next = self.0.lock().pop();
        Box::pin(async move {
            match next {
                Some(Ok(snapshot)) => Ok(snapshot),
                _ => Err(SnapshotError::Unreadable("no snapshot".to_owned())),
            }
        })
    }
}

fn bumped() -> Bumped {
    Bumped {
        database: None,
        bumps: vec![Bump::Table(table())],
    }
}

/// A checker over `script` (snapshots handed out from the end), with its counters and source.
fn checker(
    script: Vec<Result<Snapshot, ()>>,
) -> (Arc<Generations>, Arc<Scripted>, Arc<Visibility>) {
    let generations = Arc::new(Generations::new());
    let fallback = Rebumps::start(Arc::clone(&generations));
    let source = Arc::new(Scripted(Mutex::new(script)));
    let visibility = Visibility::start(
        Arc::clone(&generations),
        Arc::clone(&source) as Arc<dyn SnapshotSource>,
        fallback,
    )
    .expect("inside a runtime");
    (generations, source, visibility)
}

/// Waits (at most 5 s) until `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_commit_is_bumped_again_once_a_snapshot_shows_it_ended() {
    // First a snapshot where 12 still runs, then one where it ended.
    let (generations, _, visibility) = checker(vec![
        Ok(Snapshot::parse("13:14:").expect("snapshot")),
        Ok(Snapshot::parse("12:14:12").expect("snapshot")),
    ]);
    let whole = generations.whole_table(&table());
    let start = whole.current();
    visibility.schedule(Arc::from("app"), 12, bumped());
    until("never bumped", || whole.current() != start).await;
    assert_eq!(whole.current(), start + 1, "bumped once");
    assert!(visibility.waiting.lock().is_empty(), "nothing left waiting");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(whole.current(), start + 1, "and not again");
}

#[tokio::test]
async fn without_a_snapshot_the_commit_takes_the_fixed_delays() {
    let (generations, _, visibility) = checker(Vec::new());
    let whole = generations.whole_table(&table());
    let start = whole.current();
    visibility.schedule(Arc::from("app"), 12, bumped());
    // No snapshot ever answers: only the fixed delays can bump it again.
    until("never bumped", || whole.current() != start).await;
    assert!(visibility.waiting.lock().is_empty());
}

#[tokio::test]
async fn after_a_failed_check_commits_take_the_fixed_delays_without_asking() {
    // The first check fails; the snapshot after it would answer.
    let (_, source, visibility) = checker(vec![
        Ok(Snapshot::parse("13:14:").expect("snapshot")),
        Err(()),
    ]);
    visibility.schedule(Arc::from("app"), 12, bumped());
    until("never checked", || source.0.lock().len() < 2).await;
    visibility.schedule(Arc::from("app"), 12, bumped());
    until("never handed on", || visibility.waiting.lock().is_empty()).await;
    assert_eq!(source.0.lock().len(), 1, "not asked again so soon");
}

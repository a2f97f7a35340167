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

#[tokio::test]
async fn a_commit_is_bumped_again_once_a_snapshot_shows_it_ended() {
    let generations = Arc::new(Generations::new());
    let fallback = Rebumps::start(Arc::clone(&generations));
    // Popped from the end: first a snapshot where 12 still runs, then one where it ended.
    let source = Arc::new(Scripted(Mutex::new(vec![
        Ok(Snapshot::parse("13:14:").expect("snapshot")),
        Ok(Snapshot::parse("12:14:12").expect("snapshot")),
    ])));
    let visibility =
        Visibility::start(Arc::clone(&generations), source, fallback).expect("inside a runtime");
    let whole = generations.whole_table(&table());
    let start = whole.current();
    visibility.schedule(Arc::from("app"), 12, bumped());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while whole.current() == start {
        assert!(tokio::time::Instant::now() < deadline, "never bumped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(whole.current(), start + 1, "bumped once");
    assert!(visibility.waiting.lock().is_empty(), "nothing left waiting");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(whole.current(), start + 1, "and not again");
}

#[tokio::test]
async fn without_a_snapshot_the_commit_takes_the_fixed_delays() {
    let generations = Arc::new(Generations::new());
    let fallback = Rebumps::start(Arc::clone(&generations));
    let source = Arc::new(Scripted(Mutex::new(Vec::new())));
    let visibility =
        Visibility::start(Arc::clone(&generations), source, fallback).expect("inside a runtime");
    let whole = generations.whole_table(&table());
    let start = whole.current();
    visibility.schedule(Arc::from("app"), 12, bumped());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(whole.current(), start, "not before the first delay");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while whole.current() == start {
        assert!(tokio::time::Instant::now() < deadline, "never bumped");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(visibility.waiting.lock().is_empty());
}

#[tokio::test]
async fn after_a_failed_check_commits_take_the_fixed_delays_without_asking() {
    let generations = Arc::new(Generations::new());
    let fallback = Rebumps::start(Arc::clone(&generations));
    // Popped from the end: the first check fails; the snapshot after it would answer.
    let source = Arc::new(Scripted(Mutex::new(vec![
        Ok(Snapshot::parse("13:14:").expect("snapshot")),
        Err(()),
    ])));
    let visibility = Visibility::start(
        Arc::clone(&generations),
        Arc::clone(&source) as Arc<dyn SnapshotSource>,
        fallback,
    )
    .expect("inside a runtime");
    visibility.schedule(Arc::from("app"), 12, bumped());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while source.0.lock().len() == 2 {
        assert!(tokio::time::Instant::now() < deadline, "never checked");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    visibility.schedule(Arc::from("app"), 12, bumped());
    // Handed on (to the fixed delays) within the pause, without a check.
    while !visibility.waiting.lock().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never handed on");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(source.0.lock().len(), 1, "not asked again so soon");
}

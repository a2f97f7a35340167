use super::*;

fn table(oid: u32) -> TableId {
    TableId {
        database: Arc::from("app"),
        oid,
    }
}

fn cache(max_bytes: u64, ttl: Option<Duration>) -> ResultCache {
    ResultCache::new(
        CacheConfig {
            max_bytes,
            max_entry_bytes: 1024,
            ttl,
        },
        Arc::new(Generations::new()),
    )
}

fn key(text: &str) -> CacheKey {
    CacheKey::builder().part(text.as_bytes()).finish()
}

fn miss(cache: &ResultCache, k: &CacheKey, deps: &[TableId]) -> FillGuard {
    match cache.lookup(k, "app") {
        Lookup::Miss(reservation) => reservation.record(&Dependencies {
            tables: deps,
            rows: &[],
        }),
        _ => panic!("expected a miss"),
    }
}

#[test]
fn filled_results_hit_until_a_dependency_is_bumped() {
    let c = cache(1 << 20, None);
    let k = key("q");
    let guard = miss(&c, &k, &[table(1), table(2)]);
    assert_eq!(
        guard.fill(Bytes::from_static(b"rows"), Bytes::new()),
        FillOutcome::Stored
    );
    match c.lookup(&k, "app") {
        Lookup::Hit(entry) => assert_eq!(&entry.response[..], b"rows"),
        _ => panic!("expected a hit"),
    }
    c.generations().bump_table(&table(2));
    assert!(matches!(c.lookup(&k, "app"), Lookup::Miss(_)));
    assert_eq!(c.len(), 0, "the stale entry was removed");
}

#[test]
fn a_fill_is_refused_when_a_dependency_moved_meanwhile() {
    let c = cache(1 << 20, None);
    let k = key("q");
    let guard = miss(&c, &k, &[table(1)]);
    c.generations().bump_table(&table(1));
    assert_eq!(
        guard.fill(Bytes::from_static(b"old"), Bytes::new()),
        FillOutcome::Stale
    );
    assert!(matches!(c.lookup(&k, "app"), Lookup::Miss(_)));
}

#[test]
fn a_database_bump_invalidates_everything_in_it() {
    let c = cache(1 << 20, None);
    let k = key("q");
    miss(&c, &k, &[table(1)]).fill(Bytes::from_static(b"x"), Bytes::new());
    c.generations().bump_database("other");
    assert!(matches!(c.lookup(&k, "app"), Lookup::Hit(_)));
    c.generations().bump_database("app");
    assert!(matches!(c.lookup(&k, "app"), Lookup::Miss(_)));
}

#[test]
fn entries_expire_after_the_ttl() {
    let c = cache(1 << 20, Some(Duration::from_millis(30)));
    let k = key("q");
    miss(&c, &k, &[]).fill(Bytes::from_static(b"x"), Bytes::new());
    assert!(matches!(c.lookup(&k, "app"), Lookup::Hit(_)));
    std::thread::sleep(Duration::from_millis(50));
    assert!(matches!(c.lookup(&k, "app"), Lookup::Miss(_)));
    assert_eq!(c.expired(), 1);
}

#[test]
fn oversized_results_are_not_stored() {
    let c = cache(1 << 20, None);
    let k = key("q");
    let outcome = miss(&c, &k, &[]).fill(Bytes::from(vec![0u8; 2000]), Bytes::new());
    assert_eq!(outcome, FillOutcome::TooLarge);
    assert!(c.is_empty());
}

#[test]
fn the_total_weight_stays_under_the_limit() {
    let c = cache(64 * 1024, None);
    for i in 0..5000 {
        let k = key(&format!("query {i}"));
        if let Lookup::Miss(reservation) = c.lookup(&k, "app") {
            let guard = reservation.record(&Dependencies {
                tables: &[table(1)],
                rows: &[],
            });
            guard.fill(Bytes::from(vec![1u8; 100 + (i % 500)]), Bytes::new());
        }
        assert!(c.weight_bytes() <= 64 * 1024, "over the limit at {i}");
    }
    assert!(c.evictions() > 0);
}

#[tokio::test]
async fn concurrent_misses_wait_for_the_first_fill() {
    let c = cache(1 << 20, None);
    let k = key("q");
    let guard = miss(&c, &k, &[]);
    let Lookup::Wait(wait) = c.lookup(&k, "app") else {
        panic!("expected to wait");
    };
    let filler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        guard.fill(Bytes::from_static(b"x"), Bytes::new())
    });
    assert!(wait.wait(Duration::from_secs(5)).await);
    assert_eq!(filler.await.ok(), Some(FillOutcome::Stored));
    assert!(matches!(c.lookup(&k, "app"), Lookup::Hit(_)));

    // An abandoned fill (guard dropped) also releases waiters.
    let k2 = key("q2");
    let guard = miss(&c, &k2, &[]);
    let Lookup::Wait(wait) = c.lookup(&k2, "app") else {
        panic!("expected to wait");
    };
    drop(guard);
    assert!(wait.wait(Duration::from_secs(5)).await);
    assert!(matches!(c.lookup(&k2, "app"), Lookup::Miss(_)));
}

#[test]
fn an_unavailable_database_is_bypassed() {
    let c = cache(1 << 20, None);
    let k = key("q");
    miss(&c, &k, &[table(1)]).fill(Bytes::from_static(b"x"), Bytes::new());
    c.generations().set_feed("app", Feed::Down);
    assert!(matches!(
        c.lookup(&k, "app"),
        Lookup::Bypass(FeedRefusal::ReplicationDown)
    ));
    c.generations()
        .set_feed("app", Feed::Bounded(Duration::ZERO));
    assert!(matches!(
        c.lookup(&k, "app"),
        Lookup::Bypass(FeedRefusal::NoChangeFeed)
    ));
    c.generations().set_feed("app", Feed::Live);
    assert!(matches!(c.lookup(&k, "app"), Lookup::Hit(_)));
}

#[test]
fn without_a_change_feed_results_live_at_most_the_bound_from_their_lookup() {
    let c = cache(1 << 20, Some(Duration::from_secs(3600)));
    c.generations()
        .set_feed("app", Feed::Bounded(Duration::from_millis(40)));
    let k = key("bounded");
    let guard = miss(&c, &k, &[table(1)]);
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(
        guard.fill(Bytes::from_static(b"x"), Bytes::new()),
        FillOutcome::Stored
    );
    let expires = c.entries()[0].expires_at.expect("bounded");
    assert!(
        expires <= c.entries()[0].filled_at + Duration::from_millis(31),
        "the bound counts from the lookup, not the fill"
    );
    assert!(matches!(c.lookup(&k, "app"), Lookup::Hit(_)));
    std::thread::sleep(Duration::from_millis(35));
    assert!(matches!(c.lookup(&k, "app"), Lookup::Miss(_)));

    // A query slower than the bound is not stored at all.
    let slow = miss(&c, &key("slow"), &[table(1)]);
    std::thread::sleep(Duration::from_millis(45));
    assert_eq!(
        slow.fill(Bytes::from_static(b"x"), Bytes::new()),
        FillOutcome::Expired
    );

    // An entry filled while the feed was live is bounded too once the feed is lost, even if
    // the database were not bumped.
    c.generations().set_feed("app", Feed::Live);
    let live = key("live");
    miss(&c, &live, &[table(1)]).fill(Bytes::from_static(b"x"), Bytes::new());
    std::thread::sleep(Duration::from_millis(45));
    assert!(matches!(c.lookup(&live, "app"), Lookup::Hit(_)));
    c.generations()
        .set_feed("app", Feed::Bounded(Duration::from_millis(40)));
    assert!(matches!(c.lookup(&live, "app"), Lookup::Miss(_)));
}

#[test]
fn a_fill_may_shorten_its_own_ttl_and_carries_its_label_and_cost() {
    let store = cache(1 << 20, None);
    let mut guard = miss(&store, &key("short"), &[table(1)]);
    guard.set_ttl(Duration::from_millis(30));
    guard.set_label(Arc::from("SELECT ? FROM t"), Arc::from(vec![table(1)]));
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(
        guard.fill(Bytes::from_static(b"rows"), Bytes::new()),
        FillOutcome::Stored
    );
    let entries = store.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(&*entries[0].label, "SELECT ? FROM t");
    assert_eq!(&*entries[0].tables, &[table(1)]);
    assert!(entries[0].cost >= Duration::from_millis(2));
    assert!(matches!(store.lookup(&key("short"), "app"), Lookup::Hit(_)));
    std::thread::sleep(Duration::from_millis(40));
    assert!(matches!(
        store.lookup(&key("short"), "app"),
        Lookup::Miss(_)
    ));
    // The store's default (none) still applies to other fills.
    let guard = miss(&store, &key("long"), &[table(1)]);
    guard.fill(Bytes::from_static(b"rows"), Bytes::new());
    std::thread::sleep(Duration::from_millis(40));
    assert!(matches!(store.lookup(&key("long"), "app"), Lookup::Hit(_)));
}

fn pinned(cache: &ResultCache, k: &CacheKey, rows: &[RowDependency]) -> FillGuard {
    match cache.lookup(k, "app") {
        Lookup::Miss(reservation) => reservation.record(&Dependencies { tables: &[], rows }),
        _ => panic!("expected a miss"),
    }
}

fn pin(oid: u32, keys: &[u64]) -> RowDependency {
    RowDependency {
        table: table(oid),
        columns: ColumnSetId(1),
        keys: keys.iter().map(|k| KeyHash(*k)).collect(),
    }
}

#[test]
fn a_pinned_read_survives_changes_of_other_rows_and_dies_with_its_own() {
    let c = cache(1 << 20, None);
    let k = key("users where id = 42");
    pinned(&c, &k, &[pin(1, &[42])]).fill(Bytes::from_static(b"alice"), Bytes::new());
    let g = c.generations();
    g.bump_table_rows(&table(1));
    g.bump_key(KeyHash(41));
    g.bump_column_set(&table(1), ColumnSetId(2));
    assert!(
        matches!(c.lookup(&k, "app"), Lookup::Hit(_)),
        "other rows and other column sets changed"
    );
    g.bump_key(KeyHash(42));
    assert!(matches!(c.lookup(&k, "app"), Lookup::Miss(_)));
}

#[test]
fn a_pinned_read_dies_with_its_column_set_and_its_whole_table() {
    let c = cache(1 << 20, None);
    let g = c.generations();
    for bump in 0..2 {
        let k = key(&format!("pinned {bump}"));
        pinned(&c, &k, &[pin(1, &[7, 8])]).fill(Bytes::from_static(b"x"), Bytes::new());
        assert!(matches!(c.lookup(&k, "app"), Lookup::Hit(_)));
        if bump == 0 {
            g.bump_column_set(&table(1), ColumnSetId(1));
        } else {
            g.bump_table(&table(1));
        }
        assert!(
            matches!(c.lookup(&k, "app"), Lookup::Miss(_)),
            "bump {bump}"
        );
    }
}

#[test]
fn a_whole_table_read_dies_with_any_change_of_its_table() {
    let c = cache(1 << 20, None);
    let k = key("count(*)");
    miss(&c, &k, &[table(1)]).fill(Bytes::from_static(b"3"), Bytes::new());
    c.generations().bump_key(KeyHash(42));
    assert!(
        matches!(c.lookup(&k, "app"), Lookup::Hit(_)),
        "a key alone says nothing"
    );
    c.generations().bump_table_rows(&table(1));
    assert!(matches!(c.lookup(&k, "app"), Lookup::Miss(_)));
}

#[test]
fn a_pinned_fill_is_refused_when_its_key_moved_meanwhile() {
    let c = cache(1 << 20, None);
    let k = key("q");
    let guard = pinned(&c, &k, &[pin(1, &[5])]);
    c.generations().bump_key(KeyHash(5));
    assert_eq!(
        guard.fill(Bytes::from_static(b"old"), Bytes::new()),
        FillOutcome::Stale
    );
}

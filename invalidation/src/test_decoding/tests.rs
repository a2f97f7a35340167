use super::*;

fn text(value: &str) -> Value {
    Value::Text(Bytes::copy_from_slice(value.as_bytes()))
}

fn changes(line: &str) -> Vec<Change> {
    match parse(line.as_bytes()) {
        Ok(Line::Changes(changes)) => changes,
        other => panic!("{line}: {other:?}"),
    }
}

fn one(line: &str) -> Change {
    let mut all = changes(line);
    assert_eq!(all.len(), 1, "{line}");
    all.remove(0)
}

fn columns(image: &Option<RowImage>) -> Vec<(String, Value)> {
    image
        .as_ref()
        .expect("an image")
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.value.clone()))
        .collect()
}

#[test]
fn an_insert_with_quoted_names_and_every_kind_of_value() {
    // As PostgreSQL 15 prints it.
    let change = one(
        "table \"Sales\".\"order lines\": INSERT: id[integer]:1 \"my col\"[text]:'it''s \"q\"' \
         qty[integer]:null tags[text[]]:'{a,\"b c\"}' b[boolean]:true bits[bit]:B'0101' \
         vb[bit varying]:B'11' n[numeric]:-1.5e+3 f[double precision]:NaN d[date]:'2020-01-01' \
         off[boolean]:false big[text]:unchanged-toast-datum",
    );
    assert_eq!(
        change.relation,
        RelationRef::Name("\"Sales\".\"order lines\"".to_owned())
    );
    assert_eq!(change.kind, ChangeKind::Insert);
    assert_eq!(change.old, None);
    assert_eq!(
        columns(&change.new),
        vec![
            ("id".to_owned(), text("1")),
            ("my col".to_owned(), text("it's \"q\"")),
            ("qty".to_owned(), Value::Null),
            ("tags".to_owned(), text("{a,\"b c\"}")),
            ("b".to_owned(), text("t")),
            ("bits".to_owned(), text("0101")),
            ("vb".to_owned(), text("11")),
            ("n".to_owned(), text("-1.5e+3")),
            ("f".to_owned(), text("NaN")),
            ("d".to_owned(), text("2020-01-01")),
            ("off".to_owned(), text("f")),
            ("big".to_owned(), Value::UnchangedToast),
        ]
    );
    assert_eq!(
        change.new.as_ref().and_then(|n| n.get("qty")),
        Some(&Value::Null)
    );
}

#[test]
fn values_may_hold_what_looks_like_syntax() {
    let change = one(
        "table public.t: INSERT: a[text]:' new-tuple: b[int]:1' \"x]y\"[\"odd]type\"[]]:'' \
         \"we\"\"ird\"[text]:'null' e[text]:'line\nbreak'",
    );
    assert_eq!(
        columns(&change.new),
        vec![
            ("a".to_owned(), text(" new-tuple: b[int]:1")),
            ("x]y".to_owned(), text("")),
            ("we\"ird".to_owned(), text("null")),
            ("e".to_owned(), text("line\nbreak")),
        ]
    );
}

#[test]
fn updates_with_and_without_an_old_key() {
    let plain = one("table public.nokey: UPDATE: a[integer]:1 b[text]:'c'");
    assert_eq!(plain.kind, ChangeKind::Update);
    assert_eq!(plain.old, None);
    assert_eq!(
        columns(&plain.new),
        vec![("a".to_owned(), text("1")), ("b".to_owned(), text("c"))]
    );
    let keyed = one(
        "table \"Sales\".\"order lines\": UPDATE: old-key: id[integer]:1 new-tuple: \
         id[integer]:2 qty[integer]:3",
    );
    assert_eq!(columns(&keyed.old), vec![("id".to_owned(), text("1"))]);
    assert_eq!(
        columns(&keyed.new),
        vec![("id".to_owned(), text("2")), ("qty".to_owned(), text("3"))]
    );
    // Identity FULL with only NULLs in the old row: an empty old image.
    let empty = one("table public.n: UPDATE: old-key: new-tuple: a[integer]:null");
    assert_eq!(empty.old, Some(RowImage::default()));
}

#[test]
fn deletes_with_a_key_or_without() {
    let keyed = one("table public.t: DELETE: id[integer]:2");
    assert_eq!(keyed.kind, ChangeKind::Delete);
    assert_eq!(columns(&keyed.old), vec![("id".to_owned(), text("2"))]);
    assert_eq!(keyed.new, None);
    let unknown = one("table public.nokey: DELETE: (no-tuple-data)");
    assert_eq!(unknown.old, None);
    assert_eq!(
        unknown.relation,
        RelationRef::Name("public.nokey".to_owned())
    );
}

#[test]
fn a_truncate_names_every_table() {
    let all =
        changes("table public.nokey, public.\"select\", \"a, b\".\"c: d\": TRUNCATE: (no-flags)");
    let names: Vec<RelationRef> = all.iter().map(|c| c.relation.clone()).collect();
    assert_eq!(
        names,
        vec![
            RelationRef::Name("public.nokey".to_owned()),
            RelationRef::Name("public.\"select\"".to_owned()),
            RelationRef::Name("\"a, b\".\"c: d\"".to_owned()),
        ]
    );
    assert!(all.iter().all(|c| c.kind == ChangeKind::Truncate));
    assert_eq!(
        changes("table public.nokey: TRUNCATE: restart_seqs cascade").len(),
        1
    );
}

#[test]
fn begin_commit_and_messages() {
    assert_eq!(parse(b"BEGIN"), Ok(Line::Begin { xid: None }));
    assert_eq!(parse(b"BEGIN 734"), Ok(Line::Begin { xid: Some(734) }));
    assert_eq!(
        parse(b"BEGIN 4294967295"),
        Ok(Line::Begin {
            xid: Some(u32::MAX)
        })
    );
    assert!(parse(b"BEGIN 4294967296").is_err(), "not a transaction id");
    assert!(parse(b"BEGIN x").is_err());
    assert_eq!(
        parse(b"message: transactional: 1 prefix: p, sz: 5 content:hello"),
        Ok(Line::Message)
    );
    assert_eq!(
        parse(b"COMMIT (at 2000-01-01 00:00:01.5+00)"),
        Ok(Line::Commit {
            time_micros: Some(1_500_000)
        })
    );
    assert_eq!(parse(b"COMMIT"), Ok(Line::Commit { time_micros: None }));
    assert_eq!(
        parse(b"COMMIT 12 (at 2000-01-01 05:30:00+05:30)"),
        Ok(Line::Commit {
            time_micros: Some(0)
        })
    );
}

#[test]
fn commit_timestamps_in_any_zone() {
    let utc = timestamp_micros("2026-12-01 10:05:51.443021+00").expect("utc");
    assert_eq!(
        timestamp_micros("2026-12-01 15:35:51.443021+05:30"),
        Some(utc)
    );
    assert_eq!(timestamp_micros("2026-12-01 02:05:51.443021-08"), Some(utc));
    // 2026-12-01 is 9831 days after 2000-01-01.
    assert_eq!(
        utc,
        ((9831 * 24 + 10) * 3600 + 5 * 60 + 51) * 1_000_000 + 443_021
    );
    assert_eq!(timestamp_micros("1999-12-31 23:59:59+00"), Some(-1_000_000));
    assert_eq!(
        timestamp_micros("2000-02-29 00:00:00+00"),
        Some(59 * 86_400 * 1_000_000)
    );
    assert_eq!(timestamp_micros("garbage"), None);
    assert_eq!(timestamp_micros("2020-13-01 00:00:00+00"), None);
}

#[test]
fn a_line_too_large_to_keep_still_names_its_table() {
    let prefix = b"table public.blobs: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:1 data[text]:'xxxx";
    match parse_prefix(prefix) {
        Ok(Line::Changes(changes)) => {
            assert_eq!(
                changes,
                vec![Change::without_images(
                    RelationRef::Name("public.blobs".to_owned()),
                    ChangeKind::Update
                )]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parse(prefix).is_err(),
        "cut off: unreadable as a whole line"
    );
}

#[test]
fn what_test_decoding_never_writes_is_an_error() {
    for line in [
        "",
        "ROLLBACK",
        "table public.t INSERT: a[integer]:1",
        "table public.t: MERGE: a[integer]:1",
        "table public: INSERT: a[integer]:1",
        "table public.t: INSERT: a[integer]:'open",
        "table public.t: INSERT: a[integer:1",
        "table public.t: INSERT: a[integer]:1 b",
        "table public.t: INSERT: a[integer]:1 junk",
        "table \"public.t: INSERT: a[integer]:1",
        "table public.t: INSERT: a[bit]:B'012'",
        "table public.t: INSERT: a[integer]:",
        "table public.t: INSERT: a[integer]:{1}",
        "table public.a, public.b: DELETE: (no-tuple-data)",
        "table public.t: UPDATE: old-key: a[integer]:1",
        "table public.t: DELETE: (no-tuple-data) extra",
    ] {
        assert!(parse(line.as_bytes()).is_err(), "accepted {line:?}");
    }
    assert!(
        parse(b"table public.t: INSERT: a[text]:'\xff'").is_ok(),
        "values are bytes"
    );
    assert!(parse(b"table public.\xff: INSERT: a[integer]:1").is_err());
}

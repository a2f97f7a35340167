use super::*;

/// Messages as PostgreSQL 15 sent them for
/// `CREATE TABLE pk (id int PRIMARY KEY, v text, big text)` in a publication: insert (1, 'a',
/// NULL), `UPDATE pk SET id = 2`, `DELETE FROM pk`, `TRUNCATE pk`.
const RELATION: &str = "520000401c7075626c696300706b006400030169640000000017ffffffff00760000000019ffffffff006269670000000019ffffffff";
const BEGIN: &str = "4200000000015843580003048e76f82fc7000002f5";
const INSERT: &str = "490000401c4e00037400000001317400000001616e";
const COMMIT: &str = "4300000000000158435800000000015843880003048e76f82fc7";
const UPDATE_KEY: &str = "550000401c4b00037400000001316e6e4e00037400000001327400000001616e";
const DELETE_KEY: &str = "440000401c4b00037400000001326e6e";
const TRUNCATE: &str = "5400000001000000401c";

fn bytes(hex: &str) -> Bytes {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect::<Vec<u8>>()
        .into()
}

fn text(value: &str) -> Value {
    Value::Text(Bytes::copy_from_slice(value.as_bytes()))
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

fn change(decoder: &mut Decoder, hex: &str) -> Change {
    match decoder.decode(bytes(hex)) {
        Ok(Message::Changes(mut changes)) if changes.len() == 1 => changes.remove(0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_session_as_postgres_sends_it() {
    let mut decoder = Decoder::default();
    assert_eq!(
        decoder.decode(bytes(BEGIN)),
        Ok(Message::Begin { xid: 0x2f5 })
    );
    assert_eq!(decoder.decode(bytes(RELATION)), Ok(Message::Other));
    let relation = decoder.relation(0x401c).expect("described");
    assert_eq!(
        (
            relation.namespace.as_str(),
            relation.name.as_str(),
            relation.replica_identity
        ),
        ("public", "pk", b'd')
    );
    let keys: Vec<bool> = relation.columns.iter().map(|c| c.key).collect();
    assert_eq!(keys, vec![true, false, false]);

    let insert = change(&mut decoder, INSERT);
    assert_eq!(insert.relation, RelationRef::Oid(0x401c));
    assert_eq!(insert.kind, ChangeKind::Insert);
    assert_eq!(insert.old, None);
    assert_eq!(
        columns(&insert.new),
        vec![
            ("id".to_owned(), text("1")),
            ("v".to_owned(), text("a")),
            ("big".to_owned(), Value::Null),
        ]
    );
    match decoder.decode(bytes(COMMIT)) {
        Ok(Message::Commit {
            end_lsn,
            time_micros,
        }) => {
            assert_eq!(end_lsn, Lsn(0x0158_4388));
            assert!(time_micros > 0);
        }
        other => panic!("{other:?}"),
    }

    // The old key keeps only the key column: the others are sent as null but are unknown.
    let update = change(&mut decoder, UPDATE_KEY);
    assert_eq!(columns(&update.old), vec![("id".to_owned(), text("1"))]);
    assert_eq!(
        update.new.as_ref().and_then(|n| n.get("id")),
        Some(&text("2"))
    );
    let delete = change(&mut decoder, DELETE_KEY);
    assert_eq!(delete.kind, ChangeKind::Delete);
    assert_eq!(columns(&delete.old), vec![("id".to_owned(), text("2"))]);
    assert_eq!(delete.new, None);
    match decoder.decode(bytes(TRUNCATE)) {
        Ok(Message::Changes(changes)) => assert_eq!(
            changes,
            vec![Change::without_images(
                RelationRef::Oid(0x401c),
                ChangeKind::Truncate
            )]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_identity_toast_and_several_truncated_tables() {
    let mut decoder = Decoder::default();
    decoder.decode(bytes(RELATION)).expect("relation");
    // U, O (whole old row: 1, 'a', unchanged toast), N (1, 'b', unchanged toast).
    let mut update = b"U\0\0\x40\x1cO\0\x03t\0\0\0\x011t\0\0\0\x01au".to_vec();
    update.extend_from_slice(b"N\0\x03t\0\0\0\x011t\0\0\0\x01bu");
    let Ok(Message::Changes(changes)) = decoder.decode(Bytes::from(update)) else {
        panic!("update");
    };
    assert_eq!(
        columns(&changes[0].old),
        vec![
            ("id".to_owned(), text("1")),
            ("v".to_owned(), text("a")),
            ("big".to_owned(), Value::UnchangedToast),
        ]
    );
    // An update that changed no key: new image only.
    let plain = decoder
        .decode(Bytes::from_static(b"U\0\0\x40\x1cN\0\x03t\0\0\0\x011nn"))
        .expect("update");
    let Message::Changes(plain) = plain else {
        panic!("{plain:?}")
    };
    assert_eq!(plain[0].old, None);
    let mut truncate = b"T\0\0\0\x02\x01".to_vec();
    truncate.extend_from_slice(&10u32.to_be_bytes());
    truncate.extend_from_slice(&11u32.to_be_bytes());
    let Ok(Message::Changes(changes)) = decoder.decode(Bytes::from(truncate.clone())) else {
        panic!("truncate");
    };
    let oids: Vec<RelationRef> = changes.into_iter().map(|c| c.relation).collect();
    assert_eq!(oids, vec![RelationRef::Oid(10), RelationRef::Oid(11)]);
    assert_eq!(
        decoder.decode(Bytes::from(truncate[..12].to_vec())),
        Err(DecodeError::Truncated("Truncate"))
    );
}

#[test]
fn a_message_too_large_to_keep_still_names_its_relation() {
    let mut decoder = Decoder::default();
    decoder.decode(bytes(RELATION)).expect("relation");
    let prefix = Bytes::from_static(b"I\0\0\x40\x1cN\0\x03t\0\0\0\x011t\x7f\xff\xff\xffxxxx");
    assert!(decoder.decode(prefix.clone()).is_err());
    assert_eq!(
        decoder.decode_prefix(prefix),
        Ok(Message::Changes(vec![Change::without_images(
            RelationRef::Oid(0x401c),
            ChangeKind::Insert
        )]))
    );
}

#[test]
fn what_pgoutput_never_sends_is_an_error() {
    let mut decoder = Decoder::default();
    assert_eq!(
        decoder.decode(bytes(INSERT)),
        Err(DecodeError::UnknownRelation(0x401c)),
        "a change before its Relation message"
    );
    decoder.decode(bytes(RELATION)).expect("relation");
    for (what, message) in [
        ("empty", &b""[..]),
        ("unknown tag", b"Z\0\0"),
        ("short oid", b"I\0\0"),
        ("no tuple", b"I\0\0\x40\x1c"),
        ("wrong column count", b"I\0\0\x40\x1cN\0\x02nn"),
        ("unknown column kind", b"I\0\0\x40\x1cN\0\x03nnx"),
        ("binary value", b"I\0\0\x40\x1cN\0\x03b\0\0\0\x011nn"),
        ("value cut short", b"I\0\0\x40\x1cN\0\x03t\0\0\0\x09ab"),
        (
            "old image on an insert",
            b"I\0\0\x40\x1cK\0\x03nnnN\0\x03nnn",
        ),
        ("delete without image", b"D\0\0\x40\x1c"),
        ("trailing bytes", b"D\0\0\x40\x1cK\0\x03nnn!"),
        ("short commit", b"C\0\0\0"),
        ("short begin", b"B\0\0"),
    ] {
        assert!(
            decoder.decode(Bytes::from(message.to_vec())).is_err(),
            "{what}"
        );
    }
    assert_eq!(
        decoder.decode(Bytes::from_static(b"O\0")),
        Ok(Message::Other)
    );
}

//! What a replicated row change invalidates: the keys of its old and new rows for every column
//! set registered for its table, or the whole set where an image does not tell.
//!
//! For each registered set:
//! - the new row (INSERT, UPDATE): its key, when the image has every column of the set;
//! - the old row (DELETE, UPDATE): its key, when the change carries an old image with every
//!   column of the set. An UPDATE without an old image left the replica identity's columns as
//!   they were, so a set inside the identity's key has the new row's key; for any other set the
//!   old values are unknown;
//! - anything unknown (a column missing from an image, a TOASTed value left unchanged, a value
//!   that is not in canonical reach): the whole set.
//!
//! A NULL in a pinned column needs no key: no equality with a constant matches it. TRUNCATE
//! invalidates the whole table; every change bumps the table's rows counter.

use pgcached_cache::{ColumnSetId, TableId};
use pgcached_invalidation::{Change, ChangeKind, RowImage, Value};

use super::canonical::PinType;
use super::keys::key_hash;
use super::registry::PinRegistry;
use super::writes::Bump;

/// The counters one row change of `table` bumps.
pub fn bumps(table: &TableId, change: &Change, registry: &PinRegistry) -> Vec<Bump> {
    if change.kind == ChangeKind::Truncate {
        return vec![Bump::Table(table.clone())];
    }
    let mut out = vec![Bump::Rows(table.clone())];
    let Some(sets) = registry.of_table(table) else {
        return out;
    };
    for set in &sets.sets {
        let mut keys = Vec::with_capacity(2);
        let mut whole_set = false;
        let mut add = |image: Option<&RowImage>| match image
            .map(|i| key_of(table, set.id, &set.columns, i))
        {
            Some(ImageKey::Key(key)) => keys.push(key),
            Some(ImageKey::Null) => {}
            Some(ImageKey::Unknown) | None => whole_set = true,
        };
        match change.kind {
            ChangeKind::Insert => add(change.new.as_ref()),
            ChangeKind::Delete => add(change.old.as_ref()),
            ChangeKind::Update => {
                add(change.new.as_ref());
                match &change.old {
                    Some(old) => add(Some(old)),
                    None if sets.identity.covers(&set.columns) => {}
                    None => add(None),
                }
            }
            ChangeKind::Truncate => {}
        }
        if whole_set {
            out.push(Bump::ColumnSet(table.clone(), set.id));
        } else {
            out.extend(keys.into_iter().map(Bump::Key));
        }
    }
    out
}

/// What an image says about one set's key.
enum ImageKey {
    /// The row's key.
    Key(pgcached_cache::KeyHash),
    /// A pinned column is NULL: no pin matches the row.
    Null,
    /// Not told by the image.
    Unknown,
}

fn key_of(
    table: &TableId,
    set: ColumnSetId,
    columns: &[(String, PinType)],
    image: &RowImage,
) -> ImageKey {
    let mut values: Vec<Vec<u8>> = Vec::with_capacity(columns.len());
    for (name, pin_type) in columns {
        match image.get(name) {
            Some(Value::Text(text)) => match pin_type.canonical_text(text) {
                Some(canonical) => values.push(canonical),
                None => return ImageKey::Unknown,
            },
            Some(Value::Null) => return ImageKey::Null,
            Some(Value::UnchangedToast) | None => return ImageKey::Unknown,
        }
    }
    ImageKey::Key(key_hash(table, set, &values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pins::registry::Identity;
    use bytes::Bytes;
    use pgcached_invalidation::{Column, RelationRef};
    use std::sync::Arc;

    fn users() -> TableId {
        TableId {
            database: Arc::from("app"),
            oid: 7,
        }
    }

    fn image(columns: &[(&str, Option<&str>)]) -> RowImage {
        RowImage {
            columns: columns
                .iter()
                .map(|(name, value)| Column {
                    name: (*name).to_owned(),
                    value: match value {
                        Some(v) => Value::Text(Bytes::copy_from_slice(v.as_bytes())),
                        None => Value::Null,
                    },
                })
                .collect(),
        }
    }

    fn change(kind: ChangeKind, old: Option<RowImage>, new: Option<RowImage>) -> Change {
        Change {
            relation: RelationRef::Oid(7),
            kind,
            old,
            new,
        }
    }

    fn setup(identity: Identity) -> (PinRegistry, ColumnSetId, ColumnSetId) {
        let registry = PinRegistry::default();
        let id = registry
            .register(
                &users(),
                &[("id".into(), PinType::Integer)],
                identity.clone(),
            )
            .expect("id");
        let email = registry
            .register(&users(), &[("email".into(), PinType::Text)], identity)
            .expect("email");
        (registry, id, email)
    }

    fn key(set: ColumnSetId, value: &str) -> Bump {
        Bump::Key(key_hash(&users(), set, &[value.as_bytes()]))
    }

    #[test]
    fn an_insert_bumps_its_new_keys() {
        let (registry, id, email) = setup(Identity::Key(vec!["id".into()]));
        let insert = change(
            ChangeKind::Insert,
            None,
            Some(image(&[("id", Some("5")), ("email", Some("a@b"))])),
        );
        assert_eq!(
            bumps(&users(), &insert, &registry),
            vec![Bump::Rows(users()), key(id, "5"), key(email, "a@b")]
        );
    }

    #[test]
    fn an_update_without_old_image_knows_only_the_identity_keys() {
        let (registry, id, email) = setup(Identity::Key(vec!["id".into()]));
        let update = change(
            ChangeKind::Update,
            None,
            Some(image(&[("id", Some("5")), ("email", Some("new@b"))])),
        );
        assert_eq!(
            bumps(&users(), &update, &registry),
            vec![
                Bump::Rows(users()),
                key(id, "5"),
                Bump::ColumnSet(users(), email),
            ],
            "the old email is unknown; the id did not change"
        );
    }

    #[test]
    fn a_key_change_bumps_old_and_new_keys() {
        let (registry, id, _) = setup(Identity::Key(vec!["id".into()]));
        let update = change(
            ChangeKind::Update,
            Some(image(&[("id", Some("5"))])),
            Some(image(&[("id", Some("6")), ("email", None)])),
        );
        let bumps = bumps(&users(), &update, &registry);
        assert!(bumps.contains(&key(id, "5")));
        assert!(bumps.contains(&key(id, "6")));
    }

    #[test]
    fn without_an_identity_an_update_or_delete_bumps_every_set() {
        let (registry, id, email) = setup(Identity::Nothing);
        let update = change(
            ChangeKind::Update,
            None,
            Some(image(&[("id", Some("5")), ("email", Some("x"))])),
        );
        let bumps_update = bumps(&users(), &update, &registry);
        assert!(bumps_update.contains(&Bump::ColumnSet(users(), id)));
        assert!(bumps_update.contains(&Bump::ColumnSet(users(), email)));
        let delete = change(ChangeKind::Delete, None, None);
        assert_eq!(
            bumps(&users(), &delete, &registry),
            vec![
                Bump::Rows(users()),
                Bump::ColumnSet(users(), id),
                Bump::ColumnSet(users(), email)
            ]
        );
    }

    #[test]
    fn nulls_need_no_key_and_toast_is_unknown() {
        let (registry, id, email) = setup(Identity::Full);
        let mut toasted = image(&[("id", Some("5"))]);
        toasted.columns.push(Column {
            name: "email".into(),
            value: Value::UnchangedToast,
        });
        let update = change(
            ChangeKind::Update,
            Some(image(&[("id", Some("5")), ("email", None)])),
            Some(toasted),
        );
        let bumps = bumps(&users(), &update, &registry);
        assert!(bumps.contains(&key(id, "5")));
        assert!(bumps.contains(&Bump::ColumnSet(users(), email)));
        let truncate = change(ChangeKind::Truncate, None, None);
        assert_eq!(
            super::bumps(&users(), &truncate, &registry),
            vec![Bump::Table(users())]
        );
    }
}

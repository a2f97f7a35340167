//! The decoded form of one row change, whichever output plugin produced it.
//!
//! Today the cache uses only the relation of each change (invalidation per table). The row
//! images are decoded all the same, for two reasons: a change whose text or bytes cannot be
//! read must be noticed (and then the whole database is invalidated, never the change dropped),
//! and invalidation by key needs them: a read that pins rows by equality on key columns is
//! invalidated by a change only if the change's old or new image holds one of those keys.
//! Rules for that use: a column missing from an image, [`Value::UnchangedToast`], or a missing
//! image means "unknown", and unknown means invalidate wider.

use bytes::Bytes;

/// Which relation a change is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelationRef {
    /// By OID (pgoutput's Relation message).
    Oid(u32),
    /// By schema-qualified name as `quote_qualified_identifier` prints it (test_decoding): each
    /// part quoted only when SQL's `quote_ident` would quote it, e.g. `public.orders` or
    /// `"Sales"."order lines"`. Mapped to an OID against the catalog.
    Name(String),
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A row was inserted.
    Insert,
    /// A row was updated.
    Update,
    /// A row was deleted.
    Delete,
    /// The table was truncated (no row images).
    Truncate,
}

/// A column's value in a row image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A TOASTed value the change left as it was: PostgreSQL does not send it, so it is
    /// unknown from the change alone.
    UnchangedToast,
    /// The value in its type's text output form (what `SELECT col::text` shows).
    Text(Bytes),
}

/// One column of a row image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name as stored in the catalog (unquoted).
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// The columns of one row as a change reports them. Which columns are there depends on the
/// image and the plugin: a new image has every column; an old image has the replica identity's
/// key columns (identity DEFAULT or INDEX) or the whole row (FULL), and test_decoding leaves its
/// NULL columns out. A column that is not listed is unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowImage {
    /// The columns, in table order.
    pub columns: Vec<Column>,
}

impl RowImage {
    /// The value of the column called `name`, if the image has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns
            .iter()
            .find(|column| column.name == name)
            .map(|column| &column.value)
    }
}

/// One decoded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The relation changed (for a partitioned table: the leaf partition, or the published
    /// ancestor with pgoutput's `publish_via_partition_root`).
    pub relation: RelationRef,
    /// What happened.
    pub kind: ChangeKind,
    /// The row before the change: for UPDATE (only when PostgreSQL sends it: identity FULL, or
    /// a key column changed) and DELETE (not with identity NOTHING or a table without a key).
    /// `None` means not known.
    pub old: Option<RowImage>,
    /// The row after the change (INSERT and UPDATE). `None` means not known (not sent, or the
    /// message was too large to keep).
    pub new: Option<RowImage>,
}

impl Change {
    /// A change of `relation` whose row images are not known.
    pub fn without_images(relation: RelationRef, kind: ChangeKind) -> Change {
        Change {
            relation,
            kind,
            old: None,
            new: None,
        }
    }
}

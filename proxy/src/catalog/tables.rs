//! What row-level dependencies need from the catalog: whether a table's rows can be pinned (its
//! columns, their types, its replica identity), and what a write to a table can reach.
//!
//! Rows are pinned only for a plain table that is neither a partition nor has descendants
//! (inheritance or partitions): its changes are always reported under its own OID, and a read
//! of it sees its own rows only. Anything else is a dependency as a whole table.
//!
//! A write's reach is known when the target table runs no code pgcached cannot see: no user
//! trigger, no rule other than SELECT, no default, generated column or constraint calling a
//! function outside `pg_catalog`, and the same for every table its foreign keys cascade to.
//! Those cascaded tables, and any descendants, are then invalidated as whole tables; the
//! target itself by key. Anything else reaches the whole database.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{queries, Catalog, CatalogError};
use crate::pins::{Identity, PinType};
use crate::sql::{FunctionName, RelationName};

/// Most tables one write's cascades are followed through before its reach counts as unknown.
const MAX_CASCADE_TABLES: usize = 32;

/// A plain table whose rows can be pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    /// Its OID.
    pub oid: u32,
    /// Its columns in order, with the pin type of those whose values can be pinned.
    pub columns: Vec<(String, Option<PinType>)>,
    /// Its replica identity.
    pub identity: Identity,
}

impl TableFacts {
    /// The pin type of a column, if the table has it and its values can be pinned.
    pub fn pin_type(&self, column: &str) -> Option<PinType> {
        self.columns
            .iter()
            .find(|(name, _)| name == column)
            .and_then(|(_, pin)| *pin)
    }

    /// True when the table has a column of this name.
    pub fn has_column(&self, column: &str) -> bool {
        self.columns.iter().any(|(name, _)| name == column)
    }
}

/// What a write to a table can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteReach {
    /// Its target's rows and these other tables' (as whole tables).
    Known {
        /// The target's OID.
        target: u32,
        /// The target's facts, when its rows can be pinned (else it is bumped whole).
        facts: Option<Arc<TableFacts>>,
        /// Tables changed by cascades, and descendants: invalidated whole.
        whole: Vec<u32>,
    },
    /// Anything in the database.
    Unknown,
}

impl Catalog {
    /// The facts of the table `relation` names, when it is exactly one plain table whose rows
    /// can be pinned (see the module docs).
    pub async fn table_facts(
        &self,
        database: &str,
        relation: &RelationName,
    ) -> Result<Option<Arc<TableFacts>>, CatalogError> {
        let key = (database.to_owned(), relation.clone());
        if let Some(known) = self.facts.lock().tables.get(&key) {
            return Ok(known.clone());
        }
        let client = self.client(database).await?;
        let candidates = client
            .query(queries::RELATION, &[&relation.name, &relation.schema])
            .await?;
        let facts = match candidates.as_slice() {
            [only] => facts_of(&client, only.get("oid")).await?.map(Arc::new),
            _ => None,
        };
        self.remember(|memo| {
            memo.tables.insert(key, facts.clone());
        });
        Ok(facts)
    }

    /// What a write to `target`, calling `functions`, can reach.
    pub async fn write_reach(
        &self,
        database: &str,
        target: &RelationName,
        functions: &[FunctionName],
    ) -> Result<WriteReach, CatalogError> {
        let client = self.client(database).await?;
        for function in functions {
            if function.schema.as_deref() == Some("pg_catalog") {
                continue;
            }
            let row = client
                .query_one(queries::USER_FUNCTION, &[&function.name, &function.schema])
                .await?;
            if row.get::<_, bool>(0) {
                return Ok(WriteReach::Unknown);
            }
        }
        let key = (database.to_owned(), target.clone());
        if let Some(known) = self.facts.lock().reaches.get(&key) {
            return Ok(known.clone());
        }
        let reach = reach_of(&client, target).await?;
        let reach = match reach {
            WriteReach::Known {
                target: oid, whole, ..
            } => WriteReach::Known {
                target: oid,
                facts: self.table_facts(database, target).await?,
                whole,
            },
            WriteReach::Unknown => WriteReach::Unknown,
        };
        self.remember(|memo| {
            memo.reaches.insert(key, reach.clone());
        });
        Ok(reach)
    }
}

/// The facts of table `oid`, if its rows can be pinned.
async fn facts_of(
    client: &tokio_postgres::Client,
    oid: u32,
) -> Result<Option<TableFacts>, CatalogError> {
    let Some(shape) = client.query_opt(queries::TABLE_SHAPE, &[&oid]).await? else {
        return Ok(None);
    };
    let kind: i8 = shape.get("relkind");
    let partition: bool = shape.get("relispartition");
    let has_children: bool = shape.get("has_children");
    if kind as u8 != b'r' || partition || has_children {
        return Ok(None);
    }
    let replident: i8 = shape.get("relreplident");
    let columns = client
        .query(queries::TABLE_COLUMNS, &[&oid])
        .await?
        .iter()
        .map(|row| {
            let name: String = row.get(0);
            let type_oid: u32 = row.get(1);
            let deterministic: bool = row.get(2);
            (name, PinType::of_column(type_oid, deterministic))
        })
        .collect();
    let identity = match replident as u8 {
        b'f' => Identity::Full,
        b'n' => Identity::Nothing,
        method => {
            let mut key = Vec::new();
            for row in client.query(queries::IDENTITY_COLUMNS, &[&oid]).await? {
                let primary: bool = row.get(1);
                let replica: bool = row.get(2);
                if (method == b'd' && primary) || (method == b'i' && replica) {
                    key.push(row.get::<_, String>(0));
                }
            }
            if key.is_empty() {
                Identity::Nothing
            } else {
                Identity::Key(key)
            }
        }
    };
    Ok(Some(TableFacts {
        oid,
        columns,
        identity,
    }))
}

/// What a write to the table `target` names can reach, before the target's own facts.
async fn reach_of(
    client: &tokio_postgres::Client,
    target: &RelationName,
) -> Result<WriteReach, CatalogError> {
    let candidates = client
        .query(queries::RELATION, &[&target.name, &target.schema])
        .await?;
    let [only] = candidates.as_slice() else {
        return Ok(WriteReach::Unknown);
    };
    let oid: u32 = only.get("oid");
    let kind: i8 = only.get("relkind");
    if !matches!(kind as u8, b'r' | b'p') {
        // A view (INSTEAD OF triggers, rules), a foreign table: its effects are not seen.
        return Ok(WriteReach::Unknown);
    }
    let mut whole = BTreeSet::new();
    for row in client.query(queries::DESCENDANTS, &[&oid]).await? {
        whole.insert(row.get::<_, u32>("oid"));
    }
    // The target and every descendant: their triggers and cascades all take part.
    let mut pending: Vec<u32> = whole.iter().copied().chain([oid]).collect();
    let mut seen: BTreeSet<u32> = pending.iter().copied().collect();
    while let Some(table) = pending.pop() {
        let effects: i64 = client
            .query_one(queries::WRITE_SIDE_EFFECTS, &[&table])
            .await?
            .get(0);
        if effects > 0 {
            return Ok(WriteReach::Unknown);
        }
        for row in client.query(queries::CASCADES, &[&table]).await? {
            let referencing: u32 = row.get(0);
            if seen.insert(referencing) {
                if seen.len() > MAX_CASCADE_TABLES {
                    return Ok(WriteReach::Unknown);
                }
                whole.insert(referencing);
                pending.push(referencing);
            }
        }
    }
    if kind as u8 == b'p' {
        whole.insert(oid);
    }
    Ok(WriteReach::Known {
        target: oid,
        facts: None,
        whole: whole.into_iter().collect(),
    })
}

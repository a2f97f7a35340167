//! What PostgreSQL's catalog says about the relations and functions a read uses.
//!
//! Whether a read may be cached depends on facts only the catalog knows: is `orders` a plain,
//! logged, permanent table, a view (over which tables?), a partition (of which root?), a foreign
//! table, a sequence, a temporary table; is `lower()` immutable? pgcached asks through its own
//! control connection per database (tokio-postgres, with the credentials of `--upstream`). The
//! answers are memoized per statement text by the classifier, so the catalog is consulted once
//! per distinct statement, off the query path.
//!
//! Layout: this file resolves statements; [`queries`] holds the SQL; [`tables`] tells which
//! tables' rows can be pinned and what a write reaches; [`watcher`] polls a digest of the
//! catalog to catch DDL and privilege changes made outside pgcached.
//!
//! Unknown means not cacheable: a name the catalog does not know, a function with any
//! non-immutable overload, or a control connection that cannot be opened. With
//! `--publication`, a table whose changes the publication does not carry is not cacheable
//! either (`not_published`): its writes made elsewhere would never be seen.
//!
//! The same connection gives the replication stream the names of the database's tables (see
//! [`Catalog::relation_names`]), with a version the watcher moves whenever the catalog changed.

pub(crate) mod isolation;
pub mod queries;
pub mod tables;
pub mod watcher;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tracing::{debug, warn};

use crate::bypass::BypassReason;
use crate::sql::{FunctionName, ReadDeps, RelationName};
use crate::upstream::control::ControlConnections;

/// SQL special forms that look like function calls but are not in `pg_proc`; all immutable.
const SPECIAL_FORMS: [&str; 4] = ["coalesce", "nullif", "greatest", "least"];

/// The catalog's verdict on a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Every relation is a permanent logged table (or a view/partition mapping to such) and every
    /// function is immutable; these are the tables (partition roots, view bases) it depends on.
    Cacheable(Vec<u32>),
    /// Not cacheable, with a short reason used as a metric label.
    NotCacheable(BypassReason),
    /// Not cacheable because it calls a function that is not immutable. `user_defined` when
    /// such a function may be one defined outside `pg_catalog`, whose body pgcached does not
    /// know: it may write tables or change session settings; `names_isolation` when such a
    /// body names transaction isolation or `set_config`.
    CallsVolatile {
        /// A non-immutable function may be defined outside `pg_catalog`.
        user_defined: bool,
        /// The body of one names isolation or `set_config`.
        names_isolation: bool,
    },
}

/// A relation's schema and name, as stored in the catalog (case as created, unquoted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// `pg_namespace.nspname`.
    pub schema: String,
    /// `pg_class.relname`.
    pub name: String,
}

impl TableName {
    /// True if `pattern` names this table: by name in any schema, or in its schema.
    pub fn matches(&self, pattern: &RelationName) -> bool {
        pattern.name == self.name && pattern.schema.as_ref().is_none_or(|s| *s == self.schema)
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Why the catalog could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No control connection (no credentials, login refused, TLS).
    #[error("{0}; nothing is cached until then")]
    Control(#[from] crate::upstream::control::ControlError),
    /// A catalog query failed.
    #[error("catalog query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// What the catalog says, read over pgcached's control connections.
pub struct Catalog {
    control: Arc<ControlConnections>,
    /// The publication streamed with pgoutput, if any: only tables it carries are cacheable.
    publication: Option<String>,
    /// Per database, how many times the watcher saw the catalog change (or could not read it).
    versions: parking_lot::Mutex<HashMap<String, u64>>,
    /// What the catalog said per relation and function, so that a new statement text over known
    /// relations (say, an application that inlines literals) needs no round trip. Cleared when
    /// the catalog watcher sees a change.
    facts: parking_lot::Mutex<Facts>,
    /// The transaction isolation sessions inherit ([`isolation`]).
    isolation: isolation::IsolationDefaults,
}

/// Catalog answers per database, relation and function.
#[derive(Default)]
struct Facts {
    relations: HashMap<(String, RelationName), Result<Vec<u32>, BypassReason>>,
    functions: HashMap<(String, FunctionName), FunctionFacts>,
    /// Schema and name per database and relation OID.
    names: HashMap<(String, u32), TableName>,
    /// Per database and relation name: the table's facts, when its rows can be pinned.
    tables: HashMap<(String, RelationName), Option<Arc<tables::TableFacts>>>,
    /// Per database and relation name: what a write to it can reach.
    reaches: HashMap<(String, RelationName), tables::WriteReach>,
}

/// Facts kept at most; past this the memo starts over.
const MAX_FACTS: usize = 50_000;

impl Catalog {
    /// A catalog reader over pgcached's own control connections; with a publication, tables
    /// whose changes it does not carry are not cacheable.
    pub fn new(control: Arc<ControlConnections>, publication: Option<String>) -> Catalog {
        Catalog {
            control,
            publication,
            versions: parking_lot::Mutex::new(HashMap::new()),
            facts: parking_lot::Mutex::new(Facts::default()),
            isolation: isolation::IsolationDefaults::default(),
        }
    }

    /// The control connections the catalog reads over.
    pub(crate) fn control(&self) -> Arc<ControlConnections> {
        Arc::clone(&self.control)
    }

    /// Decides whether a read with these dependencies may be cached in `database`.
    pub async fn resolve(
        &self,
        database: &str,
        deps: &ReadDeps,
    ) -> Result<Resolution, CatalogError> {
        let client = self.client(database).await?;
        let mut volatile: Option<(bool, bool)> = None;
        for function in &deps.functions {
            if function.schema.is_none() && SPECIAL_FORMS.contains(&function.name.as_str()) {
                continue;
            }
            let key = (database.to_owned(), function.clone());
            let known = self.facts.lock().functions.get(&key).copied();
            let facts = match known {
                Some(facts) => facts,
                None => {
                    let facts = function_facts(&client, function).await?;
                    self.remember(|all| {
                        all.functions.insert(key, facts);
                    });
                    facts
                }
            };
            if !facts.immutable {
                let (user_defined, names_isolation) = volatile.unwrap_or((false, false));
                volatile = Some((
                    user_defined || facts.user_defined,
                    names_isolation || facts.names_isolation,
                ));
            }
        }
        if let Some((user_defined, names_isolation)) = volatile {
            return Ok(Resolution::CallsVolatile {
                user_defined,
                names_isolation,
            });
        }
        let mut tables = BTreeSet::new();
        for relation in &deps.relations {
            let key = (database.to_owned(), relation.clone());
            let known = self.facts.lock().relations.get(&key).cloned();
            let answer = match known {
                Some(answer) => answer,
                None => {
                    let mut found = BTreeSet::new();
                    let mut answer = resolve_relation(&client, relation, &mut found)
                        .await?
                        .map(|()| found.into_iter().collect::<Vec<u32>>());
                    if let (Ok(oids), Some(publication)) = (&answer, &self.publication) {
                        let unpublished = client
                            .query(queries::UNPUBLISHED, &[publication, oids])
                            .await?;
                        if !unpublished.is_empty() {
                            answer = Err(BypassReason::NotPublished);
                        }
                    }
                    self.remember(|facts| {
                        facts.relations.insert(key, answer.clone());
                    });
                    answer
                }
            };
            match answer {
                Ok(oids) => tables.extend(oids),
                Err(reason) => return Ok(Resolution::NotCacheable(reason)),
            }
        }
        Ok(Resolution::Cacheable(tables.into_iter().collect()))
    }

    /// Forgets every relation and function fact (the catalog changed).
    pub fn forget_facts(&self) {
        *self.facts.lock() = Facts::default();
    }

    fn remember(&self, add: impl FnOnce(&mut Facts)) {
        let mut facts = self.facts.lock();
        let held = facts.relations.len()
            + facts.functions.len()
            + facts.names.len()
            + facts.tables.len()
            + facts.reaches.len();
        if held >= MAX_FACTS {
            *facts = Facts::default();
        }
        add(&mut facts);
    }

    /// The schema and name of these relations; relations that no longer exist are left out.
    pub async fn table_names(
        &self,
        database: &str,
        oids: &[u32],
    ) -> Result<Vec<(u32, TableName)>, CatalogError> {
        let mut found = Vec::with_capacity(oids.len());
        let mut missing = Vec::new();
        {
            let facts = self.facts.lock();
            for oid in oids {
                match facts.names.get(&(database.to_owned(), *oid)) {
                    Some(name) => found.push((*oid, name.clone())),
                    None => missing.push(*oid),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let client = self.client(database).await?;
        for row in client.query(queries::TABLE_NAMES, &[&missing]).await? {
            let oid: u32 = row.get(0);
            let name = TableName {
                schema: row.get(1),
                name: row.get(2),
            };
            self.remember(|facts| {
                facts.names.insert((database.to_owned(), oid), name.clone());
            });
            found.push((oid, name));
        }
        Ok(found)
    }

    /// `schema.table` for each of these tables, asked per database; tables whose name cannot
    /// be found (dropped since, catalog unreachable) are left out.
    pub async fn names_of(
        &self,
        tables: &[pgcached_cache::TableId],
    ) -> HashMap<pgcached_cache::TableId, String> {
        let mut by_database: std::collections::BTreeMap<Arc<str>, Vec<u32>> =
            std::collections::BTreeMap::new();
        for table in tables {
            by_database
                .entry(Arc::clone(&table.database))
                .or_default()
                .push(table.oid);
        }
        let mut names = HashMap::new();
        for (database, mut oids) in by_database {
            oids.sort_unstable();
            oids.dedup();
            if let Ok(found) = self.table_names(&database, &oids).await {
                for (oid, name) in found {
                    let table = pgcached_cache::TableId {
                        database: Arc::clone(&database),
                        oid,
                    };
                    names.insert(table, name.to_string());
                }
            }
        }
        names
    }

    /// The OIDs of the tables called `table` (as stored in the catalog) in `schema`, or in every
    /// schema when `None`, in `database`.
    pub async fn find_tables(
        &self,
        database: &str,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Vec<u32>, CatalogError> {
        let client = self.client(database).await?;
        let rows = client
            .query(queries::FIND_TABLES, &[&table, &schema])
            .await?;
        Ok(rows.iter().map(|row| row.get::<_, u32>(0)).collect())
    }

    /// A digest of the catalog facts caching depends on (see [`queries::FINGERPRINT`]); reading
    /// it also refreshes the server's default isolation for `database`.
    pub async fn fingerprint(&self, database: &str) -> Result<String, CatalogError> {
        let client = self.client(database).await?;
        let row = client
            .query_one(queries::FINGERPRINT, &[&self.publication])
            .await?;
        let value: Option<String> = row.get(1);
        let source: Option<String> = row.get(2);
        let level = isolation::server_level(
            value.as_deref().unwrap_or(""),
            source.as_deref().unwrap_or(""),
        );
        self.isolation.set_server(database, level);
        Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
    }

    /// The catalog of `database` changed: what sessions inherit is read again at login.
    pub(crate) fn forget_role_settings(&self, database: &str) {
        self.isolation.forget_roles(database);
    }

    /// Every table, partitioned table and materialized view of `database` by the name
    /// test_decoding prints for it (see [`queries::RELATION_NAMES`]), with its OID.
    pub async fn relation_names(
        &self,
        database: &str,
    ) -> Result<HashMap<String, u32>, CatalogError> {
        let client = self.client(database).await?;
        let rows = client.query(queries::RELATION_NAMES, &[]).await?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, u32>(1)))
            .collect())
    }

    /// How many times the catalog of `database` was seen to change (or could not be read).
    pub fn version(&self, database: &str) -> u64 {
        self.versions.lock().get(database).copied().unwrap_or(0)
    }

    /// The catalog of `database` changed, or could not be read: relation names read before
    /// now must be read again before they are trusted.
    pub fn moved(&self, database: &str) {
        *self.versions.lock().entry(database.to_owned()).or_default() += 1;
    }

    async fn client(&self, database: &str) -> Result<Arc<tokio_postgres::Client>, CatalogError> {
        Ok(self.control.client(database).await?)
    }
}

/// What the catalog says of the overloads a call may resolve to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FunctionFacts {
    /// Every one is IMMUTABLE (and there is at least one).
    immutable: bool,
    /// One of them is defined outside `pg_catalog` (or none is known).
    user_defined: bool,
    /// The body of one defined outside `pg_catalog` names isolation or `set_config`.
    names_isolation: bool,
}

async fn function_facts(
    client: &tokio_postgres::Client,
    function: &FunctionName,
) -> Result<FunctionFacts, CatalogError> {
    let arity = function.arity.map(i32::from);
    let row = client
        .query_one(
            queries::FUNCTION_VOLATILITY,
            &[&function.name, &function.schema, &arity],
        )
        .await?;
    let overloads: i64 = row.get(0);
    let immutable: i64 = row.get(1);
    let user_defined: i64 = row.get(2);
    let bodies: Option<String> = row.get(3);
    Ok(FunctionFacts {
        immutable: overloads > 0 && overloads == immutable,
        user_defined: overloads == 0 || user_defined > 0,
        names_isolation: overloads == 0
            || bodies.is_some_and(|text| crate::sql::transaction::mentions_isolation(&text)),
    })
}

/// Adds the tables a relation depends on to `tables`, or says why it is not cacheable.
async fn resolve_relation(
    client: &tokio_postgres::Client,
    relation: &RelationName,
    tables: &mut BTreeSet<u32>,
) -> Result<Result<(), BypassReason>, CatalogError> {
    let rows = client
        .query(queries::RELATION, &[&relation.name, &relation.schema])
        .await?;
    if rows.is_empty() {
        return Ok(Err(BypassReason::UnknownRelation));
    }
    for row in rows {
        let oid: u32 = row.get("oid");
        let schema: String = row.get("nspname");
        let kind: i8 = row.get("relkind");
        let persistence: i8 = row.get("relpersistence");
        let root: u32 = row.get("root");
        if matches!(
            schema.as_str(),
            "pg_catalog" | "information_schema" | "pg_toast"
        ) || schema.starts_with("pg_toast")
        {
            return Ok(Err(BypassReason::SystemCatalog));
        }
        match persistence as u8 {
            b'p' => {}
            b't' => return Ok(Err(BypassReason::TemporaryTable)),
            b'u' => return Ok(Err(BypassReason::UnloggedTable)),
            _ => return Ok(Err(BypassReason::UnknownPersistence)),
        }
        match kind as u8 {
            b'r' | b'p' | b'm' => {
                if let Err(reason) = add_table(client, oid, root, kind as u8, tables).await? {
                    return Ok(Err(reason));
                }
            }
            b'v' => {
                if let Err(reason) = expand_view(client, oid, tables, 0).await? {
                    return Ok(Err(reason));
                }
            }
            b'f' => return Ok(Err(BypassReason::ForeignTable)),
            b'S' => return Ok(Err(BypassReason::Sequence)),
            _ => return Ok(Err(BypassReason::UnsupportedRelation)),
        }
    }
    Ok(Ok(()))
}

/// Adds a table to the dependencies with every relation a change to it may be reported under:
/// itself, its partition ancestors up to the root, and every descendant (partitions of a partitioned table, child
/// tables of an inheritance parent, recursively), since a read of the table sees their rows.
/// A descendant whose changes never reach the replication stream (foreign or unlogged) makes
/// the table uncacheable; temporary children are seen only by their own (private) session.
async fn add_table(
    client: &tokio_postgres::Client,
    oid: u32,
    root: u32,
    kind: u8,
    tables: &mut BTreeSet<u32>,
) -> Result<Result<(), BypassReason>, CatalogError> {
    tables.insert(oid);
    tables.insert(root);
    if kind == b'm' {
        return Ok(Ok(()));
    }
    if root != oid {
        // A publication with publish_via_partition_root reports a partition's changes under its
        // topmost published ancestor, which need not be the root.
        for row in client.query(queries::ANCESTORS, &[&oid]).await? {
            tables.insert(row.get::<_, u32>("oid"));
        }
    }
    for row in client.query(queries::DESCENDANTS, &[&oid]).await? {
        let descendant: u32 = row.get("oid");
        let kind: i8 = row.get("relkind");
        let persistence: i8 = row.get("relpersistence");
        if kind as u8 == b'f' {
            return Ok(Err(BypassReason::ForeignTable));
        }
        if persistence as u8 == b'u' {
            return Ok(Err(BypassReason::UnloggedTable));
        }
        tables.insert(descendant);
    }
    Ok(Ok(()))
}

/// Adds a view's base tables (recursively) to `tables`; refuses views that call non-immutable
/// functions or read uncacheable relations.
async fn expand_view(
    client: &tokio_postgres::Client,
    view: u32,
    tables: &mut BTreeSet<u32>,
    depth: usize,
) -> Result<Result<(), BypassReason>, CatalogError> {
    if depth > 16 {
        return Ok(Err(BypassReason::ViewTooDeep));
    }
    let rows = client.query(queries::VIEW_DEPENDENCIES, &[&view]).await?;
    for row in rows {
        let is_function: bool = row.get("is_function");
        if is_function {
            let immutable: bool = row.get("immutable");
            if !immutable {
                return Ok(Err(BypassReason::ViewCallsVolatileFunction));
            }
            continue;
        }
        let schema: String = row.get("nspname");
        let kind: i8 = row.get("relkind");
        let persistence: i8 = row.get("relpersistence");
        let oid: u32 = row.get("oid");
        let root: u32 = row.get("root");
        if matches!(schema.as_str(), "pg_catalog" | "information_schema") {
            return Ok(Err(BypassReason::SystemCatalog));
        }
        if persistence as u8 != b'p' {
            return Ok(Err(BypassReason::ViewOverUnloggedOrTemporary));
        }
        match kind as u8 {
            b'r' | b'p' | b'm' => {
                if let Err(reason) = add_table(client, oid, root, kind as u8, tables).await? {
                    return Ok(Err(reason));
                }
            }
            b'v' => {
                if let Err(reason) = Box::pin(expand_view(client, oid, tables, depth + 1)).await? {
                    return Ok(Err(reason));
                }
            }
            b'f' => return Ok(Err(BypassReason::ForeignTable)),
            b'S' => return Ok(Err(BypassReason::Sequence)),
            _ => return Ok(Err(BypassReason::UnsupportedRelation)),
        }
    }
    Ok(Ok(()))
}

/// Logs a catalog failure (a warning once per process, then at debug); the read is relayed
/// uncached.
pub fn report(error: &CatalogError) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    match error {
        CatalogError::Query(_) => debug!("catalog query failed: {error}"),
        _ if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) => {
            warn!("reads are relayed uncached: {error}")
        }
        _ => debug!("reads are relayed uncached: {error}"),
    }
}

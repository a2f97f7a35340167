//! Statement classification, memoized per database and statement text.
//!
//! A statement is classified in two steps. The syntactic step ([`crate::sql::analyze`]) runs
//! synchronously the first time a text is seen (about 30 µs): it must, because whether a
//! statement changes session state (`SET`), creates temporary objects or writes has to be known
//! before the statement is relayed. For reads, the catalog step ([`crate::catalog`]) runs in the
//! background. A session that meets a read being judged waits for the verdict, for at most
//! [`wait::JUDGE_WAIT`] (longer for reads calling functions, see [`wait`]); past that it relays
//! the read uncached (bypass reason `classifying`). Every later occurrence of the same text is one memo lookup: a cache hit never
//! parses.

mod pins;
mod wait;
mod writes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pgcached_cache::TableId;
use quick_cache::sync::Cache;

use crate::bypass::BypassReason;
use crate::catalog::{self, Catalog, Resolution, TableName};
use crate::pins::reads::RowPin;
use crate::pins::writes::WriteEffect;
use crate::pins::PinRegistry;
use crate::sql::names::RelationName;
use crate::sql::text::{self, Hints};
use crate::sql::write::WriteInfo;
use crate::sql::{self, IsolationSetting, ReadDeps, StatementKind, TransactionStep};
pub use pins::WholeReason;
pub(crate) use wait::limit_for;

/// Most distinct statements remembered per process.
pub const MEMO_CAPACITY: usize = 20_000;

/// A read whose result may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheableRead {
    /// Every table it reads (partition roots and partitions, view bases), for people and for
    /// invalidating by table.
    pub tables: Arc<[TableId]>,
    /// The tables it depends on as whole tables.
    pub whole: Arc<[TableId]>,
    /// The rows it depends on by key.
    pub pins: Arc<[RowPin]>,
    /// Why each of `whole` is a whole-table dependency (for `EXPLAIN CACHE`).
    pub whole_reasons: Arc<[(TableId, WholeReason)]>,
    /// How long its results are served, from a `pgcached:ttl=` hint (else `--cache-ttl`).
    pub ttl: Option<Duration>,
    /// The statement with its literals removed, for `SHOW CACHE`.
    pub label: Arc<str>,
}

/// Which tables may be cached: `--cache-allow-tables` and `--cache-deny-tables`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableRules {
    /// When not empty, only reads whose every table is listed are cached.
    pub allow: Vec<RelationName>,
    /// Reads of any listed table are never cached.
    pub deny: Vec<RelationName>,
}

impl TableRules {
    /// Why reads of `tables` may not be cached, if they may not.
    pub fn refusal(&self, tables: &[TableName]) -> Option<BypassReason> {
        if tables
            .iter()
            .any(|t| self.deny.iter().any(|pattern| t.matches(pattern)))
        {
            return Some(BypassReason::TableDenied);
        }
        if !self.allow.is_empty()
            && !tables
                .iter()
                .all(|t| self.allow.iter().any(|pattern| t.matches(pattern)))
        {
            return Some(BypassReason::TableNotAllowed);
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// What pgcached does with a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A read whose result may be cached.
    Cacheable(Arc<CacheableRead>),
    /// A read the catalog has not judged yet; relayed uncached meanwhile. `calls_functions`
    /// when it calls functions beyond a few well-known built-ins: one of them might change
    /// session state, so the session is treated as if it had.
    Classifying { calls_functions: bool },
    /// A read that is never cached, with the reason (a metric label).
    Uncacheable(BypassReason),
    /// A read calling a non-immutable function: uncached. `may_change_session` when the
    /// function may be user-defined (or is `set_config`): it may write tables or change session
    /// settings in ways pgcached cannot see; `may_change_isolation` when its text or its body
    /// names isolation or `set_config`.
    CallsVolatile {
        /// It may write tables or change session settings.
        may_change_session: bool,
        /// It may change the session's transaction isolation.
        may_change_isolation: bool,
    },
    /// Changes session state (SET, RESET, SET ROLE, DISCARD, ...), with what it does to
    /// transaction isolation.
    SessionState(IsolationSetting),
    /// Creates temporary objects: the session's reads may see rows nobody else sees.
    TempObjects,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...
    TransactionControl(TransactionStep),
    /// Writes data or changes the schema: what its acknowledgement invalidates.
    Write(WriteClass),
    /// Anything else (CALL, DO, SHOW, unparsable, ...): effects unknown.
    Other,
}

impl Class {
    /// True while the catalog has not judged the statement: a session may wait for the verdict.
    pub(crate) fn is_being_judged(&self) -> bool {
        matches!(
            self,
            Class::Classifying { .. } | Class::Write(WriteClass::Judging)
        )
    }

    /// Why the statement is relayed uncached; `None` for a cacheable read.
    pub fn bypass_reason(&self) -> Option<BypassReason> {
        Some(match self {
            Class::Cacheable(_) => return None,
            Class::Classifying { .. } => BypassReason::Classifying,
            Class::Uncacheable(reason) => *reason,
            Class::CallsVolatile { .. } => BypassReason::VolatileFunction,
            Class::SessionState(_) => BypassReason::SessionState,
            Class::TempObjects => BypassReason::TemporaryObjects,
            Class::TransactionControl(_) => BypassReason::TransactionControl,
            Class::Write(_) => BypassReason::Write,
            Class::Other => BypassReason::NotARead,
        })
    }
}

/// What a write's acknowledgement invalidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteClass {
    /// Its reach is unknown: the whole database.
    Database,
    /// The catalog has not judged its reach yet: the whole database, unless the session can
    /// wait for the verdict ([`wait`]).
    Judging,
    /// Its target's rows by key, and the tables it reaches.
    Known(Arc<WriteEffect>),
}

/// True when the text calls (or may call) `set_config`, whatever the statement kind.
fn mentions_set_config(sql: &str) -> bool {
    sql.as_bytes()
        .windows(10)
        .any(|w| w.eq_ignore_ascii_case(b"set_config"))
}

/// True when a `set_config` call in the text may set the transaction isolation: its first
/// argument is not a plain string literal (a parameter, an expression), or is one naming
/// isolation. `set_config('TimeZone', $1, false)`, as Django runs at connect, is not.
fn set_config_may_change_isolation(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("set_config") {
        rest = &rest[at + "set_config".len()..];
        let Some(args) = rest.trim_start().strip_prefix('(') else {
            // Named without a call (a comment, an identifier): it may be anything.
            return true;
        };
        let Some(literal) = args.trim_start().strip_prefix('\'') else {
            return true;
        };
        let Some(end) = literal.find('\'') else {
            return true;
        };
        let name = &literal[..end];
        if literal[end + 1..].starts_with('\'') || name.contains("isolation") {
            return true;
        }
    }
    false
}

/// Built-in functions known not to change session state (whatever their volatility).
const WELL_KNOWN: [&str; 29] = [
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "lower",
    "upper",
    "length",
    "substr",
    "substring",
    "trim",
    "abs",
    "round",
    "floor",
    "ceil",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "now",
    "md5",
    "concat",
    "random",
    "generate_series",
    "version",
    "current_database",
    "current_schema",
    "current_setting",
    "pg_backend_pid",
];

/// A function known not to change session state: one of [`WELL_KNOWN`], or any function named
/// with its `pg_catalog` schema (built-in; `set_config` is caught by its text before this).
fn is_well_known(function: &crate::sql::FunctionName) -> bool {
    match function.schema.as_deref() {
        Some("pg_catalog") => true,
        None => WELL_KNOWN.contains(&function.name.as_str()),
        Some(_) => false,
    }
}

/// Memo key: database and statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemoKey(Arc<str>, Arc<str>);

impl std::hash::Hash for MemoKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        MemoKeyRef(&self.0, &self.1).hash(state);
    }
}

/// A borrowed memo key, so that a lookup allocates nothing.
#[derive(Hash)]
struct MemoKeyRef<'a>(&'a str, &'a str);

impl quick_cache::Equivalent<MemoKey> for MemoKeyRef<'_> {
    fn equivalent(&self, key: &MemoKey) -> bool {
        *self.0 == *key.0 && *self.1 == *key.1
    }
}

/// How a statement text arrived: a simple Query may carry its values as literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A simple Query: classified by its shape when it has literals.
    Simple,
    /// An extended-protocol Parse: classified as written.
    Extended,
}

/// Which memo a classification belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memo {
    /// Per statement text.
    Texts,
    /// Per shape (literals replaced by parameters).
    Shapes,
}

/// The shared classifier.
pub struct Classifier {
    memo: Cache<MemoKey, Class>,
    /// Classifications per shape: texts that differ only in their literals share one.
    shapes: Cache<MemoKey, Class>,
    /// Statements parsed so far (each distinct text or shape once, while memoized).
    parses: std::sync::atomic::AtomicU64,
    catalog: Arc<Catalog>,
    /// Reads being resolved in the background, so each is resolved once.
    in_flight: Mutex<HashSet<MemoKey>>,
    /// Bounds concurrent background resolutions: a burst of new statement texts must not turn
    /// into a burst of catalog queries. A statement that finds no slot is tried again later.
    resolvers: Arc<tokio::sync::Semaphore>,
    rules: TableRules,
    /// The column sets reads pin rows by.
    registry: Arc<PinRegistry>,
    /// Told each time a background resolution lands ([`wait`]).
    judged: tokio::sync::Notify,
    /// Moved by every [`Classifier::clear`]: a background resolution that began before a clear
    /// was judged against a catalog that may be gone, and is not kept.
    epoch: std::sync::atomic::AtomicU64,
}

/// A statement waiting for the catalog's verdict.
enum Pending {
    /// A read, with the scan of the text a client sent (its hints, and the label its entries
    /// show: literals as `?`, not as a shape's placeholders).
    Read(ReadDeps, text::Scanned),
    Write(WriteInfo),
}

/// Background resolutions at once.
const MAX_RESOLVERS: usize = 4;

impl Classifier {
    /// A classifier asking `catalog` about statements, applying `rules` to reads' tables and
    /// registering the column sets reads pin in `registry`.
    pub fn new(catalog: Arc<Catalog>, rules: TableRules, registry: Arc<PinRegistry>) -> Classifier {
        Classifier {
            memo: Cache::new(MEMO_CAPACITY),
            shapes: Cache::new(MEMO_CAPACITY),
            parses: std::sync::atomic::AtomicU64::new(0),
            catalog,
            in_flight: Mutex::new(HashSet::new()),
            resolvers: Arc::new(tokio::sync::Semaphore::new(MAX_RESOLVERS)),
            rules,
            registry,
            judged: tokio::sync::Notify::new(),
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The column sets reads pin.
    pub fn registry(&self) -> &Arc<PinRegistry> {
        &self.registry
    }

    /// The catalog reader.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Classifies `sql` in `database`, waiting for the catalog if needed (for `EXPLAIN CACHE`;
    /// the query path never waits). Nothing is memoized here; a catalog failure is returned,
    /// not logged.
    pub async fn classify_now(
        &self,
        database: &str,
        sql: &str,
    ) -> Result<Class, catalog::CatalogError> {
        if mentions_set_config(sql) {
            return Ok(Class::CallsVolatile {
                may_change_session: true,
                may_change_isolation: set_config_may_change_isolation(sql),
            });
        }
        match sql::analyze(sql).kind {
            StatementKind::Read(deps) => {
                let scanned = text::scan(sql);
                self.judge(database, &deps, &scanned.hints, &scanned.normalized)
                    .await
            }
            StatementKind::Write(info) => self.judge_write(database, &info).await,
            kind => Ok(Self::syntactic_class(kind)),
        }
    }

    /// Number of memoized statements.
    pub fn len(&self) -> usize {
        self.memo.len()
    }

    /// Forgets every classification (after schema changes).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.memo.clear();
        self.shapes.clear();
    }

    /// `database`'s catalog has changed (or may have): the facts read from it, its tables'
    /// replica identities, its role settings and every classification are forgotten, and the
    /// replication stream reads its relation names again before attributing another change.
    pub fn catalog_changed(&self, database: &str) {
        self.catalog.moved(database);
        self.catalog.forget_facts();
        self.catalog.forget_role_settings(database);
        self.registry.forget_identities(database);
        self.clear();
    }

    /// Statements parsed so far: with literal-inlining clients at steady state this stays put
    /// while queries go on, since texts share their shape's classification.
    pub fn parses(&self) -> u64 {
        self.parses.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn memo(&self, memo: Memo) -> &Cache<MemoKey, Class> {
        match memo {
            Memo::Texts => &self.memo,
            Memo::Shapes => &self.shapes,
        }
    }

    /// Classifies `sql` in `database`; reads not yet judged by the catalog are sent to it in the
    /// background and come back as [`Class::Classifying`]. A simple query with literals is
    /// classified by its shape, so texts differing only in their literals are parsed once.
    pub fn classify(self: &Arc<Self>, database: &Arc<str>, sql: &str, protocol: Protocol) -> Class {
        if let Some(class) = self.memo.get(&MemoKeyRef(database, sql)) {
            return class;
        }
        if protocol == Protocol::Simple && !mentions_set_config(sql) {
            if let Some(shape) = sql::shape::of(sql) {
                let class = match self.shapes.get(&MemoKeyRef(database, &shape.text)) {
                    Some(class) => Some(class),
                    None => self.classify_text(database, &shape.text, sql, Memo::Shapes),
                };
                match class {
                    // What the statement does to isolation is in its literals
                    // (`SET default_transaction_isolation = 'serializable'`): read the text.
                    Some(Class::SessionState(setting))
                        if setting != IsolationSetting::Untouched => {}
                    Some(class) => return class,
                    None => {}
                }
            }
        }
        self.classify_text(database, sql, sql, Memo::Texts)
            .unwrap_or(Class::Other)
    }

    /// Classifies one text (a statement or the shape of `written`) into `memo`; `None` for a
    /// shape that does not parse (its text is then classified as written).
    fn classify_text(
        self: &Arc<Self>,
        database: &Arc<str>,
        sql: &str,
        written: &str,
        memo: Memo,
    ) -> Option<Class> {
        let key = MemoKey(Arc::clone(database), Arc::from(sql));
        if mentions_set_config(sql) {
            // Changes settings (role, search_path, ...) from inside any statement: never cached,
            // and the session's later reads must not share entries with other sessions.
            let class = Class::CallsVolatile {
                may_change_session: true,
                may_change_isolation: set_config_may_change_isolation(sql),
            };
            self.memo(memo).insert(key, class.clone());
            return Some(class);
        }
        self.parses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let analysis = sql::analyze(sql);
        let class = match analysis.kind {
            StatementKind::Unparsable if memo == Memo::Shapes => return None,
            StatementKind::Read(deps) => {
                let calls_functions = deps.functions.iter().any(|f| !is_well_known(f));
                self.resolve_in_background(key, memo, Pending::Read(deps, text::scan(written)));
                return Some(Class::Classifying { calls_functions });
            }
            StatementKind::Write(info) if info.shape.is_some() => {
                // Until the catalog says what it reaches: the whole database.
                self.resolve_in_background(key, memo, Pending::Write(info));
                return Some(Class::Write(WriteClass::Judging));
            }
            kind => Self::syntactic_class(kind),
        };
        self.memo(memo).insert(key, class.clone());
        Some(class)
    }

    /// The class of a statement that is not a candidate read: syntax alone decides.
    fn syntactic_class(kind: StatementKind) -> Class {
        match kind {
            StatementKind::Read(_) => Class::Classifying {
                calls_functions: true,
            },
            // Several statements in one string may write or change state: effects unknown.
            StatementKind::UncacheableRead(BypassReason::MultiStatement) => Class::Other,
            StatementKind::UncacheableRead(
                BypassReason::SelectInto | BypassReason::DataModifyingCte,
            ) => Class::Write(WriteClass::Database),
            StatementKind::UncacheableRead(reason) => Class::Uncacheable(reason),
            StatementKind::SessionState(setting) => Class::SessionState(setting),
            StatementKind::CreatesTempObjects => Class::TempObjects,
            StatementKind::TransactionControl(step) => Class::TransactionControl(step),
            StatementKind::Write(_) => Class::Write(WriteClass::Database),
            StatementKind::Other | StatementKind::Unparsable => Class::Other,
        }
    }

    /// The catalog's verdict on a read, with its hints and the table rules applied.
    async fn judge(
        &self,
        database: &str,
        deps: &ReadDeps,
        hints: &Hints,
        label: &str,
    ) -> Result<Class, catalog::CatalogError> {
        let oids = match self.catalog.resolve(database, deps).await? {
            Resolution::Cacheable(oids) => oids,
            Resolution::NotCacheable(reason) => return Ok(Class::Uncacheable(reason)),
            Resolution::CallsVolatile {
                user_defined,
                names_isolation,
            } => {
                return Ok(Class::CallsVolatile {
                    may_change_session: user_defined,
                    may_change_isolation: names_isolation,
                })
            }
        };
        if hints.nocache {
            return Ok(Class::Uncacheable(BypassReason::NocacheHint));
        }
        if hints.invalid.is_some() {
            return Ok(Class::Uncacheable(BypassReason::InvalidHint));
        }
        if !self.rules.is_empty() {
            let names = self.catalog.table_names(database, &oids).await?;
            let names: Vec<TableName> = names.into_iter().map(|(_, name)| name).collect();
            if let Some(reason) = self.rules.refusal(&names) {
                return Ok(Class::Uncacheable(reason));
            }
        }
        let database_id: Arc<str> = Arc::from(database);
        let tables: Vec<TableId> = oids
            .into_iter()
            .map(|oid| TableId {
                database: Arc::clone(&database_id),
                oid,
            })
            .collect();
        let resolved =
            pins::resolve(&self.catalog, &self.registry, database, deps, &tables).await?;
        Ok(Class::Cacheable(Arc::new(CacheableRead {
            whole: resolved.whole.iter().map(|(t, _)| t.clone()).collect(),
            whole_reasons: Arc::from(resolved.whole),
            pins: Arc::from(resolved.pins),
            tables: Arc::from(tables),
            ttl: hints.ttl,
            label: Arc::from(label),
        })))
    }

    /// The catalog's verdict on a write: what its acknowledgement invalidates.
    async fn judge_write(
        &self,
        database: &str,
        info: &WriteInfo,
    ) -> Result<Class, catalog::CatalogError> {
        Ok(Class::Write(
            writes::resolve(&self.catalog, database, info).await?,
        ))
    }

    fn resolve_in_background(self: &Arc<Self>, key: MemoKey, memo: Memo, pending: Pending) {
        let Ok(permit) = Arc::clone(&self.resolvers).try_acquire_owned() else {
            return;
        };
        if !self.in_flight.lock().insert(key.clone()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.in_flight.lock().remove(&key);
            return;
        };
        let classifier = Arc::clone(self);
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        runtime.spawn(async move {
            let _permit = permit;
            let class =
                match pending {
                    Pending::Read(deps, scanned) => classifier
                        .judge(&key.0, &deps, &scanned.hints, &scanned.normalized)
                        .await
                        .unwrap_or_else(|e| {
                            catalog::report(&e);
                            Class::Uncacheable(BypassReason::CatalogUnavailable)
                        }),
                    Pending::Write(info) => classifier
                        .judge_write(&key.0, &info)
                        .await
                        .unwrap_or_else(|e| {
                            catalog::report(&e);
                            Class::Write(WriteClass::Database)
                        }),
                };
            classifier.memo(memo).insert(key.clone(), class);
            // Checked after the insert: a clear after the check removes the verdict itself.
            if classifier.epoch.load(std::sync::atomic::Ordering::Acquire) != epoch {
                classifier.memo(memo).remove(&key);
            }
            classifier.in_flight.lock().remove(&key);
            classifier.judged.notify_waiters();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_config_changes_isolation_only_when_its_name_may_be_isolation() {
        for harmless in [
            "SELECT set_config('TimeZone', $1, false)",
            "SELECT pg_catalog.set_config('search_path', '', false)",
            "select SET_CONFIG ( 'application_name', 'x', true), set_config('a.b', 'c', false)",
        ] {
            assert!(!set_config_may_change_isolation(harmless), "{harmless}");
        }
        for may in [
            "SELECT set_config('default_transaction_isolation', 'serializable', false)",
            "SELECT set_config('transaction_isolation', $1, true)",
            "SELECT set_config($1, $2, false)",
            "SELECT set_config(name, 'x', false) FROM t",
            "SELECT set_config('it''s', 'x', false)",
            "SELECT 1 /* set_config */",
        ] {
            assert!(set_config_may_change_isolation(may), "{may}");
        }
    }

    fn name(schema: &str, table: &str) -> TableName {
        TableName {
            schema: schema.to_owned(),
            name: table.to_owned(),
        }
    }

    #[test]
    fn deny_wins_and_allow_needs_every_table() {
        let pattern = |text: &str| crate::sql::names::parse_relation(text).expect("pattern");
        let rules = TableRules {
            allow: vec![pattern("products"), pattern("shop.orders")],
            deny: vec![pattern("public.sessions")],
        };
        assert_eq!(rules.refusal(&[name("public", "products")]), None);
        assert_eq!(
            rules.refusal(&[name("public", "products"), name("shop", "orders")]),
            None
        );
        assert_eq!(
            rules.refusal(&[name("public", "products"), name("public", "orders")]),
            Some(BypassReason::TableNotAllowed)
        );
        assert_eq!(
            rules.refusal(&[name("public", "sessions")]),
            Some(BypassReason::TableDenied)
        );
        assert_eq!(
            rules.refusal(&[name("other", "sessions")]),
            Some(BypassReason::TableNotAllowed)
        );
        let deny_only = TableRules {
            allow: vec![],
            deny: vec![pattern("sessions")],
        };
        assert_eq!(
            deny_only.refusal(&[name("other", "sessions")]),
            Some(BypassReason::TableDenied)
        );
        assert_eq!(deny_only.refusal(&[name("public", "products")]), None);
        assert!(TableRules::default().is_empty());
    }
}

//! Unit tests of the session state machine and its cache path, one file per behaviour, driven
//! with hand-made frames: a client side, a server side answering as PostgreSQL would, a real
//! in-memory result store, and a classification given by each test. No socket, no PostgreSQL.

mod batches;
mod judging;
mod local_blocks;
mod parking;
mod row_keys;
mod server_side;
mod simple;
mod transactions;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use pgcached_cache::{CacheConfig, Generations, ResultCache, TableId};

use super::server::ServerAction;
use super::{CacheBackend, CachePath, Classify};
use crate::cache_metrics::CacheMetrics;
use crate::classify::{CacheableRead, Class};
use crate::metrics::ProxyMetrics;
use crate::session::fingerprint::Fingerprint;
use crate::session::machine::{ClientPiece, Outboxes, SessionMachine};
use crate::session::outbox::Outbox;
use crate::stats::clients::NewClient;
use crate::stats::{Clients, Counters, QueryKind};

/// The database every test session uses.
const DATABASE: &str = "app";

/// Classification from a fixed table: each test says what its statements are. A statement
/// can be "being judged" until the test gives its verdict ([`Shared::judge`]).
#[derive(Default)]
pub(super) struct Classes {
    known: parking_lot::Mutex<HashMap<String, Class>>,
    judging: parking_lot::Mutex<HashMap<String, Class>>,
    /// Told (one permit) when a verdict is given.
    landed: Arc<tokio::sync::Notify>,
    /// Acknowledged statements that may have changed the catalog.
    catalog_changes: std::sync::atomic::AtomicUsize,
}

/// The class of `BEGIN` (with an isolation level, or the default).
pub(super) fn begin(level: Option<crate::sql::Isolation>) -> Class {
    Class::TransactionControl(crate::sql::TransactionStep::Begin(level))
}

/// The class of `COMMIT` or `ROLLBACK`.
pub(super) fn end() -> Class {
    Class::TransactionControl(crate::sql::TransactionStep::End { chain: false })
}

/// The class of a `SET` that leaves isolation alone.
pub(super) fn set() -> Class {
    Class::SessionState(crate::sql::IsolationSetting::Untouched)
}

/// The class of a cacheable read of table `oid` as a whole.
pub(super) fn cacheable(sql: &str, oid: u32) -> Class {
    let tables: Arc<[TableId]> = Arc::from(vec![TableId {
        database: Arc::from(DATABASE),
        oid,
    }]);
    Class::Cacheable(Arc::new(CacheableRead {
        whole: Arc::clone(&tables),
        whole_reasons: Arc::from(vec![]),
        pins: Arc::from(vec![]),
        tables,
        ttl: None,
        label: Arc::from(sql),
    }))
}

impl Classes {
    /// A cacheable read of table `oid`.
    pub(super) fn read(self, sql: &str, oid: u32) -> Classes {
        self.known
            .lock()
            .insert(sql.to_owned(), cacheable(sql, oid));
        self
    }

    /// A cacheable read of table `oid` pinned by column `k` to `value`, its set registered.
    pub(super) fn pinned_read(
        self,
        sql: &str,
        oid: u32,
        value: &str,
        registry: &crate::pins::PinRegistry,
    ) -> Classes {
        use crate::pins::reads::{PinColumn, PinValue, RowPin};
        use crate::pins::{Identity, PinType};
        let table = TableId {
            database: Arc::from(DATABASE),
            oid,
        };
        let set = registry
            .register(
                &table,
                &[("k".to_owned(), PinType::Integer)],
                Identity::Key(vec!["k".to_owned()]),
            )
            .expect("registered");
        let read = CacheableRead {
            whole: Arc::from(vec![]),
            whole_reasons: Arc::from(vec![]),
            pins: Arc::from(vec![RowPin {
                table: table.clone(),
                set,
                columns: vec![PinColumn {
                    pin_type: PinType::Integer,
                    values: vec![PinValue::Canonical(value.as_bytes().to_vec())],
                }],
            }]),
            tables: Arc::from(vec![table]),
            ttl: None,
            label: Arc::from(sql),
        };
        self.known
            .lock()
            .insert(sql.to_owned(), Class::Cacheable(Arc::new(read)));
        self
    }

    /// Any other class.
    pub(super) fn with(self, sql: &str, class: Class) -> Classes {
        self.known.lock().insert(sql.to_owned(), class);
        self
    }

    /// `sql` is being judged: [`Class::Classifying`] (a write: `WriteClass::Judging`) until
    /// [`Shared::judge`] gives `verdict`.
    pub(super) fn judging(self, sql: &str, verdict: Class) -> Classes {
        self.judging.lock().insert(sql.to_owned(), verdict);
        self
    }
}

impl Classify for Classes {
    fn classify(
        &self,
        _database: &Arc<str>,
        sql: &str,
        _protocol: crate::classify::Protocol,
    ) -> Class {
        if let Some(verdict) = self.judging.lock().get(sql) {
            return match verdict {
                Class::Write(_) => Class::Write(crate::classify::WriteClass::Judging),
                _ => Class::Classifying {
                    calls_functions: false,
                },
            };
        }
        self.known.lock().get(sql).cloned().unwrap_or(Class::Other)
    }

    fn until_judged(
        &self,
        _database: &Arc<str>,
        statements: Vec<(String, crate::classify::Protocol)>,
    ) -> super::WaitFuture {
        let pending = |classes: &Classes| {
            let judging = classes.judging.lock();
            statements.iter().any(|(sql, _)| judging.contains_key(sql))
        };
        if !pending(self) {
            return Box::pin(std::future::ready(()));
        }
        let landed = Arc::clone(&self.landed);
        Box::pin(async move { landed.notified().await })
    }

    fn catalog_changed(&self, _database: &str) {
        self.catalog_changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What every session of a test shares: the store and the totals.
pub(super) struct Shared {
    pub(super) store: Arc<ResultCache>,
    pub(super) counters: Arc<Counters>,
    pub(super) registry: Arc<crate::pins::PinRegistry>,
    classes: Arc<Classes>,
    clients: Arc<Clients>,
    /// The isolation level sessions inherit.
    pub(super) inherited: super::transaction::Level,
    /// Sessions answer READ COMMITTED BEGINs themselves (`--defer-begin on`).
    pub(super) defer_begin: bool,
}

impl Shared {
    pub(super) fn new(classes: Classes) -> Shared {
        Shared::with_registry(classes, Arc::new(crate::pins::PinRegistry::default()))
    }

    /// Sharing a registry in which `classes` registered their column sets.
    pub(super) fn with_registry(
        classes: Classes,
        registry: Arc<crate::pins::PinRegistry>,
    ) -> Shared {
        let store = Arc::new(ResultCache::new(
            CacheConfig {
                max_bytes: 1 << 20,
                max_entry_bytes: 64 * 1024,
                ttl: None,
            },
            Arc::new(Generations::new()),
        ));
        Shared {
            store,
            counters: Arc::new(Counters::default()),
            registry,
            classes: Arc::new(classes),
            clients: Arc::new(Clients::default()),
            inherited: super::transaction::Level::Known(crate::sql::Isolation::ReadCommitted),
            defer_begin: true,
        }
    }

    /// A session that has logged in (the login's ReadyForQuery has been seen).
    pub(super) fn session(&self) -> Session {
        let backend = CacheBackend {
            release: None,
            store: Arc::clone(&self.store),
            classify: Arc::clone(&self.classes) as Arc<dyn Classify>,
            metrics: CacheMetrics::new(Arc::clone(&self.counters)),
            max_entry: 64 * 1024,
            defer_begin: self.defer_begin,
            registry: Arc::clone(&self.registry),
            shared: None,
            replicas: None,
        };
        let path = CachePath::new(
            backend,
            DATABASE,
            "alice",
            Fingerprint::from_startup(&Default::default()),
            super::transaction::Transactions::new(
                None,
                crate::catalog::isolation::Inherited::fixed(self.inherited),
            ),
        );
        let registration = self.clients.register(NewClient {
            peer: "127.0.0.1:5000".parse().expect("address"),
            user: "alice",
            database: DATABASE,
            application: "",
            tls: false,
        });
        let machine = SessionMachine::new(
            Some(path),
            ProxyMetrics::new(Arc::clone(&self.counters)),
            Arc::clone(&registration.info),
        );
        let mut session = Session {
            machine,
            upstream: Outbox::default(),
            client: Outbox::default(),
            begins_sent: 0,
            _registration: registration,
        };
        session.server(ready(b'I'));
        session.answered();
        session
    }

    /// The verdict on `sql` lands.
    pub(super) fn judge(&self, sql: &str) {
        let verdict = self
            .classes
            .judging
            .lock()
            .remove(sql)
            .expect("being judged");
        self.classes.known.lock().insert(sql.to_owned(), verdict);
        self.classes.landed.notify_one();
    }

    pub(super) fn hits(&self) -> u64 {
        Counters::get(&self.counters.hits)
    }

    pub(super) fn misses(&self) -> u64 {
        Counters::get(&self.counters.misses)
    }

    pub(super) fn queries(&self, kind: QueryKind) -> u64 {
        self.counters.queries(kind)
    }

    /// Acknowledged statements that made sessions forget classifications.
    pub(super) fn catalog_changes(&self) -> usize {
        self.classes
            .catalog_changes
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One session: its machine and the two outboxes the relay would drain.
pub(super) struct Session {
    pub(super) machine: SessionMachine,
    upstream: Outbox,
    client: Outbox,
    /// Deferred BEGINs sent to PostgreSQL (and answered by [`Session::sent_frames`]).
    pub(super) begins_sent: usize,
    _registration: crate::stats::clients::Registration,
}

impl Session {
    /// The client sends these frames.
    pub(super) fn client(&mut self, frames: &[Bytes]) {
        for frame in frames {
            self.machine.client_piece(
                ClientPiece::Whole(frame.clone()),
                Outboxes {
                    upstream: &mut self.upstream,
                    client: &mut self.client,
                },
            );
        }
    }

    /// The server sends a frame; returns what the relay does with it (a forwarded frame goes
    /// to the client's outbox, as the relay would queue it).
    pub(super) fn server(&mut self, frame: Bytes) -> ServerAction {
        let action = self
            .machine
            .server_frame(frame[0], &frame, true, &mut self.upstream);
        if action == ServerAction::Forward {
            self.client.push(frame);
        }
        action
    }

    /// The server sends these frames, all forwarded.
    pub(super) fn server_all(&mut self, frames: &[Bytes]) {
        for frame in frames {
            assert_eq!(
                self.server(frame.clone()),
                ServerAction::Forward,
                "{frame:?}"
            );
        }
    }

    /// Runs `sql` as a simple query answered with one row `value` (a miss, filled), and
    /// forgets what was sent and answered.
    pub(super) fn read_through(&mut self, sql: &str, value: &str) {
        self.client(&[query(sql)]);
        assert_eq!(self.sent(), b"Q", "{sql} was relayed");
        self.server_all(&simple_answer(value));
        self.answered();
    }

    /// Resumes after a parked frame's wait.
    pub(super) fn resume(&mut self) {
        self.machine.resume(Outboxes {
            upstream: &mut self.upstream,
            client: &mut self.client,
        });
    }

    /// Tags of the frames queued for PostgreSQL since the last call (a deferred BEGIN sent
    /// ahead of them answered as PostgreSQL would, and left out).
    pub(super) fn sent(&mut self) -> Vec<u8> {
        self.sent_frames().iter().map(|f| f[0]).collect()
    }

    /// The frames queued for PostgreSQL since the last call. A BEGIN the session answered
    /// itself and now sends ahead of them is answered as PostgreSQL would (the block opens),
    /// counted in `begins_sent` and left out.
    pub(super) fn sent_frames(&mut self) -> Vec<Bytes> {
        let frames = split(self.upstream.take_all());
        if self.machine.held_upstream_bytes() == 0 {
            return frames;
        }
        assert_eq!(
            frames.len(),
            1,
            "only the deferred BEGIN goes ahead: {frames:?}"
        );
        assert_eq!(frames[0][0], b'Q', "the deferred BEGIN is a simple Query");
        self.begins_sent += 1;
        for answer in [command_complete("BEGIN"), ready(b'T')] {
            assert_eq!(
                self.server(answer),
                ServerAction::Drop,
                "the client never sees it"
            );
        }
        split(self.upstream.take_all())
    }

    /// Runs a BEGIN that the session answers itself: PostgreSQL sees nothing yet.
    pub(super) fn begin_here(&mut self, sql: &str) {
        self.client(&[query(sql)]);
        assert!(self.sent().is_empty(), "{sql} is deferred");
        assert_eq!(
            self.answered_frames(),
            vec![command_complete("BEGIN"), ready(b'T')],
            "{sql} answered by pgcached"
        );
    }

    /// Tags of the frames queued for the client since the last call.
    pub(super) fn answered(&mut self) -> Vec<u8> {
        tags(self.client.take_all())
    }

    /// The frames queued for the client since the last call.
    pub(super) fn answered_frames(&mut self) -> Vec<Bytes> {
        split(self.client.take_all())
    }
}

/// Splits queued chunks into single frames.
fn split(chunks: Vec<Bytes>) -> Vec<Bytes> {
    let mut frames = Vec::new();
    for mut chunk in chunks {
        while chunk.len() >= 5 {
            let length = u32::from_be_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]) as usize;
            frames.push(chunk.split_to(1 + length));
        }
    }
    frames
}

fn tags(chunks: Vec<Bytes>) -> Vec<u8> {
    split(chunks).iter().map(|f| f[0]).collect()
}

/// A frame with `tag` and `body`.
pub(super) fn frame(tag: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.put_slice(body);
    out.freeze()
}

fn cstring(out: &mut BytesMut, text: &str) {
    out.put_slice(text.as_bytes());
    out.put_u8(0);
}

// Client frames.

pub(super) fn query(sql: &str) -> Bytes {
    let mut body = BytesMut::new();
    cstring(&mut body, sql);
    frame(b'Q', &body)
}

pub(super) fn parse(name: &str, sql: &str) -> Bytes {
    let mut body = BytesMut::new();
    cstring(&mut body, name);
    cstring(&mut body, sql);
    body.put_i16(0);
    frame(b'P', &body)
}

/// A Bind of `statement` to `portal` with one text parameter.
pub(super) fn bind(portal: &str, statement: &str, value: &str) -> Bytes {
    let mut body = BytesMut::new();
    cstring(&mut body, portal);
    cstring(&mut body, statement);
    body.put_i16(0);
    body.put_i16(1);
    body.put_i32(value.len() as i32);
    body.put_slice(value.as_bytes());
    body.put_i16(0);
    frame(b'B', &body)
}

pub(super) fn describe(kind: u8, name: &str) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    cstring(&mut body, name);
    frame(b'D', &body)
}

pub(super) fn execute(portal: &str, max_rows: i32) -> Bytes {
    let mut body = BytesMut::new();
    cstring(&mut body, portal);
    body.put_i32(max_rows);
    frame(b'E', &body)
}

pub(super) fn close(kind: u8, name: &str) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    cstring(&mut body, name);
    frame(b'C', &body)
}

pub(super) fn sync() -> Bytes {
    frame(b'S', b"")
}

pub(super) fn flush() -> Bytes {
    frame(b'H', b"")
}

// Server frames.

pub(super) fn ready(status: u8) -> Bytes {
    frame(b'Z', &[status])
}

pub(super) fn row_description() -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(1);
    cstring(&mut body, "v");
    body.put_u32(0);
    body.put_i16(0);
    body.put_u32(25);
    body.put_i16(-1);
    body.put_i32(-1);
    body.put_i16(0);
    frame(b'T', &body)
}

pub(super) fn data_row(value: &str) -> Bytes {
    let mut body = BytesMut::new();
    body.put_i16(1);
    body.put_i32(value.len() as i32);
    body.put_slice(value.as_bytes());
    frame(b'D', &body)
}

pub(super) fn command_complete(tag: &str) -> Bytes {
    let mut body = BytesMut::new();
    cstring(&mut body, tag);
    frame(b'C', &body)
}

pub(super) fn parse_complete() -> Bytes {
    frame(b'1', b"")
}

pub(super) fn bind_complete() -> Bytes {
    frame(b'2', b"")
}

pub(super) fn close_complete() -> Bytes {
    frame(b'3', b"")
}

pub(super) fn no_data() -> Bytes {
    frame(b'n', b"")
}

pub(super) fn parameter_description() -> Bytes {
    frame(b't', b"\0\0")
}

pub(super) fn portal_suspended() -> Bytes {
    frame(b's', b"")
}

pub(super) fn error(code: &str) -> Bytes {
    crate::wire::error_response::encode(
        crate::wire::error_response::Severity::Error,
        code,
        "failed",
    )
}

pub(super) fn notice() -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(b'S');
    cstring(&mut body, "NOTICE");
    body.put_u8(0);
    frame(b'N', &body)
}

/// The server's whole answer to a one-row read as a simple query.
pub(super) fn simple_answer(value: &str) -> Vec<Bytes> {
    vec![
        row_description(),
        data_row(value),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]
}

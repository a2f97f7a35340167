//! The shared record of change positions: what lets a pgcached whose own stream started late
//! (a restart, a reconnect) judge results filled before its stream started.
//!
//! Every pgcached writes what its stream reports into one Redis hash per database: per table
//! the position of its last change (`t<oid>`), the last whole-database change (`db`), and the
//! span the record covers (`base`, `upto`, `epoch`): every change committed in `(base, upto]`
//! is in the hash. Positions only ever grow (a script compares them as fixed-width text). A
//! pgcached extends `upto` only with what its own stream reported from a point the record
//! already covered; when its stream's start lies beyond the record's `upto` (nobody followed the
//! database meanwhile) or the record is gone (flushed, evicted, a new server), it starts the
//! span again from where its own knowledge starts, under a new `epoch`. A stream restart means
//! a gap in this pgcached's knowledge, so it joins the record again as a newcomer. A newcomer
//! ahead of the others (their streams have not reported its start yet) waits up to
//! [`FLOOR_WAIT`] for them before it starts the span again, so that a restart next to running
//! pgcacheds keeps the record's history.
//!
//! When its stream starts, a pgcached reads the record once it covers the stream's start
//! (waiting up to [`FLOOR_WAIT`]): that *floor* holds, per table, the last change up to then.
//! A result stamped before the stream's start is judged against the floor (at table
//! granularity) and against the stream; without a usable floor it is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pgcached_invalidation::StreamStart;
use redis::Script;
use tokio::sync::Notify;
use tracing::debug;

use super::client::Client;
use super::codec::{namespace, parse_position, position_text, positions_name};
use super::health::Health;

/// How long a starting stream waits for the record to cover its start.
pub const FLOOR_WAIT: Duration = Duration::from_secs(3);
/// How often the record is written while positions move.
const UPLOAD_INTERVAL: Duration = Duration::from_millis(20);
/// Bound of one write or read of the record (off the hot path).
const RECORD_TIMEOUT: Duration = Duration::from_millis(500);
/// Tables kept apart between two writes; past this their changes count for the whole database.
const MAX_DIRTY_TABLES: usize = 4096;

/// Positions only grow; the span is extended by a continuous contributor or started again.
/// KEYS[1]: the record. ARGV: my epoch ("" if none), my claim (the position from which every
/// change is in this write or was written under my epoch), my upto, a fresh epoch, "1" if the
/// span may be started again, then field/position pairs. Returns the epoch written under, or
/// "" when the claim lies beyond the span and it may not be started again (yet).
const RECORD_SCRIPT: &str = r"
local key = KEYS[1]
for i = 6, #ARGV, 2 do
  local current = redis.call('HGET', key, ARGV[i])
  if (not current) or current < ARGV[i + 1] then
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  end
end
local epoch = redis.call('HGET', key, 'epoch')
local upto = redis.call('HGET', key, 'upto')
if epoch and upto and (epoch == ARGV[1] or ARGV[2] <= upto) then
  if upto < ARGV[3] then
    redis.call('HSET', key, 'upto', ARGV[3])
  end
  return epoch
end
if epoch and ARGV[5] ~= '1' then
  return ''
end
redis.call('HSET', key, 'epoch', ARGV[4], 'base', ARGV[2], 'upto', ARGV[3])
return ARGV[4]
";

/// What a starting stream read of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFloor {
    /// Every change after this is in the floor or the stream.
    pub base: u64,
    /// The record's span ended here when read (at or after the stream's start).
    pub upto: u64,
    /// The last whole-database change up to then.
    pub database: u64,
    /// Per table, the last change up to then.
    pub tables: HashMap<u32, u64>,
}

/// The floor of a database's current stream.
#[derive(Debug, Clone, Default)]
pub enum Floor {
    /// Not read (yet).
    #[default]
    Pending,
    /// Read.
    Loaded(Arc<LoadedFloor>),
    /// The record did not cover the stream's start in time: results stamped before it are
    /// refused.
    Unusable,
}

impl Floor {
    /// For people.
    pub fn label(&self) -> &'static str {
        match self {
            Floor::Pending => "loading",
            Floor::Loaded(_) => "loaded",
            Floor::Unusable => "unusable",
        }
    }
}

/// What one database's stream told this pgcached, and what of it is written.
#[derive(Debug, Default)]
struct Database {
    namespace: Option<Arc<str>>,
    live: bool,
    /// Start of the current (or last) stream.
    since: u64,
    /// Every commit up to here was reported.
    applied: u64,
    /// Changes not yet written: per table, and whole-database.
    tables: HashMap<u32, u64>,
    whole: u64,
    /// The record's epoch last written under, if still continuous.
    epoch: Option<String>,
    /// The `upto` last written.
    uploaded: u64,
    /// Nothing written since the stream started: the claim is the stream's start.
    fresh: bool,
    /// When the stream started (a newcomer may start the span again after [`FLOOR_WAIT`]).
    started: Option<Instant>,
    floor: Floor,
    /// Counts stream starts, so a late floor read or write result is not applied to a newer
    /// stream.
    generation: u64,
}

/// One database's write, taken from the journal.
struct Upload {
    database: String,
    generation: u64,
    name: String,
    args: Vec<String>,
    upto: u64,
    tables: HashMap<u32, u64>,
    whole: u64,
}

/// The stream side of the shared tier.
pub struct Journal {
    client: Arc<Client>,
    health: Arc<Health>,
    databases: Mutex<HashMap<String, Database>>,
    moved: Notify,
    script: Script,
}

impl Journal {
    /// A journal writing through `client`.
    pub fn new(client: Arc<Client>, health: Arc<Health>) -> Journal {
        Journal {
            client,
            health,
            databases: Mutex::new(HashMap::new()),
            moved: Notify::new(),
            script: Script::new(RECORD_SCRIPT),
        }
    }

    /// A transaction of `database` committed at `position`, changing `tables` (or anything).
    pub fn committed(&self, database: &str, tables: &[u32], whole: bool, position: u64) {
        let mut databases = self.databases.lock();
        let db = databases.entry(database.to_owned()).or_default();
        for oid in tables {
            let last = db.tables.entry(*oid).or_default();
            *last = (*last).max(position);
        }
        if whole || db.tables.len() > MAX_DIRTY_TABLES {
            db.whole = db.whole.max(position);
            if db.tables.len() > MAX_DIRTY_TABLES {
                db.tables.clear();
            }
        }
        db.applied = db.applied.max(position);
        drop(databases);
        self.moved.notify_one();
    }

    /// Every commit of `database` up to `position` was reported.
    pub fn advanced(&self, database: &str, position: u64) {
        let mut databases = self.databases.lock();
        let db = databases.entry(database.to_owned()).or_default();
        if position > db.applied {
            db.applied = position;
            drop(databases);
            self.moved.notify_one();
        }
    }

    /// A stream of `database` started at `start`: this pgcached joins the record afresh and
    /// reads its floor.
    pub fn stream_up(self: &Arc<Self>, database: &str, start: &StreamStart) {
        let generation = {
            let mut databases = self.databases.lock();
            let db = databases.entry(database.to_owned()).or_default();
            let space: Arc<str> = Arc::from(namespace(&start.system_id, start.timeline));
            if db.namespace.as_ref() != Some(&space) {
                db.uploaded = 0;
            }
            db.namespace = Some(space);
            db.live = true;
            db.since = start.consistent_point.0;
            db.applied = db.applied.max(db.since);
            db.epoch = None;
            db.fresh = true;
            db.started = Some(Instant::now());
            db.floor = Floor::Pending;
            db.generation += 1;
            db.generation
        };
        self.moved.notify_one();
        let journal = Arc::clone(self);
        let database = database.to_owned();
        tokio::spawn(async move { journal.load_floor(&database, generation).await });
    }

    /// The stream of `database` stopped.
    pub fn stream_down(&self, database: &str) {
        let mut databases = self.databases.lock();
        let db = databases.entry(database.to_owned()).or_default();
        db.live = false;
        db.floor = Floor::Pending;
    }

    /// The namespace of `database`'s server, once a stream has told it.
    pub fn namespace(&self, database: &str) -> Option<Arc<str>> {
        self.databases.lock().get(database)?.namespace.clone()
    }

    /// The floor of `database`'s current stream.
    pub fn floor(&self, database: &str) -> Floor {
        self.databases
            .lock()
            .get(database)
            .map(|db| db.floor.clone())
            .unwrap_or_default()
    }

    /// Per database: live, the stream's start, the position written, and the floor, for
    /// `SHOW SHARED CACHE`.
    pub fn report(&self) -> Vec<(String, bool, u64, u64, &'static str)> {
        let mut rows: Vec<_> = self
            .databases
            .lock()
            .iter()
            .map(|(name, db)| {
                (
                    name.clone(),
                    db.live,
                    db.since,
                    db.uploaded,
                    db.floor.label(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    async fn load_floor(&self, database: &str, generation: u64) {
        let deadline = Instant::now() + FLOOR_WAIT;
        let floor = loop {
            if let Some(floor) = self.read_floor(database).await {
                break Floor::Loaded(Arc::new(floor));
            }
            if Instant::now() >= deadline {
                break Floor::Unusable;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        debug!(database, floor = floor.label(), "shared cache floor");
        let mut databases = self.databases.lock();
        if let Some(db) = databases.get_mut(database) {
            if db.generation == generation && db.live {
                db.floor = floor;
            }
        }
    }

    /// The record, if it covers the current stream's start.
    async fn read_floor(&self, database: &str) -> Option<LoadedFloor> {
        let (name, since) = {
            let databases = self.databases.lock();
            let db = databases.get(database)?;
            (positions_name(db.namespace.as_deref()?, database), db.since)
        };
        if !self.health.is_up() {
            return None;
        }
        let pairs = match self.client.hash(&name, RECORD_TIMEOUT).await {
            Ok(pairs) => pairs,
            Err(failure) => {
                self.health.failed(&failure);
                return None;
            }
        };
        let floor = parse_record(&pairs)?;
        (floor.upto >= since).then_some(floor)
    }

    /// Writes what moved, every [`UPLOAD_INTERVAL`] at most, until the process ends.
    pub async fn run(&self) {
        loop {
            // A change, or now and then (what waited for the tier to come back).
            tokio::select! {
                () = self.moved.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            tokio::time::sleep(UPLOAD_INTERVAL).await;
            if !self.health.is_up() {
                continue;
            }
            for upload in self.take_uploads() {
                self.upload(upload).await;
            }
        }
    }

    fn take_uploads(&self) -> Vec<Upload> {
        let mut databases = self.databases.lock();
        databases
            .iter_mut()
            .filter_map(|(name, db)| {
                let namespace = db.namespace.clone()?;
                if db.tables.is_empty() && db.whole == 0 && db.applied <= db.uploaded {
                    return None;
                }
                let claim = if db.fresh { db.since } else { db.uploaded };
                let mut epoch = [0u8; 8];
                let _ = getrandom::getrandom(&mut epoch);
                let may_restart = !db.fresh
                    || db
                        .started
                        .is_none_or(|started| started.elapsed() >= FLOOR_WAIT);
                let mut args = vec![
                    db.epoch.clone().unwrap_or_default(),
                    position_text(claim),
                    position_text(db.applied),
                    epoch.iter().map(|b| format!("{b:02x}")).collect(),
                    if may_restart { "1" } else { "0" }.to_owned(),
                ];
                for (oid, position) in &db.tables {
                    args.push(format!("t{oid}"));
                    args.push(position_text(*position));
                }
                if db.whole > 0 {
                    args.push("db".to_owned());
                    args.push(position_text(db.whole));
                }
                Some(Upload {
                    database: name.clone(),
                    generation: db.generation,
                    name: positions_name(&namespace, name),
                    args,
                    upto: db.applied,
                    tables: std::mem::take(&mut db.tables),
                    whole: std::mem::take(&mut db.whole),
                })
            })
            .collect()
    }

    async fn upload(&self, upload: Upload) {
        let result = self
            .client
            .script(&self.script, &upload.name, &upload.args, RECORD_TIMEOUT)
            .await;
        let mut databases = self.databases.lock();
        let Some(db) = databases.get_mut(&upload.database) else {
            return;
        };
        match result {
            Ok(epoch) if epoch.is_empty() => {
                // Written, but the span does not reach this stream's start yet: try again.
                drop(databases);
                self.moved.notify_one();
            }
            Ok(epoch) => {
                if db.generation == upload.generation {
                    db.epoch = Some(epoch);
                    db.uploaded = db.uploaded.max(upload.upto);
                    db.fresh = false;
                }
            }
            Err(failure) => {
                // Kept for the next write; the claim stays where it was.
                for (oid, position) in upload.tables {
                    let last = db.tables.entry(oid).or_default();
                    *last = (*last).max(position);
                }
                db.whole = db.whole.max(upload.whole);
                drop(databases);
                self.health.failed(&failure);
                self.moved.notify_one();
            }
        }
    }
}

/// The record's fields as a floor; `None` when it has no span.
fn parse_record(pairs: &[(Vec<u8>, Vec<u8>)]) -> Option<LoadedFloor> {
    let mut floor = LoadedFloor {
        base: u64::MAX,
        upto: 0,
        database: 0,
        tables: HashMap::new(),
    };
    let (mut base, mut upto) = (None, None);
    for (field, value) in pairs {
        match field.as_slice() {
            b"base" => base = parse_position(value),
            b"upto" => upto = parse_position(value),
            b"db" => floor.database = parse_position(value).unwrap_or(u64::MAX),
            b"epoch" => {}
            field => {
                let oid = field
                    .strip_prefix(b"t")
                    .and_then(|oid| std::str::from_utf8(oid).ok())
                    .and_then(|oid| oid.parse::<u32>().ok());
                // A field this version does not know could be a change it cannot place: the
                // whole database counts as changed then.
                match (oid, parse_position(value)) {
                    (Some(oid), Some(position)) => {
                        floor.tables.insert(oid, position);
                    }
                    _ => floor.database = u64::MAX,
                }
            }
        }
    }
    floor.base = base?;
    floor.upto = upto?;
    Some(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(field: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        (field.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn a_record_reads_as_a_floor() {
        let floor = parse_record(&[
            pair("epoch", "ab"),
            pair("base", &position_text(10)),
            pair("upto", &position_text(90)),
            pair("t16384", &position_text(50)),
            pair("db", &position_text(20)),
        ])
        .expect("a span");
        assert_eq!((floor.base, floor.upto, floor.database), (10, 90, 20));
        assert_eq!(floor.tables.get(&16384), Some(&50));
        assert_eq!(parse_record(&[pair("t1", "00")]), None, "no span");
        let odd = parse_record(&[
            pair("base", &position_text(1)),
            pair("upto", &position_text(2)),
            pair("x9", "zz"),
        ])
        .expect("a span");
        assert_eq!(
            odd.database,
            u64::MAX,
            "an unknown field counts as everything"
        );
    }
}

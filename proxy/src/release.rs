//! Letting go of a database: pgcached's own connections leave a database before a client's
//! statement that needs it free of other connections.
//!
//! pgcached follows every database its clients use with a logical-replication stream (on a
//! temporary slot) and a control connection. PostgreSQL refuses `DROP DATABASE x` while a
//! logical slot on `x` is active, and `DROP`, `ALTER DATABASE x RENAME` or `CREATE DATABASE …
//! TEMPLATE x` while another session is connected to `x`: a test runner or a migration tool
//! that creates and drops databases would fail through pgcached, and even straight to
//! PostgreSQL while pgcached follows the database. So a session about to send such a statement
//! ([`crate::sql::database_ddl`]) parks it, and pgcached first
//!
//! 1. ends the database's stream (its task has ended, and the cache serves nothing of the
//!    database, before anything else happens),
//! 2. stops its catalog watcher and closes its control connection, opening none to it for a
//!    few seconds,
//! 3. waits, asking PostgreSQL from the session's own database, until its slot on the database
//!    is inactive and its control connections there are gone (at most [`GONE_WAIT`]).
//!
//! Then the statement goes upstream. If it fails (someone else is still connected), the
//! database is followed again from its next session's login; until then nothing of it is
//! served from the cache, which is safe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::catalog::watcher::CatalogWatchers;
use crate::replication::Replication;
use crate::upstream::control::ControlConnections;

/// How long pgcached waits for its connections to a released database to be gone.
pub(crate) const GONE_WAIT: Duration = Duration::from_secs(3);
/// How long no control connection is opened to a released database.
const QUIET: Duration = Duration::from_secs(5);
/// Between two checks that the connections are gone.
const CHECK_EVERY: Duration = Duration::from_millis(10);

/// This pgcached's active slots and control connections on a database.
const STILL_CONNECTED: &str = "SELECT (SELECT count(*) FROM pg_replication_slots \
     WHERE database = $1 AND active AND slot_name LIKE $2) \
   + (SELECT count(*) FROM pg_stat_activity \
     WHERE datname = $1 AND application_name = 'pgcached control')";

/// What pgcached closes of a database before it is dropped or renamed.
pub(crate) struct DatabaseRelease {
    pub(crate) replication: Arc<Replication>,
    pub(crate) watchers: Arc<CatalogWatchers>,
    pub(crate) control: Arc<ControlConnections>,
}

impl DatabaseRelease {
    /// Lets go of `database` for a statement sent from a session of `from`.
    pub(crate) async fn release(&self, database: String, from: Arc<str>) {
        info!(%database, "closing pgcached's own connections to the database for a client's DROP, RENAME or TEMPLATE of it");
        self.replication.release(&database).await;
        self.watchers.release(&database).await;
        self.control.release(&database, QUIET).await;
        let slots = format!("pgcached\\_{}\\_%", std::process::id());
        let started = Instant::now();
        while started.elapsed() < GONE_WAIT {
            match self.connected(&from, &database, &slots).await {
                Some(0) => return,
                Some(_) => {}
                None => {
                    // Nothing to ask with: give the server a moment to see the sockets close.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return;
                }
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
        debug!(%database, "pgcached's connections to the database still seen; sending the statement anyway");
    }

    /// How many of pgcached's slots and control connections `database` still has, asked over
    /// the control connection to `from`; `None` when that cannot be asked.
    async fn connected(&self, from: &str, database: &str, slots: &str) -> Option<i64> {
        let client = self.control.client(from).await.ok()?;
        let row = client
            .query_one(STILL_CONNECTED, &[&database, &slots])
            .await
            .ok()?;
        row.try_get::<_, i64>(0).ok()
    }
}

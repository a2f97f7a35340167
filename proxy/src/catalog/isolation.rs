//! The transaction isolation a session inherits: its role's and database's settings
//! (`ALTER ROLE ... SET default_transaction_isolation`, `ALTER DATABASE ... SET ...`, in
//! `pg_db_role_setting`), else the server's (`postgresql.conf`, `ALTER SYSTEM`).
//!
//! PostgreSQL applies a role's and database's settings when a session starts, so they are read
//! once per (database, role) and kept for the sessions that log in until the catalog watcher
//! sees the catalog change (its digest covers `pg_db_role_setting`); sessions already open keep
//! what they started with, as PostgreSQL does. The server's own default can change under open
//! sessions (a configuration reload), so it is one value per database that the watcher reads
//! again on every poll. Until a value is read it is unknown, and unknown serves nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{queries, Catalog, CatalogError};
use crate::session::caching::transaction::Level;
use crate::sql::transaction::DEFAULT_SETTING;
use crate::sql::Isolation;

/// Most (database, role) pairs remembered; past this the memo starts over.
const MAX_ROLES: usize = 10_000;

/// A level shared by sessions, filled in once read.
#[derive(Debug, Default)]
pub(crate) struct LevelCell(AtomicU8);

/// What a [`LevelCell`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// Not read yet.
    Pending,
    /// Set to this level.
    Set(Level),
    /// Read: nothing is set at this layer.
    NotSet,
}

impl LevelCell {
    #[cfg(test)]
    fn new(cell: Cell) -> LevelCell {
        let cell_value = LevelCell::default();
        cell_value.set(cell);
        cell_value
    }

    fn get(&self) -> Cell {
        match self.0.load(Ordering::Acquire) {
            1 => Cell::Set(Level::Known(Isolation::ReadCommitted)),
            2 => Cell::Set(Level::Known(Isolation::RepeatableRead)),
            3 => Cell::Set(Level::Known(Isolation::Serializable)),
            4 => Cell::Set(Level::Unknown),
            5 => Cell::NotSet,
            _ => Cell::Pending,
        }
    }

    fn set(&self, cell: Cell) {
        let value = match cell {
            Cell::Pending => 0,
            Cell::Set(Level::Known(Isolation::ReadCommitted)) => 1,
            Cell::Set(Level::Known(Isolation::RepeatableRead)) => 2,
            Cell::Set(Level::Known(Isolation::Serializable)) => 3,
            Cell::Set(Level::Unknown) => 4,
            Cell::NotSet => 5,
        };
        self.0.store(value, Ordering::Release);
    }
}

/// What one session inherits: its role's and database's setting, read when it logged in, and
/// the server's, read again on every poll.
#[derive(Debug, Clone)]
pub(crate) struct Inherited {
    role: Arc<LevelCell>,
    server: Arc<LevelCell>,
}

impl Inherited {
    /// A fixed inheritance (for tests).
    #[cfg(test)]
    pub(crate) fn fixed(level: Level) -> Inherited {
        Inherited {
            role: Arc::new(LevelCell::new(Cell::Set(level))),
            server: Arc::new(LevelCell::new(Cell::Set(level))),
        }
    }

    /// The inherited default level now (unknown until read).
    pub(crate) fn level(&self) -> Level {
        match self.role.get() {
            Cell::Set(level) => level,
            Cell::Pending => Level::Unknown,
            Cell::NotSet => match self.server.get() {
                Cell::Set(level) => level,
                Cell::Pending | Cell::NotSet => Level::Unknown,
            },
        }
    }
}

/// The inherited levels of every database and role pgcached has seen.
#[derive(Default)]
pub(crate) struct IsolationDefaults {
    roles: Mutex<HashMap<(String, String), Arc<LevelCell>>>,
    servers: Mutex<HashMap<String, Arc<LevelCell>>>,
}

impl IsolationDefaults {
    fn server(&self, database: &str) -> (Arc<LevelCell>, bool) {
        let mut servers = self.servers.lock();
        match servers.get(database) {
            Some(cell) => (Arc::clone(cell), false),
            None => {
                let cell = Arc::new(LevelCell::default());
                servers.insert(database.to_owned(), Arc::clone(&cell));
                (cell, true)
            }
        }
    }

    /// The watcher read the server's default for `database` (`None`: it could not).
    pub(crate) fn set_server(&self, database: &str, level: Option<Level>) {
        let (cell, _) = self.server(database);
        cell.set(Cell::Set(level.unwrap_or(Level::Unknown)));
    }

    /// The catalog of `database` changed: sessions logging in from now on read their role's
    /// and database's settings again.
    pub(crate) fn forget_roles(&self, database: &str) {
        self.roles.lock().retain(|(db, _), _| db != database);
    }
}

impl Catalog {
    /// What a session of `role` on `database` inherits. The first session of a pair has its
    /// settings read in the background (meanwhile its level is unknown).
    pub(crate) fn inherited_isolation(self: &Arc<Self>, database: &str, role: &str) -> Inherited {
        let defaults = &self.isolation;
        let (server, new_server) = defaults.server(database);
        let key = (database.to_owned(), role.to_owned());
        let (cell, new_role) = {
            let mut roles = defaults.roles.lock();
            if roles.len() >= MAX_ROLES {
                roles.clear();
            }
            match roles.get(&key) {
                Some(cell) => (Arc::clone(cell), false),
                None => {
                    let cell = Arc::new(LevelCell::default());
                    roles.insert(key, Arc::clone(&cell));
                    (cell, true)
                }
            }
        };
        if new_role || new_server {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let catalog = Arc::clone(self);
                let (database, role) = (database.to_owned(), role.to_owned());
                let role_cell = new_role.then(|| Arc::clone(&cell));
                runtime.spawn(async move {
                    if let Some(cell) = role_cell {
                        let read = catalog.role_isolation(&database, &role).await;
                        cell.set(read.unwrap_or_else(|e| {
                            super::report(&e);
                            Cell::Set(Level::Unknown)
                        }));
                    }
                    if new_server {
                        let level = catalog.server_isolation(&database).await.ok().flatten();
                        catalog.isolation.set_server(&database, level);
                    }
                });
            }
        }
        Inherited { role: cell, server }
    }

    /// The role's and database's setting, by PostgreSQL's order: the role in this database,
    /// the role, the database, every role.
    async fn role_isolation(&self, database: &str, role: &str) -> Result<Cell, CatalogError> {
        let client = self.client(database).await?;
        let rows = client.query(queries::ROLE_SETTINGS, &[&role]).await?;
        let mut best: Option<(u8, Level)> = None;
        for row in rows {
            let rank: i32 = row.get(0);
            let config: Vec<String> = row.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
            let Some(value) = config.iter().find_map(|entry| {
                let (name, value) = entry.split_once('=')?;
                name.eq_ignore_ascii_case(DEFAULT_SETTING).then_some(value)
            }) else {
                continue;
            };
            let level = Isolation::parse(value).map_or(Level::Unknown, Level::Known);
            let rank = u8::try_from(rank).unwrap_or(u8::MAX);
            if best.is_none_or(|(known, _)| rank < known) {
                best = Some((rank, level));
            }
        }
        Ok(best.map_or(Cell::NotSet, |(_, level)| Cell::Set(level)))
    }

    /// The server's default, as a session without role or database settings gets it; `None`
    /// when pgcached's own role or database has a setting that hides it.
    pub(crate) async fn server_isolation(
        &self,
        database: &str,
    ) -> Result<Option<Level>, CatalogError> {
        let client = self.client(database).await?;
        let row = client.query_one(queries::SERVER_ISOLATION, &[]).await?;
        Ok(server_level(row.get(0), row.get(1)))
    }
}

/// The server's default from `pg_settings` (`reset_val`, `source`) of pgcached's own session:
/// a value that came from pgcached's role or database is not the server's.
pub(crate) fn server_level(value: &str, source: &str) -> Option<Level> {
    match source {
        "database user" | "user" | "database" | "global" => None,
        _ => Some(Isolation::parse(value).map_or(Level::Unknown, Level::Known)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_hold_every_level() {
        for cell in [
            Cell::Pending,
            Cell::NotSet,
            Cell::Set(Level::Unknown),
            Cell::Set(Level::Known(Isolation::ReadCommitted)),
            Cell::Set(Level::Known(Isolation::RepeatableRead)),
            Cell::Set(Level::Known(Isolation::Serializable)),
        ] {
            assert_eq!(LevelCell::new(cell).get(), cell);
        }
    }

    #[test]
    fn the_role_setting_wins_over_the_server() {
        let server = Arc::new(LevelCell::new(Cell::Set(Level::Known(
            Isolation::ReadCommitted,
        ))));
        let role = Arc::new(LevelCell::new(Cell::Set(Level::Known(
            Isolation::Serializable,
        ))));
        let inherited = Inherited {
            role: Arc::clone(&role),
            server: Arc::clone(&server),
        };
        assert_eq!(inherited.level(), Level::Known(Isolation::Serializable));
        role.set(Cell::NotSet);
        assert_eq!(inherited.level(), Level::Known(Isolation::ReadCommitted));
        server.set(Cell::Pending);
        assert_eq!(inherited.level(), Level::Unknown, "not read yet");
        role.set(Cell::Pending);
        server.set(Cell::Set(Level::Known(Isolation::ReadCommitted)));
        assert_eq!(inherited.level(), Level::Unknown, "the role's not read yet");
    }

    #[test]
    fn a_server_value_from_pgcacheds_own_settings_is_not_the_servers() {
        assert_eq!(
            server_level("read committed", "default"),
            Some(Level::Known(Isolation::ReadCommitted))
        );
        assert_eq!(
            server_level("serializable", "configuration file"),
            Some(Level::Known(Isolation::Serializable))
        );
        assert_eq!(server_level("serializable", "user"), None);
        assert_eq!(server_level("read committed", "database"), None);
    }
}

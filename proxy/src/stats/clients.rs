//! The client sessions open now, for `SHOW CLIENTS`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

/// One open session.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique per process, in connection order.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Role from the StartupMessage.
    pub user: String,
    /// Database from the StartupMessage.
    pub database: String,
    /// `application_name` from the StartupMessage, if any.
    pub application: String,
    /// Whether the client negotiated TLS.
    pub tls: bool,
    /// When the session reached PostgreSQL.
    pub connected_at: SystemTime,
    /// Statements the client sent.
    pub queries: AtomicU64,
    /// Of those, answered from the cache.
    pub hits: AtomicU64,
}

impl ClientInfo {
    /// Counts a statement (and whether it was a hit).
    pub fn query(&self, hit: bool) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The registry of open sessions.
#[derive(Debug, Default)]
pub struct Clients {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

/// Removes its session from the registry when dropped.
pub struct Registration {
    clients: Arc<Clients>,
    /// The registered session.
    pub info: Arc<ClientInfo>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clients.open.lock().remove(&self.info.id);
    }
}

/// What identifies a new session.
pub struct NewClient<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// Role.
    pub user: &'a str,
    /// Database.
    pub database: &'a str,
    /// application_name.
    pub application: &'a str,
    /// TLS negotiated.
    pub tls: bool,
}

impl Clients {
    /// Adds a session; it stays listed until the returned registration is dropped.
    pub fn register(self: &Arc<Self>, client: NewClient<'_>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            peer: client.peer,
            user: client.user.to_owned(),
            database: client.database.to_owned(),
            application: client.application.to_owned(),
            tls: client.tls,
            connected_at: SystemTime::now(),
            queries: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        });
        self.open.lock().insert(id, Arc::clone(&info));
        Registration {
            clients: Arc::clone(self),
            info,
        }
    }

    /// The open sessions, oldest first.
    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        self.open.lock().values().cloned().collect()
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.open.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_listed_until_its_registration_drops() {
        let clients = Arc::new(Clients::default());
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("address");
        let first = clients.register(NewClient {
            peer,
            user: "alice",
            database: "app",
            application: "psql",
            tls: false,
        });
        let second = clients.register(NewClient {
            peer,
            user: "bob",
            database: "app",
            application: "",
            tls: true,
        });
        assert_eq!(clients.len(), 2);
        first.info.query(true);
        first.info.query(false);
        assert_eq!(first.info.queries.load(Ordering::Relaxed), 2);
        assert_eq!(first.info.hits.load(Ordering::Relaxed), 1);
        drop(first);
        let left: Vec<String> = clients.list().iter().map(|c| c.user.clone()).collect();
        assert_eq!(left, vec!["bob".to_owned()]);
        drop(second);
        assert_eq!(clients.len(), 0);
    }
}

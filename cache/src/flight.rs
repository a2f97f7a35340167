//! Single flight: while one session fills a key, the others wait for it instead of sending the
//! same query upstream.
//!
//! The first miss of a key registers a flight; later lookups of the same key get a
//! [`FillWait`]. The flight ends when the fill guard is used or dropped (abandoned: the query
//! failed, the client vanished), and every waiter is woken to look up again.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::key::CacheKey;

/// Keys being filled, each with the channel that closes when its fill ends. Most fills have no
/// waiter, so the channel is made by the first one (a miss then costs no allocation here).
#[derive(Default)]
pub struct Flights {
    active: Mutex<HashMap<CacheKey, Option<watch::Sender<()>>>>,
}

impl Flights {
    /// Registers a flight for `key`; `Err` with a waiter if one is already under way.
    pub fn start(&self, key: &CacheKey) -> Result<(), FillWait> {
        let mut active = self.active.lock();
        if let Some(sender) = active.get_mut(key) {
            return Err(waiter(sender));
        }
        active.insert(key.clone(), None);
        Ok(())
    }

    /// A waiter on the flight of `key`, if one is under way (the filler's own, to wait for a
    /// fill it handed to another task).
    pub fn subscribe(&self, key: &CacheKey) -> Option<FillWait> {
        self.active.lock().get_mut(key).map(waiter)
    }

    /// Ends the flight of `key`, waking its waiters.
    pub fn end(&self, key: &CacheKey) {
        // Dropping the sender closes the channel: every waiter's `changed()` returns.
        let ended = self.active.lock().remove(key);
        drop(ended);
    }

    /// Number of flights under way.
    pub fn len(&self) -> usize {
        self.active.lock().len()
    }

    /// True when no flight is under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A waiter on a flight, making its channel if it has none yet.
fn waiter(sender: &mut Option<watch::Sender<()>>) -> FillWait {
    let sender = sender.get_or_insert_with(|| watch::channel(()).0);
    FillWait {
        receiver: sender.subscribe(),
    }
}

/// Waits for another session's fill of the same key.
pub struct FillWait {
    receiver: watch::Receiver<()>,
}

impl FillWait {
    /// Waits up to `limit`; true if the fill ended (stored or abandoned) in time.
    pub async fn wait(mut self, limit: Duration) -> bool {
        let ended = async { while self.receiver.changed().await.is_ok() {} };
        tokio::time::timeout(limit, ended).await.is_ok()
    }
}

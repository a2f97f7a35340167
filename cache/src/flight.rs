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

/// Keys being filled, each with a channel that closes when the fill ends.
#[derive(Default)]
pub struct Flights {
    active: Mutex<HashMap<CacheKey, watch::Sender<()>>>,
}

impl Flights {
    /// Registers a flight for `key`; `Err` with a waiter if one is already under way.
    pub fn start(&self, key: &CacheKey) -> Result<(), FillWait> {
        let mut active = self.active.lock();
        if let Some(sender) = active.get(key) {
            return Err(FillWait {
                receiver: sender.subscribe(),
            });
        }
        let (sender, _) = watch::channel(());
        active.insert(key.clone(), sender);
        Ok(())
    }

    /// A waiter on the flight of `key`, if one is under way (the filler's own, to wait for a
    /// fill it handed to another task).
    pub fn subscribe(&self, key: &CacheKey) -> Option<FillWait> {
        self.active.lock().get(key).map(|sender| FillWait {
            receiver: sender.subscribe(),
        })
    }

    /// Ends the flight of `key`, waking its waiters.
    pub fn end(&self, key: &CacheKey) {
        // Dropping the sender closes the channel: every waiter's `changed()` returns.
        self.active.lock().remove(key);
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

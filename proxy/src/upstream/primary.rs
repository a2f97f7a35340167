//! Which of the `--upstream` hosts pgcached uses, and noticing when that changes.
//!
//! With several hosts (`postgres://u:p@db1,db2/app?target_session_attrs=primary`), the hosts are
//! tried in order, as libpq tries them, and the first one that accepts pgcached's own login and
//! has the asked attributes becomes the *current* host: client sessions, the catalog and the
//! change streams all connect to it. A monitor ([`spawn_monitor`]) asks the current host every
//! [`CHECK_INTERVAL`] whether it still qualifies (`pg_is_in_recovery()`,
//! `transaction_read_only`) and which server it is (`system_identifier` from
//! `pg_control_system()`, and on a primary the timeline of its current WAL file). Once chosen, a
//! host stays current while it qualifies; when it stops qualifying (down, in recovery, read-only)
//! the hosts are tried in order again.
//!
//! A change of server, whether another host became current or the same address answers as
//! another system or on another timeline (a promotion), moves the *era*. WAL positions of
//! different systems or timelines are not comparable and what the cache holds came from the old
//! server, so [`Upstreams::switch`] runs the registered hooks first (the cache drops every entry
//! and forgets every position, the catalog forgets its facts, streams of the old era are ignored
//! from then on) and then publishes the new era; connections opened in an older era are closed
//! ([`Fence`]): sessions end as they would on a lost connection, replication connections fail
//! and their streams reconnect to the new host. Each change is logged once and counted
//! (`pgcached_upstream_changes_total`, `pgcached_upstream_current`, `SHOW UPSTREAM`).
//!
//! Without pgcached's own credentials there is no monitor: with one host nothing changes, with
//! several each new connection tries the hosts in order (libpq's `any`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::{counter, gauge};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::probe::probe;
use super::url::{Host, TargetSessionAttrs, UpstreamUrl};
use crate::metrics::registry::{UPSTREAM_CHANGES_TOTAL, UPSTREAM_CURRENT};

/// How often the current host is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Every how many checks of the current host the other hosts are checked too (their role in
/// `SHOW UPSTREAM`).
const OTHERS_EVERY: u64 = 20;
/// How long a new connection waits for the first choice of host at start.
const FIRST_CHOICE_WAIT: Duration = Duration::from_secs(10);

/// Which server a host is: positions are comparable only within one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `system_identifier`: the same for a primary and its physical standbys.
    pub system_id: String,
    /// The timeline: a promotion starts a new one.
    pub timeline: i32,
}

/// What the last check of a host found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not checked yet.
    Unknown,
    /// Read-write, not in recovery.
    Primary,
    /// In recovery.
    Standby,
    /// Not in recovery but `transaction_read_only` is on.
    ReadOnly,
    /// No answer; why.
    Down(String),
}

impl Role {
    /// `unknown`, `primary`, `standby`, `read-only` or `down`.
    pub fn label(&self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::ReadOnly => "read-only",
            Role::Down(_) => "down",
        }
    }

    fn qualifies(&self, wanted: TargetSessionAttrs) -> bool {
        match wanted {
            TargetSessionAttrs::Any => !matches!(self, Role::Down(_) | Role::Unknown),
            TargetSessionAttrs::ReadWrite => *self == Role::Primary,
            TargetSessionAttrs::Primary => matches!(self, Role::Primary | Role::ReadOnly),
        }
    }
}

/// One host as `SHOW UPSTREAM` lists it.
#[derive(Debug, Clone)]
pub struct HostStatus {
    /// The host.
    pub host: Host,
    /// What its last check found.
    pub role: Role,
    /// Which server answered, when one did.
    pub identity: Option<Identity>,
    /// Whether sessions connect to it now.
    pub current: bool,
}

/// The host in use and its era.
#[derive(Debug, Clone)]
struct Current {
    /// Index into the URL's hosts; `None` until the first choice.
    index: Option<usize>,
    /// The server that answered there when it was chosen.
    identity: Option<Identity>,
    /// Moves with every change of server.
    era: u64,
}

/// Something to do, under the switch lock, once a new era is published and before any report
/// of it is applied.
pub type SwitchHook = Box<dyn Fn() + Send + Sync>;

/// The hosts of `--upstream` and the one in use.
pub struct Upstreams {
    url: UpstreamUrl,
    current: RwLock<Current>,
    /// Held for reading by whoever acts on one era's data (the change streams' reports), for
    /// writing by a switch: a report is applied wholly before a switch or checked against the
    /// new era.
    switching: RwLock<()>,
    era: watch::Sender<u64>,
    hooks: Mutex<Vec<SwitchHook>>,
    roles: Mutex<Vec<(Role, Option<Identity>)>>,
    changes: AtomicU64,
    last_change: Mutex<Option<SystemTime>>,
    chosen: Notify,
    /// Set once the monitor's first round is over, whether or not a host qualified.
    first_round: std::sync::atomic::AtomicBool,
    monitored: bool,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("hosts", &self.url.hosts)
            .field("current", &*self.current.read())
            .finish()
    }
}

impl Upstreams {
    /// The hosts of `url`. `monitored`: a monitor will choose the current host (there are
    /// credentials); otherwise the first host is current from the start.
    pub fn new(url: UpstreamUrl, monitored: bool) -> Arc<Upstreams> {
        let hosts = url.hosts.len();
        let (era, _) = watch::channel(0);
        Arc::new(Upstreams {
            current: RwLock::new(Current {
                index: (!monitored).then_some(0),
                identity: None,
                era: 0,
            }),
            url,
            switching: RwLock::new(()),
            era,
            hooks: Mutex::new(Vec::new()),
            roles: Mutex::new(vec![(Role::Unknown, None); hosts]),
            changes: AtomicU64::new(0),
            last_change: Mutex::new(None),
            chosen: Notify::new(),
            first_round: std::sync::atomic::AtomicBool::new(false),
            monitored,
        })
    }

    /// The upstream URL.
    pub fn url(&self) -> &UpstreamUrl {
        &self.url
    }

    /// Whether a monitor chooses the host (else: the hosts are tried in order per connection).
    pub fn monitored(&self) -> bool {
        self.monitored
    }

    /// The era now; moves with every change of server.
    pub fn era(&self) -> u64 {
        self.current.read().era
    }

    /// The current host, once chosen.
    pub fn current(&self) -> Option<Host> {
        let index = self.current.read().index?;
        self.url.hosts.get(index).cloned()
    }

    /// The current host; at start, waits (bounded) for the monitor's first round, then falls
    /// back to the first host if none qualified.
    pub async fn current_or_wait(&self) -> Host {
        if let Some(host) = self.current() {
            return host;
        }
        let _ = tokio::time::timeout(FIRST_CHOICE_WAIT, async {
            loop {
                let chosen = self.chosen.notified();
                if self.current().is_some() || self.first_round.load(Ordering::Acquire) {
                    return;
                }
                chosen.await;
            }
        })
        .await;
        self.current().unwrap_or_else(|| self.url.first().clone())
    }

    /// The current server's identity, when the monitor knows it.
    pub fn identity(&self) -> Option<Identity> {
        self.current.read().identity.clone()
    }

    /// A fence for a connection about to be opened now.
    pub fn fence(&self) -> Fence {
        Fence {
            era: self.era(),
            watch: self.era.subscribe(),
        }
    }

    /// Holds off a switch while a report of era `era` is applied; `None` if `era` is over.
    pub fn hold(&self, era: u64) -> Option<RwLockReadGuard<'_, ()>> {
        let guard = self.switching.read();
        (self.era() == era).then_some(guard)
    }

    /// Registers something to do before every new era is published.
    pub fn on_switch(&self, hook: SwitchHook) {
        self.hooks.lock().push(hook);
    }

    /// Times the server changed.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// When it last changed.
    pub fn last_change(&self) -> Option<SystemTime> {
        *self.last_change.lock()
    }

    /// Every host with its last check, for `SHOW UPSTREAM`.
    pub fn report(&self) -> Vec<HostStatus> {
        let current = self.current.read().index;
        let roles = self.roles.lock();
        self.url
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| HostStatus {
                host: host.clone(),
                role: roles[index].0.clone(),
                identity: roles[index].1.clone(),
                current: current == Some(index),
            })
            .collect()
    }

    /// Makes host `index` (answering as `identity`) current. The first choice only records it;
    /// a later one that changes host or identity runs the hooks and moves the era.
    fn choose(&self, index: usize, identity: Identity) {
        let before = self.current.read().clone();
        if before.index == Some(index) && before.identity.as_ref() == Some(&identity) {
            return;
        }
        let host = self.url.hosts[index].address();
        let first = before.index.is_none() || before.identity.is_none();
        if first {
            // No session has used another server yet: nothing to drop.
            let mut current = self.current.write();
            current.index = Some(index);
            current.identity = Some(identity.clone());
            drop(current);
            info!(
                host,
                system = identity.system_id,
                timeline = identity.timeline,
                "upstream host chosen"
            );
        } else {
            // The era moves first, so that connections of the old one fail from now on and no
            // session of it fills the cache after the hooks dropped it; reports of the new era
            // wait for the lock until the hooks are done.
            let _switching = self.switching.write();
            let mut current = self.current.write();
            current.index = Some(index);
            current.identity = Some(identity.clone());
            current.era += 1;
            let era = current.era;
            drop(current);
            self.era.send_replace(era);
            for hook in self.hooks.lock().iter() {
                hook();
            }
            self.changes.fetch_add(1, Ordering::Relaxed);
            *self.last_change.lock() = Some(SystemTime::now());
            counter!(UPSTREAM_CHANGES_TOTAL).increment(1);
            let old = before.identity.unwrap_or_else(|| identity.clone());
            warn!(
                host,
                previous = before
                    .index
                    .map(|i| self.url.hosts[i].address())
                    .unwrap_or_default(),
                system = identity.system_id,
                timeline = identity.timeline,
                previous_system = old.system_id,
                previous_timeline = old.timeline,
                "upstream server changed: cache dropped, change streams restart, sessions on the \
                 previous server are closed"
            );
        }
        for (i, other) in self.url.hosts.iter().enumerate() {
            gauge!(UPSTREAM_CURRENT, "host" => other.address()).set(if i == index {
                1.0
            } else {
                0.0
            });
        }
        self.chosen.notify_waiters();
    }
}

#[cfg(test)]
impl Upstreams {
    /// Makes the first host current, then moves the era once.
    pub(crate) fn force_switch_for_tests(&self) {
        let era = self.era();
        for timeline in [1, 2, 3] {
            self.choose(
                0,
                Identity {
                    system_id: "test".to_owned(),
                    timeline,
                },
            );
            if self.era() != era {
                return;
            }
        }
    }
}

/// Whether a connection opened in one era is still of the current one.
#[derive(Debug, Clone)]
pub struct Fence {
    era: u64,
    watch: watch::Receiver<u64>,
}

impl Fence {
    /// A fence that never moves (no monitor).
    pub fn fixed() -> Fence {
        let (sender, watch) = watch::channel(0);
        // The receiver sees the sender's close as "no more changes", never as a change.
        drop(sender);
        Fence { era: 0, watch }
    }

    /// The era the connection belongs to.
    pub fn era(&self) -> u64 {
        self.era
    }

    /// True once another server is current.
    pub fn moved(&self) -> bool {
        *self.watch.borrow() != self.era
    }

    /// Completes once another server is current (never, if nothing can change).
    pub async fn wait(&mut self) {
        loop {
            if self.moved() {
                return;
            }
            if self.watch.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Starts the monitor: chooses the first qualifying host now, then checks every
/// [`CHECK_INTERVAL`].
pub fn spawn_monitor(upstreams: Arc<Upstreams>) -> tokio::task::JoinHandle<()> {
    // Exported from the start, so that an alert on its increase sees the first change.
    counter!(UPSTREAM_CHANGES_TOTAL).absolute(0);
    tokio::spawn(async move {
        let mut probes: Vec<Option<tokio_postgres::Client>> =
            (0..upstreams.url.hosts.len()).map(|_| None).collect();
        let mut complained = false;
        let mut ticks: u64 = 0;
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            ticks += 1;
            let wanted = upstreams.url.target_session_attrs;
            let current = upstreams.current.read().clone();
            // The current host, while it qualifies as the same server, stays.
            if let (Some(index), Some(identity)) = (current.index, &current.identity) {
                let (role, found) = probe(&upstreams.url, index, &mut probes[index]).await;
                let same = found.as_ref() == Some(identity);
                let qualifies = role.qualifies(wanted);
                upstreams.roles.lock()[index] = (role, found.clone());
                if qualifies && same {
                    if ticks.is_multiple_of(OTHERS_EVERY) {
                        // The other hosts, for SHOW UPSTREAM only.
                        for (other, kept) in probes.iter_mut().enumerate() {
                            if other != index {
                                let checked = probe(&upstreams.url, other, kept).await;
                                upstreams.roles.lock()[other] = checked;
                            }
                        }
                    }
                    continue;
                }
                if qualifies {
                    if let Some(found) = found {
                        upstreams.choose(index, found);
                        continue;
                    }
                }
            }
            let mut chosen = false;
            for (index, kept) in probes.iter_mut().enumerate() {
                let (role, found) = probe(&upstreams.url, index, kept).await;
                let qualifies = role.qualifies(wanted);
                upstreams.roles.lock()[index] = (role, found.clone());
                if let (true, Some(found)) = (qualifies, found) {
                    upstreams.choose(index, found);
                    chosen = true;
                    complained = false;
                    break;
                }
            }
            if !upstreams.first_round.swap(true, Ordering::AcqRel) {
                upstreams.chosen.notify_waiters();
            }
            if !chosen && !complained {
                complained = true;
                warn!(
                    hosts = upstreams.url.address(),
                    target_session_attrs = wanted.as_str(),
                    "no upstream host qualifies; trying again every {CHECK_INTERVAL:?}"
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(timeline: i32) -> Identity {
        Identity {
            system_id: "7".to_owned(),
            timeline,
        }
    }

    #[test]
    fn roles_qualify_as_libpq_targets_them() {
        use TargetSessionAttrs::*;
        assert!(Role::Standby.qualifies(Any));
        assert!(!Role::Down("x".into()).qualifies(Any));
        assert!(Role::Primary.qualifies(ReadWrite));
        assert!(!Role::ReadOnly.qualifies(ReadWrite));
        assert!(Role::ReadOnly.qualifies(Primary));
        assert!(!Role::Standby.qualifies(Primary));
    }

    #[tokio::test]
    async fn a_change_of_server_runs_the_hooks_then_moves_the_era() {
        let url = UpstreamUrl::parse("postgres://u@a,b").expect("url");
        let upstreams = Upstreams::new(url, true);
        assert_eq!(
            upstreams.current(),
            None,
            "nothing chosen before the monitor"
        );
        upstreams.choose(1, identity(1));
        assert_eq!(upstreams.current().map(|h| h.name), Some("b".to_owned()));
        assert_eq!(upstreams.era(), 0, "the first choice is no change");
        let fence = upstreams.fence();
        let hooks = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&hooks);
        let watched = Arc::clone(&upstreams);
        upstreams.on_switch(Box::new(move || {
            // Hooks run once the era moved: the n-th one sees era n.
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(watched.era(), n);
        }));
        upstreams.choose(1, identity(1));
        assert_eq!(
            hooks.load(Ordering::SeqCst),
            0,
            "the same server is no change"
        );
        assert!(!fence.moved());
        upstreams.choose(1, identity(2));
        assert_eq!(
            hooks.load(Ordering::SeqCst),
            1,
            "a new timeline is a change"
        );
        assert!(fence.moved());
        assert!(
            upstreams.hold(0).is_none(),
            "reports of the old era are refused"
        );
        assert!(upstreams.hold(1).is_some());
        upstreams.choose(0, identity(2));
        assert_eq!(upstreams.era(), 2, "another host is a change");
        assert_eq!(upstreams.changes(), 2);
    }

    #[tokio::test]
    async fn a_fixed_fence_never_moves() {
        let mut fence = Fence::fixed();
        assert!(!fence.moved());
        let waited = tokio::time::timeout(Duration::from_millis(20), fence.wait()).await;
        assert!(waited.is_err());
    }
}

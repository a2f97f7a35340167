//! Whether the shared tier answers: a failed call or probe marks it down at once (one warning
//! per outage), and while it is down nothing waits for it; a probe every [`PROBE_INTERVAL`]
//! notices an outage without traffic and brings the tier back.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use metrics::{counter, gauge};
use parking_lot::Mutex;
use tracing::{info, warn};

use super::client::Failure;
use crate::metrics::registry::{SHARED_CACHE_ERRORS_TOTAL, SHARED_CACHE_UP};

/// How often a down tier is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

const UP: u8 = 1;
const DOWN: u8 = 2;

/// The tier's state, as `SHOW SHARED CACHE` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// `up`, `down` or `connecting`.
    pub state: &'static str,
    /// Since when it is in that state.
    pub since: Option<SystemTime>,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// Outages since the start.
    pub outages: u64,
}

#[derive(Debug, Default)]
struct Details {
    since: Option<SystemTime>,
    last_error: Option<String>,
    outages: u64,
}

/// Up, down, or not yet known.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    details: Mutex<Details>,
}

impl Health {
    /// True when calls are worth making.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// A call failed: counted, and the tier is down until a probe succeeds.
    pub fn failed(&self, failure: &Failure) {
        counter!(SHARED_CACHE_ERRORS_TOTAL, "kind" => failure.kind.label()).increment(1);
        let before = self.state.swap(DOWN, Ordering::AcqRel);
        let mut details = self.details.lock();
        details.last_error = Some(failure.to_string());
        if before != DOWN {
            details.since = Some(SystemTime::now());
            details.outages += 1;
            gauge!(SHARED_CACHE_UP).set(0.0);
            warn!(
                error = %failure,
                "shared cache unreachable; serving from this pgcached's memory and PostgreSQL \
                 until it answers again"
            );
        }
    }

    /// A call or probe succeeded.
    pub fn succeeded(&self) {
        let before = self.state.swap(UP, Ordering::AcqRel);
        if before != UP {
            let mut details = self.details.lock();
            details.since = Some(SystemTime::now());
            gauge!(SHARED_CACHE_UP).set(1.0);
            if before == DOWN {
                info!("shared cache reachable again");
            } else {
                info!("shared cache connected");
            }
        }
    }

    /// For `SHOW SHARED CACHE`.
    pub fn report(&self) -> HealthReport {
        let details = self.details.lock();
        HealthReport {
            state: match self.state.load(Ordering::Acquire) {
                UP => "up",
                DOWN => "down",
                _ => "connecting",
            },
            since: details.since,
            last_error: details.last_error.clone(),
            outages: details.outages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_cache::client::FailureKind;

    #[test]
    fn one_failure_takes_it_down_and_one_success_brings_it_back() {
        let health = Health::default();
        assert!(!health.is_up());
        assert_eq!(health.report().state, "connecting");
        health.succeeded();
        assert!(health.is_up());
        let failure = Failure {
            kind: FailureKind::Timeout,
            detail: "slow".to_owned(),
        };
        health.failed(&failure);
        health.failed(&failure);
        assert!(!health.is_up());
        let report = health.report();
        assert_eq!((report.state, report.outages), ("down", 1), "one outage");
        assert!(report.last_error.is_some_and(|e| e.contains("slow")));
        health.succeeded();
        assert_eq!(health.report().state, "up");
    }
}

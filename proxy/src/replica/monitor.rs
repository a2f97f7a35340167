//! Each replica checked continuously: is it a standby of the current primary, how far has it
//! replayed, how far behind is it.
//!
//! The check runs every [`CHECK_INTERVAL`] over a connection with pgcached's own credentials.
//! A replica is usable while it answers, is in recovery, has the primary's system identifier
//! and timeline (read every [`IDENTITY_EVERY`] checks; a standby still on an old timeline after
//! a failover, or a server of another system, is never asked), and is configured like the
//! primary in every setting that changes how results are written ([`COMPARED_SETTINGS`]). While usable,
//! its replay position is published for the routing decision ([`super::Replica`]); otherwise
//! 0, and misses go to the primary.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics::gauge;
use pgcached_invalidation::Lsn;
use tracing::{debug, info, warn};

use super::{Replica, Replicas};
use crate::metrics::registry::{REPLICA_BEHIND_BYTES, REPLICA_LAG_SECONDS, REPLICA_USABLE};
use crate::upstream::primary::Identity;
use crate::upstream::probe::{self, IDENTITY_SQL};

/// How often a replica's replay position is read.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// Every how many checks its identity is read again.
const IDENTITY_EVERY: u64 = 100;
/// Pause after a failed check.
const RETRY: Duration = Duration::from_secs(1);
/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The replay position, and how long since the last replayed transaction while WAL is still
/// waiting to be replayed (0 when everything received is replayed).
const REPLAY_SQL: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
     CASE WHEN pg_last_wal_receive_lsn() IS NULL \
            OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8 \
          ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8 END";

/// Server settings that change how a read's result is written (dates, times, intervals,
/// floats, bytea, money and numbers by locale, string literals, text search, row security) and
/// that a session does not set itself unless it chooses to. A replica whose server
/// configuration differs from the primary's in one of them would answer a read differently:
/// it is not used. Read as pgcached's own role on both servers, so role and database settings
/// (the same catalog on both) cancel out and only the servers' configurations are compared.
const COMPARED_SETTINGS: &str = "SELECT name, setting FROM pg_catalog.pg_settings WHERE name IN (\
     'TimeZone', 'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output', \
     'lc_monetary', 'lc_numeric', 'lc_time', 'standard_conforming_strings', \
     'default_text_search_config', 'timezone_abbreviations', 'xmlbinary', 'xmloption', \
     'array_nulls', 'transform_null_equals', 'row_security', 'search_path') ORDER BY name";

/// What the console shows of a replica.
#[derive(Debug, Clone, Default)]
pub(crate) struct Status {
    /// Its state.
    pub(crate) state: State,
    /// Its replay position, when known.
    pub(crate) replay: Option<Lsn>,
    /// Seconds its replay is behind what it received.
    pub(crate) lag_seconds: Option<f64>,
    /// Bytes it is behind the newest position pgcached knows of.
    pub(crate) behind_bytes: Option<u64>,
    /// When it was last checked.
    pub(crate) checked: Option<SystemTime>,
    /// Why it is not usable, when it is not.
    pub(crate) problem: Option<String>,
}

/// A replica's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum State {
    /// Not checked yet.
    #[default]
    Starting,
    /// A standby of the current primary: misses may go to it.
    Usable,
    /// Not in recovery (promoted, or not a standby).
    NotStandby,
    /// Another system or timeline than the current primary, or the primary's is unknown.
    Foreign,
    /// Configured otherwise than the primary in a setting that changes results.
    SettingsDiffer,
    /// No answer.
    Down,
}

impl State {
    /// As the console shows it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Usable => "usable",
            State::NotStandby => "not a standby",
            State::Foreign => "not of this primary",
            State::SettingsDiffer => "settings differ",
            State::Down => "down",
        }
    }
}

/// Checks `replica` until the process ends.
pub(crate) async fn run(replica: Arc<Replica>, replicas: Arc<Replicas>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut identity: Option<Identity> = None;
    let mut settings = Settings::Unknown;
    let mut checks: u64 = 0;
    let mut last_state = State::Starting;
    loop {
        let checked = check(
            &replica,
            &replicas,
            &mut client,
            &mut identity,
            &mut settings,
            checks,
        )
        .await;
        let state = match checked {
            Ok(state) => state,
            Err(problem) => {
                client = None;
                identity = None;
                down(&replica, problem);
                State::Down
            }
        };
        if state != last_state {
            let problem = replica.status.lock().problem.clone().unwrap_or_default();
            match (last_state, state) {
                (_, State::Usable) => info!(replica = %replica.address, "replica usable for reads"),
                (State::Usable, _) | (_, State::Down) => warn!(
                    replica = %replica.address,
                    state = state.as_str(),
                    problem,
                    "replica not usable; misses go to the primary"
                ),
                // At start, until the primary's identity is known.
                _ => debug!(replica = %replica.address, state = state.as_str(), problem),
            }
            last_state = state;
        }
        checks = checks.wrapping_add(1);
        tokio::time::sleep(if state == State::Down {
            RETRY
        } else {
            CHECK_INTERVAL
        })
        .await;
    }
}

/// One check; the replica's state, or why it could not be checked.
async fn check(
    replica: &Replica,
    replicas: &Replicas,
    client: &mut Option<tokio_postgres::Client>,
    identity: &mut Option<Identity>,
    settings: &mut Settings,
    checks: u64,
) -> Result<State, String> {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        let opened = tokio::time::timeout(
            CHECK_TIMEOUT,
            probe::connect(replica.url(), 0, "pgcached replica check"),
        )
        .await
        .map_err(|_| "timed out connecting".to_owned())?
        .map_err(|e| e.to_string())?;
        *client = Some(opened);
        *identity = None;
    }
    let Some(connection) = client.as_ref() else {
        return Err("no connection".to_owned());
    };
    if identity.is_none() || checks.is_multiple_of(IDENTITY_EVERY) {
        let row = tokio::time::timeout(CHECK_TIMEOUT, connection.query_one(IDENTITY_SQL, &[]))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        *identity = Some(Identity {
            system_id: row.try_get(0).map_err(|e| e.to_string())?,
            timeline: row
                .try_get::<_, Option<i32>>(1)
                .map_err(|e| e.to_string())?
                .unwrap_or(0),
        });
        if let Some(compared) = compare_settings(connection, replicas).await {
            *settings = compared;
        }
    }
    let row = tokio::time::timeout(CHECK_TIMEOUT, connection.query_one(REPLAY_SQL, &[]))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let in_recovery: bool = row.try_get(0).map_err(|e| e.to_string())?;
    let replay = row
        .try_get::<_, Option<&str>>(1)
        .map_err(|e| e.to_string())?
        .and_then(Lsn::parse);
    let lag_seconds: f64 = row.try_get(2).map_err(|e| e.to_string())?;
    let primary = replicas.upstreams.identity();
    let (state, problem) = match (in_recovery, replay, &primary) {
        (false, _, _) => (
            State::NotStandby,
            Some("not in recovery: not a standby (promoted?)".to_owned()),
        ),
        (true, None, _) => (State::NotStandby, Some("no replay position".to_owned())),
        (true, Some(_), None) => (
            State::Foreign,
            Some("the primary's identity is not known yet".to_owned()),
        ),
        (true, Some(_), Some(primary))
            if Some(primary) != identity.as_ref() || primary.system_id == probe::UNKNOWN_SYSTEM =>
        {
            (
                State::Foreign,
                Some(format!(
                    "system {} timeline {}, the primary is system {} timeline {}",
                    identity.as_ref().map_or("?", |i| i.system_id.as_str()),
                    identity.as_ref().map_or(0, |i| i.timeline),
                    primary.system_id,
                    primary.timeline
                )),
            )
        }
        (true, Some(_), Some(_)) => match settings {
            Settings::Alike => (State::Usable, None),
            Settings::Differ(difference) => (State::SettingsDiffer, Some(difference.clone())),
            Settings::Unknown => (
                State::SettingsDiffer,
                Some("its settings are not compared with the primary's yet".to_owned()),
            ),
        },
    };
    let known = replicas.newest_known_position();
    let behind = replay.map(|lsn| known.saturating_sub(lsn.0));
    replica.set_usable_at(match (state, replay) {
        (State::Usable, Some(lsn)) => lsn.0.max(1),
        _ => 0,
    });
    let address = replica.address.clone();
    gauge!(REPLICA_USABLE, "replica" => address.clone()).set(if state == State::Usable {
        1.0
    } else {
        0.0
    });
    gauge!(REPLICA_LAG_SECONDS, "replica" => address.clone()).set(lag_seconds);
    if let Some(behind) = behind {
        gauge!(REPLICA_BEHIND_BYTES, "replica" => address).set(behind as f64);
    }
    *replica.status.lock() = Status {
        state,
        replay,
        lag_seconds: Some(lag_seconds),
        behind_bytes: behind,
        checked: Some(SystemTime::now()),
        problem,
    };
    Ok(state)
}

/// How a replica's result-changing settings compare with the primary's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settings {
    /// Not compared yet.
    Unknown,
    /// The same.
    Alike,
    /// This one differs, said for people.
    Differ(String),
}

/// The replica's settings compared with the primary's; `None` when either cannot be read now
/// (the last comparison stands until the next check).
async fn compare_settings(
    replica: &tokio_postgres::Client,
    replicas: &Replicas,
) -> Option<Settings> {
    let read = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, String)> {
        rows.iter()
            .filter_map(|row| Some((row.try_get(0).ok()?, row.try_get(1).ok()?)))
            .collect()
    };
    let theirs = tokio::time::timeout(CHECK_TIMEOUT, replica.query(COMPARED_SETTINGS, &[]))
        .await
        .ok()?
        .ok()
        .map(read)?;
    let database = replicas
        .control
        .upstream()
        .database
        .clone()
        .unwrap_or_else(|| "postgres".to_owned());
    let primary = replicas.control.client(&database).await.ok()?;
    let ours = tokio::time::timeout(CHECK_TIMEOUT, primary.query(COMPARED_SETTINGS, &[]))
        .await
        .ok()?
        .ok()
        .map(read)?;
    Some(match first_difference(&ours, &theirs) {
        Some(difference) => Settings::Differ(difference),
        None => Settings::Alike,
    })
}

/// The first setting whose values differ between the primary's and the replica's lists.
fn first_difference(primary: &[(String, String)], replica: &[(String, String)]) -> Option<String> {
    primary.iter().find_map(|(name, value)| {
        let other = replica.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        (other != Some(value.as_str())).then(|| {
            format!(
                "{name} is {:?} on the replica and {value:?} on the primary: set it alike in both servers' configuration",
                other.unwrap_or("unset")
            )
        })
    })
}

fn down(replica: &Replica, problem: String) {
    replica.set_usable_at(0);
    gauge!(REPLICA_USABLE, "replica" => replica.address.clone()).set(0.0);
    let mut status = replica.status.lock();
    status.state = State::Down;
    status.checked = Some(SystemTime::now());
    status.problem = Some(problem);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_setting_configured_otherwise_is_named() {
        let primary = settings(&[("DateStyle", "ISO, MDY"), ("TimeZone", "UTC")]);
        assert_eq!(first_difference(&primary, &primary), None);
        let replica = settings(&[("DateStyle", "ISO, MDY"), ("TimeZone", "Europe/Paris")]);
        let said = first_difference(&primary, &replica).expect("a difference");
        assert!(said.starts_with("TimeZone is \"Europe/Paris\""), "{said}");
        let missing = settings(&[("DateStyle", "ISO, MDY")]);
        assert!(first_difference(&primary, &missing).is_some());
    }
}

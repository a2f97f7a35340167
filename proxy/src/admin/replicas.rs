//! `SHOW REPLICAS`: the read replicas of `--replica`, what each last check found, and where
//! cache misses went ([`crate::replica`]).

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::frames::{ColumnType, ResultSet};
use crate::session::SessionContext;

/// One row per replica, and a notice with the misses the primary answered, by reason.
pub fn show(context: &SessionContext) -> ResultSet {
    let mut result = ResultSet::new(&[
        ("replica", ColumnType::Text),
        ("state", ColumnType::Text),
        ("replay_lsn", ColumnType::Text),
        ("lag_seconds", ColumnType::Float),
        ("behind_bytes", ColumnType::Int),
        ("connections", ColumnType::Int),
        ("idle", ColumnType::Int),
        ("filled", ColumnType::Int),
        ("fell_back", ColumnType::Int),
        ("checked_ago", ColumnType::Float),
        ("problem", ColumnType::Text),
    ]);
    let Some(replicas) = context.cache.as_ref().and_then(|c| c.replicas.as_ref()) else {
        result
            .notices
            .push("no replicas (--replica): every miss goes to the primary".to_owned());
        return result;
    };
    for replica in replicas.all() {
        let status = replica.status.lock().clone();
        let (open, idle) = replica.connections();
        let checked = status.checked.map(|at| {
            let age = SystemTime::now().duration_since(at).unwrap_or_default();
            format!("{:.3}", age.as_secs_f64())
        });
        result.push(vec![
            Some(replica.address.clone()),
            Some(status.state.as_str().to_owned()),
            status.replay.map(|lsn| lsn.to_string()),
            status.lag_seconds.map(|lag| format!("{lag:.3}")),
            status.behind_bytes.map(|bytes| bytes.to_string()),
            Some(open.to_string()),
            Some(idle.to_string()),
            Some(replica.totals.filled.load(Ordering::Relaxed).to_string()),
            Some(replica.totals.fell_back.load(Ordering::Relaxed).to_string()),
            checked,
            status.problem,
        ]);
    }
    let primary: Vec<String> = replicas
        .primary_reads()
        .into_iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    result.notices.push(match primary.is_empty() {
        true => "misses answered by the primary instead: none".to_owned(),
        false => format!(
            "misses answered by the primary instead, by reason: {}",
            primary.join(", ")
        ),
    });
    result
}

//! `SHOW UPSTREAM`: the hosts of `--upstream`, which one sessions use, and what each last
//! check found ([`crate::upstream::primary`]).

use std::time::SystemTime;

use super::frames::{ColumnType, ResultSet};
use crate::session::SessionContext;

/// One row per host.
pub fn show(context: &SessionContext) -> ResultSet {
    let upstreams = context.connector.upstreams();
    let mut result = ResultSet::new(&[
        ("host", ColumnType::Text),
        ("current", ColumnType::Text),
        ("role", ColumnType::Text),
        ("system_identifier", ColumnType::Text),
        ("timeline", ColumnType::Int),
        ("detail", ColumnType::Text),
    ]);
    for host in upstreams.report() {
        let detail = match &host.role {
            crate::upstream::primary::Role::Down(why) => Some(why.clone()),
            _ => None,
        };
        result.push(vec![
            Some(host.host.address()),
            Some(if host.current { "yes" } else { "no" }.to_owned()),
            Some(host.role.label().to_owned()),
            host.identity.as_ref().map(|i| i.system_id.clone()),
            host.identity.as_ref().map(|i| i.timeline.to_string()),
            detail,
        ]);
    }
    let changes = upstreams.changes();
    let since = upstreams.last_change().map(|time| {
        let age = SystemTime::now().duration_since(time).unwrap_or_default();
        format!("{:.3} s ago", age.as_secs_f64())
    });
    result.notices.push(match (upstreams.monitored(), since) {
        (false, _) => {
            "no monitor (no user in --upstream): each connection tries the hosts in order"
                .to_owned()
        }
        (true, None) => format!(
            "target_session_attrs={}; the server has not changed since start",
            upstreams.url().target_session_attrs.as_str()
        ),
        (true, Some(since)) => format!(
            "target_session_attrs={}; the server changed {changes} time(s), last {since}",
            upstreams.url().target_session_attrs.as_str()
        ),
    });
    result
}

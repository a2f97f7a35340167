//! Bounds for changes made through this pgcached. A proxied write is acknowledged before its
//! WAL position is known; it takes a ticket ([`pgcached_cache::Positions`]), and this task
//! reads `pg_current_wal_insert_lsn()` after the ticket was taken: the write committed before
//! its acknowledgement, so its commit record ends at or before that position. Until then,
//! results from the shared tier that depend on what it changed are refused here.

use std::sync::Arc;
use std::time::Duration;

use pgcached_cache::Generations;
use pgcached_invalidation::Lsn;
use tracing::debug;

use crate::upstream::control::ControlConnections;

/// Pause after a failed read of the position.
const RETRY: Duration = Duration::from_millis(100);

/// Resolves tickets as they are taken, until the process ends.
pub async fn run(generations: Arc<Generations>, control: Arc<ControlConnections>) {
    let positions = generations.positions();
    loop {
        let Some(ticket) = positions.unresolved() else {
            positions.ticket_taken().await;
            continue;
        };
        let database = control
            .upstream()
            .database
            .clone()
            .or_else(|| positions.databases().first().map(|d| d.to_string()))
            .unwrap_or_else(|| "postgres".to_owned());
        match current_position(&control, &database).await {
            Some(position) => positions.resolve(ticket, position),
            None => tokio::time::sleep(RETRY).await,
        }
    }
}

/// The server's current WAL insert position.
async fn current_position(control: &ControlConnections, database: &str) -> Option<u64> {
    let client = match control.client(database).await {
        Ok(client) => client,
        Err(e) => {
            debug!(error = %e, "cannot read the WAL position for the shared cache");
            return None;
        }
    };
    let row = client
        .query_one("SELECT pg_catalog.pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(|e| debug!(error = %e, "cannot read the WAL position for the shared cache"))
        .ok()?;
    Lsn::parse(row.get::<_, &str>(0)).map(|lsn| lsn.0)
}

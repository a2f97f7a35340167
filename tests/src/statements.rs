//! Counting what reaches PostgreSQL: a cluster with `pg_stat_statements`, and the executions of
//! statements whose text carries a tag.
//!
//! `pg_stat_statements` counts every execution as it ends, grouped by statement structure
//! (constants and comments aside) and shown with the text of the first one seen; a test that
//! counts by a tag in a comment must give each read it counts its own structure.

use pgcached_local_cluster::{ClusterOptions, LocalCluster};
use tokio_postgres::Client;

/// A cluster with `pg_stat_statements` loaded and created in `app`, after which `setup` runs
/// there.
pub fn cluster_with_statement_stats(setup: &str) -> LocalCluster {
    let cluster = LocalCluster::start(ClusterOptions {
        extra_settings: vec![(
            "shared_preload_libraries".to_owned(),
            "'pg_stat_statements'".to_owned(),
        )],
        ..crate::cluster::options()
    })
    .expect("cluster");
    cluster
        .psql(
            "app",
            &format!("CREATE EXTENSION pg_stat_statements;\n{setup}"),
        )
        .expect("setup");
    cluster
}

/// Executions of statements whose text contains `tag`, per pg_stat_statements.
pub async fn executions(admin: &Client, tag: &str) -> i64 {
    admin
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%'",
            &[&tag],
        )
        .await
        .expect("pg_stat_statements")
        .get(0)
}

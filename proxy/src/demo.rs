//! `pgcached demo`: a throwaway PostgreSQL with pgcached in front of it, for a first look.
//!
//! The cluster is started from the machine's PostgreSQL binaries in a temporary directory, with
//! a small `products` table in database `app`, and is removed when pgcached exits.

use pgcached_local_cluster::users::{PGCACHED_PASSWORD, PGCACHED_USER};
use pgcached_local_cluster::{ClusterOptions, LocalCluster, LocalClusterError};

use crate::config::Config;
use crate::upstream::url::{SslMode, UpstreamUrl};

/// Rows loaded into the demo database.
const DEMO_SQL: &str = "\
CREATE TABLE IF NOT EXISTS products (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL);
INSERT INTO products SELECT g, 'product ' || g, (g % 100) + 0.99 FROM generate_series(1, 1000) g
  ON CONFLICT DO NOTHING;
GRANT ALL ON products TO PUBLIC;";

/// Starts the demo cluster and points `config.upstream` at it.
pub fn start_cluster(config: &mut Config) -> Result<LocalCluster, LocalClusterError> {
    let cluster = LocalCluster::start(ClusterOptions {
        setup_sql: crate::auth::verifiers::install_sql(PGCACHED_USER),
        ..ClusterOptions::default()
    })?;
    cluster.psql("app", DEMO_SQL)?;
    config.upstream = UpstreamUrl {
        host: cluster.host().to_owned(),
        port: cluster.port(),
        user: Some(PGCACHED_USER.to_owned()),
        password: Some(PGCACHED_PASSWORD.to_owned()),
        database: Some("app".to_owned()),
        sslmode: SslMode::Disable,
        sslrootcert: None,
    };
    Ok(cluster)
}

/// The lines printed once the demo is serving.
pub fn banner(config: &Config, cluster: &LocalCluster) -> String {
    format!(
        "pgcached demo\n\
         \x20 PostgreSQL (throwaway)  {}:{}  data in {}\n\
         \x20 pgcached                {}\n\
         \x20 metrics                 http://{}/metrics\n\n\
         Connect through pgcached:\n\
         \x20 psql \"postgres://postgres@{}/app\" -c 'SELECT * FROM products LIMIT 5'\n\n\
         Press Ctrl-C to stop pgcached and remove the cluster.\n",
        cluster.host(),
        cluster.port(),
        cluster.data_dir().display(),
        config.listen,
        config.metrics_listen,
        config.listen,
    )
}

//! `pgcached demo`: a throwaway PostgreSQL with pgcached in front of it, for a first look.
//!
//! The cluster is started from the machine's PostgreSQL binaries in a temporary directory, with
//! a small `products` table in database `app`, and is removed when pgcached exits. The banner
//! names one role for everything: the cluster's superuser, trusted on loopback, which may also
//! use the admin console (it is added to `--admin-users`), so the `SHOW STATS` and
//! `EXPLAIN CACHE` lines it prints work as they are. `pgcached demo --standby` also starts a
//! streaming standby of the cluster and gives it to pgcached as `--replica`.

use pgcached_local_cluster::users::{PGCACHED_PASSWORD, PGCACHED_USER, SUPERUSER};
use pgcached_local_cluster::{ClusterOptions, LocalCluster, LocalClusterError};

use crate::admin::CONSOLE_DATABASE;
use crate::config::Config;
use crate::upstream::url::{Host, SslMode, TargetSessionAttrs, UpstreamUrl};

/// The database the demo's table is in.
const DEMO_DATABASE: &str = "app";
/// The role the banner connects as, to `app` and to the admin console.
const DEMO_ROLE: &str = SUPERUSER;

/// Rows loaded into the demo database.
const DEMO_SQL: &str = "\
CREATE TABLE IF NOT EXISTS products (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL);
INSERT INTO products SELECT g, 'product ' || g, (g % 100) + 0.99 FROM generate_series(1, 1000) g
  ON CONFLICT DO NOTHING;
GRANT ALL ON products TO PUBLIC;";

/// The demo's servers; dropping it stops and removes them.
pub struct Demo {
    /// The primary pgcached is in front of.
    pub cluster: LocalCluster,
    /// Its streaming standby, with `pgcached demo --standby`.
    pub standby: Option<LocalCluster>,
}

/// Starts the demo cluster (and, with `standby`, a streaming standby of it as `--replica`),
/// points `config.upstream` at it and opens the admin console to the banner's role.
pub fn start(config: &mut Config, standby: bool) -> Result<Demo, LocalClusterError> {
    let cluster = LocalCluster::start(ClusterOptions {
        setup_sql: crate::auth::verifiers::install_sql(PGCACHED_USER),
        ..ClusterOptions::default()
    })?;
    cluster.psql(DEMO_DATABASE, DEMO_SQL)?;
    config.upstream = own_url(&cluster);
    let standby = match standby {
        true => {
            let standby = LocalCluster::start_standby(&cluster)?;
            config.replicas.urls = vec![own_url(&standby)];
            Some(standby)
        }
        false => None,
    };
    if !config.admin_users.iter().any(|user| user == DEMO_ROLE) {
        config.admin_users.push(DEMO_ROLE.to_owned());
    }
    Ok(Demo { cluster, standby })
}

/// A URL of `cluster` with pgcached's own credentials.
fn own_url(cluster: &LocalCluster) -> UpstreamUrl {
    UpstreamUrl {
        hosts: vec![Host {
            name: cluster.host().to_owned(),
            port: cluster.port(),
        }],
        target_session_attrs: TargetSessionAttrs::Any,
        user: Some(PGCACHED_USER.to_owned()),
        password: Some(PGCACHED_PASSWORD.to_owned()),
        database: Some(DEMO_DATABASE.to_owned()),
        sslmode: SslMode::Disable,
        sslrootcert: None,
    }
}

/// The lines printed once the demo is serving.
pub fn banner(config: &Config, demo: &Demo) -> String {
    let cluster = &demo.cluster;
    let standby = match &demo.standby {
        Some(standby) => format!(
            "\x20 standby (throwaway)     {}:{}  cache misses go to it: SHOW REPLICAS\n",
            standby.host(),
            standby.port()
        ),
        None => String::new(),
    };
    let app = format!("postgres://{DEMO_ROLE}@{}/{DEMO_DATABASE}", config.listen);
    let console = format!(
        "postgres://{DEMO_ROLE}@{}/{CONSOLE_DATABASE}",
        config.listen
    );
    format!(
        "pgcached demo\n\
         \x20 PostgreSQL (throwaway)  {}:{}  data in {}\n\
         {standby}\
         \x20 pgcached                {}\n\
         \x20 metrics                 http://{}/metrics\n\n\
         Connect through pgcached (run it again: repeats are answered from the cache):\n\
         \x20 psql \"{app}\" -c 'SELECT * FROM products WHERE id = 1'\n\n\
         See what pgcached did, in its admin console (database {CONSOLE_DATABASE}):\n\
         \x20 psql \"{console}\" -c 'SHOW STATS'\n\
         \x20 psql \"{console}\" -c 'EXPLAIN CACHE SELECT * FROM products WHERE id = 1'\n\n\
         Press Ctrl-C to stop pgcached and remove the cluster.\n",
        cluster.host(),
        cluster.port(),
        cluster.data_dir().display(),
        config.listen,
        config.metrics_listen,
    )
}

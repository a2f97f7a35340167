//! The PostgreSQL cluster a test binary shares, and the options every test cluster starts with.
//!
//! Starting a cluster costs a couple of seconds, so each test binary starts one on first use
//! and keeps it in a static. Statics are never dropped; the cluster's own watchdog removes it
//! when the test process exits. Tests that need a cluster of their own (other settings, a
//! restart) call [`pgcached_local_cluster::LocalCluster::start`] with [`options`] (changed as
//! they need) and drop it at the end.

use std::sync::OnceLock;

use pgcached_local_cluster::users::PGCACHED_USER;
use pgcached_local_cluster::{ClusterOptions, LocalCluster};

static SHARED: OnceLock<LocalCluster> = OnceLock::new();

/// A cluster's options with what pgcached needs installed: its SCRAM verifier function (the
/// one README tells operators to install), in `postgres` and `app`.
pub fn options() -> ClusterOptions {
    ClusterOptions {
        setup_sql: pgcached::auth::verifiers::install_sql(PGCACHED_USER),
        ..ClusterOptions::default()
    }
}

/// The cluster shared by every test of this binary.
pub fn shared_cluster() -> &'static LocalCluster {
    SHARED.get_or_init(|| match LocalCluster::start(options()) {
        Ok(cluster) => cluster,
        Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
    })
}

/// A primary with `setup` run in its `app` database, and a streaming standby of it
/// (`pg_basebackup`, in recovery) taken after the setup.
pub fn primary_and_standby(setup: &str) -> (LocalCluster, LocalCluster) {
    let primary = LocalCluster::start(options()).expect("primary");
    primary.psql("app", setup).expect("setup");
    let standby = LocalCluster::start_standby(&primary).expect("standby");
    assert!(standby.in_recovery().expect("standby state"));
    (primary, standby)
}

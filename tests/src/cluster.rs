//! The PostgreSQL cluster a test binary shares.
//!
//! Starting a cluster costs a couple of seconds, so each test binary starts one on first use
//! and keeps it in a static. Statics are never dropped; the cluster's own watchdog removes it
//! when the test process exits. Tests that need a cluster of their own (other settings, a
//! restart) call [`pgcached::local_cluster::LocalCluster::start`] and drop it at the end.

use std::sync::OnceLock;

use pgcached::local_cluster::{ClusterOptions, LocalCluster};

static SHARED: OnceLock<LocalCluster> = OnceLock::new();

/// The cluster shared by every test of this binary.
pub fn shared_cluster() -> &'static LocalCluster {
    SHARED.get_or_init(|| match LocalCluster::start(ClusterOptions::default()) {
        Ok(cluster) => cluster,
        Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
    })
}

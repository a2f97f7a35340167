//! A streaming standby of a running cluster, for tests of failover and read replicas.
//!
//! [`LocalCluster::start_standby`] copies the primary with `pg_basebackup -R` (which writes
//! `primary_conninfo` and `standby.signal`), so the copy has the same system identifier, the
//! same roles and databases, and follows the primary's WAL; [`LocalCluster::promote`] turns it
//! into a primary on a new timeline. It lives in a directory of its own, listens on its own
//! port, and is stopped and removed on drop like any cluster.

use std::process::{Command, Stdio};

use super::error::io;
use super::os_user::ServerUser;
use super::{users, workdir, LocalCluster, LocalClusterError, HOST};

impl LocalCluster {
    /// Starts a streaming standby of `primary` (which must run), and waits until it accepts
    /// connections. Takes a few seconds.
    pub fn start_standby(primary: &LocalCluster) -> Result<LocalCluster, LocalClusterError> {
        let user = ServerUser::pick()?;
        let dir = workdir::create(&user)?;
        let root = dir.path().to_owned();
        let mut standby = LocalCluster {
            bindir: primary.bindir.clone(),
            dir: Some(dir),
            data_dir: root.join("data"),
            root,
            port: 0,
            user,
            postmaster: None,
            watchdog: None,
        };
        standby.try_rearm(None)?;
        let mut command = Command::new(standby.bindir.join("pg_basebackup"));
        command
            .args(["-h", HOST, "-p", &primary.port.to_string()])
            .args(["-U", users::SUPERUSER])
            .arg("-D")
            .arg(&standby.data_dir)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .current_dir(&standby.root)
            .stdin(Stdio::null());
        standby.user.apply(&mut command, &standby.root);
        let output = command.output().map_err(|e| io("run pg_basebackup", e))?;
        if !output.status.success() {
            return Err(LocalClusterError::Program {
                program: "pg_basebackup".to_owned(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        // The copied settings name the primary's socket directory: use this cluster's own.
        let path = standby.data_dir.join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&path).map_err(|e| io("read postgresql.conf", e))?;
        conf.push_str(&format!(
            "\n# standby\nunix_socket_directories = '{}'\nhot_standby = on\n",
            standby.root.display().to_string().replace('\'', "''")
        ));
        std::fs::write(&path, conf).map_err(|e| io("write postgresql.conf", e))?;
        standby.user.own(&standby.root)?;
        standby.launch()?;
        Ok(standby)
    }

    /// Promotes a standby to primary (`pg_promote`, waiting until it is done): it leaves
    /// recovery on a new timeline and accepts writes.
    pub fn promote(&self) -> Result<(), LocalClusterError> {
        let promoted = self.psql("postgres", "SELECT pg_promote(true, 60)")?;
        if promoted.trim() != "t" {
            return Err(LocalClusterError::Program {
                program: "pg_promote".to_owned(),
                output: promoted,
            });
        }
        Ok(())
    }

    /// Whether the server is in recovery (a standby).
    pub fn in_recovery(&self) -> Result<bool, LocalClusterError> {
        Ok(self.psql("postgres", "SELECT pg_is_in_recovery()")?.trim() == "t")
    }
}

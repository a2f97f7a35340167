//! The `--shared-cache` URL: one Redis/Valkey server, or a cluster given by some of its nodes.
//!
//! `redis://[user:password@]host:port[/db]` (plain), `rediss://…` (TLS), and
//! `redis+cluster://[user:password@]h1:p1,h2:p2,…` or `rediss+cluster://…` for cluster mode,
//! where the nodes listed are where the cluster's layout is first read from.

use std::fmt;

/// A shared-cache URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedUrlError {
    /// Not one of the four schemes.
    #[error("expected redis://, rediss://, redis+cluster:// or rediss+cluster://")]
    Scheme,
    /// No host, or an empty one in a cluster's list.
    #[error("a host is missing")]
    Host,
}

/// Where the shared tier is.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedUrl {
    /// One URL per node, in redis-rs's form (`redis://…` or `rediss://…`); one for a single
    /// server.
    pub nodes: Vec<String>,
    /// Cluster mode.
    pub cluster: bool,
    /// TLS.
    pub tls: bool,
}

impl SharedUrl {
    /// Reads a URL.
    pub fn parse(text: &str) -> Result<SharedUrl, SharedUrlError> {
        let text = text.trim();
        let (scheme, rest) = text.split_once("://").ok_or(SharedUrlError::Scheme)?;
        let (tls, cluster) = match scheme {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+cluster" => (false, true),
            "rediss+cluster" => (true, true),
            _ => return Err(SharedUrlError::Scheme),
        };
        let base = if tls { "rediss" } else { "redis" };
        if !cluster {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            if host.is_empty() || host.starts_with([':', '/']) {
                return Err(SharedUrlError::Host);
            }
            return Ok(SharedUrl {
                nodes: vec![format!("{base}://{rest}")],
                cluster,
                tls,
            });
        }
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, rest),
        };
        let hosts = hosts.split(['/', '?', '#']).next().unwrap_or_default();
        let nodes = hosts
            .split(',')
            .map(|host| {
                let host = host.trim();
                if host.is_empty() {
                    return Err(SharedUrlError::Host);
                }
                Ok(match userinfo {
                    Some(userinfo) => format!("{base}://{userinfo}@{host}"),
                    None => format!("{base}://{host}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SharedUrl {
            nodes,
            cluster,
            tls,
        })
    }

    /// The URL for people: hosts only, no credentials.
    pub fn redacted(&self) -> String {
        let hosts: Vec<&str> = self
            .nodes
            .iter()
            .map(|node| {
                let rest = node.split_once("://").map_or(node.as_str(), |(_, r)| r);
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                host.split(['/', '?', '#']).next().unwrap_or_default()
            })
            .collect();
        let scheme = match (self.tls, self.cluster) {
            (false, false) => "redis",
            (true, false) => "rediss",
            (false, true) => "redis+cluster",
            (true, true) => "rediss+cluster",
        };
        format!("{scheme}://{}", hosts.join(","))
    }
}

impl fmt::Debug for SharedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_servers_and_clusters_parse() {
        let one = SharedUrl::parse("redis://127.0.0.1:6379").expect("valid");
        assert_eq!(one.nodes, vec!["redis://127.0.0.1:6379"]);
        assert!(!one.cluster && !one.tls);
        let tls = SharedUrl::parse("rediss://:secret@cache:6380/2").expect("valid");
        assert!(tls.tls);
        assert_eq!(tls.redacted(), "rediss://cache:6380");
        let cluster =
            SharedUrl::parse("redis+cluster://u:p@10.0.0.1:7000, 10.0.0.2:7001").expect("valid");
        assert!(cluster.cluster);
        assert_eq!(
            cluster.nodes,
            vec!["redis://u:p@10.0.0.1:7000", "redis://u:p@10.0.0.2:7001"]
        );
        assert_eq!(
            cluster.redacted(),
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"
        );
        assert!(!format!("{tls:?}").contains("secret"));
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "memcached://x:1",
            "127.0.0.1:6379",
            "redis://",
            "redis+cluster://a:1,,b:2",
        ] {
            assert!(SharedUrl::parse(bad).is_err(), "{bad}");
        }
    }
}

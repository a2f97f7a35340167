//! The `--upstream` URL:
//! `postgres://[user[:password]@]host[:port][,host[:port]...][/database][?sslmode=..&sslrootcert=..&target_session_attrs=..]`.
//!
//! The credentials are pgcached's own, for its control and replication connections; client
//! sessions always authenticate as themselves. Several hosts, `sslmode`, `sslrootcert` and
//! `target_session_attrs` are spelled and mean what they do in libpq: hosts are tried in order,
//! a host without a port takes 5432 (or the one `port=` of the query), and the first host that
//! accepts a connection and has the asked attributes is the one used ([`super::primary`]).

use std::path::PathBuf;

/// libpq's `sslmode`, for the connection from pgcached to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, without verification; plain otherwise.
    Prefer,
    /// TLS or fail; the certificate is verified only if `sslrootcert` is given (as libpq does).
    Require,
    /// TLS with the certificate chain verified against `sslrootcert`.
    VerifyCa,
    /// TLS with the chain verified and the host name matched.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<SslMode, UpstreamUrlError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(UpstreamUrlError::SslMode(other.to_owned())),
        }
    }
}

/// libpq's `target_session_attrs`: which of the hosts pgcached uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSessionAttrs {
    /// The first host that accepts a connection (libpq's default).
    Any,
    /// The first host where `transaction_read_only` is `off`.
    ReadWrite,
    /// The first host that is not in recovery (`pg_is_in_recovery()` is false).
    Primary,
}

impl TargetSessionAttrs {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::Primary => "primary",
        }
    }

    fn parse(value: &str) -> Result<TargetSessionAttrs, UpstreamUrlError> {
        match value {
            "any" => Ok(TargetSessionAttrs::Any),
            "read-write" => Ok(TargetSessionAttrs::ReadWrite),
            "primary" => Ok(TargetSessionAttrs::Primary),
            "read-only" | "standby" | "prefer-standby" => {
                Err(UpstreamUrlError::StandbyTarget(value.to_owned()))
            }
            other => Err(UpstreamUrlError::TargetSessionAttrs(other.to_owned())),
        }
    }
}

/// One host of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Host name or IP address (brackets removed from IPv6).
    pub name: String,
    /// TCP port.
    pub port: u16,
}

impl Host {
    /// `host:port` for connecting and for messages (`[::1]:5432` for IPv6).
    pub fn address(&self) -> String {
        if self.name.contains(':') {
            format!("[{}]:{}", self.name, self.port)
        } else {
            format!("{}:{}", self.name, self.port)
        }
    }
}

/// A parsed upstream URL.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// The hosts, in the order they are tried; never empty.
    pub hosts: Vec<Host>,
    /// Which host is used.
    pub target_session_attrs: TargetSessionAttrs,
    /// pgcached's own role, if given.
    pub user: Option<String>,
    /// pgcached's own password, if given; never printed.
    pub password: Option<String>,
    /// pgcached's own database for control connections, if given.
    pub database: Option<String>,
    /// TLS policy towards PostgreSQL.
    pub sslmode: SslMode,
    /// CA certificates (PEM) for verification; `system` means the bundled web roots.
    pub sslrootcert: Option<PathBuf>,
}

impl std::fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamUrl")
            .field("hosts", &self.hosts)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

/// Why an upstream URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamUrlError {
    /// Wrong scheme.
    #[error("expected postgres:// or postgresql://, got {0:?}")]
    Scheme(String),
    /// No host.
    #[error("missing host")]
    MissingHost,
    /// Unix-socket hosts are not served.
    #[error("Unix-socket upstreams are not supported; give a TCP host such as 127.0.0.1")]
    UnixSocket,
    /// Port not a number.
    #[error("invalid port {0:?}")]
    Port(String),
    /// Unknown sslmode.
    #[error("unknown sslmode {0:?}: use disable, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    /// Unknown query parameter.
    #[error(
        "unsupported parameter {0:?}: sslmode, sslrootcert, target_session_attrs, host, port, \
         user, password and dbname are understood"
    )]
    Parameter(String),
    /// Unknown target_session_attrs.
    #[error("unknown target_session_attrs {0:?}: use any, read-write or primary")]
    TargetSessionAttrs(String),
    /// A standby asked for: sessions must reach the server the change streams follow.
    #[error(
        "target_session_attrs={0} is not supported: pgcached sends every session to the server \
         its change streams follow; use any, read-write or primary"
    )]
    StandbyTarget(String),
    /// Attributes to check, but no credentials to check them with.
    #[error(
        "target_session_attrs={0} needs pgcached's own credentials in the URL \
         (postgres://pgcached:secret@host1,host2/...) to check the hosts"
    )]
    TargetNeedsUser(&'static str),
    /// More ports than hosts.
    #[error("{ports} ports given for {hosts} hosts")]
    PortCount { hosts: usize, ports: usize },
    /// Verification asked for without roots.
    #[error("sslmode={0} needs sslrootcert (a PEM file, or 'system')")]
    NeedsRootCert(&'static str),
    /// Bad percent-encoding.
    #[error("invalid percent-encoding in {0:?}")]
    Encoding(String),
}

impl UpstreamUrl {
    /// Parses a `postgres://` URL.
    pub fn parse(text: &str) -> Result<UpstreamUrl, UpstreamUrlError> {
        let rest = text
            .strip_prefix("postgres://")
            .or_else(|| text.strip_prefix("postgresql://"))
            .ok_or_else(|| UpstreamUrlError::Scheme(text.to_owned()))?;
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (before_query, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((u, p)) => (Some(decode(u)?), Some(decode(p)?)),
                None => (Some(decode(info)?), None),
            },
            None => (None, None),
        };
        let mut hosts = split_hosts(hostport)?;
        let mut url = UpstreamUrl {
            hosts: Vec::new(),
            target_session_attrs: TargetSessionAttrs::Any,
            user: user.filter(|u| !u.is_empty()),
            password,
            database: match path {
                Some(p) if !p.is_empty() => Some(decode(p)?),
                _ => None,
            },
            sslmode: SslMode::Prefer,
            sslrootcert: None,
        };
        let mut ports: Option<String> = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value)?;
            match key {
                "sslmode" => url.sslmode = SslMode::parse(&value)?,
                "sslrootcert" => url.sslrootcert = Some(PathBuf::from(value)),
                "target_session_attrs" => {
                    url.target_session_attrs = TargetSessionAttrs::parse(&value)?
                }
                "host" if value.starts_with('/') => return Err(UpstreamUrlError::UnixSocket),
                "host" => {
                    hosts = value
                        .split(',')
                        .map(|name| (name.to_owned(), None))
                        .collect()
                }
                "port" => ports = Some(value),
                "user" => url.user = Some(value),
                "password" => url.password = Some(value),
                "dbname" => url.database = Some(value),
                other => return Err(UpstreamUrlError::Parameter(other.to_owned())),
            }
        }
        if let Some(ports) = ports {
            apply_ports(&mut hosts, &ports)?;
        }
        url.hosts = resolve_ports(hosts)?;
        if url.target_session_attrs != TargetSessionAttrs::Any && url.user.is_none() {
            return Err(UpstreamUrlError::TargetNeedsUser(
                url.target_session_attrs.as_str(),
            ));
        }
        match url.sslmode {
            SslMode::VerifyCa if url.sslrootcert.is_none() => {
                return Err(UpstreamUrlError::NeedsRootCert("verify-ca"))
            }
            SslMode::VerifyFull if url.sslrootcert.is_none() => {
                return Err(UpstreamUrlError::NeedsRootCert("verify-full"))
            }
            _ => {}
        }
        Ok(url)
    }

    /// The hosts as `host:port,host:port`, for messages.
    pub fn address(&self) -> String {
        self.hosts
            .iter()
            .map(Host::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first host: the one a single-host URL names.
    pub fn first(&self) -> &Host {
        &self.hosts[0]
    }
}

/// A host as written, with its port if it has one.
type Written = (String, Option<u16>);

/// `host1:port1,host2,[::1]:port3` into hosts and optional ports.
fn split_hosts(list: &str) -> Result<Vec<Written>, UpstreamUrlError> {
    list.split(',').map(split_host_port).collect()
}

fn split_host_port(hostport: &str) -> Result<Written, UpstreamUrlError> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(UpstreamUrlError::MissingHost)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None => None,
        };
        return Ok((host.to_owned(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Ok((decode(host)?, Some(parse_port(port)?))),
        None => Ok((decode(hostport)?, None)),
    }
}

/// `port=5432,5433` (one port for all hosts, or one per host), as libpq reads it.
fn apply_ports(hosts: &mut [Written], ports: &str) -> Result<(), UpstreamUrlError> {
    let ports: Vec<u16> = ports.split(',').map(parse_port).collect::<Result<_, _>>()?;
    match ports.as_slice() {
        [one] => hosts.iter_mut().for_each(|host| host.1 = Some(*one)),
        many if many.len() == hosts.len() => {
            for (host, port) in hosts.iter_mut().zip(many) {
                host.1 = Some(*port);
            }
        }
        many => {
            return Err(UpstreamUrlError::PortCount {
                hosts: hosts.len(),
                ports: many.len(),
            })
        }
    }
    Ok(())
}

/// Every host gets a port: its own, else 5432 (as libpq: `h1,h2:5433` is `h1:5432,h2:5433`;
/// `?port=5433` gives every host that port).
fn resolve_ports(hosts: Vec<Written>) -> Result<Vec<Host>, UpstreamUrlError> {
    let resolved: Vec<Host> = hosts
        .into_iter()
        .map(|(name, port)| Host {
            name,
            port: port.unwrap_or(5432),
        })
        .collect();
    for host in &resolved {
        if host.name.is_empty() {
            return Err(UpstreamUrlError::MissingHost);
        }
        if host.name.starts_with('/') || host.name.starts_with("%2F") {
            return Err(UpstreamUrlError::UnixSocket);
        }
    }
    if resolved.is_empty() {
        return Err(UpstreamUrlError::MissingHost);
    }
    Ok(resolved)
}

fn parse_port(text: &str) -> Result<u16, UpstreamUrlError> {
    text.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| UpstreamUrlError::Port(text.to_owned()))
}

fn decode(text: &str) -> Result<String, UpstreamUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UpstreamUrlError::Encoding(text.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UpstreamUrlError::Encoding(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url_parses() {
        let url = UpstreamUrl::parse(
            "postgresql://pgc%40x:p%3Ass@db.example.com:6543/app?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .expect("valid");
        assert_eq!(url.first().name, "db.example.com");
        assert_eq!(url.first().port, 6543);
        assert_eq!(url.user.as_deref(), Some("pgc@x"));
        assert_eq!(url.password.as_deref(), Some("p:ss"));
        assert_eq!(url.database.as_deref(), Some("app"));
        assert_eq!(url.sslmode, SslMode::VerifyFull);
        assert_eq!(url.sslrootcert, Some(PathBuf::from("/ca.pem")));
        assert!(!format!("{url:?}").contains("p:ss"));
    }

    #[test]
    fn defaults_and_ipv6() {
        let url = UpstreamUrl::parse("postgres://127.0.0.1").expect("valid");
        assert_eq!(url.first().port, 5432);
        assert_eq!(url.sslmode, SslMode::Prefer);
        assert_eq!(url.target_session_attrs, TargetSessionAttrs::Any);
        let url = UpstreamUrl::parse("postgres://[::1]:5433").expect("valid");
        assert_eq!(url.first().name, "::1");
        assert_eq!(url.address(), "[::1]:5433");
    }

    #[test]
    fn several_hosts_parse_as_libpq_reads_them() {
        let url = UpstreamUrl::parse(
            "postgres://u:p@db1:5432,db2:5433,[::1]/app?target_session_attrs=read-write",
        )
        .expect("valid");
        assert_eq!(url.address(), "db1:5432,db2:5433,[::1]:5432");
        assert_eq!(url.target_session_attrs, TargetSessionAttrs::ReadWrite);
        assert_eq!(url.database.as_deref(), Some("app"));
        let url = UpstreamUrl::parse("postgres://db1,db2:6000").expect("valid");
        assert_eq!(url.address(), "db1:5432,db2:6000", "each host its own port");
        let url =
            UpstreamUrl::parse("postgres://u@/app?host=a,b&port=1,2&target_session_attrs=primary")
                .expect("valid");
        assert_eq!(url.address(), "a:1,b:2");
        assert_eq!(url.target_session_attrs, TargetSessionAttrs::Primary);
        let url = UpstreamUrl::parse("postgres:///app?host=a,b&port=7").expect("valid");
        assert_eq!(url.address(), "a:7,b:7");
    }

    #[test]
    fn bad_host_lists_are_refused() {
        assert!(UpstreamUrl::parse("postgres://a,,b").is_err());
        assert!(UpstreamUrl::parse("postgres://a,b?port=1,2,3").is_err());
        assert!(UpstreamUrl::parse("postgres://a?target_session_attrs=fastest").is_err());
        let standby = UpstreamUrl::parse("postgres://a,b?target_session_attrs=standby");
        assert!(matches!(standby, Err(UpstreamUrlError::StandbyTarget(_))));
        assert!(UpstreamUrl::parse("postgres://a,%2Ftmp").is_err());
        let unchecked = UpstreamUrl::parse("postgres://a,b?target_session_attrs=primary");
        assert!(matches!(
            unchecked,
            Err(UpstreamUrlError::TargetNeedsUser(_))
        ));
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(UpstreamUrl::parse("mysql://x").is_err());
        assert!(UpstreamUrl::parse("postgres://h:99999").is_err());
        assert!(UpstreamUrl::parse("postgres://h?sslmode=maybe").is_err());
        assert!(UpstreamUrl::parse("postgres://h?sslmode=verify-full").is_err());
        assert!(UpstreamUrl::parse("postgres://h?colour=blue").is_err());
        assert!(UpstreamUrl::parse("postgres://%2Fvar%2Frun").is_err());
    }
}

//! The `--upstream` URL: `postgres://[user[:password]@]host[:port][/database][?sslmode=..&sslrootcert=..]`.
//!
//! The credentials are pgcached's own, for its control and replication connections; client
//! sessions always authenticate as themselves. `sslmode` and `sslrootcert` are spelled and mean
//! what they do in libpq.

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

/// A parsed upstream URL.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// Host name or IP address (brackets removed from IPv6).
    pub host: String,
    /// TCP port.
    pub port: u16,
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
            .field("host", &self.host)
            .field("port", &self.port)
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
    #[error("unsupported parameter {0:?}: only sslmode and sslrootcert are understood")]
    Parameter(String),
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
        let (host, port) = split_host_port(hostport)?;
        let mut url = UpstreamUrl {
            host,
            port,
            user: user.filter(|u| !u.is_empty()),
            password,
            database: match path {
                Some(p) if !p.is_empty() => Some(decode(p)?),
                _ => None,
            },
            sslmode: SslMode::Prefer,
            sslrootcert: None,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value)?;
            match key {
                "sslmode" => url.sslmode = SslMode::parse(&value)?,
                "sslrootcert" => url.sslrootcert = Some(PathBuf::from(value)),
                "host" if value.starts_with('/') => return Err(UpstreamUrlError::UnixSocket),
                "host" => url.host = value,
                "port" => url.port = value.parse().map_err(|_| UpstreamUrlError::Port(value))?,
                "user" => url.user = Some(value),
                "password" => url.password = Some(value),
                "dbname" => url.database = Some(value),
                other => return Err(UpstreamUrlError::Parameter(other.to_owned())),
            }
        }
        if url.host.is_empty() {
            return Err(UpstreamUrlError::MissingHost);
        }
        if url.host.starts_with('/') || url.host.starts_with("%2F") {
            return Err(UpstreamUrlError::UnixSocket);
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

    /// `host:port` for connecting and for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), UpstreamUrlError> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(UpstreamUrlError::MissingHost)?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None => 5432,
        };
        return Ok((host.to_owned(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => Ok((decode(host)?, parse_port(port)?)),
        None => Ok((decode(hostport)?, 5432)),
    }
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
        assert_eq!(url.host, "db.example.com");
        assert_eq!(url.port, 6543);
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
        assert_eq!(url.port, 5432);
        assert_eq!(url.sslmode, SslMode::Prefer);
        let url = UpstreamUrl::parse("postgres://[::1]:5433").expect("valid");
        assert_eq!(url.host, "::1");
        assert_eq!(url.address(), "[::1]:5433");
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

//! The admin console: connect to the virtual database `pgcached` on pgcached's own port and
//! type commands (`SHOW STATS`, `SHOW CACHE`, `EXPLAIN CACHE ...`, `INVALIDATE TABLE ...`),
//! answered by pgcached itself, in the manner of PgBouncer's console.
//!
//! Who may use it: roles listed in `--admin-users` (none by default: the console is off), whose
//! password PostgreSQL checks ([`auth`]). A role not in the list is told so only after
//! PostgreSQL accepted its credentials, so the list cannot be probed without them.
//!
//! Layout:
//! - [`command`]: the command language.
//! - [`auth`]: the authentication relay.
//! - [`error`]: why a console session ends early, and what its client is told.
//! - [`frames`]: reading client frames, encoding results.
//! - [`extended`]: Parse, Bind, Describe, Execute, Close and Sync.
//! - [`show`], [`explain`], [`invalidate`]: the answers.
//!
//! The console speaks the simple query protocol (psql) and the extended one ([`extended`]), for
//! drivers that always use it; commands take no parameters.

pub mod auth;
pub mod command;
pub mod dependencies;
pub mod error;
pub mod explain;
pub mod extended;
pub mod frames;
pub mod invalidate;
pub mod replicas;
pub mod show;
pub mod upstream;

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::error::{fatal_response, ClientFacing, LogLevel};
use crate::net::Stream;
use crate::session::SessionContext;
use crate::shutdown::{Phase, PhaseReceiver};
use crate::stats::clients::NewClient;
use crate::wire::error_response::sqlstate;
use crate::wire::fixed;
use crate::wire::startup::StartupMessage;
use command::Command;
pub use error::AdminError;
use frames::{read_frame, FrameError, ResultSet, MAX_CLIENT_FRAME};

/// The database name that reaches the console instead of PostgreSQL.
pub const CONSOLE_DATABASE: &str = "pgcached";

/// What the console knows from the configuration.
#[derive(Debug, Clone)]
pub struct Console {
    /// Roles admitted; empty means the console is off.
    pub admin_users: Vec<String>,
    /// The real database console logins are checked against, and `EXPLAIN CACHE`'s default.
    pub database: String,
    /// Effective settings, for `SHOW CONFIG` (no secrets).
    pub settings: Vec<(&'static str, String)>,
    /// When pgcached started.
    pub started: Instant,
}

impl Console {
    /// The console for this configuration.
    pub fn new(config: &Config) -> Console {
        Console {
            admin_users: config.admin_users.clone(),
            database: Console::own_database(config),
            settings: show::settings(config),
            started: Instant::now(),
        }
    }
}

impl Console {
    /// The database of pgcached's own connections: the one in `--upstream`, else `postgres`.
    pub fn own_database(config: &Config) -> String {
        config
            .upstream
            .database
            .clone()
            .unwrap_or_else(|| "postgres".to_owned())
    }
}

/// Serves a client that asked for database `pgcached`, to the end of its session.
pub async fn run(
    mut client: Stream,
    startup: StartupMessage,
    peer: SocketAddr,
    context: &SessionContext,
    mut phase: PhaseReceiver,
) {
    let console = &context.console;
    let user = startup.user().to_owned();
    if console.admin_users.is_empty() {
        let error = AdminError::ConsoleOff;
        refuse(&mut client, &error).await;
        report(context, peer, &user, &error);
        return;
    }
    let login = auth::authenticate(&mut client, &startup, context, &console.database);
    let login = tokio::time::timeout(crate::auth::LOGIN_TIMEOUT, login)
        .await
        .unwrap_or(Err(AdminError::Timeout));
    match login {
        Ok(()) => {}
        Err(AdminError::AuthenticationFailed) => {
            // PostgreSQL's own error has reached the client.
            info!(%peer, user, "admin console login refused by PostgreSQL");
            return;
        }
        Err(error) => {
            let client_gone = matches!(
                error,
                AdminError::Client(_) | AdminError::Login(crate::auth::LoginError::ClientIo(_))
            );
            if !client_gone {
                refuse(&mut client, &error).await;
            }
            report(context, peer, &user, &error);
            return;
        }
    }
    if !console.admin_users.contains(&user) {
        let error = AdminError::NotAdmitted(user.clone());
        refuse(&mut client, &error).await;
        report(context, peer, &user, &error);
        return;
    }
    info!(%peer, user, "admin console session start");
    let registration = context.clients.register(NewClient {
        peer,
        user: &user,
        database: CONSOLE_DATABASE,
        application: startup.parameter("application_name").unwrap_or(""),
        tls: client.is_tls(),
    });
    let result = serve_commands(&mut client, context, &registration.info, &mut phase).await;
    drop(registration);
    let _ = client.shutdown().await;
    match result {
        Ok(()) => debug!(%peer, user, "admin console session end"),
        Err(error) => report(context, peer, &user, &error),
    }
}

/// Tells the client why its console session ends (FATAL, the kind's SQLSTATE and client-safe
/// text) and closes.
async fn refuse(client: &mut Stream, error: &AdminError) {
    let _ = client.write_all(&fatal_response(error)).await;
    let _ = client.flush().await;
    let _ = client.shutdown().await;
}

/// Counts the error and logs it in full (the upstream's address and the cause included).
fn report(context: &SessionContext, peer: SocketAddr, user: &str, error: &AdminError) {
    let kind = error.kind();
    context.metrics.session_error(kind);
    let label = kind.label();
    match kind.log_level() {
        LogLevel::Debug => {
            debug!(%peer, user, kind = label, "admin console session ended: {error}")
        }
        LogLevel::Info => info!(%peer, user, kind = label, "admin console session ended: {error}"),
        LogLevel::Warn => warn!(%peer, user, kind = label, "admin console session ended: {error}"),
    }
}

/// Reads commands until the client leaves or pgcached shuts down.
async fn serve_commands(
    client: &mut Stream,
    context: &SessionContext,
    info: &crate::stats::ClientInfo,
    phase: &mut PhaseReceiver,
) -> Result<(), AdminError> {
    client.write_all(fixed::READY_IDLE).await?;
    client.flush().await?;
    let mut extended = extended::Extended::default();
    loop {
        let frame = tokio::select! {
            frame = read_frame(client, MAX_CLIENT_FRAME) => match frame {
                Ok(frame) => frame,
                Err(FrameError::Length(length)) => {
                    let error = AdminError::ClientProtocol(format!(
                        "message of {length} bytes is too long for the admin console"
                    ));
                    refuse(client, &error).await;
                    return Err(error);
                }
                Err(e) => return Err(e.into()),
            },
            () = stops(phase) => {
                refuse(client, &AdminError::Shutdown).await;
                return Err(AdminError::Shutdown);
            }
        };
        let mut out = bytes::BytesMut::new();
        match frame.tag {
            b'X' => return Ok(()),
            b'Q' => {
                info.query(false);
                match query_text(frame.body()) {
                    Some(text) => match command::parse(text) {
                        Ok(Command::Empty) => out.extend_from_slice(fixed::EMPTY_QUERY),
                        Ok(command) => match execute(command, context).await {
                            Ok(result) => out.extend_from_slice(&result.encode()),
                            Err(e) => out.extend_from_slice(&frames::error(e.code, &e.message)),
                        },
                        Err(e) => {
                            out.extend_from_slice(&frames::error(sqlstate::SYNTAX_ERROR, &e.0))
                        }
                    },
                    None => out.extend_from_slice(&frames::error(
                        sqlstate::PROTOCOL_VIOLATION,
                        "query text is not valid UTF-8",
                    )),
                }
                out.extend_from_slice(fixed::READY_IDLE);
            }
            b'S' => {
                extended.sync();
                out.extend_from_slice(fixed::READY_IDLE);
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                if frame.tag == b'E' {
                    info.query(false);
                }
                extended
                    .on_message(frame.tag, &frame.bytes, context, &mut out)
                    .await;
            }
            b'F' => {
                out.extend_from_slice(&frames::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "the admin console does not take function calls",
                ));
                out.extend_from_slice(fixed::READY_IDLE);
            }
            other => {
                let error = AdminError::ClientProtocol(format!(
                    "unexpected message type {:?} on the admin console",
                    other as char
                ));
                refuse(client, &error).await;
                return Err(error);
            }
        }
        if !out.is_empty() {
            client.write_all(&out).await?;
            client.flush().await?;
        }
    }
}

/// Completes once pgcached leaves the running phase (or the signal is gone).
async fn stops(phase: &mut PhaseReceiver) {
    let stopped = phase.wait_for(|p| *p != Phase::Running).await.is_ok();
    if !stopped {
        std::future::pending::<()>().await;
    }
}

/// The text of a Query message body (NUL-terminated).
fn query_text(body: &[u8]) -> Option<&str> {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    std::str::from_utf8(&body[..end]).ok()
}

/// A command that failed, with the SQLSTATE to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFailed {
    /// SQLSTATE.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

impl CommandFailed {
    fn new(code: &'static str, message: impl Into<String>) -> CommandFailed {
        CommandFailed {
            code,
            message: message.into(),
        }
    }
}

/// The cache, or the error every cache command gives when caching is off.
fn cache_of(
    context: &SessionContext,
) -> Result<&crate::session::caching::CacheShared, CommandFailed> {
    context.cache.as_deref().ok_or_else(|| {
        CommandFailed::new(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            "caching is off (--cache off): nothing is cached",
        )
    })
}

async fn execute(command: Command, context: &SessionContext) -> Result<ResultSet, CommandFailed> {
    match command {
        Command::Show(what) => show::show(what, context).await,
        Command::ExplainCache { database, sql } => explain::explain(database, &sql, context).await,
        Command::InvalidateTable(name) => invalidate::table(&name, context).await,
        Command::InvalidateAll => invalidate::all(context),
        Command::Empty => Ok(ResultSet::command(String::new())),
    }
}

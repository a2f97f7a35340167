//! The `pgcached` binary: parse configuration, start logging and metrics, serve until a signal.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

use pgcached::config::{Cli, Command, Config, LogFormat};
use pgcached::{demo, metrics, Server};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pgcached: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    match run(cli, config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgcached: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, mut config: Config) -> anyhow::Result<()> {
    let cluster = match cli.command {
        Some(Command::Demo { standby }) => Some(demo::start(&mut config, standby)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        metrics::install_exporter(config.metrics_listen)?;
        let server = Server::new(&config)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        info!(
            listen = %config.listen,
            upstream = %config.upstream.address(),
            metrics = %config.metrics_listen,
            tls = config.tls_cert.is_some(),
            "pgcached serving"
        );
        if let Some(demo) = &cluster {
            println!("{}", demo::banner(&config, demo));
        }
        server.serve(listener, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    drop(cluster);
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

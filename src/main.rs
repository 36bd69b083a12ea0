//! The `itnio-otp-grpc` binary: parse and check configuration, bind, run. Nothing else.

use std::process::ExitCode;

use clap::Parser;
use itnio_otp_grpc::{
    config::{Cli, Command},
    sandbox::Sandbox,
    server,
};
use tokio::net::TcpListener;
use tracing::{error, info};

/// `EX_USAGE` from sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let command = match Cli::parse().into_command() {
        Ok(command) => command,
        Err(problem) => {
            eprintln!("configuration error: {problem}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            error!("{problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve(config) => {
            let listeners = server::Listeners {
                grpc: TcpListener::bind(config.listen).await?,
                health: match config.security.health_listen {
                    Some(addr) => Some(TcpListener::bind(addr).await?),
                    None => None,
                },
            };
            server::run_on(*config, listeners, shutdown_signal()).await?;
        }
        Command::Sandbox { listen, config } => {
            let listener = TcpListener::bind(listen).await?;
            info!(addr = %listener.local_addr()?, "ITNIO sandbox listening");
            Sandbox::new(config)
                .serve(listener, shutdown_signal())
                .await?;
        }
    }
    Ok(())
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C received"),
        () = terminate => info!("SIGTERM received"),
    }
}

//! The `itnio-otp-grpc` binary: parse and check configuration, bind, run. Nothing else.

use std::process::ExitCode;

use itnio_otp_grpc::{
    config::{Cli, CliError, Command},
    sandbox::Sandbox,
    server::{self, Listeners},
    telemetry,
};
use tracing::{error, info};

/// `EX_USAGE` from sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

/// mimalloc instead of glibc malloc: under load glibc's malloc/free (mostly `_int_malloc` and
/// `malloc_consolidate`, past its per-thread cache) took 22–25 % of the facade's CPU per
/// upstream-backed call, mimalloc 8 % (perf profile and A/B in BENCHMARKS.md, issue 10).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(CliError::Info(help)) => help.exit(),
        Err(CliError::Invalid(problem)) => {
            eprintln!("configuration error: {problem}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::logging::init(cli.log_format);
    let worker_threads = cli.worker_threads();
    let command = match cli.into_command() {
        Ok(command) => command,
        Err(problem) => {
            eprintln!("configuration error: {problem}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(problem) => {
            error!("cannot start the runtime: {problem}");
            return ExitCode::FAILURE;
        }
    };
    // What the runtime really has, not what was asked for.
    info!(
        worker_threads = runtime.metrics().num_workers(),
        "runtime started"
    );
    match runtime.block_on(run(command)) {
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
            let listeners = Listeners::bind(&config).await?;
            server::serve(*config, listeners, shutdown_signal()).await?;
        }
        Command::Sandbox { listen, config } => {
            let listener = server::bind("the sandbox (HTTP)", listen).await?;
            info!(addr = %listener.local_addr()?, "ITNIO sandbox listening");
            Sandbox::new(config)
                .serve(listener, shutdown_signal())
                .await?;
        }
    }
    Ok(())
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

//! The gRPC server: the five OTP services, health, reflection, and a bounded drain on shutdown.
//!
//! [`run`] takes an already-bound listener and a shutdown future (tests bind port 0 and never
//! sleep). Without ITNIO credentials it first starts the sandbox on a loopback port and points
//! the real HTTP client at it.

use std::{future::Future, time::Duration};

use rand::distr::{Alphanumeric, SampleString};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{server::NamedService, transport::Server};
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{info, warn};

use crate::{
    config::{ServeConfig, UpstreamTarget},
    proto::{
        self,
        v1::{
            app_service_server::AppServiceServer, flow_service_server::FlowServiceServer,
            record_service_server::RecordServiceServer,
            template_service_server::TemplateServiceServer,
            verification_service_server::VerificationServiceServer,
        },
    },
    sandbox::{Sandbox, SandboxConfig},
    service::{
        apps::AppApi, flows::FlowApi, records::RecordApi, templates::TemplateApi,
        verifications::VerificationApi,
    },
    upstream::{UpstreamClient, UpstreamConfig},
    watch::{WatchHub, stopped},
};

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The upstream HTTP client could not be built.
    #[error("cannot build the ITNIO client: {0}")]
    Upstream(String),
    /// The in-process sandbox could not bind its loopback port.
    #[error("cannot start the in-process sandbox: {0}")]
    Sandbox(#[source] std::io::Error),
    /// The gRPC listener is unusable.
    #[error("the gRPC listener is unusable: {0}")]
    Listener(#[source] std::io::Error),
    /// Reflection descriptors could not be loaded.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves gRPC on `listener` until `shutdown` resolves, then drains for at most the grace period.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });

    let upstream = connect_upstream(&config, stop_rx.clone()).await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    set_all(&health, ServingStatus::Serving).await;
    let reflection_v1 = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;

    let router = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AppServiceServer::new(AppApi::new(upstream.clone())))
        .add_service(TemplateServiceServer::new(TemplateApi::new(
            upstream.clone(),
        )))
        .add_service(FlowServiceServer::new(FlowApi::new(upstream.clone())))
        .add_service(VerificationServiceServer::new(VerificationApi::new(
            upstream.clone(),
        )))
        .add_service(RecordServiceServer::new(RecordApi::new(
            upstream.clone(),
            WatchHub::new(upstream, config.watch.clone(), stop_rx.clone()),
        )));

    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    info!(%addr, "gRPC server listening");
    let mut drain_rx = stop_rx.clone();
    let drain_started = async move { stopped(&mut drain_rx).await };
    let server =
        router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            drain_started.await;
            set_all(&health, ServingStatus::NotServing).await;
            info!("shutting down: draining in-flight calls");
        });
    let grace = config.shutdown_grace;
    tokio::select! {
        result = server => result?,
        () = async { stopped(&mut stop_rx).await; tokio::time::sleep(grace).await } => {
            warn!(grace_ms = grace.as_millis() as u64, "drain deadline passed; closing remaining calls");
        }
    }
    info!("gRPC server stopped");
    Ok(())
}

/// Builds the one upstream client of the process, starting the sandbox first when needed.
async fn connect_upstream(
    config: &ServeConfig,
    stop: watch::Receiver<bool>,
) -> Result<UpstreamClient, ServerError> {
    let (base_url, api_key, api_secret) = match &config.upstream {
        UpstreamTarget::Itnio {
            base_url,
            api_key,
            api_secret,
        } => {
            info!(base_url = %base_url, "calling the ITNIO API");
            (
                base_url.clone(),
                api_key.clone(),
                api_secret.expose().to_owned(),
            )
        }
        UpstreamTarget::Sandbox { speed } => start_sandbox(*speed, stop).await?,
    };
    UpstreamClient::new(UpstreamConfig {
        base_url,
        api_key,
        api_secret,
        timeout: config.upstream_timeout,
    })
    .map(|client| client.with_max_response_bytes(config.max_response_bytes))
    .map_err(|e| ServerError::Upstream(e.to_string()))
}

/// Starts the emulator on a loopback port with throwaway credentials; returns how to reach it.
async fn start_sandbox(
    speed: f64,
    mut stop: watch::Receiver<bool>,
) -> Result<(String, String, String), ServerError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(ServerError::Sandbox)?;
    let addr = listener.local_addr().map_err(ServerError::Sandbox)?;
    let mut rng = rand::rng();
    let api_key = Alphanumeric.sample_string(&mut rng, 16);
    let api_secret = Alphanumeric.sample_string(&mut rng, 32);
    let mut sandbox_config = SandboxConfig::new(api_key.clone(), api_secret.clone());
    sandbox_config.speed = speed;
    let sandbox = Sandbox::new(sandbox_config);
    tokio::spawn(async move {
        if let Err(error) = sandbox
            .serve(listener, async move { stopped(&mut stop).await })
            .await
        {
            warn!(%error, "in-process sandbox stopped");
        }
    });
    let base_url = format!("http://{addr}");
    warn!(
        sandbox = %base_url,
        speed,
        "no ITNIO credentials configured: serving against the in-process SANDBOX (no real messages are sent)"
    );
    Ok((base_url, api_key, api_secret))
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The health-checked names of our five services.
const OTP_SERVICES: [&str; 5] = [
    <AppServiceServer<AppApi> as NamedService>::NAME,
    <TemplateServiceServer<TemplateApi> as NamedService>::NAME,
    <FlowServiceServer<FlowApi> as NamedService>::NAME,
    <VerificationServiceServer<VerificationApi> as NamedService>::NAME,
    <RecordServiceServer<RecordApi> as NamedService>::NAME,
];

/// Sets the overall health (`""`) and that of every OTP service.
async fn set_all(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in OTP_SERVICES {
        health.set_service_status(name, status).await;
    }
}

//! The gRPC server: the five OTP services, health, reflection, the telemetry layer, the admin
//! HTTP port, and a bounded drain on shutdown.
//!
//! [`serve`] takes already-bound listeners and a shutdown future (tests bind port 0 and never
//! sleep); [`run`] is the same with only the gRPC port. In sandbox mode it first starts the
//! sandbox on a loopback port and points the real HTTP client at it. This is where the
//! cross-cutting pieces are assembled: the transport limits (see [`crate::transport`]), CORS and
//! the gRPC-Web translation (browsers' preflights never reach a service, and every layer inside
//! sees plain gRPC), the telemetry layer (so refused calls are counted too), the auth layer that
//! attaches the caller, the accounts, TLS on the gRPC listener, the optional plaintext health port
//! and the admin port.
//!
//! Health says SERVING only once the phone number metadata is loaded
//! ([`PhoneRules::warm_up`](crate::phone::PhoneRules::warm_up), on a blocking thread while the
//! rest starts), so the first send after start is as fast as the next ones.
//!
//! Shutdown order: health turns NOT_SERVING and the gRPC drain starts at once; the in-process
//! sandbox, the plaintext health port and the admin port stop only after the drain, so calls in
//! flight finish against the sandbox, probes see NOT_SERVING and Prometheus can scrape while the
//! pod drains.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use rand::distr::{Alphanumeric, SampleString};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{server::NamedService, transport::Server};
use tonic_health::{ServingStatus, server::HealthReporter};
use tonic_web::GrpcWebLayer;
use tracing::{info, warn};

use crate::{
    accounts::Accounts,
    auth::{self, AuthLayer},
    config::{Mode, ServeConfig, UpstreamTarget},
    guard::Guard,
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
    send::SendPipeline,
    service::{
        apps::AppApi, flows::FlowApi, records::RecordApi, templates::TemplateApi,
        verifications::VerificationApi,
    },
    shutdown::stopped,
    store,
    telemetry::{self, RpcLayer},
    tls,
    transport::{self, Connections, MessageSizeLayer, StreamLayer},
    upstream::{ConcurrencyLimit, UpstreamClient, UpstreamConfig},
    watch::WatchHub,
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
    /// A listener could not be bound.
    #[error("cannot listen for {listener} on {addr}: {source}")]
    Bind {
        /// Which listener: `gRPC` or `metrics (admin HTTP)`.
        listener: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The gRPC listener is unusable.
    #[error("the gRPC listener is unusable: {0}")]
    Listener(#[source] std::io::Error),
    /// Reflection descriptors could not be loaded.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The shared state store could not be set up.
    #[error("cannot set up the shared state store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The transport failed.
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The bound sockets of a server process.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC port: every service (TLS when configured).
    pub grpc: TcpListener,
    /// The admin HTTP port (`/metrics`), if served.
    pub admin: Option<TcpListener>,
    /// A plaintext port serving only `grpc.health.v1` (`HEALTH_LISTEN_ADDR`), for probes.
    pub health: Option<TcpListener>,
}

impl Listeners {
    /// Binds the gRPC, metrics and (when configured) health addresses of `config`; an error
    /// names the address and which listener failed.
    pub async fn bind(config: &ServeConfig) -> Result<Self, ServerError> {
        let health = match config.security.health_listen {
            Some(addr) => Some(bind("gRPC health (plaintext)", addr).await?),
            None => None,
        };
        Ok(Self {
            grpc: bind("gRPC", config.listen).await?,
            admin: Some(bind("metrics (admin HTTP)", config.metrics_listen).await?),
            health,
        })
    }
}

/// Binds `addr`, naming `listener` and the address on failure.
pub async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            listener,
            addr,
            source,
        })
}

/// Serves gRPC on `listener` until `shutdown` resolves, then drains for at most the grace period.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listeners = Listeners {
        grpc: listener,
        admin: None,
        health: None,
    };
    serve(config, listeners, shutdown).await
}

/// Serves gRPC (and `/metrics` on the admin listener, health on the plaintext health listener)
/// until `shutdown` resolves, then drains for at most the grace period.
pub async fn serve(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, mut stop_rx) = watch::channel(false);
    crate::task::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });

    // The first send would load libphonenumber's metadata and compile its regular expressions
    // (tens of ms of CPU). A blocking thread does it while the rest starts; health says SERVING
    // only once it is done, so no caller's send pays for it.
    let phones = config.phones;
    let warm_up = tokio::task::spawn_blocking(move || phones.warm_up());

    let mode = config.upstream.mode();
    telemetry::metrics::install();
    telemetry::metrics::build_info(mode.as_str());
    let after_drain = AfterDrain::default();
    let admin = match listeners.admin {
        Some(listener) => Some(start_admin(listener, &after_drain)?),
        None => None,
    };
    let (upstream, sandbox) = connect_upstream(&config, &after_drain).await?;
    let store = store::open(&config.store)?;
    let guard = Guard::new(config.guard.clone(), store.clone());
    let sends = SendPipeline::new(store.clone(), guard.clone(), config.upstream_timeout);
    let security = &config.security;
    let accounts = Accounts::new(upstream);
    let access = auth::start(
        security.callers.as_ref(),
        &accounts,
        security.file_poll_interval,
        stop_rx.clone(),
    )
    .map_err(|e| ServerError::Upstream(e.to_string()))?;
    if security.callers.is_none() && config.upstream.is_live() {
        warn!(
            "no CALLERS_FILE (--allow-unauthenticated): anyone who reaches the port can call every method on the ITNIO account"
        );
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    if warm_up.await.is_err() {
        warn!("warming up the phone number metadata failed: the first send will load it");
    }
    set_all(&health, ServingStatus::Serving).await;
    let reflection_v1 = reflection_builder()?.build_v1()?;
    let reflection_v1alpha = reflection_builder()?.build_v1alpha()?;

    let limits = &config.transport;
    let max_message = limits.max_message_bytes;
    let connections = Connections::new(limits);
    let router = Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .accept_http1(true)
        .layer(StreamLayer::new(
            connections.clone(),
            limits.request_body_timeout,
        ))
        .layer(security.cors_allowed_origins.layer())
        .layer(GrpcWebLayer::new())
        .layer(RpcLayer::new(mode.as_str()))
        .layer(AuthLayer::new(access))
        .layer(MessageSizeLayer::new(max_message))
        .add_service(health_service.clone())
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AppServiceServer::new(AppApi::new(accounts.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            TemplateServiceServer::new(TemplateApi::new(accounts.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            FlowServiceServer::new(FlowApi::new(accounts.clone()))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            VerificationServiceServer::new(VerificationApi::new(
                accounts.clone(),
                sends,
                guard,
                config.phones,
            ))
            .max_decoding_message_size(max_message),
        )
        .add_service(
            RecordServiceServer::new(RecordApi::new(
                accounts,
                WatchHub::new(config.watch.clone(), stop_rx.clone(), store),
            ))
            .max_decoding_message_size(max_message),
        );

    let health_port = listeners
        .health
        .map(|listener| serve_health(listener, health_service, &after_drain))
        .transpose()?;
    let listener = listeners.grpc;
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    let mut drain_rx = stop_rx.clone();
    let drain_started = async move {
        stopped(&mut drain_rx).await;
        set_all(&health, ServingStatus::NotServing).await;
        info!("shutting down: draining in-flight calls");
    };
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> =
        match &security.tls {
            None => {
                info!(%addr, tls = "off", mode = %mode.as_str(), "gRPC server listening");
                let incoming = transport::accept(listener, connections);
                Box::pin(router.serve_with_incoming_shutdown(incoming, drain_started))
            }
            Some(loaded) => {
                let tls_mode = if loaded.source.client_ca.is_some() {
                    "mutual"
                } else {
                    "on"
                };
                info!(%addr, tls = tls_mode, mode = %mode.as_str(), "gRPC server listening");
                let config = tls::start(loaded, security.file_poll_interval, stop_rx.clone());
                let incoming = tls::incoming(listener, connections, config);
                Box::pin(router.serve_with_incoming_shutdown(incoming, drain_started))
            }
        };
    let grace = config.shutdown_grace;
    tokio::select! {
        result = server => result?,
        () = async { stopped(&mut stop_rx).await; tokio::time::sleep(grace).await } => {
            warn!(grace_ms = grace.as_millis() as u64, "drain deadline passed; closing remaining calls");
        }
    }
    info!("gRPC server stopped");
    after_drain
        .stop([sandbox, admin, health_port].into_iter().flatten())
        .await;
    Ok(())
}

/// Tasks that must outlive the gRPC drain, and the signal that ends them after it.
struct AfterDrain {
    tx: watch::Sender<bool>,
}

impl Default for AfterDrain {
    fn default() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }
}

impl AfterDrain {
    /// A future resolving once the drain is over.
    fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move { stopped(&mut rx).await }
    }

    /// Ends the tasks and waits (at most a second: they hold no calls any more) for them.
    async fn stop(self, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        self.tx.send_replace(true);
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

/// Starts `/metrics` on the admin listener until the drain is over.
fn start_admin(
    listener: TcpListener,
    after_drain: &AfterDrain,
) -> Result<JoinHandle<()>, ServerError> {
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    info!(%addr, "metrics listening on http://{addr}/metrics");
    let stop = after_drain.signal();
    Ok(crate::task::spawn(async move {
        if let Err(error) = telemetry::admin::serve(listener, stop).await {
            warn!(%error, "admin HTTP server stopped");
        }
    }))
}

/// Serves only `grpc.health.v1`, in plaintext, until the drain is over: it outlives the drain so
/// probes see NOT_SERVING rather than a refused connection.
fn serve_health<S>(
    listener: TcpListener,
    health_service: S,
    after_drain: &AfterDrain,
) -> Result<JoinHandle<()>, ServerError>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let addr = listener.local_addr().map_err(ServerError::Listener)?;
    info!(%addr, "gRPC health listening (plaintext, grpc.health.v1 only)");
    let server = Server::builder()
        .add_service(health_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), after_drain.signal());
    let task = crate::task::spawn(async move {
        if let Err(error) = server.await {
            warn!(%error, "the health port stopped");
        }
    });
    Ok(task)
}

/// Builds the one upstream client of the process, starting the sandbox first in sandbox mode
/// (its task is returned: it must be stopped after the drain).
async fn connect_upstream(
    config: &ServeConfig,
    after_drain: &AfterDrain,
) -> Result<(UpstreamClient, Option<JoinHandle<()>>), ServerError> {
    let (base_url, api_key, api_secret, sandbox) = match &config.upstream {
        UpstreamTarget::Itnio {
            base_url,
            api_key,
            api_secret,
        } => {
            let shown = telemetry::logging::redact_url(base_url);
            info!(base_url = %shown, mode = %Mode::Live.as_str(), "calling the ITNIO API");
            (
                base_url.clone(),
                api_key.clone(),
                api_secret.expose().to_owned(),
                None,
            )
        }
        UpstreamTarget::Sandbox { speed, listen } => {
            let (base_url, key, secret, task) =
                start_sandbox(*speed, *listen, after_drain.signal()).await?;
            (base_url, key, secret, Some(task))
        }
    };
    let client = UpstreamClient::new_with_http_version(
        UpstreamConfig {
            base_url,
            api_key,
            api_secret,
            timeout: config.upstream_timeout,
        },
        config.http_version,
    )
    .map(|client| {
        client
            .with_max_response_bytes(config.max_response_bytes)
            .with_concurrency_limit(ConcurrencyLimit::new(config.upstream_concurrency))
    })
    .map_err(|e| ServerError::Upstream(e.to_string()))?;
    Ok((client, sandbox))
}

/// Starts the emulator (loopback port 0 unless configured) with throwaway credentials until
/// `stop`; returns how to reach it and its task.
async fn start_sandbox(
    speed: f64,
    listen: std::net::SocketAddr,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(String, String, String, JoinHandle<()>), ServerError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(ServerError::Sandbox)?;
    let addr = listener.local_addr().map_err(ServerError::Sandbox)?;
    let mut rng = rand::rng();
    let api_key = Alphanumeric.sample_string(&mut rng, 16);
    let api_secret = Alphanumeric.sample_string(&mut rng, 32);
    let mut sandbox_config = SandboxConfig::new(api_key.clone(), api_secret.clone());
    sandbox_config.speed = speed;
    let sandbox = Sandbox::new(sandbox_config);
    let task = crate::task::spawn(async move {
        if let Err(error) = sandbox.serve(listener, stop).await {
            warn!(%error, "in-process sandbox stopped");
        }
    });
    let base_url = format!("http://{addr}");
    warn!(
        sandbox = %base_url,
        speed,
        mode = %Mode::Sandbox.as_str(),
        "serving against the in-process SANDBOX (ITNIO_MODE=sandbox, or no ITNIO credentials configured): no real messages are sent"
    );
    info!(inbox = %format!("{base_url}/_sandbox/inbox"), "sandbox inbox: every code it delivers");
    Ok((base_url, api_key, api_secret, task))
}

/// Reflection over our protos, health, and the google.rpc error details (grpcurl decodes
/// ErrorInfo, BadRequest, QuotaFailure and RetryInfo with them).
fn reflection_builder() -> Result<tonic_reflection::server::Builder<'static>, ServerError> {
    let google_rpc =
        proto::google_rpc_descriptor_set().map_err(|e| ServerError::Reflection(e.into()))?;
    Ok(tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_file_descriptor_set(google_rpc))
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

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    // `AfterDrain::stop -> ()` is equivalent (see .cargo/mutants.toml): dropping the AfterDrain
    // drops its sender, which ends the after-drain tasks as well; only the wait for them differs.

    #[tokio::test]
    async fn accepted_plaintext_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Connections::new(&Default::default());
        let mut incoming = std::pin::pin!(transport::accept(listener, connections));
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = incoming
            .next()
            .await
            .expect("a connection")
            .expect("accepted");
        assert!(accepted.get_ref().nodelay().expect("nodelay"));
    }
}

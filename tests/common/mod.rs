//! The one test harness, shared by every test in `tests/` and by the benches in `benches/`
//! (`#[path = "../tests/common/mod.rs"] mod common;`):
//!
//! - this file: the sandbox and the gRPC server in-process on port 0 ([`spawn_app`],
//!   [`start_sandbox`], [`spawn_server`]), clients, and the fixtures every suite needs
//!   ([`app_and_template`], [`SERVICES`]);
//! - [`binary`]: the real binary as a child process, from a clean environment;
//! - [`redis`]: a throwaway `redis-server` on a free loopback port;
//! - [`sockets`]: proofs that a port is closed that no other test can falsify;
//! - [`temp`]: temporary directories.

#![allow(dead_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "test harness: plain tasks for servers and log readers"
)]

pub mod binary;
pub mod redis;
pub mod sockets;
pub mod temp;

use std::{net::SocketAddr, time::Duration};

use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use itnio_otp_grpc::{
    config::{ServeConfig, UpstreamTarget},
    guard::Policy,
    phone::PhoneRules,
    proto::v1::{
        self as pb, app_service_client::AppServiceClient, flow_service_client::FlowServiceClient,
        record_service_client::RecordServiceClient, template_service_client::TemplateServiceClient,
        verification_service_client::VerificationServiceClient,
    },
    sandbox::{Sandbox, SandboxConfig},
    secret::Secret,
    server,
    watch::WatchConfig,
};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::Channel;
use tower_layer::Layer;

pub const API_KEY: &str = "test-key";
pub const API_SECRET: &str = "test-secret";
/// A sandbox test number whose deliveries succeed; its generated code is known.
pub const TEST_NUMBER: &str = "+999 00 1234 5678";
/// The known code of test numbers for a 4-digit numeric template.
pub const TEST_CODE: &str = "1234";
/// The health service names the server reports: the whole server (`""`) and each service.
pub const SERVICES: [&str; 6] = [
    "",
    "itnio.otp.v1.AppService",
    "itnio.otp.v1.TemplateService",
    "itnio.otp.v1.FlowService",
    "itnio.otp.v1.VerificationService",
    "itnio.otp.v1.RecordService",
];

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench binaries without it
/// (`test = false` does not stop an explicit `--benches`), and a minutes-long measurement is no
/// test: say so and stop.
pub fn under_cargo_bench() -> bool {
    let bench = std::env::args().any(|arg| arg == "--bench");
    if !bench {
        eprintln!("not run: a benchmark, started by `cargo bench`, not by `cargo test`");
    }
    bench
}

/// An in-process sandbox serving on a loopback port until `stop` is sent or dropped.
pub struct RunningSandbox {
    pub sandbox: Sandbox,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: SocketAddr,
    pub stop: oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves a sandbox made from `config` on port 0 until [`RunningSandbox::stop`] is sent.
pub async fn start_sandbox(config: SandboxConfig) -> RunningSandbox {
    let (stop, stopped) = oneshot::channel::<()>();
    let (sandbox, addr, task) = serve_sandbox(config, async move {
        let _ = stopped.await;
    })
    .await;
    RunningSandbox {
        sandbox,
        url: format!("http://{addr}"),
        addr,
        stop,
        task,
    }
}

/// Serves a sandbox made from `config` on port 0 until `stop` resolves (`std::future::pending()`:
/// for as long as the runtime runs); returns it, its address and its task.
pub async fn serve_sandbox(
    config: SandboxConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (
    Sandbox,
    SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let sandbox = Sandbox::new(config);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sandbox");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(sandbox.clone().serve(listener, stop));
    (sandbox, addr, task)
}

/// The test credentials, time sped up 100×: the sandbox most tests run against.
pub fn sandbox_config() -> SandboxConfig {
    let mut config = SandboxConfig::new(API_KEY, API_SECRET);
    config.speed = 100.0;
    config
}

/// A running sandbox + gRPC server pair.
pub struct TestApp {
    pub addr: SocketAddr,
    pub sandbox: Sandbox,
    /// Where the sandbox answers, for more servers on the same sandbox.
    pub sandbox_url: String,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn apps(&self) -> AppServiceClient<Channel> {
        AppServiceClient::new(self.channel.clone())
    }
    pub fn templates(&self) -> TemplateServiceClient<Channel> {
        TemplateServiceClient::new(self.channel.clone())
    }
    pub fn flows(&self) -> FlowServiceClient<Channel> {
        FlowServiceClient::new(self.channel.clone())
    }
    pub fn verifications(&self) -> VerificationServiceClient<Channel> {
        VerificationServiceClient::new(self.channel.clone())
    }
    pub fn records(&self) -> RecordServiceClient<Channel> {
        RecordServiceClient::new(self.channel.clone())
    }

    /// Stops the server and waits until it has exited.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    /// Creates an app, a 4-digit numeric template and returns (app_id, template_id).
    pub async fn app_and_template(&self, name: &str) -> (String, String) {
        app_and_template(&self.channel, name).await
    }
}

/// Creates an app and a 4-digit numeric template through `channel`; returns (app_id, template_id).
pub async fn app_and_template(channel: &Channel, name: &str) -> (String, String) {
    let app = AppServiceClient::new(channel.clone())
        .create_app(pb::CreateAppRequest {
            name: format!("{name}-app"),
            ..Default::default()
        })
        .await
        .expect("create app")
        .into_inner()
        .app
        .expect("app");
    let template = TemplateServiceClient::new(channel.clone())
        .create_template(pb::CreateTemplateRequest {
            app_id: app.app_id.clone(),
            name: format!("{name}-tpl"),
            text: "##code## is your code".into(),
            code_length: Some(4),
            ..Default::default()
        })
        .await
        .expect("create template")
        .into_inner()
        .template
        .expect("template");
    (app.app_id, template.template_id)
}

/// Starts a sandbox (time sped up 100×) and the server pointed at it.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the send guard in dry-run (it logs and counts, refuses nothing): for
/// tests that send to one number many times on purpose to exercise the upstream (its error
/// mapping, its own limits), not the guard.
pub async fn spawn_app_unguarded() -> TestApp {
    spawn_app_custom(
        |_| {},
        |config| config.guard = Policy::default().with_dry_run(true),
    )
    .await
}

/// Like [`spawn_app`], with a chance to adjust the sandbox configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut SandboxConfig)) -> TestApp {
    spawn_app_custom(adjust, |_| {}).await
}

/// Like [`spawn_app`], adjusting both the sandbox and the server configuration.
pub async fn spawn_app_custom(
    adjust_sandbox: impl FnOnce(&mut SandboxConfig),
    adjust_server: impl FnOnce(&mut ServeConfig),
) -> TestApp {
    let mut config = sandbox_config();
    adjust_sandbox(&mut config);
    let RunningSandbox {
        sandbox,
        url,
        stop: sandbox_stop,
        ..
    } = start_sandbox(config).await;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut server_config = upstream_config(&url);
    adjust_server(&mut server_config);
    let (addr, server) = spawn_server(server_config, async move {
        let _ = stop_rx.await;
        let _ = sandbox_stop.send(());
    })
    .await;
    TestApp {
        addr,
        sandbox,
        sandbox_url: url,
        channel: connect(addr).await,
        stop: Some(stop_tx),
        server: Some(server),
    }
}

/// A server configuration calling `base_url` with the test credentials.
pub fn upstream_config(base_url: &str) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        upstream: UpstreamTarget::Itnio {
            base_url: base_url.to_owned(),
            api_key: API_KEY.to_owned(),
            api_secret: Secret::new(API_SECRET),
        },
        upstream_timeout: Duration::from_secs(5),
        max_response_bytes: itnio_otp_grpc::upstream::client::DEFAULT_MAX_RESPONSE_BYTES,
        http_version: Default::default(),
        shutdown_grace: Duration::from_secs(2),
        watch: WatchConfig {
            backoff: vec![Duration::from_millis(20), Duration::from_millis(50)],
            max_polls_per_second: 1000,
            flow_settle: Duration::from_millis(1500),
            ..WatchConfig::default()
        },
        security: Default::default(),
        store: Default::default(),
        guard: Default::default(),
        // The servers of these tests call a sandbox as if it were ITNIO: its test numbers apply.
        phones: PhoneRules {
            default_region: None,
            test_numbers: true,
        },
        transport: Default::default(),
        upstream_concurrency: Default::default(),
    }
}

/// Runs the server on port 0 until `shutdown` resolves.
pub async fn spawn_server(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let addr = listener.local_addr().expect("addr");
    let handle = tokio::spawn(async move {
        server::run(config, listener, shutdown)
            .await
            .expect("server runs");
    });
    (addr, handle)
}

/// tonic-web's client over hyper's HTTP/1-only client.
pub type WebTransport = tonic_web::GrpcWebClientService<
    Client<HttpConnector, tonic_web::GrpcWebCall<tonic::body::Body>>,
>;

/// gRPC-Web over HTTP/1.1 only to the server at `addr`: the transport and the origin to pass to
/// a generated client's `with_origin`.
pub fn web_transport(addr: SocketAddr) -> (WebTransport, http::Uri) {
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let origin = format!("http://{addr}").parse().expect("origin uri");
    (tonic_web::GrpcWebClientLayer::new().layer(http1), origin)
}

pub async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// An HTTP/2-only server (h2c with prior knowledge, as `ITNIO_HTTP_VERSION=http2` speaks it)
/// answering every request with an empty flow list; an HTTP/1.1 request fails its handshake.
/// Also returns how many connections it accepted.
pub async fn h2_only_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let head = http::Response::builder()
                        .header("content-type", "application/json")
                        .body(())
                        .expect("response head");
                    if let Ok(mut body) = respond.send_response(head, false) {
                        let reply = br#"{"status":"0","reason":"success","data":[]}"#;
                        let _ = body.send_data(bytes::Bytes::from_static(reply), true);
                    }
                }
            });
        }
    });
    (format!("http://{addr}/otp"), accepted)
}

//! End to end: TLS and mTLS on the gRPC port (certificates made at test time with rcgen),
//! certificate reload, and the plaintext health port.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::{path::PathBuf, time::Duration};

use common::temp::TempDir;

use itnio_otp_grpc::{
    auth,
    config::ServeConfig,
    proto::v1::{self as pb, app_service_client::AppServiceClient},
    reload::Loaded,
    server,
    tls::{self, TlsFiles},
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::{net::TcpListener, sync::oneshot, time::Instant};
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

/// A CA that issues server and client certificates, all in PEM.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, in PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn server(&self) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    fn client(&self, common_name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Serves with TLS from `dir` (server.pem, server.key, and client-ca.pem when `mutual`).
fn use_tls(config: &mut ServeConfig, dir: &TempDir, mutual: bool) {
    let files = TlsFiles {
        cert: dir.0.join("server.pem"),
        key: dir.0.join("server.key"),
        client_ca: mutual.then(|| dir.0.join("client-ca.pem")),
    };
    let attempt = tls::load(&files);
    config.security.tls = Some(Loaded {
        source: files,
        value: std::sync::Arc::new(attempt.result.expect("valid TLS files")),
        fingerprint: attempt.fingerprint,
    });
    config.security.file_poll_interval = Duration::from_millis(50);
}

fn write_server_files(dir: &TempDir, ca: &Ca) {
    let server = ca.server();
    dir.write("server.pem", &server.cert);
    dir.write("server.key", &server.key);
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert, &client.key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await
}

async fn create_app(channel: Channel, token: Option<&str>) -> Result<(), tonic::Status> {
    static APPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut request = Request::new(pb::CreateAppRequest {
        name: format!("tls-app-{n}"),
        ..Default::default()
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    AppServiceClient::new(channel)
        .create_app(request)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn tls_serves_grpc_and_refuses_plaintext() {
    let dir = TempDir::new("plain");
    let ca = Ca::new("server CA");
    write_server_files(&dir, &ca);
    let app = spawn_tls_app(&dir, false, None).await;
    let channel = tls_channel(app.addr, &ca.pem, None)
        .await
        .expect("TLS connect");
    create_app(channel, None).await.expect("call over TLS");
    assert_eq!(app.sandbox.request_count_for("POST /app/add"), 1);

    let lazy = Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect_lazy();
    let plaintext = AppServiceClient::new(lazy)
        .create_app(pb::CreateAppRequest::default())
        .await
        .expect_err("plaintext refused");
    assert_ne!(plaintext.code(), Code::Ok, "{plaintext:?}");
    assert_eq!(app.sandbox.request_count(), 1);
    let other_ca = Ca::new("someone else");
    assert!(tls_channel(app.addr, &other_ca.pem, None).await.is_err());
    app.stop().await;
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_whose_subject_can_name_the_caller() {
    let dir = TempDir::new("mutual");
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    write_server_files(&dir, &server_ca);
    dir.write("client-ca.pem", &client_ca.pem);
    let callers = "[[callers]]\nname = \"checkout\"\nclient_subject = \"CN=checkout, O=Acme\"\nallow = [\"itnio.otp.v1.AppService/*\"]\n";
    let callers = dir.write("callers.toml", callers);
    let app = spawn_tls_app(&dir, true, Some(callers)).await;

    // No client certificate: the handshake (or the first call) fails.
    let without = match tls_channel(app.addr, &server_ca.pem, None).await {
        Ok(channel) => create_app(channel, None).await.is_err(),
        Err(_) => true,
    };
    assert!(without, "a client without a certificate was served");
    // A certificate from another CA is refused too.
    let stranger = Ca::new("stranger").client("checkout");
    let refused = match tls_channel(app.addr, &server_ca.pem, Some(&stranger)).await {
        Ok(channel) => create_app(channel, None).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate of an unknown CA was served");
    assert_eq!(app.sandbox.request_count(), 0);

    // The certificate names the caller: no token needed.
    let checkout = client_ca.client("checkout");
    let channel = tls_channel(app.addr, &server_ca.pem, Some(&checkout))
        .await
        .expect("mTLS connect");
    create_app(channel, None)
        .await
        .expect("caller named by its certificate");
    assert_eq!(app.sandbox.request_count_for("POST /app/add"), 1);

    // A valid certificate that names no caller is UNAUTHENTICATED.
    let nobody = client_ca.client("nobody");
    let channel = tls_channel(app.addr, &server_ca.pem, Some(&nobody))
        .await
        .expect("mTLS connect");
    let status = create_app(channel, None).await.expect_err("no such caller");
    assert_eq!(status.code(), Code::Unauthenticated);
    let reason = status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone());
    assert_eq!(reason.as_deref(), Some("UNKNOWN_CLIENT_CERTIFICATE"));
    assert_eq!(app.sandbox.request_count_for("POST /app/add"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections() {
    let dir = TempDir::new("renew");
    let old_ca = Ca::new("old CA");
    write_server_files(&dir, &old_ca);
    let app = spawn_tls_app(&dir, false, None).await;
    let old_channel = tls_channel(app.addr, &old_ca.pem, None).await.expect("old");

    let new_ca = Ca::new("new CA");
    write_server_files(&dir, &new_ca);
    let started = Instant::now();
    loop {
        if let Ok(channel) = tls_channel(app.addr, &new_ca.pem, None).await {
            create_app(channel, None)
                .await
                .expect("call with the new certificate");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "new certificate not served within 10 s"
        );
        tokio::task::yield_now().await;
    }
    println!(
        "certificate reload latency (50 ms poll): {:?}",
        started.elapsed()
    );
    // The connection made before the renewal carries on.
    create_app(old_channel, None)
        .await
        .expect("old connection still open");
    app.stop().await;
}

#[tokio::test]
async fn the_health_port_serves_only_health_in_plaintext() {
    let dir = TempDir::new("health");
    let ca = Ca::new("server CA");
    write_server_files(&dir, &ca);
    let health_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let health_addr = health_listener.local_addr().expect("addr");
    let app = spawn_tls_app_with(&dir, false, None, Some(health_listener)).await;
    let channel = common::connect(health_addr).await;
    let reply = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "itnio.otp.v1.VerificationService".into(),
        })
        .await
        .expect("plaintext health");
    assert_eq!(reply.into_inner().status, 1, "SERVING");
    let other = create_app(channel, None).await.expect_err("only health");
    assert_eq!(other.code(), Code::Unimplemented, "{other:?}");
    assert_eq!(app.sandbox.request_count(), 0);
    app.stop().await;
}

/// A sandbox and a TLS server, stopped by [`TlsApp::stop`].
struct TlsApp {
    addr: std::net::SocketAddr,
    sandbox: itnio_otp_grpc::sandbox::Sandbox,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl TlsApp {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.expect("server task");
    }
}

async fn spawn_tls_app(dir: &TempDir, mutual: bool, callers: Option<PathBuf>) -> TlsApp {
    spawn_tls_app_with(dir, mutual, callers, None).await
}

async fn spawn_tls_app_with(
    dir: &TempDir,
    mutual: bool,
    callers: Option<PathBuf>,
    health: Option<TcpListener>,
) -> TlsApp {
    let common::RunningSandbox {
        sandbox,
        url,
        stop: sandbox_stop_tx,
        ..
    } = common::start_sandbox(itnio_otp_grpc::sandbox::SandboxConfig::new(
        common::API_KEY,
        common::API_SECRET,
    ))
    .await;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut config = common::upstream_config(&url);
    use_tls(&mut config, dir, mutual);
    if let Some(path) = callers {
        let attempt = auth::file::load(&path);
        config.security.callers = Some(Loaded {
            source: path,
            value: attempt.result.expect("valid callers file"),
            fingerprint: attempt.fingerprint,
        });
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listeners = server::Listeners {
        grpc: listener,
        admin: None,
        health,
    };
    let server = tokio::spawn(async move {
        server::serve(config, listeners, async move {
            let _ = stop_rx.await;
            let _ = sandbox_stop_tx.send(());
        })
        .await
        .expect("server runs");
    });
    TlsApp {
        addr,
        sandbox,
        stop: stop_tx,
        server,
    }
}

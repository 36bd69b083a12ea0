//! End to end, as a platform team runs it: the real binary's mode switch, configuration exits,
//! listener errors, what the kubelet sees (health, drain on SIGTERM), `/metrics`, the access
//! log (request id, JSON format) and that no phone number, code or secret reaches any log line.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    SERVICES,
    binary::{Binary, WAIT},
    sockets::{is_listening, socket_inode},
    temp::TempDir,
};
use itnio_otp_grpc::{
    proto::v1::{
        self as pb, ListFlowsRequest, app_service_client::AppServiceClient,
        flow_service_client::FlowServiceClient,
    },
    server::{self, Listeners},
};
use sha2::Digest;
use tokio_stream::StreamExt;
use tonic::{Code, Request, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The binary as [`common::binary::command`] makes it, its in-process sandbox 100× faster.
fn command(envs: &[(&str, &str)]) -> Command {
    let mut command = common::binary::command(&[("SANDBOX_SPEED", "100")]);
    command.envs(envs.iter().copied());
    command
}

/// Starts [`command`]`(envs)`.
fn start(envs: &[(&str, &str)]) -> Binary {
    Binary::spawn(command(envs))
}

/// Runs the binary to completion; returns its exit code and stderr.
fn run_to_exit(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = command(envs).output().expect("run binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn live_mode_refuses_to_start_without_credentials() {
    let (code, stderr) = run_to_exit(&[("ITNIO_MODE", "live")]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("ITNIO_MODE=live needs ITNIO_API_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn values_that_do_not_parse_exit_64_naming_the_environment_variable() {
    for (name, value, reason) in [
        (
            "GRPC_LISTEN_ADDR",
            "localhost:50051",
            "invalid socket address",
        ),
        ("ITNIO_TIMEOUT", "ten", "is invalid"),
        ("METRICS_LISTEN_ADDR", "9090", "invalid socket address"),
        ("ITNIO_MODE", "production", "expected one of live, sandbox"),
        ("WORKER_THREADS", "0", "number would be zero"),
        (
            "ITNIO_HTTP_VERSION",
            "h3",
            "expected one of auto, http1, http2",
        ),
        ("WORKER_THREADS", "two", "invalid digit"),
    ] {
        let (code, stderr) = run_to_exit(&[(name, value)]);
        assert_eq!(code, Some(64), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}: \"{value}\"")) && stderr.contains(reason),
            "{name}: {stderr}"
        );
    }
    // The sandbox subcommand's own variables; `--mode sandbox` is not the subcommand.
    let output = command(&[("SANDBOX_LISTEN_ADDR", "nowhere")])
        .arg("sandbox")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("SANDBOX_LISTEN_ADDR: \"nowhere\""),
        "{stderr}"
    );
    let output = command(&[("GRPC_LISTEN_ADDR", "nowhere")])
        .args(["--mode", "sandbox"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GRPC_LISTEN_ADDR: \"nowhere\""), "{stderr}");
    // From the command line, the flag is named, in both spellings.
    let output = command(&[("ITNIO_TIMEOUT", "ten")])
        .arg("--upstream-timeout=eleven")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("'eleven' for '--upstream-timeout"),
        "{stderr}"
    );
    let output = command(&[])
        .args(["--upstream-timeout", "ten"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--upstream-timeout"), "{stderr}");
    assert!(!stderr.contains("ITNIO_TIMEOUT"), "{stderr}");
}

#[tokio::test]
async fn ca_roots_are_needed_only_for_an_https_upstream() {
    // No readable CA store (rustls-native-certs reads these first).
    let no_roots = [
        ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
        ("SSL_CERT_DIR", "/nonexistent"),
    ];
    let mut https = vec![
        ("ITNIO_BASE_URL", "https://api.example.test/otp"),
        ("ITNIO_API_KEY", "key"),
        ("ITNIO_API_SECRET", "secret"),
        ("ALLOW_UNAUTHENTICATED", "true"),
    ];
    https.extend(no_roots);
    let mut refused = start(&https);
    let status = refused.exit().await;
    assert_eq!(status.code(), Some(1), "{:#?}", refused.log());
    refused.wait_for("no CA root certificates").await;
    // An http:// upstream (here the in-process sandbox) starts without them.
    let mut sandbox = vec![("ITNIO_MODE", "sandbox")];
    sandbox.extend(no_roots);
    let binary = start(&sandbox);
    FlowServiceClient::new(binary.grpc().await)
        .list_flows(ListFlowsRequest {})
        .await
        .expect("ListFlows without CA roots over http");
}

#[tokio::test]
async fn itnio_http_version_http2_calls_an_http2_only_upstream() {
    let (base_url, _) = common::h2_only_upstream().await;
    for (version, works) in [(None, false), (Some("http1"), false), (Some("http2"), true)] {
        let mut envs = vec![
            ("ITNIO_BASE_URL", base_url.as_str()),
            ("ITNIO_API_KEY", "key"),
            ("ITNIO_API_SECRET", "secret"),
            ("ALLOW_UNAUTHENTICATED", "true"),
        ];
        envs.extend(version.map(|v| ("ITNIO_HTTP_VERSION", v)));
        let binary = start(&envs);
        let reply = FlowServiceClient::new(binary.grpc().await)
            .list_flows(ListFlowsRequest {})
            .await;
        match reply {
            Ok(flows) => assert!(works && flows.get_ref().flows.is_empty(), "{version:?}"),
            Err(status) => assert!(
                !works && status.code() == Code::Unavailable,
                "{version:?}: {status:?}"
            ),
        }
    }
    // The sandbox speaks HTTP/2 too (and HTTP/1.1 on the same port).
    let binary = start(&[("ITNIO_MODE", "sandbox"), ("ITNIO_HTTP_VERSION", "http2")]);
    FlowServiceClient::new(binary.grpc().await)
        .list_flows(ListFlowsRequest {})
        .await
        .expect("ListFlows over HTTP/2 to the sandbox");
}

#[tokio::test]
async fn worker_threads_are_the_cpus_by_default_and_worker_threads_when_set() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (envs, expected) in [
        (vec![("ITNIO_MODE", "sandbox")], cpus),
        (vec![("ITNIO_MODE", "sandbox"), ("WORKER_THREADS", "3")], 3),
    ] {
        let binary = start(&envs);
        let line = binary.wait_for("runtime started").await;
        assert!(
            line.contains(&format!("worker_threads={expected}")),
            "{envs:?}: {line}"
        );
        // And the server it runs answers.
        let channel = binary.grpc().await;
        let reply = health_of(&channel, "").await;
        assert_eq!(*reply.get_ref(), ServingStatus::Serving as i32);
    }
}

#[test]
fn help_and_version_exit_0() {
    for flag in ["--help", "--version"] {
        let output = command(&[]).arg(flag).output().expect("run");
        assert_eq!(output.status.code(), Some(0), "{flag}");
        assert!(!output.stdout.is_empty(), "{flag}");
    }
}

#[test]
fn listener_errors_name_the_listener_and_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, stderr) = run_to_exit(&[("GRPC_LISTEN_ADDR", &addr)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for gRPC on {addr}")),
        "{stderr}"
    );
    let (code, stderr) = run_to_exit(&[("METRICS_LISTEN_ADDR", &addr)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for metrics (admin HTTP) on {addr}")),
        "{stderr}"
    );
}

async fn health_of(channel: &Channel, service: &str) -> tonic::Response<i32> {
    let reply = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("health {service:?}: {e}"));
    let (metadata, message, extensions) = reply.into_parts();
    tonic::Response::from_parts(metadata, message.status, extensions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_mode_ignores_credentials_and_says_so_in_health_and_metrics() {
    let binary = start(&[
        ("ITNIO_MODE", "sandbox"),
        ("ITNIO_API_KEY", "real-looking-key"),
        ("ITNIO_API_SECRET", "real-looking-secret"),
    ]);
    binary.wait_for("in-process SANDBOX").await;
    let channel = binary.grpc().await;
    for service in SERVICES {
        let reply = health_of(&channel, service).await;
        assert_eq!(
            *reply.get_ref(),
            ServingStatus::Serving as i32,
            "{service:?}"
        );
        assert_eq!(
            reply.metadata().get("x-itnio-mode").expect("mode metadata"),
            "sandbox"
        );
    }
    let metrics = scrape(binary.addr("metrics listening").await).await;
    assert_eq!(
        metrics.value("itnio_otp_grpc_build_info", &[("mode", "sandbox")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn health_turns_not_serving_as_soon_as_shutdown_starts() {
    let app = common::spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watches = Vec::new();
    for service in SERVICES {
        let mut updates = health
            .watch(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("watch")
            .into_inner();
        let first = updates.next().await.expect("a status").expect("ok");
        assert_eq!(first.status, ServingStatus::Serving as i32, "{service:?}");
        watches.push(updates);
    }
    let shutdown = tokio::spawn(app.shutdown());
    for (service, mut updates) in SERVICES.into_iter().zip(watches) {
        let next = tokio::time::timeout(WAIT, updates.next())
            .await
            .expect("a status before the deadline")
            .expect("a status")
            .expect("ok");
        assert_eq!(next.status, ServingStatus::NotServing as i32, "{service:?}");
    }
    shutdown.await.expect("server stops");
}

/// The ports that outlive the drain (plaintext health, admin) close once the server has stopped.
///
/// "Closed" is checked on the listening sockets themselves, by inode, not by connecting to their
/// port numbers: once released, a number can be bound by any other test of this binary (or of a
/// concurrent run) before the check, and a refused or accepted connection would then say nothing
/// about this server (CI once saw "127.0.0.1:46649 is still open after the server stopped").
#[tokio::test]
async fn the_health_and_admin_ports_close_when_the_server_stops() {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (grpc, admin, health) = (
        bind().await.expect("bind"),
        bind().await.expect("bind"),
        bind().await.expect("bind"),
    );
    let after_drain = [admin.local_addr(), health.local_addr()].map(|a| a.expect("addr"));
    let sockets = [socket_inode(&admin), socket_inode(&health)];
    let listeners = Listeners {
        grpc,
        admin: Some(admin),
        health: Some(health),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Nothing here calls ITNIO: the upstream address is never dialled.
    let config = common::upstream_config("http://127.0.0.1:9");
    let server = tokio::spawn(server::serve(config, listeners, async move {
        let _ = stopped.await;
    }));
    for (addr, inode) in after_drain.into_iter().zip(sockets) {
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("open while serving");
        assert!(
            is_listening(inode),
            "{addr} (socket {inode}) is not listening"
        );
    }
    stop.send(()).expect("the server is running");
    tokio::time::timeout(WAIT, server)
        .await
        .expect("stops before the deadline")
        .expect("server task")
        .expect("server runs");
    for (addr, inode) in after_drain.into_iter().zip(sockets) {
        assert!(
            !is_listening(inode),
            "{addr} (socket {inode}) is still listening after the server stopped"
        );
    }
}

#[tokio::test]
async fn request_ids_are_returned_and_generated_when_missing() {
    let app = common::spawn_app().await;
    let mut apps = app.apps();
    let mut request = Request::new(pb::GetAppRequest {
        app_id: "nope0000".into(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "caller-chosen-1".parse().expect("ascii"));
    let status = apps.get_app(request).await.expect_err("unknown app");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.metadata().get("x-request-id").expect("request id"),
        "caller-chosen-1"
    );
    let reply = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health");
    let generated = reply.metadata().get("x-request-id").expect("request id");
    assert_eq!(generated.len(), 32, "{generated:?}");
    assert_eq!(reply.metadata().get("x-itnio-mode").expect("mode"), "live");
    app.shutdown().await;
}

/// Sends `count` verifications at once to distinct test numbers, with request ids
/// `inflight-{i}`; returns each outcome.
fn send_many(
    channel: &Channel,
    app_id: &str,
    template_id: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Result<(), tonic::Status>>> {
    (0..count)
        .map(|i| {
            let mut client =
                pb::verification_service_client::VerificationServiceClient::new(channel.clone());
            let mut request = Request::new(pb::SendVerificationRequest {
                app_id: app_id.into(),
                template_id: template_id.into(),
                phone_number: format!("+99900{i:08}"),
                ..Default::default()
            });
            let id = format!("inflight-{i}").parse().expect("ascii");
            request.metadata_mut().insert("x-request-id", id);
            tokio::spawn(async move { client.send_verification(request).await.map(drop) })
        })
        .collect()
}

// In sandbox mode the emulator must outlive the gRPC drain: calls the server has accepted when
// SIGTERM arrives finish with OK instead of failing with UNAVAILABLE (35 of 64 did before).
// Calls the client had not put on the wire before the server's GOAWAY never reach the server
// (no access line): those are the client's to retry and are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_on_sigterm_in_sandbox_mode() {
    const CALLS: usize = 64;
    // 64 sends at once to one number prefix is what the send guard stops: it only logs and
    // counts here, so every call reaches the drain.
    let mut binary = start(&[("ITNIO_MODE", "sandbox"), ("GUARD_DRY_RUN", "true")]);
    let channel = binary.grpc().await;
    let (app_id, template_id) = common::app_and_template(&channel, "ops").await;
    let calls = send_many(&channel, &app_id, &template_id, CALLS);
    // SIGTERM as soon as the server has answered one of them (the rest are then in flight or
    // about to be): woken by the log line, with a deadline, never a fixed sleep.
    binary.wait_for("\"inflight-").await;
    binary.sigterm();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.expect("call task"));
    }
    assert!(binary.exit().await.success());
    let log = binary.log();
    let accepted: Vec<usize> = (0..CALLS)
        .filter(|i| {
            let id = format!("\"inflight-{i}\"");
            log.iter().any(|l| l.contains("rpc") && l.contains(&id))
        })
        .collect();
    let failed: Vec<_> = accepted
        .iter()
        .filter_map(|&i| results[i].as_ref().err())
        .collect();
    eprintln!(
        "in-flight calls failing on SIGTERM: {} of {} accepted ({CALLS} sent)",
        failed.len(),
        accepted.len()
    );
    assert!(
        !accepted.is_empty(),
        "no call reached the server before SIGTERM"
    );
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
}

/// One Prometheus text exposition, parsed: samples by name and label set, and declared types.
struct Exposition {
    samples: Vec<(String, HashMap<String, String>, f64)>,
    types: HashMap<String, String>,
    helps: Vec<String>,
}

impl Exposition {
    /// Parses the text format strictly enough that a malformed line fails the test.
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = HashMap::new();
        let mut helps = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helps.push(rest.split(' ').next().expect("HELP name").to_owned());
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect("}"))),
                None => (series, HashMap::new()),
            };
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name in {line}"
            );
            samples.push((name.to_owned(), labels, value));
        }
        Self {
            samples,
            types,
            helps,
        }
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => value.push(chars.next().expect("escape").1),
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics");
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Exposition::parse(&response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_counters_move() {
    let binary = start(&[]);
    let channel = binary.grpc().await;
    let metrics_addr = binary.addr("metrics listening").await;
    let ok = [
        ("service", "itnio.otp.v1.AppService"),
        ("method", "CreateApp"),
        ("code", "OK"),
    ];
    let before = scrape(metrics_addr).await;
    let before_ok = before
        .value("grpc_server_requests_total", &ok)
        .unwrap_or(0.0);
    let (app_id, template_id) = common::app_and_template(&channel, "ops").await;
    let bad = AppServiceClient::new(channel.clone())
        .create_app(pb::CreateAppRequest {
            name: "ab".into(),
            ..Default::default()
        })
        .await
        .expect_err("too short a name");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut watch = pb::record_service_client::RecordServiceClient::new(channel.clone());
    let sent = pb::verification_service_client::VerificationServiceClient::new(channel.clone())
        .send_verification(pb::SendVerificationRequest {
            app_id,
            template_id,
            phone_number: common::TEST_NUMBER.into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    let mut stream = watch
        .watch_record(pb::WatchRecordRequest {
            selector: Some(pb::watch_record_request::Selector::VerificationId(
                sent.verification_id,
            )),
        })
        .await
        .expect("watch")
        .into_inner();
    stream.message().await.expect("first").expect("message");

    let after = scrape(metrics_addr).await;
    let requests = |labels: &[(&str, &str)]| after.value("grpc_server_requests_total", labels);
    assert_eq!(requests(&ok), Some(before_ok + 1.0));
    assert_eq!(
        requests(&[ok[0], ok[1], ok[2], ("account", "default")]),
        Some(before_ok + 1.0),
        "calls carry their caller's ITNIO account"
    );
    assert_eq!(
        requests(&[("method", "CreateApp"), ("code", "INVALID_ARGUMENT")]),
        Some(1.0)
    );
    assert_eq!(
        after.value(
            "itnio_upstream_requests_total",
            &[("endpoint", "POST /app/add"), ("upstream_status", "0")]
        ),
        Some(1.0),
        "the invalid request never reached the upstream"
    );
    assert_eq!(
        after.value(
            "grpc_server_request_duration_seconds_count",
            &[("method", "SendVerification")]
        ),
        Some(1.0)
    );
    assert_eq!(
        after.types["grpc_server_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        after.types["itnio_upstream_request_duration_seconds"],
        "histogram"
    );
    assert!(
        after.value(
            "itnio_upstream_request_duration_seconds_bucket",
            &[("le", "+Inf")]
        ) >= Some(3.0)
    );
    assert_eq!(
        after.value(
            "grpc_server_requests_in_flight",
            &[("method", "WatchRecord")]
        ),
        Some(1.0)
    );
    assert_eq!(after.value("itnio_watch_streams_open", &[]), Some(1.0));
    assert_eq!(after.value("itnio_watch_pollers_active", &[]), Some(1.0));
    assert!(after.value("itnio_watch_polls_total", &[]) >= Some(1.0));
    assert_eq!(
        after.value("itnio_otp_grpc_build_info", &[("mode", "sandbox")]),
        Some(1.0)
    );
    for name in after.types.keys() {
        assert!(after.helps.contains(name), "{name} has no HELP line");
    }
    drop(stream);
    // The stream's and the poller's gauges fall back when the client goes away.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = scrape(metrics_addr).await;
        let open = |name| now.value(name, &[]);
        if open("itnio_watch_streams_open") == Some(0.0)
            && open("itnio_watch_pollers_active") == Some(0.0)
            && now.value(
                "grpc_server_requests_in_flight",
                &[("method", "WatchRecord")],
            ) == Some(0.0)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "gauges stay up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bearer token of the log-privacy run's one caller.
const LOG_TEST_TOKEN: &str = "log-test-token-5b8d2e";

fn with_log_test_token(mut request: Request<()>) -> Result<Request<()>, tonic::Status> {
    let bearer = format!("Bearer {LOG_TEST_TOKEN}");
    request
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("ascii"));
    Ok(request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_log_of_a_run_holds_no_number_code_secret_or_userinfo() {
    // Live mode against the sandbox subcommand, with a secret file, a base URL carrying userinfo
    // and a callers file (bearer token); JSON logs at debug level from both processes; sends and
    // checks to a test number.
    const KEY: &str = "log-test-key-7f3a";
    const SECRET: &str = "log-test-secret-9c1e";
    const USERINFO: &str = "proxyuser:pr0xy-pa55";
    let debug_json = [("RUST_LOG", "debug"), ("LOG_FORMAT", "json")];
    let mut emulator = command(&debug_json);
    emulator
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .env("SANDBOX_API_KEY", KEY)
        .env("SANDBOX_API_SECRET", SECRET);
    let mut emulator = Binary::spawn(emulator);
    let sandbox_addr = emulator.addr("ITNIO sandbox listening").await;
    let dir = TempDir::new("log-test");
    let secret_file = dir.write("secret", &format!("{SECRET}\n"));
    let base_url = format!("http://{USERINFO}@{sandbox_addr}");
    let token_hash: String = sha2::Sha256::digest(LOG_TEST_TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let callers_file = dir.write(
        "callers.toml",
        &format!(
            "[[callers]]\nname = \"privacy\"\ntoken_sha256 = \"{token_hash}\"\nallow = [\"*\"]\n"
        ),
    );
    let mut facade = start(&[
        debug_json[0],
        debug_json[1],
        ("ITNIO_MODE", "live"),
        ("CALLERS_FILE", callers_file.to_str().expect("utf-8")),
        ("ITNIO_API_KEY", KEY),
        (
            "ITNIO_API_SECRET_FILE",
            secret_file.to_str().expect("utf-8"),
        ),
        ("ITNIO_BASE_URL", &base_url),
        // The standalone sandbox's test numbers, in live mode.
        ("ALLOW_TEST_NUMBERS", "true"),
    ]);
    let channel = facade.grpc().await;
    std::fs::remove_file(&secret_file).ok();

    let app_id = AppServiceClient::with_interceptor(channel.clone(), with_log_test_token)
        .create_app(pb::CreateAppRequest {
            name: "privacy-app".into(),
            ..Default::default()
        })
        .await
        .expect("create app")
        .into_inner()
        .app
        .expect("app")
        .app_id;
    let template_id = pb::template_service_client::TemplateServiceClient::with_interceptor(
        channel.clone(),
        with_log_test_token,
    )
    .create_template(pb::CreateTemplateRequest {
        app_id: app_id.clone(),
        name: "privacy-tpl".into(),
        text: "##code## is your code".into(),
        code_length: Some(6),
        code_type: pb::CodeType::Alpha as i32,
        ..Default::default()
    })
    .await
    .expect("create template")
    .into_inner()
    .template
    .expect("template")
    .template_id;
    let mut verifications =
        pb::verification_service_client::VerificationServiceClient::with_interceptor(
            channel.clone(),
            with_log_test_token,
        );
    // With request ids: their attempts run in tasks of their own, still inside the call.
    let sent = verifications
        .send_verification(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id: template_id.clone(),
            phone_number: common::TEST_NUMBER.into(),
            request_id: "6f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    // The send guard logs what it refuses and what it answers from a pending send: by country
    // and number type, never the number.
    let premium = verifications
        .send_verification(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id: template_id.clone(),
            phone_number: "+44 909 879 0000".into(),
            ..Default::default()
        })
        .await
        .expect_err("premium rate");
    assert_eq!(premium.code(), Code::PermissionDenied);
    let again = verifications
        .send_verification(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id: template_id.clone(),
            phone_number: common::TEST_NUMBER.into(),
            request_id: "7f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            ..Default::default()
        })
        .await
        .expect("pending")
        .into_inner();
    assert!(again.pending);
    for code in ["ZYXWVU", "ABCDEF"] {
        verifications
            .check_verification(pb::CheckVerificationRequest {
                verification_id: sent.verification_id.clone(),
                code: code.into(),
            })
            .await
            .expect("check");
    }
    let mut bad_number = Request::new(pb::SendVerificationRequest {
        app_id,
        template_id,
        phone_number: "+999 00 1234 56789012345".into(),
        ..Default::default()
    });
    bad_number
        .metadata_mut()
        .insert("x-request-id", "privacy-run-1".parse().expect("ascii"));
    let refused = verifications.send_verification(bad_number).await;
    assert_eq!(
        refused.expect_err("too long a number").code(),
        Code::InvalidArgument
    );
    facade.wait_for("privacy-run-1").await;
    facade.sigterm();
    assert!(facade.exit().await.success());
    emulator.sigterm();
    assert!(emulator.exit().await.success());

    let mut lines = facade.log();
    let facade_lines = lines.len();
    lines.extend(emulator.log());
    let forbidden = [
        "9990012345678",
        "0012345678",
        "1234 5678",
        "9098790000",
        "909 879",
        "ABCDEF",
        "ZYXWVU",
        SECRET,
        KEY,
        USERINFO,
        "pr0xy-pa55",
        LOG_TEST_TOKEN,
        &token_hash,
    ];
    for line in &lines {
        for needle in forbidden {
            assert!(!line.contains(needle), "{needle:?} logged: {line}");
        }
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["timestamp"].is_string(),
            "{line}"
        );
    }
    let access: Vec<serde_json::Value> = lines[..facade_lines]
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["message"] == "rpc")
        .collect();
    let send = access
        .iter()
        .find(|l| l["method"] == "SendVerification" && l["code"] == "OK")
        .expect("an access line for the send");
    assert_eq!(send["service"], "itnio.otp.v1.VerificationService");
    assert_eq!(send["level"], "INFO");
    assert_eq!(send["caller"], "privacy", "{send}");
    assert_eq!(send["account"], "default", "{send}");
    assert_eq!(send["upstream_status"], 0);
    assert!(
        send["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{send}"
    );
    assert_eq!(
        send["request_id"].as_str().map(str::len),
        Some(32),
        "{send}"
    );
    let guard: Vec<serde_json::Value> = lines[..facade_lines]
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["target"] == "itnio_otp_grpc::guard")
        .collect();
    assert!(
        guard
            .iter()
            .any(|l| l["reason"] == "DESTINATION_NOT_ALLOWED"
                && l["country"] == "GB"
                && l["number_type"] == "premium_rate"),
        "{guard:?}"
    );
    assert!(
        guard
            .iter()
            .any(|l| l["country"] == "XT" && l["number_type"] == "mobile"),
        "{guard:?}"
    );
    // Every line written during a call (here the guard's, from the send's own task) carries
    // the call's request id, caller and account.
    let in_calls: Vec<serde_json::Value> = lines[..facade_lines]
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["span"]["name"] == "rpc")
        .collect();
    let pending_line = in_calls
        .iter()
        .find(|l| l["target"] == "itnio_otp_grpc::guard" && l["level"] == "INFO")
        .unwrap_or_else(|| {
            panic!(
                "the guard's pending line, inside its call: {:?}",
                &lines[..facade_lines]
            )
        });
    let again_access = access
        .iter()
        .filter(|l| l["method"] == "SendVerification" && l["code"] == "OK")
        .nth(1)
        .expect("the pending send's access line");
    assert_eq!(
        pending_line["span"]["request_id"], again_access["request_id"],
        "{pending_line}"
    );
    for line in &in_calls {
        let span = &line["span"];
        assert!(span["request_id"].is_string(), "{line}");
        if span["service"] != "grpc.health.v1.Health" {
            assert_eq!(
                (&span["caller"], &span["account"]),
                (&serde_json::json!("privacy"), &serde_json::json!("default")),
                "{line}"
            );
        }
    }
    let refused = access
        .iter()
        .find(|l| l["request_id"] == "privacy-run-1")
        .expect("an access line for the refused send");
    assert_eq!(refused["code"], "INVALID_ARGUMENT");
    assert!(refused.get("upstream_status").is_none(), "{refused}");
    assert!(
        lines[..facade_lines]
            .iter()
            .any(|l| l.contains("calling the ITNIO API") && l.contains(&sandbox_addr.to_string())),
        "the redacted base URL is logged"
    );
}

#[tokio::test]
async fn reflection_serves_the_google_rpc_error_detail_files() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = common::spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    for (symbol, file) in [
        ("google.rpc.ErrorInfo", "google/rpc/error_details.proto"),
        ("google.rpc.QuotaFailure", "google/rpc/error_details.proto"),
        ("google.rpc.Status", "google/rpc/status.proto"),
        ("google.protobuf.Duration", "google/protobuf/duration.proto"),
    ] {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
        };
        let reply = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection")
            .into_inner()
            .message()
            .await
            .expect("reply")
            .expect("a message");
        let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
            panic!("{symbol}: expected a file descriptor, got {reply:?}");
        };
        let names: Vec<String> = files
            .file_descriptor_proto
            .iter()
            .map(|bytes| {
                <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice())
                    .expect("descriptor")
                    .name()
                    .to_owned()
            })
            .collect();
        assert!(names.iter().any(|n| n == file), "{symbol}: {names:?}");
    }
    app.shutdown().await;
}

/// An https upstream offering `alpn` (certificates from a CA made here), answering every call
/// with an empty list over whichever protocol was negotiated; records the negotiated protocols.
async fn tls_upstream(alpn: &[&[u8]]) -> (u16, Arc<Mutex<Vec<String>>>, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
        )
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let negotiated = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&negotiated);
    const REPLY: &[u8] = br#"{"status":"0","reason":"success","data":[]}"#;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let protocol = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let protocol = String::from_utf8(protocol.unwrap_or_default()).expect("ascii");
                seen.lock().expect("seen").push(protocol.clone());
                if protocol == "h2" {
                    let Ok(mut connection) = h2::server::handshake(tls).await else {
                        return;
                    };
                    while let Some(Ok((_, mut respond))) = connection.accept().await {
                        let head = http::Response::builder().body(()).expect("head");
                        if let Ok(mut body) = respond.send_response(head, false) {
                            let _ = body.send_data(bytes::Bytes::from_static(REPLY), true);
                        }
                    }
                } else {
                    // One HTTP/1.1 request per connection, then close.
                    let mut request = Vec::new();
                    let mut chunk = [0; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        REPLY.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(REPLY).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (port, negotiated, ca_pem)
}

/// On `https://`, ALPN picks the HTTP version by default: HTTP/2 when the upstream offers it,
/// HTTP/1.1 when it offers only that; `ITNIO_HTTP_VERSION` still forces one.
#[tokio::test]
async fn alpn_chooses_the_upstream_http_version_on_https() {
    let both = tls_upstream(&[b"h2", b"http/1.1"]).await;
    let h1_only = tls_upstream(&[b"http/1.1"]).await;
    let dir = TempDir::new("alpn");
    let cases = [
        (&both, None, Some("h2")),
        (&both, Some("http1"), Some("http/1.1")),
        (&h1_only, None, Some("http/1.1")),
        (&h1_only, Some("http2"), None),
    ];
    for (n, ((port, negotiated, ca_pem), version, expected)) in cases.into_iter().enumerate() {
        let ca_file = dir.write(&format!("ca-{n}.pem"), ca_pem);
        let base_url = format!("https://localhost:{port}/otp");
        let mut envs = vec![
            ("ITNIO_BASE_URL", base_url.as_str()),
            ("ITNIO_API_KEY", "key"),
            ("ITNIO_API_SECRET", "secret"),
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("SSL_CERT_FILE", ca_file.to_str().expect("utf-8 path")),
        ];
        envs.extend(version.map(|v| ("ITNIO_HTTP_VERSION", v)));
        negotiated.lock().expect("negotiated").clear();
        let binary = start(&envs);
        let reply = FlowServiceClient::new(binary.grpc().await)
            .list_flows(ListFlowsRequest {})
            .await;
        let seen = negotiated.lock().expect("negotiated").clone();
        match expected {
            Some(protocol) => {
                assert!(reply.is_ok(), "{version:?}: {reply:?}");
                assert_eq!(seen, [protocol], "{version:?}");
            }
            None => {
                let status = reply.expect_err("no common protocol");
                assert_eq!(status.code(), Code::Unavailable, "{version:?}");
            }
        }
    }
}

//! End to end: the transport limits of the gRPC port and the load shedding of upstream calls,
//! against the real server on port 0 with raw TCP and HTTP/2 attackers. Under each attack
//! Health/Check (on the plaintext health port and, where a connection is free, on the gRPC port)
//! must answer within 100 ms.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::{net::SocketAddr, time::Duration};

use itnio_otp_grpc::{
    config::ServeConfig,
    proto::v1::{
        self as pb, app_service_client::AppServiceClient,
        record_service_client::RecordServiceClient, watch_record_request::Selector,
    },
    server::{self, Listeners},
};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
    time::Instant,
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path_regex},
};

/// How fast Health/Check must answer under attack.
const HEALTH_BUDGET: Duration = Duration::from_millis(100);

/// A running server with its gRPC and plaintext health ports.
struct Running {
    grpc: SocketAddr,
    health: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops within its grace period")
            .expect("server task");
    }
}

/// Starts the server against `base_url` with the test settings, changed by `adjust`.
async fn start(base_url: &str, adjust: impl FnOnce(&mut ServeConfig)) -> Running {
    let mut config = common::upstream_config(base_url);
    config.shutdown_grace = Duration::from_millis(500);
    adjust(&mut config);
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let health = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addrs = (
        grpc.local_addr().expect("addr"),
        health.local_addr().expect("addr"),
    );
    let listeners = Listeners {
        grpc,
        admin: None,
        health: Some(health),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server::serve(config, listeners, async move {
            let _ = stopped.await;
        })
        .await
        .expect("server runs");
    });
    Running {
        grpc: addrs.0,
        health: addrs.1,
        stop: Some(stop),
        task,
    }
}

/// A sandbox on port 0 (time sped up 100×), its base URL and what stops it.
async fn sandbox() -> (String, oneshot::Sender<()>) {
    let running = common::start_sandbox(common::sandbox_config()).await;
    (running.url, running.stop)
}

/// An upstream whose record lookups hang for a minute: watches and GetRecord calls stay open.
async fn stalled_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/verification/record/.*"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(60)))
        .mount(&upstream)
        .await;
    upstream
}

/// Connects a fresh channel and asserts Health/Check answers SERVING within the budget.
async fn health_answers_in_time(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let channel = tokio::time::timeout(HEALTH_BUDGET, common::connect(addr))
        .await
        .expect("connected within the budget");
    let reply = tokio::time::timeout(
        HEALTH_BUDGET,
        HealthClient::new(channel).check(HealthCheckRequest::default()),
    )
    .await
    .expect("Health/Check within the budget")
    .expect("Health/Check succeeds")
    .into_inner();
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 1, "SERVING");
    assert!(elapsed < HEALTH_BUDGET, "Health/Check took {elapsed:?}");
    elapsed
}

/// Waits (at most `within`) for the server to close `tcp`: a read returns EOF or an error.
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0_u8; 64];
    let read = async {
        loop {
            match tcp.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// Polls `condition` every few milliseconds until it holds, failing after `within`.
async fn eventually(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once_and_silent_ones_after_the_handshake_timeout()
{
    let (base_url, _sandbox) = sandbox().await;
    let handshake = Duration::from_millis(1500);
    let server = start(&base_url, |c| {
        c.transport.max_connections = 50;
        c.transport.handshake_timeout = handshake;
    })
    .await;
    // A client that completed its handshake before the flood keeps being served.
    let established = common::connect(server.grpc).await;
    HealthClient::new(established.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health");
    let flood_started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..49 {
        silent.push(TcpStream::connect(server.grpc).await.expect("connect"));
    }
    // Over the cap: accepted and closed before any byte is read.
    for _ in 0..20 {
        let mut refused = TcpStream::connect(server.grpc).await.expect("connect");
        assert!(
            closed_by_server(&mut refused, Duration::from_millis(500)).await,
            "a connection over the cap is closed at once"
        );
    }
    health_answers_in_time(server.health).await;
    let started = Instant::now();
    HealthClient::new(established)
        .check(HealthCheckRequest::default())
        .await
        .expect("an established connection is still served");
    assert!(started.elapsed() < HEALTH_BUDGET);
    // Connections that never send a request are closed once the handshake timeout passes,
    // not before, and free their slots.
    for tcp in &mut silent {
        let left = (flood_started + handshake + Duration::from_secs(3))
            .saturating_duration_since(Instant::now());
        assert!(
            closed_by_server(tcp, left).await,
            "closed after the handshake timeout"
        );
    }
    assert!(flood_started.elapsed() >= handshake - Duration::from_millis(100));
    health_answers_in_time(server.grpc).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_streams_is_closed_after_the_idle_timeout_but_not_while_one_is_open() {
    let upstream = stalled_upstream().await;
    let idle = Duration::from_millis(600);
    let server = start(&upstream.uri(), |c| {
        c.transport.idle_timeout = idle;
        c.upstream_timeout = Duration::from_secs(30);
    })
    .await;
    // Idle after one call: closed about `idle` later.
    let tcp = TcpStream::connect(server.grpc).await.expect("connect");
    let (health, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::post(format!(
        "http://{}/grpc.health.v1.Health/Check",
        server.grpc
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .expect("request");
    let mut health = health.ready().await.expect("ready");
    let (response, mut body) = health.send_request(request, false).expect("send");
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("empty HealthCheckRequest");
    let response = response.await.expect("response");
    assert_eq!(response.status(), 200);
    drop(response);
    let last_stream = Instant::now();
    tokio::time::timeout(idle + Duration::from_secs(3), connection)
        .await
        .expect("the idle connection is closed")
        .expect("connection task")
        .ok();
    assert!(last_stream.elapsed() >= idle - Duration::from_millis(100));

    // A connection with a WatchRecord in progress outlives several idle timeouts.
    let channel = common::connect(server.grpc).await;
    let mut watch = RecordServiceClient::new(channel.clone())
        .watch_record(pb::WatchRecordRequest {
            selector: Some(Selector::VerificationId("42".into())),
        })
        .await
        .expect("watch")
        .into_inner();
    let outlived = tokio::time::timeout(idle * 3, watch.message()).await;
    assert!(outlived.is_err(), "the watch is still open: {outlived:?}");
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("the connection carrying the watch is still open");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_are_capped_and_header_only_streams_end_after_the_body_timeout() {
    let (base_url, _sandbox) = sandbox().await;
    let body_timeout = Duration::from_millis(400);
    let server = start(&base_url, |c| {
        c.transport.max_concurrent_streams = 10;
        c.transport.request_body_timeout = body_timeout;
    })
    .await;
    let tcp = TcpStream::connect(server.grpc).await.expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut send = send.ready().await.expect("ready");
    eventually(Duration::from_secs(2), "the server's SETTINGS", || {
        send.current_max_send_streams() == 10
    })
    .await;
    // 50 streams that send headers and never a body (the client sends 10 at a time, as the
    // server advertised). `ready` before each: h2 refuses a new request while one is still
    // waiting for a free stream slot.
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..50 {
        send = send.ready().await.expect("ready for the next stream");
        let request = http::Request::post(format!(
            "http://{}/itnio.otp.v1.AppService/GetApp",
            server.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
        let (response, body) = send.send_request(request, false).expect("queued");
        held.push((response, body));
    }
    health_answers_in_time(server.health).await;
    health_answers_in_time(server.grpc).await;
    // Each ends with DEADLINE_EXCEEDED once its body is overdue: five rounds of ten.
    for (response, _body) in held {
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("answered")
            .expect("a response");
        assert_eq!(
            response.headers().get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"4"[..]),
            "DEADLINE_EXCEEDED"
        );
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= body_timeout * 5, "held {elapsed:?}");
    assert!(
        elapsed < body_timeout * 5 + Duration::from_secs(3),
        "held {elapsed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_request_message_is_resource_exhausted() {
    let (base_url, _sandbox) = sandbox().await;
    let server = start(&base_url, |c| c.transport.max_message_bytes = 1024).await;
    let channel = common::connect(server.grpc).await;
    let status = AppServiceClient::new(channel.clone())
        .create_app(pb::CreateAppRequest {
            name: "x".repeat(2000),
            ..Default::default()
        })
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "MESSAGE_TOO_LARGE");
    assert_eq!(info.metadata["limit"], "1024");
    // Just under the limit it reaches validation (and the name's own length rule).
    let status = AppServiceClient::new(channel)
        .create_app(pb::CreateAppRequest {
            name: "x".repeat(900),
            ..Default::default()
        })
        .await
        .expect_err("invalid name");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_upstream_concurrency_cap_are_shed_with_retry_info() {
    let upstream = stalled_upstream().await;
    let server = start(&upstream.uri(), |c| {
        c.upstream_concurrency.max = 1;
        c.upstream_concurrency.queue_wait = Duration::from_millis(20);
        c.upstream_timeout = Duration::from_secs(30);
    })
    .await;
    let channel = common::connect(server.grpc).await;
    let get = |id: &str| {
        let mut records = RecordServiceClient::new(channel.clone());
        let request = pb::GetRecordRequest {
            verification_id: id.into(),
        };
        async move { records.get_record(request).await }
    };
    let first = tokio::spawn(get("1"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the first call reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let status = get("2").await.expect_err("shed");
    assert!(started.elapsed() < Duration::from_secs(1), "shed fast");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("error info");
    assert_eq!(info.reason, "UPSTREAM_CONCURRENCY_EXCEEDED");
    assert_eq!(info.metadata["limit"], "1");
    assert!(details.retry_info().is_some(), "RetryInfo");
    assert_eq!(
        upstream.received_requests().await.map(|r| r.len()),
        Some(1),
        "the shed call was not sent"
    );
    health_answers_in_time(server.health).await;
    first.abort();
    server.stop().await;
}

/// Opens a watch of verification `id` on `channel`.
async fn watch(
    channel: &Channel,
    id: &str,
) -> Result<tonic::Streaming<pb::WatchRecordResponse>, tonic::Status> {
    RecordServiceClient::new(channel.clone())
        .watch_record(pb::WatchRecordRequest {
            selector: Some(Selector::VerificationId(id.into())),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_watch_cap_gets_resource_exhausted_and_others_are_not_affected() {
    let upstream = stalled_upstream().await;
    let server = start(&upstream.uri(), |c| {
        c.watch.max_records_per_caller = 3;
        c.upstream_timeout = Duration::from_secs(30);
    })
    .await;
    let channel = common::connect(server.grpc).await;
    let mut open = Vec::new();
    for id in ["1", "2", "3"] {
        open.push(watch(&channel, id).await.expect("within the cap"));
    }
    // A second stream on a record already watched is no new record.
    open.push(watch(&channel, "3").await.expect("same record"));
    let status = watch(&channel, "4").await.expect_err("over the cap");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "WATCH_RECORD_LIMIT_EXCEEDED");
    assert_eq!(info.metadata["limit"], "3");
    // Without authentication each connection is a caller of its own.
    let other = common::connect(server.grpc).await;
    let _theirs = watch(&other, "4")
        .await
        .expect("another connection's own cap");
    // Ending a watch frees its record's slot.
    drop(open.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    let _fourth = loop {
        match watch(&channel, "4").await {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(Instant::now() < deadline, "the slot was freed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(status) => panic!("unexpected {status:?}"),
        }
    };
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_callers_first_message_is_not_queued_behind_another_callers_watches() {
    let (base_url, _sandbox) = sandbox().await;
    let server = start(&base_url, |c| {
        c.watch.max_polls_per_second = 10;
        c.transport.max_concurrent_streams = 1000;
    })
    .await;
    let fresh = common::connect(server.grpc).await;
    let (app_id, template_id) = common::app_and_template(&fresh, "fair").await;
    let sent =
        itnio_otp_grpc::proto::v1::verification_service_client::VerificationServiceClient::new(
            fresh.clone(),
        )
        .send_verification(pb::SendVerificationRequest {
            app_id,
            template_id,
            phone_number: common::TEST_NUMBER.into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    // 200 watches from one connection: in one queue they would take 20 s at 10 polls/s.
    let greedy = common::connect(server.grpc).await;
    let mut held = Vec::new();
    for i in 0..200 {
        held.push(watch(&greedy, &format!("9{i:05}")).await.expect("watch"));
    }
    let started = Instant::now();
    let mut mine = watch(&fresh, &sent.verification_id).await.expect("watch");
    let first = tokio::time::timeout(Duration::from_secs(2), mine.message())
        .await
        .expect("the fresh caller's first message within 2 s, not after the backlog")
        .expect("a message")
        .expect("not the end");
    assert!(first.record.is_some());
    let waited = started.elapsed();
    health_answers_in_time(server.health).await;
    drop(held);
    server.stop().await;
    eprintln!("fresh caller's first message after {waited:?}");
}

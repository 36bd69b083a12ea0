//! End to end: every upstream status and transport failure becomes the documented gRPC status
//! with details; invalid input is refused before any upstream request.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::time::Duration;

use itnio_otp_grpc::proto::v1::{self as pb, LimitUnit};
use tokio::net::TcpListener;
use tonic::{Code, Request};
use tonic_types::StatusExt;

const SEND: &str = "POST /verification/send";

async fn send(app: &common::TestApp, app_id: &str, template_id: &str) -> Result<(), tonic::Status> {
    app.verifications()
        .send_verification(pb::SendVerificationRequest {
            app_id: app_id.into(),
            template_id: template_id.into(),
            phone_number: common::TEST_NUMBER.into(),
            ..Default::default()
        })
        .await
        .map(drop)
}

#[tokio::test]
async fn every_upstream_status_maps_to_its_grpc_code() {
    let app = common::spawn_app_unguarded().await;
    let (app_id, template_id) = app.app_and_template("mapping").await;
    let table = [
        ("-1", Code::Internal, "AUTHENTICATION_ERROR"),
        ("-2", Code::Internal, "IP_RESTRICTED"),
        ("-10", Code::FailedPrecondition, "BALANCE_INSUFFICIENT"),
        ("-18", Code::Unavailable, "SYSTEM_ERROR"),
        ("-20", Code::AlreadyExists, "DATA_EXISTS"),
        ("-21", Code::InvalidArgument, "DATA_VALIDATION"),
        ("-22", Code::InvalidArgument, "PARAMETER_ERROR"),
        ("-23", Code::ResourceExhausted, "DATA_CAP"),
        ("-24", Code::NotFound, "DATA_NOT_FOUND"),
        ("-25", Code::OutOfRange, "OUT_OF_TIME_RANGE"),
        ("-26", Code::FailedPrecondition, "RATE_UNAVAILABLE"),
        ("-27", Code::ResourceExhausted, "PERIOD_TOTAL_LIMIT"),
        ("-28", Code::ResourceExhausted, "PERIOD_PHONE_LIMIT"),
        ("-29", Code::InvalidArgument, "SENSITIVE_WORDS"),
        ("-77", Code::Unknown, "UNKNOWN"),
    ];
    for (upstream, code, reason) in table {
        app.sandbox.inject_status(SEND, upstream, 1);
        let status = send(&app, &app_id, &template_id).await.expect_err(upstream);
        assert_eq!(status.code(), code, "status {upstream}");
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.domain, "itniotech.com");
        assert_eq!(info.reason, reason, "status {upstream}");
        assert_eq!(info.metadata["upstream_status"], upstream);
        assert_eq!(info.metadata["endpoint"], SEND);
        let quota = matches!(upstream, "-23" | "-27" | "-28");
        assert_eq!(
            details.quota_failure().is_some(),
            quota,
            "status {upstream}"
        );
        assert!(
            !status.message().contains("99900"),
            "no phone number in messages"
        );
    }
    send(&app, &app_id, &template_id)
        .await
        .expect("injection is used up");
    app.shutdown().await;
}

#[tokio::test]
async fn expired_timestamp_is_resigned_and_retried_once() {
    let app = common::spawn_app_unguarded().await;
    let (app_id, template_id) = app.app_and_template("resign").await;
    let before = app.sandbox.request_count_for(SEND);
    app.sandbox.inject_status(SEND, "-16", 1);
    send(&app, &app_id, &template_id)
        .await
        .expect("retry succeeds");
    assert_eq!(app.sandbox.request_count_for(SEND) - before, 2);

    app.sandbox.inject_status(SEND, "-16", 2);
    let status = send(&app, &app_id, &template_id)
        .await
        .expect_err("still expired");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(app.sandbox.request_count_for(SEND) - before, 4);
    app.shutdown().await;
}

#[tokio::test]
async fn real_period_limits_are_resource_exhausted() {
    let app = common::spawn_app_unguarded().await;
    let limited = app
        .apps()
        .create_app(pb::CreateAppRequest {
            name: "limited".into(),
            period_phone_send_limit: Some(pb::PeriodLimit {
                enabled: true,
                unit: LimitUnit::Hour as i32,
                period: 1,
                limit: 1,
            }),
            ..Default::default()
        })
        .await
        .expect("app")
        .into_inner()
        .app
        .expect("app");
    let template = app
        .templates()
        .create_template(pb::CreateTemplateRequest {
            app_id: limited.app_id.clone(),
            name: "limited-tpl".into(),
            text: "##code##".into(),
            ..Default::default()
        })
        .await
        .expect("template")
        .into_inner()
        .template
        .expect("template");
    send(&app, &limited.app_id, &template.template_id)
        .await
        .expect("first send");
    let status = send(&app, &limited.app_id, &template.template_id)
        .await
        .expect_err("second send");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .expect("info")
            .reason,
        "PERIOD_PHONE_LIMIT"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_never_reach_the_upstream() {
    let app = common::spawn_app().await;
    let before = app.sandbox.request_count();
    let status = app
        .verifications()
        .send_verification(pb::SendVerificationRequest {
            app_id: "x".into(),
            template_id: "not-a-number".into(),
            phone_number: "12-34".into(),
            channel: 9,
            order_id: "o".repeat(65),
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<_> = details
        .bad_request()
        .expect("bad request")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(
        fields,
        [
            "app_id",
            "template_id",
            "phone_number",
            "channel",
            "order_id"
        ]
    );
    assert_eq!(
        details.error_info().expect("info").reason,
        "INVALID_REQUEST"
    );
    assert!(!status.message().contains("12-34"));

    let status = app
        .apps()
        .create_app(pb::CreateAppRequest {
            name: "ab".into(),
            code_expiry_minutes: Some(61),
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(
        status
            .get_error_details()
            .bad_request()
            .expect("bad")
            .field_violations
            .len(),
        2
    );
    let status = app
        .flows()
        .create_flow(pb::CreateFlowRequest {
            name: "flow-name".into(),
            nodes: vec![],
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = app
        .verifications()
        .check_verification(pb::CheckVerificationRequest {
            verification_id: "22206051443051000003".into(),
            code: "123".into(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        app.sandbox.request_count(),
        before,
        "no upstream request was made"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_is_unavailable() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let (addr, _server) =
        common::spawn_server(common::upstream_config(&base_url), std::future::pending()).await;
    let mut apps = pb::app_service_client::AppServiceClient::new(common::connect(addr).await);
    let status = apps
        .get_app(pb::GetAppRequest {
            app_id: "mRELxtHc".into(),
        })
        .await
        .expect_err("unreachable");
    assert_eq!(status.code(), Code::Unavailable);
    let details = status.get_error_details();
    assert_eq!(
        details.error_info().expect("info").reason,
        "UPSTREAM_UNREACHABLE"
    );
    assert!(details.retry_info().is_some());
}

#[tokio::test]
async fn silent_upstream_hits_the_callers_deadline() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}", silent.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let (addr, _server) =
        common::spawn_server(common::upstream_config(&base_url), std::future::pending()).await;
    let mut apps = pb::app_service_client::AppServiceClient::new(common::connect(addr).await);
    let mut request = Request::new(pb::GetAppRequest {
        app_id: "mRELxtHc".into(),
    });
    // 2 s: the server gives up 200 ms before the caller's own timer fires, enough head start for
    // its DEADLINE_EXCEEDED to arrive first even on a busy machine.
    request.set_timeout(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let status = apps.get_app(request).await.expect_err("timeout");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .expect("info")
            .reason,
        "UPSTREAM_TIMEOUT"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 5 s upstream timeout was shortened"
    );
}

#[tokio::test]
async fn http_errors_are_unavailable_only_when_a_retry_can_help() {
    use wiremock::{Mock, ResponseTemplate, matchers::path};
    let upstream = wiremock::MockServer::start().await;
    let table = [
        (429, Code::Unavailable),
        (500, Code::Unavailable),
        (503, Code::Unavailable),
        (400, Code::Internal),
        (404, Code::Internal),
    ];
    for (http, _) in table {
        Mock::given(path(format!("/app/details/http{http:04}")))
            .respond_with(ResponseTemplate::new(http))
            .mount(&upstream)
            .await;
    }
    let (addr, _server) = common::spawn_server(
        common::upstream_config(&upstream.uri()),
        std::future::pending(),
    )
    .await;
    let mut apps = pb::app_service_client::AppServiceClient::new(common::connect(addr).await);
    for (http, code) in table {
        let status = apps
            .get_app(pb::GetAppRequest {
                app_id: format!("http{http:04}"),
            })
            .await
            .expect_err("HTTP error");
        assert_eq!(status.code(), code, "HTTP {http}");
        let details = status.get_error_details();
        let info = details.error_info().expect("info");
        assert_eq!(info.reason, "UPSTREAM_HTTP_ERROR", "HTTP {http}");
        assert_eq!(info.metadata["http_status"], http.to_string());
        assert_eq!(
            details.retry_info().is_some(),
            code == Code::Unavailable,
            "RetryInfo for HTTP {http}"
        );
    }
}

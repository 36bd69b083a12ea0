//! End to end: gRPC-Web on the gRPC port, from tonic-web's own client over HTTP/1.1, and the
//! CORS policy a browser sees (`CORS_ALLOWED_ORIGINS`).

mod common;

use common::{WebTransport, web_transport};
use std::{net::SocketAddr, time::Duration};

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, ORIGIN,
};
use itnio_otp_grpc::{
    proto::v1::{
        self as pb, RecordChange, app_service_client::AppServiceClient,
        record_service_client::RecordServiceClient, watch_record_request::Selector,
    },
    web::AllowedOrigins,
};
use tonic::Code;
use tonic_types::StatusExt;

const ALLOWED: &str = "https://console.example.com";

async fn spawn_web_app() -> common::TestApp {
    common::spawn_app_custom(
        |_| {},
        |config| {
            config.security.cors_allowed_origins =
                AllowedOrigins::parse(&format!("{ALLOWED}, http://localhost:3000"))
                    .expect("origins");
        },
    )
    .await
}

/// An AppService client speaking gRPC-Web over HTTP/1.1 only.
fn web_client(addr: SocketAddr) -> AppServiceClient<WebTransport> {
    let (transport, origin) = web_transport(addr);
    AppServiceClient::with_origin(transport, origin)
}

#[tokio::test]
async fn a_unary_call_over_grpc_web_on_http1_reaches_the_upstream() {
    let app = spawn_web_app().await;
    let before = app.sandbox.request_count_for("POST /app/add");
    let created = web_client(app.addr)
        .create_app(pb::CreateAppRequest {
            name: "web-app".into(),
            ..Default::default()
        })
        .await
        .expect("create over gRPC-Web")
        .into_inner()
        .app
        .expect("app");
    assert_eq!(created.name, "web-app");
    assert_eq!(app.sandbox.request_count_for("POST /app/add"), before + 1);
    // The same app, read back over native gRPC (HTTP/2) on the same port.
    let fetched = app
        .apps()
        .get_app(pb::GetAppRequest {
            app_id: created.app_id.clone(),
        })
        .await
        .expect("get over gRPC")
        .into_inner()
        .app
        .expect("app");
    assert_eq!(fetched.name, "web-app");
    app.shutdown().await;
}

#[tokio::test]
async fn an_error_over_grpc_web_keeps_its_code_and_details() {
    let app = spawn_web_app().await;
    let status = web_client(app.addr)
        .create_app(pb::CreateAppRequest {
            name: "x".into(),
            ..Default::default()
        })
        .await
        .expect_err("a one-letter name is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let bad = details.bad_request().expect("BadRequest");
    assert_eq!(bad.field_violations[0].field, "name");
    assert_eq!(app.sandbox.request_count_for("POST /app/add"), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn watch_record_streams_over_grpc_web_until_the_final_message() {
    let app = spawn_web_app().await;
    let (app_id, template_id) = app.app_and_template("webwatch").await;
    let sent = app
        .verifications()
        .send_verification(pb::SendVerificationRequest {
            app_id,
            template_id,
            phone_number: common::TEST_NUMBER.into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    let (transport, origin) = web_transport(app.addr);
    let mut stream = RecordServiceClient::with_origin(transport, origin)
        .watch_record(pb::WatchRecordRequest {
            selector: Some(Selector::VerificationId(sent.verification_id.clone())),
        })
        .await
        .expect("watch over gRPC-Web")
        .into_inner();
    let first = next(&mut stream).await.expect("the initial message");
    assert_eq!(first.changes, [RecordChange::Initial as i32]);
    app.verifications()
        .check_verification(pb::CheckVerificationRequest {
            verification_id: sent.verification_id,
            code: common::TEST_CODE.into(),
        })
        .await
        .expect("check");
    let mut last = first;
    for _ in 0..50 {
        if last.r#final {
            break;
        }
        last = next(&mut stream)
            .await
            .expect("more messages until the final one");
    }
    assert!(last.r#final, "no final message among 50");
    assert!(next(&mut stream).await.is_none(), "the stream ends with OK");
    app.shutdown().await;
}

/// The next message of `stream`, within 10 s.
async fn next(
    stream: &mut tonic::Streaming<pb::WatchRecordResponse>,
) -> Option<pb::WatchRecordResponse> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message in time")
        .expect("not an error")
}

/// An HTTP/1.1 preflight for a gRPC-Web call from `origin`.
async fn preflight(addr: SocketAddr, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{addr}/itnio.otp.v1.AppService/GetApp"),
        )
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,x-grpc-web,authorization,grpc-timeout",
        )
        .send()
        .await
        .expect("preflight")
}

fn header<'a>(response: &'a reqwest::Response, name: &http::HeaderName) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("ascii header"))
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_for_grpc_web() {
    let app = spawn_web_app().await;
    let response = preflight(app.addr, ALLOWED).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, &ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(ALLOWED)
    );
    assert_eq!(
        header(&response, &ACCESS_CONTROL_ALLOW_METHODS),
        Some("POST")
    );
    // Browsers may cache the answer for two hours.
    assert_eq!(header(&response, &ACCESS_CONTROL_MAX_AGE), Some("7200"));
    let allowed_headers = header(&response, &ACCESS_CONTROL_ALLOW_HEADERS).expect("headers");
    for needed in [
        "content-type",
        "x-grpc-web",
        "authorization",
        "grpc-timeout",
    ] {
        assert!(
            allowed_headers.contains(needed),
            "{needed} in {allowed_headers}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_permission() {
    let app = spawn_web_app().await;
    for origin in [
        "https://evil.example",
        "https://console.example.com.evil.example",
    ] {
        let response = preflight(app.addr, origin).await;
        assert_eq!(
            header(&response, &ACCESS_CONTROL_ALLOW_ORIGIN),
            None,
            "{origin}"
        );
    }
    app.shutdown().await;
}

#[tokio::test]
async fn by_default_no_origin_is_allowed() {
    let app = common::spawn_app().await;
    let response = preflight(app.addr, ALLOWED).await;
    assert_eq!(header(&response, &ACCESS_CONTROL_ALLOW_ORIGIN), None);
    app.shutdown().await;
}

#[tokio::test]
async fn a_browser_call_from_an_allowed_origin_may_read_the_grpc_status() {
    let app = spawn_web_app().await;
    // GetApp with an empty request: refused before any upstream call, as a trailers-only reply
    // whose status a browser may read only if the header is exposed.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/itnio.otp.v1.AppService/GetApp",
            app.addr
        ))
        .header(ORIGIN, ALLOWED)
        .header(CONTENT_TYPE, "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("gRPC-Web call");
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, &CONTENT_TYPE),
        Some("application/grpc-web+proto")
    );
    assert_eq!(
        header(&response, &ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(ALLOWED)
    );
    let exposed = header(&response, &ACCESS_CONTROL_EXPOSE_HEADERS).expect("exposed");
    for needed in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(needed), "{needed} in {exposed}");
    }
    assert_eq!(
        header(&response, &"grpc-status".parse().expect("name")),
        Some("3")
    );
    app.shutdown().await;
}

//! End to end: the real binary (sandbox by default), health checking and graceful shutdown.

mod common;

use std::time::Duration;

use common::{SERVICES, binary::Binary};
use itnio_otp_grpc::proto::v1::{self as pb, app_service_client::AppServiceClient};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_reports_every_service_serving() {
    let app = common::spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in SERVICES {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn binary_defaults_to_the_sandbox_and_stops_on_sigterm() {
    let mut binary = Binary::start(&[]);
    let before = binary.lines_before("gRPC server listening").await;
    assert!(
        before.iter().any(|l| l.contains("in-process SANDBOX")),
        "{before:#?}"
    );
    let addr = binary.addr("gRPC server listening").await;
    let mut apps = AppServiceClient::new(common::connect(addr).await);
    let app = apps
        .create_app(pb::CreateAppRequest {
            name: "from-binary".into(),
            ..Default::default()
        })
        .await
        .expect("create app against the in-process sandbox")
        .into_inner();
    assert_eq!(app.app.expect("app").name, "from-binary");
    let started = tokio::time::Instant::now();
    let status = binary.terminate().await;
    assert!(status.success(), "graceful exit, got {status:?}");
    // The default grace is 10 s; an idle client connection must not hold the drain open.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained in {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_configuration_exits_64_before_binding() {
    let output = common::binary::command(&[("ITNIO_API_KEY", "key-without-secret")])
        .output()
        .expect("run binary");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ITNIO_API_KEY and an API secret must be set together"),
        "{stderr}"
    );
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let mut binary = Binary::start(&[
        ("ITNIO_API_KEY", "visible-key"),
        ("ITNIO_API_SECRET", "very-secret-value"),
        ("ITNIO_BASE_URL", "http://127.0.0.1:9"),
        ("ALLOW_UNAUTHENTICATED", "true"),
        ("RUST_LOG", "debug"),
    ]);
    binary.wait_for("gRPC server listening").await;
    binary.terminate().await;
    let lines = binary.log();
    assert!(lines.iter().any(|l| l.contains("calling the ITNIO API")));
    assert!(
        lines.iter().all(|l| !l.contains("very-secret-value")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_every_service() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = common::spawn_app().await;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let mut replies = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1 reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("a message");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for service in SERVICES.iter().skip(1).chain(&["grpc.health.v1.Health"]) {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let mut replies = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("a message");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("expected a service list from v1alpha");
    };
    let mut alpha_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    alpha_names.sort();
    // Each reflection version lists itself; everything else is the same list.
    let v1_name = |n: &String| n.replace(".v1alpha.", ".v1.");
    let alpha_as_v1: Vec<String> = alpha_names.iter().map(v1_name).collect();
    assert_eq!(alpha_as_v1, names, "v1alpha lists what v1 lists");
    assert!(alpha_names.contains(&"grpc.reflection.v1alpha.ServerReflection".to_owned()));
    app.shutdown().await;
}

#[tokio::test]
async fn sandbox_subcommand_serves_the_emulator_alone() {
    let mut command = common::binary::command(&[]);
    command.args(["sandbox", "--listen", "127.0.0.1:0"]);
    let mut binary = Binary::spawn(command);
    let addr = binary.addr("ITNIO sandbox listening").await;
    let stats: serde_json::Value = reqwest::get(format!("http://{addr}/_sandbox/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["total"], 0);
    // Unsigned API calls are refused like the vendor does: HTTP 200, status "-1".
    let reply: serde_json::Value = reqwest::get(format!("http://{addr}/template/list"))
        .await
        .expect("call")
        .json()
        .await
        .expect("json");
    assert_eq!(reply["status"], "-1");
    assert!(binary.terminate().await.success());
}

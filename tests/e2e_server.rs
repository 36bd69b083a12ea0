//! End to end: the real binary (sandbox by default), health checking and graceful shutdown.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use itnio_otp_grpc::proto::v1::{self as pb, app_service_client::AppServiceClient};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const SERVICES: [&str; 6] = [
    "",
    "itnio.otp.v1.AppService",
    "itnio.otp.v1.TemplateService",
    "itnio.otp.v1.FlowService",
    "itnio.otp.v1.VerificationService",
    "itnio.otp.v1.RecordService",
];

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

/// The binary with no credentials, its stderr lines, and the address it listens on.
struct Binary {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Binary {
    fn start(envs: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_itnio-otp-grpc"));
        command
            .env_remove("ITNIO_API_KEY")
            .env_remove("ITNIO_API_SECRET")
            .env_remove("ITNIO_API_SECRET_FILE")
            .env_remove("ITNIO_BASE_URL")
            .env("GRPC_LISTEN_ADDR", "127.0.0.1:0")
            .env("METRICS_LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("start binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, stderr: rx }
    }

    /// Waits up to 20 s for a stderr line containing `needle`; returns every line up to and
    /// including it.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line containing {needle:?} in {seen:?}"));
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        self.child.wait().expect("wait")
    }
}

// Multi-threaded: `terminate` blocks this thread while the client's connection task must still
// run to answer the server's GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_defaults_to_the_sandbox_and_stops_on_sigterm() {
    let mut binary = Binary::start(&[]);
    binary.wait_for("in-process SANDBOX");
    let lines = binary.wait_for("gRPC server listening");
    let addr = lines[lines.len() - 1]
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("addr in log line")
        .parse()
        .expect("socket address");
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
    let started = std::time::Instant::now();
    let status = binary.terminate();
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
    let output = Command::new(env!("CARGO_BIN_EXE_itnio-otp-grpc"))
        .env("ITNIO_API_KEY", "key-without-secret")
        .env_remove("ITNIO_API_SECRET")
        .env_remove("ITNIO_API_SECRET_FILE")
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
    let mut lines = binary.wait_for("gRPC server listening");
    binary.terminate();
    lines.extend(binary.stderr.iter());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_subcommand_serves_the_emulator_alone() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_itnio-otp-grpc"));
    command
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped());
    let mut binary = Binary::spawn(command);
    let lines = binary.wait_for("ITNIO sandbox listening");
    let addr = lines[lines.len() - 1]
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("addr in log line")
        .to_owned();
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
    assert!(binary.terminate().success());
}

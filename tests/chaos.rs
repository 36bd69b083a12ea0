//! The chaos matrix: every unary RPC and WatchRecord under every transport fault the sandbox can
//! inject (`POST /_sandbox/inject` with a `fault`), against the real server over real HTTP and
//! generated gRPC clients. Each (fault, method) pair must end with the documented gRPC code,
//! `ErrorInfo` reason and `RetryInfo`; afterwards no panic happened, no watch stream, poller or
//! call is left running (the admin `/metrics` gauges) and health is SERVING.
//!
//! The outcomes are rendered into `docs/chaos-matrix.md`; the test fails when the checked-in
//! file differs. `UPDATE_CHAOS_MATRIX=1 cargo test --test chaos` rewrites it.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use futures_util::future::join_all;
use itnio_otp_grpc::{
    proto::v1::{self as pb, Channel as SendChannel, FlowTrigger},
    server::{self, Listeners},
};
use prost_types::Timestamp;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_types::StatusExt;

/// `ITNIO_TIMEOUT` of the server under test: short, so timeouts and trickles cost little.
const TIMEOUT: Duration = Duration::from_secs(1);
/// `ITNIO_MAX_RESPONSE_BYTES` of the server under test.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// WatchRecord's tolerance of consecutive transient failures in this test.
const WATCH_RETRIES: u32 = 2;
/// How long the gauges may take to fall back to zero.
const SETTLE: Duration = Duration::from_secs(10);
const MATRIX_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/chaos-matrix.md");

/// How one call ended: the code, the `ErrorInfo` reason and whether `RetryInfo` came along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    code: Code,
    reason: &'static str,
    retry: bool,
}

const OK: Outcome = Outcome {
    code: Code::Ok,
    reason: "",
    retry: false,
};
const TIMED_OUT: Outcome = Outcome {
    code: Code::DeadlineExceeded,
    reason: "UPSTREAM_TIMEOUT",
    retry: false,
};
const HTTP_ERROR: Outcome = Outcome {
    code: Code::Unavailable,
    reason: "UPSTREAM_HTTP_ERROR",
    retry: true,
};
const CONNECTION_LOST: Outcome = Outcome {
    code: Code::Unavailable,
    reason: "UPSTREAM_CONNECTION_LOST",
    retry: true,
};
const BAD_RESPONSE: Outcome = Outcome {
    code: Code::Unavailable,
    reason: "UPSTREAM_BAD_RESPONSE",
    retry: false,
};
const TOO_LARGE: Outcome = Outcome {
    code: Code::Unavailable,
    reason: "UPSTREAM_RESPONSE_TOO_LARGE",
    retry: false,
};

/// One row of the matrix: a fault as injected, and what each kind of method must see.
struct FaultCase {
    /// The injection body, without `endpoint` and `times`.
    inject: Value,
    /// Every unary RPC (one upstream call, no retry).
    unary: Outcome,
    /// WatchRecord when only its first poll suffers the fault (transient faults are retried).
    watch_once: Outcome,
    /// WatchRecord when every poll suffers it (retried `WATCH_RETRIES` times, then the error).
    watch_always: Outcome,
}

/// The expected outcome table.
fn cases() -> Vec<FaultCase> {
    let case = |inject: Value, unary: Outcome, watch_once: Outcome| FaultCase {
        inject,
        unary,
        watch_once,
        watch_always: unary,
    };
    let over_timeout = (TIMEOUT.as_millis() + 1000) as u64;
    vec![
        case(json!({"fault": "latency", "latency_ms": 50}), OK, OK),
        case(
            json!({"fault": "latency", "latency_ms": over_timeout}),
            TIMED_OUT,
            OK,
        ),
        case(
            json!({"fault": "http_status", "http_status": 429}),
            HTTP_ERROR,
            OK,
        ),
        case(
            json!({"fault": "http_status", "http_status": 500}),
            HTTP_ERROR,
            OK,
        ),
        case(
            json!({"fault": "http_status", "http_status": 502}),
            HTTP_ERROR,
            OK,
        ),
        case(
            json!({"fault": "http_status", "http_status": 503}),
            HTTP_ERROR,
            OK,
        ),
        case(json!({"fault": "reset_before_status"}), CONNECTION_LOST, OK),
        case(json!({"fault": "reset_mid_body"}), CONNECTION_LOST, OK),
        case(json!({"fault": "truncated_body"}), BAD_RESPONSE, OK),
        case(json!({"fault": "non_json"}), BAD_RESPONSE, OK),
        case(json!({"fault": "html_error_page"}), BAD_RESPONSE, OK),
        case(json!({"fault": "wrong_content_type"}), OK, OK),
        // Asking again cannot shrink a record: a watch ends at once.
        case(json!({"fault": "huge_body"}), TOO_LARGE, TOO_LARGE),
        case(json!({"fault": "trickle"}), TIMED_OUT, OK),
    ]
}

/// The 19 unary RPCs, each with the upstream endpoint it calls.
const UNARY: [(&str, &str); 19] = [
    ("AppService.CreateApp", "POST /app/add"),
    ("AppService.UpdateApp", "PUT /app/update/{appId}"),
    ("AppService.GetApp", "GET /app/details/{appId}"),
    ("TemplateService.CreateTemplate", "POST /template/add"),
    (
        "TemplateService.UpdateTemplate",
        "PUT /template/update/{templateId}",
    ),
    (
        "TemplateService.GetTemplate",
        "GET /template/details/{templateId}",
    ),
    ("TemplateService.ListTemplates", "GET /template/list"),
    ("FlowService.CreateFlow", "POST /flow/add"),
    ("FlowService.UpdateFlow", "PUT /flow/update/{flowId}"),
    ("FlowService.GetFlow", "GET /flow/details/{flowId}"),
    ("FlowService.ListFlows", "GET /flow/list"),
    (
        "VerificationService.SendVerification",
        "POST /verification/send",
    ),
    (
        "VerificationService.SendCustomCode",
        "POST /verification/sendRule",
    ),
    (
        "VerificationService.ResendVerification",
        "POST /verification/resend",
    ),
    (
        "VerificationService.CheckVerification",
        "POST /verification/verify",
    ),
    (
        "VerificationService.ReportConversion",
        "POST /postback/backfill",
    ),
    (
        "VerificationService.ReportConversionRate",
        "POST /backfillRate",
    ),
    (
        "RecordService.GetRecord",
        "GET /verification/record/{verificationId}",
    ),
    (
        "RecordService.GetOrderRecord",
        "POST /verification/orderId/record",
    ),
];
const RECORD: &str = "GET /verification/record/{verificationId}";
const WATCH_ONCE: &str = "RecordService.WatchRecord (fault on the first poll)";
const WATCH_ALWAYS: &str = "RecordService.WatchRecord (fault on every poll)";

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The server under test, its sandbox and how to reach them.
struct Rig {
    channel: Channel,
    sandbox_url: String,
    admin: SocketAddr,
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start() -> Self {
        let common::RunningSandbox {
            url: sandbox_url,
            stop: sandbox_stop,
            ..
        } = common::start_sandbox(common::sandbox_config()).await;

        let mut server_config = common::upstream_config(&sandbox_url);
        server_config.upstream_timeout = TIMEOUT;
        server_config.max_response_bytes = MAX_RESPONSE_BYTES;
        server_config.watch.max_consecutive_errors = WATCH_RETRIES;
        // Every row sends to the same test number: the send guard (one pending verification
        // per number, velocity limits) only counts here, so each RPC reaches the upstream.
        server_config.guard = itnio_otp_grpc::guard::Policy::default().with_dry_run(true);
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = grpc.local_addr().expect("addr");
        let admin = admin_listener.local_addr().expect("addr");
        let listeners = Listeners {
            grpc,
            admin: Some(admin_listener),
            health: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            server::serve(server_config, listeners, shutdown)
                .await
                .expect("server runs");
            let _ = sandbox_stop.send(());
        });
        Self {
            channel: common::connect(addr).await,
            sandbox_url,
            admin,
            http: reqwest::Client::new(),
            stop,
            server,
        }
    }

    /// `POST /_sandbox/inject` over HTTP, as any team's tests would.
    async fn inject(&self, endpoint: &str, fault: &Value, times: u32) {
        let mut body = fault.clone();
        body["endpoint"] = json!(endpoint);
        body["times"] = json!(times);
        let response = self
            .http
            .post(format!("{}/_sandbox/inject", self.sandbox_url))
            .json(&body)
            .send()
            .await
            .expect("inject");
        let status = response.status();
        let answer: Value = response.json().await.expect("json");
        assert!(status.is_success(), "{body}: {answer}");
        assert_eq!(answer, json!({"ok": true}));
    }

    /// Requests the sandbox has received, per endpoint (`GET /_sandbox/stats`).
    async fn upstream_counts(&self) -> Value {
        let stats: Value = self
            .http
            .get(format!("{}/_sandbox/stats", self.sandbox_url))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        stats["byEndpoint"].clone()
    }

    /// The sum of every series of the gauge `name` on the admin `/metrics` page.
    async fn gauge(&self, name: &str) -> f64 {
        let page = self
            .http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        page.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .map(|line| {
                let value = line.rsplit(' ').next().expect("value");
                value.parse::<f64>().expect("number")
            })
            .sum()
    }

    /// Waits until no record poller runs, so the next WatchRecord starts its own poller (a
    /// watch opened while the last one's poller is still winding down joins it and is answered
    /// from its cached record, without polling).
    async fn no_pollers_left(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let pollers = self.gauge("itnio_watch_pollers_active").await;
            if pollers == 0.0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{pollers} pollers still running after {SETTLE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Ids the RPCs work on, made before any fault.
struct Fixture {
    app_id: String,
    template_id: String,
    flow_id: String,
    verification_id: String,
    order_id: String,
}

fn node() -> pb::FlowNode {
    pb::FlowNode {
        waiting_time_seconds: 30,
        trigger: FlowTrigger::SendFailed as i32,
        channel: SendChannel::Call as i32,
        channel_cut: false,
    }
}

fn now() -> Timestamp {
    Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    }
}

async fn fixture(channel: &Channel) -> Fixture {
    let (app_id, template_id) = common::app_and_template(channel, "chaos").await;
    let flow_id = pb::flow_service_client::FlowServiceClient::new(channel.clone())
        .create_flow(pb::CreateFlowRequest {
            name: "chaos-flow".into(),
            nodes: vec![node()],
        })
        .await
        .expect("create flow")
        .into_inner()
        .flow
        .expect("flow")
        .flow_id;
    let order_id = "chaos-order".to_owned();
    let verification_id =
        pb::verification_service_client::VerificationServiceClient::new(channel.clone())
            .send_verification(pb::SendVerificationRequest {
                app_id: app_id.clone(),
                template_id: template_id.clone(),
                phone_number: common::TEST_NUMBER.into(),
                order_id: order_id.clone(),
                ..Default::default()
            })
            .await
            .expect("send")
            .into_inner()
            .verification_id;
    Fixture {
        app_id,
        template_id,
        flow_id,
        verification_id,
        order_id,
    }
}

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), Status>> + Send + 'a>>;

/// Calls the unary RPC `method` with a valid request; `tag` keeps names unique per fault.
fn call<'a>(channel: &Channel, f: &'a Fixture, method: &str, tag: usize) -> Call<'a> {
    use pb::{
        app_service_client::AppServiceClient as Apps,
        flow_service_client::FlowServiceClient as Flows,
        record_service_client::RecordServiceClient as Records,
        template_service_client::TemplateServiceClient as Templates,
        verification_service_client::VerificationServiceClient as Verifications,
    };
    let c = channel.clone();
    match method {
        "AppService.CreateApp" => Box::pin(async move {
            let request = pb::CreateAppRequest {
                name: format!("chaos-new-{tag}"),
                ..Default::default()
            };
            Apps::new(c).create_app(request).await.map(drop)
        }),
        "AppService.UpdateApp" => Box::pin(async move {
            let request = pb::UpdateAppRequest {
                app_id: f.app_id.clone(),
                name: format!("chaos-app-{tag}"),
                ..Default::default()
            };
            Apps::new(c).update_app(request).await.map(drop)
        }),
        "AppService.GetApp" => Box::pin(async move {
            let request = pb::GetAppRequest {
                app_id: f.app_id.clone(),
            };
            Apps::new(c).get_app(request).await.map(drop)
        }),
        "TemplateService.CreateTemplate" => Box::pin(async move {
            let request = pb::CreateTemplateRequest {
                app_id: f.app_id.clone(),
                name: format!("chaos-tpl-new-{tag}"),
                text: "##code## is your code".into(),
                code_length: Some(4),
                ..Default::default()
            };
            Templates::new(c).create_template(request).await.map(drop)
        }),
        "TemplateService.UpdateTemplate" => Box::pin(async move {
            let request = pb::UpdateTemplateRequest {
                template_id: f.template_id.clone(),
                name: format!("chaos-tpl-{tag}"),
                text: "##code## is your code".into(),
                ..Default::default()
            };
            Templates::new(c).update_template(request).await.map(drop)
        }),
        "TemplateService.GetTemplate" => Box::pin(async move {
            let request = pb::GetTemplateRequest {
                template_id: f.template_id.clone(),
            };
            Templates::new(c).get_template(request).await.map(drop)
        }),
        "TemplateService.ListTemplates" => Box::pin(async move {
            let request = pb::ListTemplatesRequest {};
            Templates::new(c).list_templates(request).await.map(drop)
        }),
        "FlowService.CreateFlow" => Box::pin(async move {
            let request = pb::CreateFlowRequest {
                name: format!("chaos-flow-new-{tag}"),
                nodes: vec![node()],
            };
            Flows::new(c).create_flow(request).await.map(drop)
        }),
        "FlowService.UpdateFlow" => Box::pin(async move {
            let request = pb::UpdateFlowRequest {
                flow_id: f.flow_id.clone(),
                name: format!("chaos-flow-{tag}"),
                nodes: vec![node()],
            };
            Flows::new(c).update_flow(request).await.map(drop)
        }),
        "FlowService.GetFlow" => Box::pin(async move {
            let request = pb::GetFlowRequest {
                flow_id: f.flow_id.clone(),
            };
            Flows::new(c).get_flow(request).await.map(drop)
        }),
        "FlowService.ListFlows" => Box::pin(async move {
            let request = pb::ListFlowsRequest {};
            Flows::new(c).list_flows(request).await.map(drop)
        }),
        "VerificationService.SendVerification" => Box::pin(async move {
            let request = pb::SendVerificationRequest {
                app_id: f.app_id.clone(),
                template_id: f.template_id.clone(),
                phone_number: common::TEST_NUMBER.into(),
                ..Default::default()
            };
            Verifications::new(c)
                .send_verification(request)
                .await
                .map(drop)
        }),
        "VerificationService.SendCustomCode" => Box::pin(async move {
            let request = pb::SendCustomCodeRequest {
                app_id: f.app_id.clone(),
                template_id: f.template_id.clone(),
                code: "4711".into(),
                phone_number: common::TEST_NUMBER.into(),
                channel: SendChannel::Sms as i32,
                ..Default::default()
            };
            Verifications::new(c)
                .send_custom_code(request)
                .await
                .map(drop)
        }),
        "VerificationService.ResendVerification" => Box::pin(async move {
            let request = pb::ResendVerificationRequest {
                verification_id: f.verification_id.clone(),
                channel: SendChannel::Sms as i32,
                ..Default::default()
            };
            Verifications::new(c)
                .resend_verification(request)
                .await
                .map(drop)
        }),
        "VerificationService.CheckVerification" => Box::pin(async move {
            let request = pb::CheckVerificationRequest {
                verification_id: f.verification_id.clone(),
                code: "9999".into(),
            };
            Verifications::new(c)
                .check_verification(request)
                .await
                .map(drop)
        }),
        "VerificationService.ReportConversion" => Box::pin(async move {
            let request = pb::ReportConversionRequest {
                app_id: f.app_id.clone(),
                verification_id: f.verification_id.clone(),
                phone_number: common::TEST_NUMBER.into(),
                time: Some(now()),
            };
            Verifications::new(c)
                .report_conversion(request)
                .await
                .map(drop)
        }),
        "VerificationService.ReportConversionRate" => Box::pin(async move {
            let request = pb::ReportConversionRateRequest {
                app_id: f.app_id.clone(),
                mcc: "460".into(),
                conversion_count: Some(100),
                base_count: Some(1000),
                rate_percent: "10".into(),
                callback_time: Some(now()),
            };
            Verifications::new(c)
                .report_conversion_rate(request)
                .await
                .map(drop)
        }),
        "RecordService.GetRecord" => Box::pin(async move {
            let request = pb::GetRecordRequest {
                verification_id: f.verification_id.clone(),
            };
            Records::new(c).get_record(request).await.map(drop)
        }),
        "RecordService.GetOrderRecord" => Box::pin(async move {
            let request = pb::GetOrderRecordRequest {
                app_id: f.app_id.clone(),
                order_id: f.order_id.clone(),
            };
            Records::new(c).get_order_record(request).await.map(drop)
        }),
        other => panic!("no call for {other}"),
    }
}

/// Opens a WatchRecord stream on the fixture's verification and waits for its first item: a
/// message is OK, an error is the status the stream ended with.
async fn watch(channel: &Channel, f: &Fixture) -> Result<(), Status> {
    let request = pb::WatchRecordRequest {
        selector: Some(pb::watch_record_request::Selector::VerificationId(
            f.verification_id.clone(),
        )),
    };
    let mut stream = pb::record_service_client::RecordServiceClient::new(channel.clone())
        .watch_record(request)
        .await?
        .into_inner();
    match stream.message().await? {
        Some(_) => Ok(()),
        None => Err(Status::internal("the stream ended without a message")),
    }
}

/// The outcome of a call, checking what every error must carry.
fn outcome(method: &str, result: Result<(), Status>) -> Outcome {
    let status = match result {
        Ok(()) => return OK,
        Err(status) => status,
    };
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("{method}: no ErrorInfo on {status:?}"));
    assert_eq!(info.domain, "itniotech.com", "{method}");
    assert!(
        !status.message().contains("99900"),
        "{method}: a phone number in {:?}",
        status.message()
    );
    // A send that may have gone out names how to find it.
    let uncertain = matches!(status.code(), Code::DeadlineExceeded | Code::Unavailable)
        && info.metadata.get("http_status").is_none_or(|s| s != "429");
    let lookup = match method {
        "VerificationService.SendVerification" | "VerificationService.SendCustomCode" => {
            Some("order_id")
        }
        "VerificationService.ResendVerification" => Some("verification_id"),
        _ => None,
    };
    if let Some(key) = lookup {
        assert_eq!(
            info.metadata.contains_key(key),
            uncertain,
            "{method}: {key} in {:?}",
            info.metadata
        );
    }
    let reason = reasons()
        .into_iter()
        .find(|r| *r == info.reason)
        .unwrap_or_else(|| panic!("{method}: unexpected reason {}", info.reason));
    Outcome {
        code: status.code(),
        reason,
        retry: details.retry_info().is_some(),
    }
}

fn reasons() -> [&'static str; 5] {
    [
        TIMED_OUT.reason,
        HTTP_ERROR.reason,
        CONNECTION_LOST.reason,
        BAD_RESPONSE.reason,
        TOO_LARGE.reason,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_under_every_fault_ends_as_documented() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let rig = Rig::start().await;
    let f = fixture(&rig.channel).await;
    let cases = cases();
    // observed[fault][method] = outcome
    let mut observed: Vec<BTreeMap<&str, Outcome>> = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let mut seen = BTreeMap::new();
        // Every unary RPC at once: each calls its own endpoint, once.
        for (_, endpoint) in UNARY {
            rig.inject(endpoint, &case.inject, 1).await;
        }
        let before = rig.upstream_counts().await;
        let calls = UNARY.map(|(method, _)| call(&rig.channel, &f, method, index));
        for ((method, _), result) in UNARY.iter().zip(join_all(calls).await) {
            seen.insert(*method, outcome(method, result));
        }
        // Each RPC made exactly one upstream request, to its endpoint: the fault hit it, and
        // nothing was retried behind the caller's back.
        let after = rig.upstream_counts().await;
        for (method, endpoint) in UNARY {
            let count = |counts: &Value| counts[endpoint].as_u64().unwrap_or(0);
            assert_eq!(
                count(&after) - count(&before),
                1,
                "{}: {method} calls {endpoint} once",
                case.inject
            );
        }
        rig.no_pollers_left().await;
        rig.inject(RECORD, &case.inject, 1).await;
        seen.insert(
            WATCH_ONCE,
            outcome(WATCH_ONCE, watch(&rig.channel, &f).await),
        );
        rig.no_pollers_left().await;
        rig.inject(RECORD, &case.inject, 100).await;
        seen.insert(
            WATCH_ALWAYS,
            outcome(WATCH_ALWAYS, watch(&rig.channel, &f).await),
        );
        rig.inject(RECORD, &case.inject, 0).await;
        observed.push(seen);
    }

    let mut wrong = Vec::new();
    for (case, seen) in cases.iter().zip(&observed) {
        for (method, got) in seen {
            let expected = match *method {
                WATCH_ONCE => case.watch_once,
                WATCH_ALWAYS => case.watch_always,
                _ => case.unary,
            };
            if *got != expected {
                wrong.push(format!(
                    "{}: {method}: expected {expected:?}, got {got:?}",
                    case.inject
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Nothing left behind: streams, pollers and calls all wind down.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let left = [
            (
                "itnio_watch_streams_open",
                rig.gauge("itnio_watch_streams_open").await,
            ),
            (
                "itnio_watch_pollers_active",
                rig.gauge("itnio_watch_pollers_active").await,
            ),
            (
                "grpc_server_requests_in_flight",
                rig.gauge("grpc_server_requests_in_flight").await,
            ),
        ];
        if left.iter().all(|(_, value)| *value == 0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running after {SETTLE:?}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = HealthClient::new(rig.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a task panicked");
    let _ = rig.stop.send(());
    rig.server.await.expect("server task");

    check_matrix_doc(&render(&cases, &observed));
}

/// How a fault was injected, for the document.
fn injection(case: &FaultCase) -> String {
    let mut shown = String::from("{");
    if let Value::Object(fields) = &case.inject {
        let parts: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        shown.push_str(&parts.join(","));
    }
    shown.push('}');
    shown
}

/// The canonical name of the codes this matrix can show.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::Unavailable => "UNAVAILABLE",
        other => panic!("{other:?} is not an outcome of this matrix"),
    }
}

/// The matrix as Markdown: per fault, the methods grouped by how they ended.
fn render(cases: &[FaultCase], observed: &[BTreeMap<&str, Outcome>]) -> String {
    let mut doc = String::new();
    doc.push_str(
        "# Chaos matrix\n\n\
         <!-- Generated by tests/chaos.rs; do not edit. Rewrite with \
         `UPDATE_CHAOS_MATRIX=1 cargo test --test chaos`. -->\n\n",
    );
    let _ = write!(
        doc,
        "Every unary RPC and `WatchRecord` was called under every transport fault the sandbox \
         injects (`POST /_sandbox/inject`, see the README), against the real server over real \
         HTTP, with `ITNIO_TIMEOUT={}ms` and `ITNIO_MAX_RESPONSE_BYTES={}`. Each row is asserted \
         by the test; afterwards no watch stream, poller or call was left running, no task \
         panicked, and health was SERVING.\n\n\
         `WatchRecord` retries transient failures (here up to {} in a row): a fault on its first \
         poll only is absorbed, a fault on every poll ends the stream with the error.\n\n",
        TIMEOUT.as_millis(),
        MAX_RESPONSE_BYTES,
        WATCH_RETRIES,
    );
    doc.push_str("| fault (injected as) | methods | gRPC code | ErrorInfo reason | RetryInfo |\n");
    doc.push_str("|---|---|---|---|---|\n");
    for (case, seen) in cases.iter().zip(observed) {
        let mut groups: Vec<(Outcome, Vec<&str>)> = Vec::new();
        for (method, outcome) in seen {
            match groups.iter_mut().find(|(o, _)| o == outcome) {
                Some((_, methods)) => methods.push(method),
                None => groups.push((*outcome, vec![method])),
            }
        }
        for (outcome, methods) in groups {
            let unary = methods
                .iter()
                .filter(|m| UNARY.iter().any(|(u, _)| u == *m))
                .count();
            let mut names: Vec<String> = Vec::new();
            if unary == UNARY.len() {
                names.push(format!("all {unary} unary RPCs"));
            }
            for method in &methods {
                let is_unary = UNARY.iter().any(|(u, _)| u == method);
                if !is_unary || unary != UNARY.len() {
                    names.push(format!("`{method}`"));
                }
            }
            let reason = if outcome.reason.is_empty() {
                "—".to_owned()
            } else {
                format!("`{}`", outcome.reason)
            };
            let _ = writeln!(
                doc,
                "| `{}` | {} | {} | {} | {} |",
                injection(case),
                names.join(", "),
                code_name(outcome.code),
                reason,
                if outcome.retry { "yes" } else { "—" },
            );
        }
    }
    doc
}

/// Fails when the checked-in matrix differs from this run's (or rewrites it on request).
fn check_matrix_doc(rendered: &str) {
    if std::env::var_os("UPDATE_CHAOS_MATRIX").is_some() {
        std::fs::write(MATRIX_PATH, rendered).expect("write docs/chaos-matrix.md");
        return;
    }
    let checked_in = std::fs::read_to_string(MATRIX_PATH).unwrap_or_default();
    assert!(
        checked_in == rendered,
        "docs/chaos-matrix.md is not what this run observed; rerun with UPDATE_CHAOS_MATRIX=1 \
         and commit it.\n--- rendered ---\n{rendered}"
    );
}

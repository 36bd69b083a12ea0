//! End to end: caller authentication from a callers file, its reload, and accounts per caller.
//! Sandbox and server on port 0, real HTTP and gRPC; upstream calls counted by the sandbox.

mod common;

use std::{path::Path, time::Duration};

use common::{binary::Binary, temp::TempDir};

use itnio_otp_grpc::{
    auth,
    config::ServeConfig,
    proto::v1::{self as pb, app_service_client::AppServiceClient},
    sandbox::{Sandbox, SandboxConfig},
};
use sha2::{Digest, Sha256};
use tokio::{sync::oneshot, time::Instant};
use tonic::{Code, Request, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

const CHECKOUT_TOKEN: &str = "checkout-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-9876543210";
const SEND: &str = "POST /verification/send";

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn caller(name: &str, token: &str, allow: &[&str], extra: &str) -> String {
    let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[callers]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nallow = [{}]\n{extra}\n",
        sha256_hex(token),
        allow.join(", ")
    )
}

/// Checkout may send and read one record; admin may call everything.
fn standard_callers() -> String {
    caller(
        "checkout",
        CHECKOUT_TOKEN,
        &[
            "itnio.otp.v1.VerificationService/*",
            "itnio.otp.v1.RecordService/GetRecord",
        ],
        "",
    ) + &caller("admin", ADMIN_TOKEN, &["*"], "")
}

/// Puts the callers file at `path` into the server configuration, as `CALLERS_FILE` would.
fn use_callers_file(config: &mut ServeConfig, path: &Path) {
    let attempt = auth::file::load(path);
    config.security.callers = Some(itnio_otp_grpc::reload::Loaded {
        source: path.to_owned(),
        value: attempt.result.expect("valid callers file"),
        fingerprint: attempt.fingerprint,
    });
    config.security.file_poll_interval = Duration::from_millis(50);
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

fn send_request(app_id: &str, template_id: &str) -> pb::SendVerificationRequest {
    pb::SendVerificationRequest {
        app_id: app_id.into(),
        template_id: template_id.into(),
        phone_number: common::TEST_NUMBER.into(),
        // These tests send new codes to one number on purpose (the send guard would otherwise
        // answer the pending verification).
        replace_pending: true,
        ..Default::default()
    }
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

async fn create_app(app: &common::TestApp, token: &str, name: &str) -> Result<String, Status> {
    let reply = app
        .apps()
        .create_app(with_token(
            pb::CreateAppRequest {
                name: name.into(),
                ..Default::default()
            },
            token,
        ))
        .await?;
    Ok(reply.into_inner().app.expect("app").app_id)
}

async fn create_template(app: &common::TestApp, token: &str, app_id: &str) -> String {
    app.templates()
        .create_template(with_token(
            pb::CreateTemplateRequest {
                app_id: app_id.into(),
                name: "login".into(),
                text: "##code## is your code".into(),
                code_length: Some(4),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("create template")
        .into_inner()
        .template
        .expect("template")
        .template_id
}

#[tokio::test]
async fn refused_calls_never_reach_the_upstream_and_allowed_ones_do() {
    let dir = TempDir::new("refused");
    let path = dir.write("callers.toml", &standard_callers());
    let app = common::spawn_app_custom(|_| {}, |c| use_callers_file(c, &path)).await;
    let app_id = create_app(&app, ADMIN_TOKEN, "shop").await.expect("admin");
    let template_id = create_template(&app, ADMIN_TOKEN, &app_id).await;
    let before = app.sandbox.request_count();

    let mut verifications = app.verifications();
    let cases = [
        (None, Code::Unauthenticated, "MISSING_CREDENTIALS"),
        (
            Some("Bearer not-a-token"),
            Code::Unauthenticated,
            "INVALID_TOKEN",
        ),
        (
            Some("Basic Y2hlY2tvdXQ="),
            Code::Unauthenticated,
            "MALFORMED_AUTHORIZATION",
        ),
    ];
    for (authorization, code, expected) in cases {
        let mut request = Request::new(send_request(&app_id, &template_id));
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        let status = verifications
            .send_verification(request)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{authorization:?}: {status:?}");
        assert_eq!(reason(&status), expected);
        assert_eq!(
            status
                .get_error_details()
                .error_info()
                .map(|i| i.domain.as_str()),
            Some("itniotech.com")
        );
        assert!(!status.message().contains("not-a-token"), "{status:?}");
    }

    // Checkout may send, but not create apps or watch.
    let status = create_app(&app, CHECKOUT_TOKEN, "nope")
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(&status), "METHOD_NOT_ALLOWED");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("info");
    assert_eq!(info.metadata["caller"], "checkout");
    assert_eq!(info.metadata["method"], "itnio.otp.v1.AppService/CreateApp");
    let watch = app
        .records()
        .watch_record(with_token(
            pb::WatchRecordRequest {
                selector: Some(pb::watch_record_request::Selector::VerificationId(
                    "22611231955000000001".into(),
                )),
            },
            CHECKOUT_TOKEN,
        ))
        .await
        .expect_err("refused");
    assert_eq!(watch.code(), Code::PermissionDenied);
    assert!(!status.message().contains(CHECKOUT_TOKEN));

    assert_eq!(
        app.sandbox.request_count(),
        before,
        "refused calls reached the upstream"
    );
    assert_eq!(app.sandbox.request_count_for(SEND), 0);

    let sent = verifications
        .send_verification(with_token(
            send_request(&app_id, &template_id),
            CHECKOUT_TOKEN,
        ))
        .await
        .expect("allowed send")
        .into_inner();
    assert_eq!(app.sandbox.request_count_for(SEND), 1);
    let record = app
        .records()
        .get_record(with_token(
            pb::GetRecordRequest {
                verification_id: sent.verification_id,
            },
            CHECKOUT_TOKEN,
        ))
        .await
        .expect("allowed record read");
    assert!(record.into_inner().record.is_some());
    assert_eq!(app.sandbox.request_count(), before + 2);
    app.shutdown().await;
}

#[tokio::test]
async fn a_callers_send_rate_from_the_file_is_enforced_before_the_upstream() {
    let dir = TempDir::new("quota");
    let callers = caller(
        "checkout",
        CHECKOUT_TOKEN,
        &["itnio.otp.v1.VerificationService/*"],
        "sends_per_minute = 1",
    ) + &caller("admin", ADMIN_TOKEN, &["*"], "");
    let path = dir.write("callers.toml", &callers);
    let app = common::spawn_app_custom(|_| {}, |c| use_callers_file(c, &path)).await;
    let app_id = create_app(&app, ADMIN_TOKEN, "quota").await.expect("admin");
    let template_id = create_template(&app, ADMIN_TOKEN, &app_id).await;
    let mut verifications = app.verifications();

    verifications
        .send_verification(with_token(
            send_request(&app_id, &template_id),
            CHECKOUT_TOKEN,
        ))
        .await
        .expect("the first send of the minute");
    let status = verifications
        .send_verification(with_token(
            send_request(&app_id, &template_id),
            CHECKOUT_TOKEN,
        ))
        .await
        .expect_err("over the caller's sends_per_minute");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "CALLER_SEND_RATE_EXCEEDED");
    let details = status.get_error_details();
    let quota = details.quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "caller:checkout");
    assert!(details.retry_info().is_some(), "{status:?}");
    assert_eq!(
        app.sandbox.request_count_for(SEND),
        1,
        "the refused send stayed here"
    );

    // The limit is the caller's own: another caller still sends.
    verifications
        .send_verification(with_token(send_request(&app_id, &template_id), ADMIN_TOKEN))
        .await
        .expect("admin has no send rate");
    assert_eq!(app.sandbox.request_count_for(SEND), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn grpc_web_calls_are_authenticated_like_grpc_ones() {
    let dir = TempDir::new("web");
    let path = dir.write("callers.toml", &standard_callers());
    let app = common::spawn_app_custom(|_| {}, |config| use_callers_file(config, &path)).await;
    let (transport, origin) = common::web_transport(app.addr);
    let mut apps = AppServiceClient::with_origin(transport, origin);
    let request = || pb::CreateAppRequest {
        name: "web-auth".into(),
        ..Default::default()
    };
    let anonymous = apps.create_app(request()).await.expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let checkout = apps
        .create_app(with_token(request(), CHECKOUT_TOKEN))
        .await
        .expect_err("checkout may not create apps");
    assert_eq!(checkout.code(), Code::PermissionDenied);
    assert_eq!(app.sandbox.request_count_for("POST /app/add"), 0);
    apps.create_app(with_token(request(), ADMIN_TOKEN))
        .await
        .expect("admin may");
    assert_eq!(app.sandbox.request_count_for("POST /app/add"), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn health_and_reflection_stay_open() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let dir = TempDir::new("open");
    let path = dir.write("callers.toml", &standard_callers());
    let app = common::spawn_app_custom(|_| {}, |c| use_callers_file(c, &path)).await;
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "itnio.otp.v1.VerificationService".into(),
        })
        .await
        .expect("health without a token");
    assert_eq!(health.into_inner().status, 1, "SERVING");
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection without a token")
        .into_inner();
    assert!(replies.message().await.expect("reply").is_some());
    app.shutdown().await;
}

/// Calls `ListFlows` with `token` until `done` holds for the result, or panics at
/// the deadline. Returns how long it took.
async fn until(
    app: &common::TestApp,
    token: &str,
    done: impl Fn(&Result<(), Status>) -> bool,
) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    loop {
        let result = app
            .flows()
            .list_flows(with_token(pb::ListFlowsRequest {}, token))
            .await
            .map(|_| ());
        if done(&result) {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no reload within 10 s: {result:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_changed_callers_file_applies_without_a_restart_and_a_broken_one_changes_nothing() {
    let dir = TempDir::new("reload");
    let path = dir.write("callers.toml", &caller("ops", "old-token", &["*"], ""));
    let app = common::spawn_app_custom(|_| {}, |c| use_callers_file(c, &path)).await;
    let ok = |r: &Result<(), Status>| r.is_ok();
    until(&app, "old-token", ok).await;

    dir.write("callers.toml", &caller("ops", "new-token", &["*"], ""));
    let took = until(&app, "old-token", |r| {
        r.as_ref().is_err_and(|s| s.code() == Code::Unauthenticated)
    })
    .await;
    println!("reload latency (50 ms poll): {took:?}");
    until(&app, "new-token", ok).await;

    // A broken file (unknown account) is refused: the new token keeps working throughout
    // ten poll intervals, measured by the clock, not slept.
    dir.write(
        "callers.toml",
        &caller("ops", "newer-token", &["*"], "account = \"nowhere\""),
    );
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(500) {
        until(&app, "new-token", ok).await;
    }
    let refused = app
        .flows()
        .list_flows(with_token(pb::ListFlowsRequest {}, "newer-token"))
        .await
        .expect_err("broken file not applied");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Fixing the file applies it.
    dir.write("callers.toml", &caller("ops", "newer-token", &["*"], ""));
    until(&app, "newer-token", ok).await;
    app.shutdown().await;
}

/// A second sandbox, as a second ITNIO account with its own key and secret.
async fn spawn_sandbox(key: &str, secret: &str) -> (Sandbox, String, oneshot::Sender<()>) {
    let mut config = SandboxConfig::new(key, secret);
    config.speed = 100.0;
    let running = common::start_sandbox(config).await;
    (running.sandbox, running.url, running.stop)
}

#[tokio::test]
async fn each_caller_is_routed_to_its_account() {
    let (brand_b, brand_b_url, _stop_b) = spawn_sandbox("brand-b-key", "brand-b-secret").await;
    let dir = TempDir::new("accounts");
    dir.write("brand-b.secret", "brand-b-secret\n");
    let file = format!(
        "[[accounts]]\nname = \"brand-b\"\nbase_url = \"{brand_b_url}\"\napi_key = \"brand-b-key\"\napi_secret_file = \"brand-b.secret\"\n\n{}{}",
        caller("shop-a", "token-a", &["*"], ""),
        caller("shop-b", "token-b", &["*"], "account = \"brand-b\"")
    );
    let path = dir.write("callers.toml", &file);
    let app = common::spawn_app_custom(|_| {}, |c| use_callers_file(c, &path)).await;
    let default_account = &app.sandbox;

    // Each sandbox accepts only its own key and secret: an answer proves which key was used.
    let a_app = create_app(&app, "token-a", "shop-a")
        .await
        .expect("on default");
    assert_eq!(default_account.request_count_for("POST /app/add"), 1);
    assert_eq!(brand_b.request_count_for("POST /app/add"), 0);
    let b_app = create_app(&app, "token-b", "shop-b")
        .await
        .expect("on brand-b");
    assert_eq!(default_account.request_count_for("POST /app/add"), 1);
    assert_eq!(brand_b.request_count_for("POST /app/add"), 1);

    // Sends, record reads and watches follow the caller too.
    let b_template = create_template(&app, "token-b", &b_app).await;
    let sent = app
        .verifications()
        .send_verification(with_token(send_request(&b_app, &b_template), "token-b"))
        .await
        .expect("send on brand-b")
        .into_inner();
    assert_eq!(brand_b.request_count_for(SEND), 1);
    assert_eq!(default_account.request_count_for(SEND), 0);
    let mut watch = app
        .records()
        .watch_record(with_token(
            pb::WatchRecordRequest {
                selector: Some(pb::watch_record_request::Selector::VerificationId(
                    sent.verification_id.clone(),
                )),
            },
            "token-b",
        ))
        .await
        .expect("watch on brand-b")
        .into_inner();
    let first = watch.message().await.expect("message").expect("record");
    assert!(first.record.is_some());
    assert!(brand_b.request_count_for("GET /verification/record/{verificationId}") >= 1);
    assert_eq!(
        default_account.request_count_for("GET /verification/record/{verificationId}"),
        0
    );
    // The same verification id on the other account is another record: not found there.
    let elsewhere = app
        .records()
        .get_record(with_token(
            pb::GetRecordRequest {
                verification_id: sent.verification_id,
            },
            "token-a",
        ))
        .await
        .expect_err("not on the default account");
    assert_eq!(elsewhere.code(), Code::NotFound, "{elsewhere:?}");
    assert_eq!(
        default_account.request_count_for("GET /verification/record/{verificationId}"),
        1
    );
    assert!(!a_app.is_empty());
    app.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_the_callers_file_of_the_running_binary() {
    let dir = TempDir::new("sighup");
    let path = dir.write("callers.toml", &caller("ops", "old-token", &["*"], ""));
    let binary = Binary::start(&[
        ("CALLERS_FILE", path.to_str().expect("utf-8")),
        ("FILE_POLL_INTERVAL", "1h"),
    ]);
    let addr = binary.addr("gRPC server listening").await;
    let mut flows = itnio_otp_grpc::proto::v1::flow_service_client::FlowServiceClient::new(
        common::connect(addr).await,
    );
    let list = |token: &str| with_token(pb::ListFlowsRequest {}, token);
    flows
        .list_flows(list("old-token"))
        .await
        .expect("old token");

    let mark = binary.lines_so_far();
    dir.write("callers.toml", &caller("ops", "new-token", &["*"], ""));
    // With an hour between polls, only the signal can make the change visible.
    binary.signal("HUP");
    binary.wait_for_since(mark, "reloaded").await;
    flows
        .list_flows(list("new-token"))
        .await
        .expect("new token");
    let old = flows
        .list_flows(list("old-token"))
        .await
        .expect_err("revoked");
    assert_eq!(old.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_broken_callers_file_or_live_credentials_without_one_exit_64() {
    let dir = TempDir::new("exit64");
    let path = dir.write(
        "callers.toml",
        &caller("ops", "some-token", &["*"], "account = \"nowhere\""),
    );
    let output = common::binary::command(&[("CALLERS_FILE", path.to_str().expect("utf-8"))])
        .output()
        .expect("run binary");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("callers[0] \"ops\""), "{stderr}");
    assert!(stderr.contains("\"nowhere\""), "{stderr}");
    assert!(!stderr.contains(&sha256_hex("some-token")), "{stderr}");

    let live = [
        ("ITNIO_API_KEY", "k"),
        ("ITNIO_API_SECRET", "s"),
        ("ITNIO_BASE_URL", "http://127.0.0.1:9"),
    ];
    let output = common::binary::command(&live).output().expect("run binary");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");

    let mut allowed = live.to_vec();
    allowed.push(("ALLOW_UNAUTHENTICATED", "true"));
    let binary = Binary::start(&allowed);
    let before = binary.lines_before("gRPC server listening").await;
    let warning = before
        .iter()
        .find(|l| l.contains("CALLERS_FILE"))
        .unwrap_or_else(|| panic!("no CALLERS_FILE warning before listening: {before:#?}"));
    assert!(warning.contains("WARN"), "{warning}");
}

/// The unauthenticated warning is for live credentials: the sandbox (no real messages) starts
/// without a callers file and without the warning.
#[tokio::test]
async fn the_sandbox_without_a_callers_file_does_not_warn_about_it() {
    let sandbox = Binary::start(&[]);
    let before = sandbox.lines_before("gRPC server listening").await;
    assert!(
        before.iter().all(|line| !line.contains("CALLERS_FILE")),
        "{before:#?}"
    );
}

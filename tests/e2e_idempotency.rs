//! End to end: idempotent sends (AIP-155) on one replica, over real sockets, with ITNIO behind a
//! fault-injecting proxy that counts what reaches it.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;
mod faults;

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use common::TEST_NUMBER;
use faults::{Fault, FaultProxy, SEND, sandbox_behind_proxy};
use itnio_otp_grpc::{
    accounts::Accounts,
    caller::Caller,
    guard::{Guard, Policy},
    proto::v1::{
        self as pb, record_service_client::RecordServiceClient,
        verification_service_client::VerificationServiceClient,
        verification_service_server::VerificationService,
    },
    sandbox::Sandbox,
    send::SendPipeline,
    service::verifications::VerificationApi,
    store::{MemoryStore, SharedStore},
    upstream::{UpstreamClient, UpstreamConfig},
};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt;

/// The sandbox behind a fault proxy, and the real gRPC server calling the proxy.
struct Rig {
    proxy: FaultProxy,
    sandbox: Sandbox,
    channel: Channel,
    app_id: String,
    template_id: String,
}

impl Rig {
    async fn start() -> Self {
        Self::with_upstream_timeout(common::upstream_config("").upstream_timeout).await
    }

    /// The rig with the server's own time limit for an upstream call (`ITNIO_TIMEOUT`).
    async fn with_upstream_timeout(upstream_timeout: Duration) -> Self {
        let (sandbox, proxy) = sandbox_behind_proxy().await;
        let mut config = common::upstream_config(&proxy.url());
        config.upstream_timeout = upstream_timeout;
        let (addr, _server) = common::spawn_server(config, std::future::pending()).await;
        let channel = common::connect(addr).await;
        let (app_id, template_id) = common::app_and_template(&channel, "idem").await;
        Self {
            proxy,
            sandbox,
            channel,
            app_id,
            template_id,
        }
    }

    fn verifications(&self) -> VerificationServiceClient<Channel> {
        VerificationServiceClient::new(self.channel.clone())
    }

    fn send_request(&self, request_id: &str) -> pb::SendVerificationRequest {
        send_request(&self.app_id, &self.template_id, request_id)
    }

    async fn send(
        &self,
        request: pb::SendVerificationRequest,
        timeout: Duration,
    ) -> Result<pb::SendVerificationResponse, Status> {
        let mut request = Request::new(request);
        request.set_timeout(timeout);
        self.verifications()
            .send_verification(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

fn send_request(app_id: &str, template_id: &str, request_id: &str) -> pb::SendVerificationRequest {
    pb::SendVerificationRequest {
        app_id: app_id.to_owned(),
        template_id: template_id.to_owned(),
        phone_number: TEST_NUMBER.into(),
        request_id: request_id.to_owned(),
        // Each request id is a new code for the same number on purpose (the send guard would
        // otherwise answer the pending verification).
        replace_pending: true,
        ..Default::default()
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The ErrorInfo reason and metadata of `status`.
fn info(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    let details = status.get_error_details();
    let info = details.error_info().expect("every error carries ErrorInfo");
    (info.reason.clone(), info.metadata.clone())
}

const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_retried_send_reaches_itnio_once_under_every_fault() {
    // The server's own upstream time limit ends the slow attempt (the caller's deadline is
    // long): a caller deadline close to the fault's delay could fire in the client before the
    // server's DEADLINE_EXCEEDED with details arrives, on a busy machine.
    let rig = Rig::with_upstream_timeout(Duration::from_secs(1)).await;
    for fault in Fault::ALL {
        if let Fault::Slow(delay) = fault {
            assert!(
                delay > Duration::from_secs(1),
                "the slow fault outlasts the limit"
            );
        }
        let request_id = new_id();
        let before = rig.proxy.count(SEND);
        let sandbox_before = rig.sandbox.request_count_for(SEND);
        rig.proxy.inject(SEND, fault);
        let first = rig
            .send(rig.send_request(&request_id), LONG)
            .await
            .expect_err("the fault fails the first attempt");
        let expected = match fault {
            Fault::Slow(_) => (Code::DeadlineExceeded, "UPSTREAM_TIMEOUT"),
            Fault::ResetBeforeStatus | Fault::ResetMidBody => {
                (Code::Unavailable, "UPSTREAM_CONNECTION_LOST")
            }
            Fault::ServiceUnavailable => (Code::Unavailable, "UPSTREAM_HTTP_ERROR"),
            Fault::Malformed => (Code::Unavailable, "UPSTREAM_BAD_RESPONSE"),
        };
        let (reason, metadata) = info(&first);
        assert_eq!(
            (first.code(), reason.as_str()),
            expected,
            "{fault:?}: {first:?}"
        );
        let order_id = metadata
            .get("order_id")
            .cloned()
            .unwrap_or_else(|| panic!("{fault:?}: the first error names the order id"));

        // The client retries, as the first error's code invites, with the same request id.
        for _ in 0..2 {
            let retry = rig
                .send(rig.send_request(&request_id), LONG)
                .await
                .expect_err("never sent twice");
            let (reason, metadata) = info(&retry);
            assert_eq!(retry.code(), Code::FailedPrecondition, "{fault:?}");
            assert_eq!(reason, "OUTCOME_UNKNOWN", "{fault:?}");
            assert_eq!(metadata["order_id"], order_id, "{fault:?}");
            assert_eq!(metadata["request_id"], request_id, "{fault:?}");
        }
        let sends = rig.proxy.count(SEND) - before;
        println!("fault {fault:?}: upstream POST /verification/send per retried call = {sends}");
        assert_eq!(sends, 1, "{fault:?}");
        let reached_sandbox = rig.sandbox.request_count_for(SEND) - sandbox_before;
        assert_eq!(reached_sandbox, u64::from(fault.forwards()), "{fault:?}");

        // The order id finds the verification whenever ITNIO processed it.
        let found = RecordServiceClient::new(rig.channel.clone())
            .get_order_record(pb::GetOrderRecordRequest {
                app_id: rig.app_id.clone(),
                order_id: order_id.clone(),
            })
            .await;
        assert_eq!(found.is_ok(), fault.forwards(), "{fault:?}: {found:?}");
    }
}

#[tokio::test]
async fn without_a_request_id_a_retry_sends_again() {
    // The measurement the issue starts from: no request id, no deduplication.
    let rig = Rig::start().await;
    rig.proxy.inject(SEND, Fault::ResetBeforeStatus);
    rig.send(rig.send_request(""), LONG)
        .await
        .expect_err("reset");
    rig.send(rig.send_request(""), LONG).await.expect("retry");
    assert_eq!(rig.proxy.count(SEND), 2);
}

#[tokio::test]
async fn a_repeat_replays_the_first_response_with_a_generated_order_id() {
    let rig = Rig::start().await;
    let request_id = new_id();
    let first = rig
        .send(rig.send_request(&request_id), LONG)
        .await
        .expect("send");
    assert_eq!(first.verification_id.len(), 20);
    assert!(
        !first.order_id.is_empty(),
        "the service generates an order id"
    );
    let repeat = rig
        .send(rig.send_request(&request_id), LONG)
        .await
        .expect("replay");
    assert_eq!(repeat, first);
    assert_eq!(rig.proxy.count(SEND), 1);

    let record = RecordServiceClient::new(rig.channel.clone())
        .get_order_record(pb::GetOrderRecordRequest {
            app_id: rig.app_id.clone(),
            order_id: first.order_id.clone(),
        })
        .await
        .expect("found by the generated order id")
        .into_inner()
        .record
        .expect("record");
    assert_eq!(record.order_id, first.order_id);

    // Another request id is another send, with another order id; no id at all too.
    let other = rig
        .send(rig.send_request(&new_id()), LONG)
        .await
        .expect("send");
    assert_ne!(other.verification_id, first.verification_id);
    assert_ne!(other.order_id, first.order_id);
    let anonymous = rig.send(rig.send_request(""), LONG).await.expect("send");
    assert!(!anonymous.order_id.is_empty());
    assert_eq!(rig.proxy.count(SEND), 3);

    // A caller's own order id is kept and returned.
    let mut own = rig.send_request(&new_id());
    own.order_id = "caller-order-7".into();
    let sent = rig.send(own, LONG).await.expect("send");
    assert_eq!(sent.order_id, "caller-order-7");
}

#[tokio::test]
async fn a_repeat_waits_for_the_first_attempt_in_flight() {
    let rig = Rig::start().await;
    let request_id = new_id();
    rig.proxy
        .inject(SEND, Fault::Slow(Duration::from_millis(800)));
    let first = {
        let (rig_channel, request) = (rig.channel.clone(), rig.send_request(&request_id));
        tokio::spawn(async move {
            let mut request = Request::new(request);
            request.set_timeout(LONG);
            VerificationServiceClient::new(rig_channel)
                .send_verification(request)
                .await
                .map(tonic::Response::into_inner)
        })
    };
    rig.proxy.wait_for(SEND, 1).await;

    // A repeat whose deadline ends first gives up with ABORTED, and sends nothing.
    let impatient = rig
        .send(rig.send_request(&request_id), Duration::from_millis(200))
        .await
        .expect_err("still in flight");
    assert_eq!(impatient.code(), Code::Aborted);
    assert_eq!(info(&impatient).0, "REQUEST_IN_PROGRESS");
    assert!(impatient.get_error_details().retry_info().is_some());

    let repeat = rig
        .send(rig.send_request(&request_id), LONG)
        .await
        .expect("waits for the first attempt");
    let first = first.await.expect("task").expect("first attempt");
    assert_eq!(repeat, first);
    assert_eq!(rig.proxy.count(SEND), 1);
}

#[tokio::test]
async fn a_request_id_reused_for_another_request_is_refused() {
    let rig = Rig::start().await;
    let request_id = new_id();
    rig.send(rig.send_request(&request_id), LONG)
        .await
        .expect("send");
    let mut different = rig.send_request(&request_id);
    different.channel = pb::Channel::Call as i32;
    let reused = rig
        .send(different, LONG)
        .await
        .expect_err("another request");
    assert_eq!(reused.code(), Code::FailedPrecondition);
    let (reason, metadata) = info(&reused);
    assert_eq!(reason, "REQUEST_ID_REUSED");
    assert_eq!(metadata["request_id"], request_id);
    assert_eq!(rig.proxy.count(SEND), 1);
}

#[tokio::test]
async fn a_definite_refusal_releases_the_request_id() {
    let rig = Rig::start().await;
    let request_id = new_id();
    rig.sandbox.inject_status(SEND, "-27", 1);
    let refused = rig
        .send(rig.send_request(&request_id), LONG)
        .await
        .expect_err("period limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // Nothing was sent, so the same id may try again, and this time it goes through.
    let sent = rig
        .send(rig.send_request(&request_id), LONG)
        .await
        .expect("a fresh attempt");
    let replay = rig
        .send(rig.send_request(&request_id), LONG)
        .await
        .expect("replayed");
    assert_eq!(replay, sent);
    assert_eq!(rig.proxy.count(SEND), 2);
}

#[tokio::test]
async fn an_invalid_request_id_is_refused_before_itnio() {
    let rig = Rig::start().await;
    let status = rig
        .send(rig.send_request("not-a-uuid"), LONG)
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let violations = &details.bad_request().expect("bad request").field_violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "request_id");
    assert!(!violations[0].description.contains("not-a-uuid"));
    assert_eq!(rig.proxy.count(SEND), 0);
}

#[tokio::test]
async fn custom_codes_and_resends_are_deduplicated_too() {
    let rig = Rig::start().await;
    let mut verifications = rig.verifications();
    let custom = pb::SendCustomCodeRequest {
        app_id: rig.app_id.clone(),
        code: "4321".into(),
        phone_number: TEST_NUMBER.into(),
        request_id: new_id(),
        ..Default::default()
    };
    let first = verifications
        .send_custom_code(custom.clone())
        .await
        .expect("send")
        .into_inner();
    assert!(!first.order_id.is_empty());
    let again = verifications
        .send_custom_code(custom)
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(rig.proxy.count("POST /verification/sendRule"), 1);

    const RESEND: &str = "POST /verification/resend";
    let resend = pb::ResendVerificationRequest {
        verification_id: first.verification_id.clone(),
        request_id: new_id(),
        ..Default::default()
    };
    let resent = verifications
        .resend_verification(resend.clone())
        .await
        .expect("resend")
        .into_inner();
    let again = verifications
        .resend_verification(resend)
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(again, resent);
    assert_eq!(rig.proxy.count(RESEND), 1);

    // A lost resend names the verification it resent.
    rig.proxy.inject(RESEND, Fault::ResetBeforeStatus);
    let lost = pb::ResendVerificationRequest {
        verification_id: first.verification_id.clone(),
        request_id: new_id(),
        ..Default::default()
    };
    verifications
        .resend_verification(lost.clone())
        .await
        .expect_err("reset");
    let retry = verifications
        .resend_verification(lost)
        .await
        .expect_err("outcome unknown");
    let (reason, metadata) = info(&retry);
    assert_eq!(reason, "OUTCOME_UNKNOWN");
    assert_eq!(metadata["verification_id"], first.verification_id);
    assert_eq!(rig.proxy.count(RESEND), 2);
}

#[tokio::test]
async fn a_caller_over_its_send_rate_is_refused_with_quota_failure() {
    // The auth layer attaches the caller; here the service is driven with one directly.
    let (_sandbox, proxy) = sandbox_behind_proxy().await;
    let upstream = UpstreamClient::new(UpstreamConfig {
        base_url: proxy.url(),
        api_key: common::API_KEY.into(),
        api_secret: common::API_SECRET.into(),
        timeout: Duration::from_secs(5),
    })
    .expect("client");
    let (addr, _server) = common::spawn_server(
        common::upstream_config(&proxy.url()),
        std::future::pending(),
    )
    .await;
    let (app_id, template_id) =
        common::app_and_template(&common::connect(addr).await, "idem").await;
    let store: SharedStore = Arc::new(MemoryStore::default());
    let guard = Guard::new(Policy::default(), store.clone());
    let api = VerificationApi::new(
        Accounts::new(upstream),
        SendPipeline::new(store, guard.clone(), Duration::from_secs(5)),
        guard,
        common::upstream_config("").phones,
    );
    let limited = Caller::new("checkout", "default").with_sends_per_minute(NonZeroU32::MIN);
    let as_caller = |request_id: &str| {
        let mut request = Request::new(send_request(&app_id, &template_id, request_id));
        request.extensions_mut().insert(limited.clone());
        request
    };
    let first_id = new_id();
    let first = api
        .send_verification(as_caller(&first_id))
        .await
        .expect("within the limit")
        .into_inner();
    // A replay sends nothing, so it is not counted.
    let replay = api
        .send_verification(as_caller(&first_id))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay, first);
    let refused = api
        .send_verification(as_caller(&new_id()))
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let (reason, metadata) = info(&refused);
    assert_eq!(reason, "CALLER_SEND_RATE_EXCEEDED");
    assert_eq!(metadata["caller"], "checkout");
    let details = refused.get_error_details();
    let quota = details.quota_failure().expect("quota failure");
    assert_eq!(quota.violations[0].subject, "caller:checkout");
    let retry = details.retry_info().expect("retry info");
    let delay = retry.retry_delay.expect("delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(60),
        "{delay:?}"
    );
    // Without a request id the limit holds just the same; another caller is not affected.
    let refused = api
        .send_verification(as_caller(""))
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    api.send_verification(Request::new(send_request(&app_id, &template_id, "")))
        .await
        .expect("the anonymous caller has no limit");
    assert_eq!(proxy.count(SEND), 2);
}

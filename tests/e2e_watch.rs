//! End to end: WatchRecord streams against a sandbox whose deliveries unfold over time.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::{TEST_CODE, TestApp};
use itnio_otp_grpc::proto::v1::{
    self as pb, Channel, DeliveryStatus, FlowTrigger, MatchState, RecordChange,
    watch_record_request::Selector,
};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

const RECORD_BY_ID: &str = "GET /verification/record/{verificationId}";

async fn send(app: &TestApp, number: &str, flow_id: &str, order_id: &str) -> (String, String) {
    let (app_id, template_id) = app.app_and_template(&format!("w{order_id}")).await;
    let sent = app
        .verifications()
        .send_verification(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id,
            flow_id: flow_id.into(),
            phone_number: number.into(),
            order_id: order_id.into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    (app_id, sent.verification_id)
}

async fn watch(app: &TestApp, selector: Selector) -> Streaming<pb::WatchRecordResponse> {
    app.records()
        .watch_record(pb::WatchRecordRequest {
            selector: Some(selector),
        })
        .await
        .expect("watch")
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::WatchRecordResponse>) -> pb::WatchRecordResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an update in time")
        .expect("stream still open")
        .expect("update, not error")
}

/// Reads messages until the final one; at most 50, each within `next`'s 10 s.
async fn next_final(stream: &mut Streaming<pb::WatchRecordResponse>) -> pb::WatchRecordResponse {
    for _ in 0..50 {
        let message = next(stream).await;
        if message.r#final {
            return message;
        }
    }
    panic!("no final message among 50 updates");
}

fn sms_status(message: &pb::WatchRecordResponse) -> i32 {
    message.record.as_ref().expect("record").sms_attempts[0].status
}

#[tokio::test]
async fn watch_sees_delivery_then_match_then_ends() {
    let app = common::spawn_app().await;
    let (_, id) = send(&app, "+99900123456", "", "1").await;
    let mut stream = watch(&app, Selector::VerificationId(id.clone())).await;
    let first = next(&mut stream).await;
    assert_eq!(first.changes, [RecordChange::Initial as i32]);
    assert!(!first.r#final);

    let mut message = first;
    for updates in 0.. {
        if sms_status(&message) == DeliveryStatus::Delivered as i32 {
            break;
        }
        assert!(updates < 50, "no delivery among 50 updates");
        message = next(&mut stream).await;
        assert!(
            message
                .changes
                .contains(&(RecordChange::AttemptUpdated as i32))
        );
    }
    app.verifications()
        .check_verification(pb::CheckVerificationRequest {
            verification_id: id,
            code: TEST_CODE.into(),
        })
        .await
        .expect("check");
    let last = next(&mut stream).await;
    assert!(last.changes.contains(&(RecordChange::MatchState as i32)));
    assert!(last.r#final);
    let outcome = last.record.expect("record").outcome.expect("outcome");
    assert_eq!(outcome.match_state, MatchState::Matched as i32);
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends with OK");
    app.shutdown().await;
}

#[tokio::test]
async fn a_flow_falling_back_to_a_call_shows_up_as_updates() {
    let app = common::spawn_app().await;
    let flow = app
        .flows()
        .create_flow(pb::CreateFlowRequest {
            name: "sms-then-call".into(),
            nodes: vec![pb::FlowNode {
                waiting_time_seconds: 30,
                trigger: FlowTrigger::SendFailed as i32,
                channel: Channel::Call as i32,
                channel_cut: false,
            }],
        })
        .await
        .expect("flow")
        .into_inner()
        .flow
        .expect("flow");
    // 99901…: every SMS fails, calls are answered.
    let (app_id, _) = send(&app, "+99901123456", &flow.flow_id, "fallback-1").await;
    let mut stream = watch(
        &app,
        Selector::Order(pb::OrderSelector {
            app_id,
            order_id: "fallback-1".into(),
        }),
    )
    .await;
    let mut saw_sms_failed = false;
    for updates in 0.. {
        assert!(updates < 50, "no call attempt among 50 updates");
        let message = next(&mut stream).await;
        let record = message.record.expect("record");
        if record.sms_attempts[0].status == DeliveryStatus::Failed as i32 {
            saw_sms_failed = true;
        }
        if let Some(call) = record.call_attempts.first() {
            assert!(saw_sms_failed, "the call comes after the SMS failed");
            assert!(
                message
                    .changes
                    .contains(&(RecordChange::AttemptAdded as i32))
            );
            assert_eq!(call.status, DeliveryStatus::Sending as i32);
            break;
        }
    }
    app.shutdown().await;
}

/// A server that polls once, then waits a long time: poll counts become exact.
async fn slow_polling_app() -> TestApp {
    common::spawn_app_custom(
        |_| {},
        |server| server.watch.backoff = vec![Duration::from_secs(30)],
    )
    .await
}

async fn watchers(
    app: &TestApp,
    id: &str,
    count: usize,
) -> Vec<Streaming<pb::WatchRecordResponse>> {
    // Spread over 10 connections: one HTTP/2 connection allows a limited number of streams.
    let mut channels = Vec::new();
    for _ in 0..10 {
        channels.push(common::connect(app.addr).await);
    }
    // Opened concurrently, so they race to start the one poller.
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..count {
        let mut client =
            pb::record_service_client::RecordServiceClient::new(channels[i % 10].clone());
        let id = id.to_owned();
        opening.spawn(async move {
            let mut stream = client
                .watch_record(pb::WatchRecordRequest {
                    selector: Some(Selector::VerificationId(id)),
                })
                .await
                .expect("watch")
                .into_inner();
            let first = next(&mut stream).await;
            assert_eq!(first.changes, [RecordChange::Initial as i32]);
            stream
        });
    }
    opening.join_all().await
}

#[tokio::test]
async fn a_thousand_watchers_cost_the_upstream_what_one_does() {
    let app = slow_polling_app().await;
    let (_, one) = send(&app, "+99900123456", "", "2").await;
    let (_, many) = send(&app, "+99900123457", "", "3").await;
    let base = app.sandbox.request_count_for(RECORD_BY_ID);
    let single = watchers(&app, &one, 1).await;
    let polls_for_one = app.sandbox.request_count_for(RECORD_BY_ID) - base;
    let thousand = watchers(&app, &many, 1000).await;
    let polls_for_thousand = app.sandbox.request_count_for(RECORD_BY_ID) - base - polls_for_one;
    assert_eq!(polls_for_one, 1);
    assert_eq!(polls_for_thousand, polls_for_one);
    drop((single, thousand));
    app.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_watch_stops_its_poller() {
    // The poller polls once, then waits 30 s, or less if its last watcher leaves. A watch that
    // finds a retired poller starts a new one, which polls at once; a watch that joins a live
    // poller is answered from its cache without a poll. So a new poll proves the old poller
    // is gone, with no waiting for time to pass.
    let app = slow_polling_app().await;
    let (_, id) = send(&app, "+99900123456", "", "4").await;
    let base = app.sandbox.request_count_for(RECORD_BY_ID);
    let mut stream = watch(&app, Selector::VerificationId(id.clone())).await;
    next(&mut stream).await;
    assert_eq!(app.sandbox.request_count_for(RECORD_BY_ID), base + 1);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = watch(&app, Selector::VerificationId(id.clone())).await;
        next(&mut probe).await;
        drop(probe);
        match app.sandbox.request_count_for(RECORD_BY_ID) - base {
            1 => assert!(
                Instant::now() < deadline,
                "the poller was still running 10 s after its only watcher left"
            ),
            2 => break,
            polls => panic!("{polls} polls: the poller kept polling after its only watcher left"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn server_shutdown_ends_open_streams_with_unavailable() {
    let app = slow_polling_app().await;
    let (_, id) = send(&app, "+99900123456", "", "5").await;
    let mut stream = watch(&app, Selector::VerificationId(id)).await;
    next(&mut stream).await;
    let shutdown = tokio::spawn(app.shutdown());
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("ends promptly")
        .expect("an item");
    assert_eq!(ended.expect_err("an error").code(), Code::Unavailable);
    shutdown.await.expect("shutdown completes");
}

#[tokio::test]
async fn watching_an_unknown_verification_is_not_found() {
    let app = common::spawn_app().await;
    let mut stream = watch(
        &app,
        Selector::VerificationId("12345678901234567890".into()),
    )
    .await;
    let status = stream.next().await.expect("an item").expect_err("an error");
    assert_eq!(status.code(), Code::NotFound);
    let status = app
        .records()
        .watch_record(pb::WatchRecordRequest { selector: None })
        .await
        .expect_err("no selector");
    assert_eq!(status.code(), Code::InvalidArgument);
    app.shutdown().await;
}

#[tokio::test]
async fn transient_upstream_errors_do_not_end_a_watch() {
    let app = common::spawn_app().await;
    let (_, id) = send(&app, "+99900123456", "", "6").await;
    let mut stream = watch(&app, Selector::VerificationId(id.clone())).await;
    next(&mut stream).await;
    // Fewer than the 5 consecutive failures a watch tolerates.
    let polls_before = app.sandbox.request_count_for(RECORD_BY_ID);
    app.sandbox.inject_status(RECORD_BY_ID, "-18", 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.sandbox.request_count_for(RECORD_BY_ID) < polls_before + 5 {
        assert!(
            Instant::now() < deadline,
            "the poller did not get past the injected errors within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.verifications()
        .check_verification(pb::CheckVerificationRequest {
            verification_id: id,
            code: TEST_CODE.into(),
        })
        .await
        .expect("check");
    // `next` fails on an error item, so reaching the final message proves the stream survived.
    let last = next_final(&mut stream).await;
    let outcome = last.record.expect("record").outcome.expect("outcome");
    assert_eq!(outcome.match_state, MatchState::Matched as i32);
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends with OK");
    app.shutdown().await;
}

#[tokio::test]
async fn persistent_upstream_errors_end_a_watch_with_the_mapped_status() {
    let app = common::spawn_app().await;
    let (_, id) = send(&app, "+99900123456", "", "7").await;
    let mut stream = watch(&app, Selector::VerificationId(id)).await;
    next(&mut stream).await;
    app.sandbox.inject_status(RECORD_BY_ID, "-18", 100);
    let first_error = async {
        while let Some(item) = stream.next().await {
            if let Err(status) = item {
                return Some(status);
            }
        }
        None
    };
    let status = tokio::time::timeout(Duration::from_secs(10), first_error)
        .await
        .expect("the watch ends within 10 s")
        .expect("it ends with an error, not OK");
    assert_eq!(status.code(), Code::Unavailable);
    let info = tonic_types::StatusExt::get_error_details(&status)
        .error_info()
        .cloned()
        .expect("error info");
    assert_eq!(info.reason, "SYSTEM_ERROR");
    app.shutdown().await;
}

#[tokio::test]
async fn a_watch_ends_at_the_callers_deadline() {
    let app = slow_polling_app().await;
    let (_, id) = send(&app, "+99900123456", "", "8").await;
    let mut request = tonic::Request::new(pb::WatchRecordRequest {
        selector: Some(Selector::VerificationId(id)),
    });
    // The watch ends 200 ms before the caller's own timer would (a tenth of 2 s), so its
    // DEADLINE_EXCEEDED arrives first even on a busy machine.
    request.set_timeout(Duration::from_secs(2));
    let mut stream = app
        .records()
        .watch_record(request)
        .await
        .expect("watch")
        .into_inner();
    next(&mut stream).await;
    let status = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("ends in time")
        .expect("an item")
        .expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    app.shutdown().await;
}

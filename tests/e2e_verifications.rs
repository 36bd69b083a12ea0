//! End to end: the whole verification journey through gRPC, against the sandbox.

mod common;

use common::{TEST_CODE, TEST_NUMBER};
use itnio_otp_grpc::proto::v1::{
    self as pb, Channel, DeliveryStatus, MatchState,
    verification_service_client::VerificationServiceClient,
};
use prost_types::Timestamp;
use serde_json::{Value, json};

#[tokio::test]
async fn send_check_and_read_the_record() {
    let app = common::spawn_app().await;
    let (app_id, template_id) = app.app_and_template("journey").await;
    let mut verifications = app.verifications();
    let sent = verifications
        .send_verification(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id,
            phone_number: TEST_NUMBER.into(),
            order_id: "order-1".into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    assert_eq!(sent.verification_id.len(), 20);
    assert_eq!(sent.phone_number, "9990012345678");
    assert_eq!(sent.channel, Channel::Sms as i32);

    let check = |code: &str| pb::CheckVerificationRequest {
        verification_id: sent.verification_id.clone(),
        code: code.into(),
    };
    let wrong = verifications
        .check_verification(check("9999"))
        .await
        .expect("check");
    assert_eq!(wrong.into_inner().match_state, MatchState::WrongCode as i32);
    let right = verifications
        .check_verification(check(TEST_CODE))
        .await
        .expect("check");
    assert_eq!(right.into_inner().match_state, MatchState::Matched as i32);
    let again = verifications
        .check_verification(check(TEST_CODE))
        .await
        .expect("check");
    assert_eq!(
        again.into_inner().match_state,
        MatchState::AlreadyUsed as i32
    );

    let record = app
        .records()
        .get_record(pb::GetRecordRequest {
            verification_id: sent.verification_id.clone(),
        })
        .await
        .expect("record")
        .into_inner()
        .record
        .expect("record");
    let outcome = record.outcome.expect("outcome");
    assert_eq!(outcome.match_state, MatchState::Matched as i32);
    assert!(outcome.verified_time.is_some());
    assert_eq!(record.sms_attempts.len(), 1);

    let by_order = app
        .records()
        .get_order_record(pb::GetOrderRecordRequest {
            app_id,
            order_id: "order-1".into(),
        })
        .await
        .expect("order record")
        .into_inner()
        .record
        .expect("record");
    assert_eq!(by_order.order_id, "order-1");
    assert_eq!(by_order.sms_attempts.len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn deliveries_progress_in_the_record() {
    let app = common::spawn_app().await;
    let (app_id, template_id) = app.app_and_template("progress").await;
    let sent = app
        .verifications()
        .send_verification(pb::SendVerificationRequest {
            app_id,
            template_id,
            phone_number: TEST_NUMBER.into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    // At 100× speed the SMS is delivered after 40 ms of real time; poll for up to 10 s.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut status = DeliveryStatus::Unspecified as i32;
    while tokio::time::Instant::now() < deadline {
        let record = app
            .records()
            .get_record(pb::GetRecordRequest {
                verification_id: sent.verification_id.clone(),
            })
            .await
            .expect("record")
            .into_inner()
            .record
            .expect("record");
        status = record.sms_attempts[0].status;
        if status == DeliveryStatus::Delivered as i32 {
            assert!(record.sms_attempts[0].done_time.is_some());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        status,
        DeliveryStatus::Delivered as i32,
        "no delivery within 10 s"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn custom_codes_resends_and_conversion_reports() {
    let app = common::spawn_app().await;
    let (app_id, template_id) = app.app_and_template("custom").await;
    let mut verifications = app.verifications();
    let sent = verifications
        .send_custom_code(pb::SendCustomCodeRequest {
            app_id: app_id.clone(),
            template_id,
            code: "A1B2C3".into(),
            phone_number: "+91 98563 21412".into(),
            channel: Channel::Call as i32,
            ..Default::default()
        })
        .await
        .expect("send custom")
        .into_inner();
    assert_eq!(sent.channel, Channel::Call as i32);

    let resent = verifications
        .resend_verification(pb::ResendVerificationRequest {
            verification_id: sent.verification_id.clone(),
            channel: Channel::Sms as i32,
            ..Default::default()
        })
        .await
        .expect("resend")
        .into_inner();
    assert_ne!(resent.verification_id, sent.verification_id);
    assert_eq!(resent.channel, Channel::Sms as i32);
    let checked = verifications
        .check_verification(pb::CheckVerificationRequest {
            verification_id: resent.verification_id.clone(),
            code: "A1B2C3".into(),
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(checked.match_state, MatchState::Matched as i32);

    let now = Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    };
    verifications
        .report_conversion(pb::ReportConversionRequest {
            app_id: app_id.clone(),
            verification_id: resent.verification_id,
            phone_number: "+91 98563 21412".into(),
            time: Some(now),
        })
        .await
        .expect("report conversion");
    verifications
        .report_conversion_rate(pb::ReportConversionRateRequest {
            app_id,
            mcc: "460".into(),
            conversion_count: Some(100),
            base_count: Some(1000),
            rate_percent: "10.5".into(),
            callback_time: Some(now),
        })
        .await
        .expect("report rate");
    assert_eq!(app.sandbox.request_count_for("POST /backfillRate"), 1);
    assert_eq!(app.sandbox.request_count_for("POST /postback/backfill"), 1);
    app.shutdown().await;
}

/// A server whose upstream is a recording mock: what our RPCs put on the wire, end to end.
/// Every POST succeeds with the data of a send (report replies carry no data worth reading).
async fn recording_upstream() -> (wiremock::MockServer, tonic::transport::Channel) {
    use wiremock::{Mock, ResponseTemplate, matchers::method};
    let upstream = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "0",
            "reason": "success",
            "data": {
                "verificationId": "22611231955000000001",
                "to": "919856321412",
                "channel": "sna",
                "snaUrl": "https://sna.example/v/1",
            },
        })))
        .mount(&upstream)
        .await;
    let config = common::upstream_config(&upstream.uri());
    let (addr, _server) = common::spawn_server(config, std::future::pending()).await;
    (upstream, common::connect(addr).await)
}

/// The JSON body of the one request made to `path`, with its signed headers checked.
async fn body_sent_to(upstream: &wiremock::MockServer, path: &str) -> Value {
    let requests = upstream.received_requests().await.expect("recording");
    let matching: Vec<_> = requests.iter().filter(|r| r.url.path() == path).collect();
    assert_eq!(matching.len(), 1, "one request to {path}");
    let request = matching[0];
    assert_eq!(request.headers["Api-Key"], common::API_KEY);
    assert_eq!(request.headers["Sign"].len(), 32);
    serde_json::from_slice(&request.body).expect("JSON body")
}

#[tokio::test]
async fn conversion_reports_reach_the_upstream_as_documented() {
    let (upstream, channel) = recording_upstream().await;
    let mut verifications = VerificationServiceClient::new(channel);
    let time = Timestamp {
        seconds: 1_674_957_598,
        nanos: 250_000_000,
    };
    verifications
        .report_conversion(pb::ReportConversionRequest {
            app_id: "mRELxtHc".into(),
            verification_id: "22206051443051000003".into(),
            phone_number: "+91 98563 21412".into(),
            time: Some(time),
        })
        .await
        .expect("report conversion");
    assert_eq!(
        body_sent_to(&upstream, "/postback/backfill").await,
        json!({
            "appId": "mRELxtHc",
            "verificationId": "22206051443051000003",
            "number": "919856321412",
            "time": "1674957598250",
        })
    );
    verifications
        .report_conversion_rate(pb::ReportConversionRateRequest {
            app_id: "mRELxtHc".into(),
            mcc: "460".into(),
            conversion_count: Some(100),
            base_count: Some(1000),
            rate_percent: "10.5".into(),
            callback_time: Some(time),
        })
        .await
        .expect("report rate");
    assert_eq!(
        body_sent_to(&upstream, "/backfillRate").await,
        json!({
            "appId": "mRELxtHc",
            "mcc": "460",
            "backfillNumber": "100",
            "backfillCardinalNumber": "1000",
            "backfillNow": "10.5",
            "callbackTime": "2023-01-29T01:59:58+00:00",
        })
    );
}

#[tokio::test]
async fn sends_reach_the_upstream_with_every_field() {
    let (upstream, channel) = recording_upstream().await;
    let mut verifications = VerificationServiceClient::new(channel);
    let sent = verifications
        .send_custom_code(pb::SendCustomCodeRequest {
            app_id: "mRELxtHc".into(),
            template_id: "455".into(),
            flow_id: "77".into(),
            code: "A1B2C3".into(),
            phone_number: "+91 98563 21412".into(),
            channel: Channel::Sna as i32,
            order_id: "order-1".into(),
            ..Default::default()
        })
        .await
        .expect("send custom code")
        .into_inner();
    assert_eq!(
        (sent.channel, sent.sna_url.as_str()),
        (Channel::Sna as i32, "https://sna.example/v/1")
    );
    assert_eq!(
        body_sent_to(&upstream, "/verification/sendRule").await,
        json!({
            "appId": "mRELxtHc",
            "templateId": 455,
            "flowId": 77,
            "code": "A1B2C3",
            "to": "919856321412",
            "channel": "sna",
            "orderId": "order-1",
        })
    );
}

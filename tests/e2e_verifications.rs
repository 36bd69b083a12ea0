//! End to end: the whole verification journey through gRPC, against the sandbox.

mod common;

use common::{TEST_CODE, TEST_NUMBER};
use itnio_otp_grpc::proto::v1::{self as pb, Channel, DeliveryStatus, MatchState};
use prost_types::Timestamp;

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
    // At 100× speed the SMS is delivered after 40 ms of real time.
    let mut status = DeliveryStatus::Unspecified as i32;
    for _ in 0..50 {
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
    assert_eq!(status, DeliveryStatus::Delivered as i32);
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
            phone_number: "91856321412".into(),
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
            phone_number: "91856321412".into(),
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

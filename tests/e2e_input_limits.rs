//! End to end: oversized, unclean and implausible input is refused with INVALID_ARGUMENT and a
//! field violation per bad field, and never reaches the upstream (the sandbox counts every
//! request it receives). Each case is one of the holes issue 9 found: values that went
//! upstream, path ids that came back as UNAVAILABLE, CR/LF stripped into a different id.

mod common;

use std::fmt::Debug;

use itnio_otp_grpc::proto::v1::{self as pb, Channel, FlowTrigger};
use prost_types::Timestamp;
use tonic::{Code, Response, Status};
use tonic_types::StatusExt;

/// Far past every documented limit, and still well inside any gRPC message size cap.
const LONG: usize = 64 * 1024;

fn long() -> String {
    "x".repeat(LONG)
}

/// The refusal is INVALID_ARGUMENT naming exactly `fields`, and its message echoes no value.
fn assert_refused<T: Debug>(result: Result<Response<T>, Status>, fields: &[&str]) {
    let Err(status) = result else {
        panic!("must be refused, but it succeeded");
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations: Vec<String> = status
        .get_error_details()
        .bad_request()
        .expect("bad request details")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(violations, fields, "{}", status.message());
    assert!(status.message().len() < 200, "no value is echoed");
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

#[tokio::test]
async fn unbounded_strings_from_the_issue_are_refused_before_the_upstream() {
    let app = common::spawn_app().await;
    let before = app.sandbox.request_count();
    let template = |app_id: String, sender_id: String| pb::CreateTemplateRequest {
        app_id,
        name: "login".into(),
        text: "##code## is your code".into(),
        sender_id,
        ..Default::default()
    };
    assert_refused(
        app.templates()
            .create_template(template(long(), long()))
            .await,
        &["app_id", "sender_id"],
    );
    assert_refused(
        app.templates()
            .update_template(pb::UpdateTemplateRequest {
                template_id: "1".into(),
                name: "login".into(),
                text: "##code##".into(),
                sender_id: long(),
                ..Default::default()
            })
            .await,
        &["sender_id"],
    );
    assert_refused(
        app.verifications()
            .resend_verification(pb::ResendVerificationRequest {
                verification_id: long(),
                ..Default::default()
            })
            .await,
        &["verification_id"],
    );
    assert_refused(
        app.verifications()
            .check_verification(pb::CheckVerificationRequest {
                verification_id: long(),
                code: "1234".into(),
            })
            .await,
        &["verification_id"],
    );
    assert_refused(
        app.verifications()
            .report_conversion(pb::ReportConversionRequest {
                app_id: long(),
                verification_id: long(),
                phone_number: String::new(),
                time: at(1_681_184_764),
            })
            .await,
        &["app_id", "verification_id"],
    );
    assert_refused(
        app.records()
            .get_order_record(pb::GetOrderRecordRequest {
                app_id: long(),
                order_id: "1234566".into(),
            })
            .await,
        &["app_id"],
    );
    assert_eq!(app.sandbox.request_count(), before, "nothing went upstream");
    app.shutdown().await;
}

#[tokio::test]
async fn long_or_unclean_path_ids_are_invalid_not_unavailable_nor_altered() {
    let app = common::spawn_app().await;
    // A real app, so that a stripped "mREL\r\nxtHc"-style id would have found it.
    let (app_id, template_id) = app.app_and_template("pathids").await;
    let before = app.sandbox.request_count();
    let sixty_thousand = "a".repeat(60_000);
    let (head, tail) = app_id.split_at(4);
    for bad in [
        sixty_thousand.clone(),
        format!("{head}\r\n{tail}"),
        format!("{head}\t{tail}"),
        format!("{app_id}\n"),
        format!(" {app_id}"),
        format!("{head}\u{202E}{tail}"),
    ] {
        assert_refused(
            app.apps().get_app(pb::GetAppRequest { app_id: bad }).await,
            &["app_id"],
        );
    }
    for bad in [
        format!("{template_id}\r\n"),
        format!(" {template_id}"),
        "9".repeat(60_000),
    ] {
        assert_refused(
            app.templates()
                .get_template(pb::GetTemplateRequest { template_id: bad })
                .await,
            &["template_id"],
        );
    }
    for bad in [sixty_thousand.clone(), "2220605144\r\n3051000003".into()] {
        assert_refused(
            app.records()
                .get_record(pb::GetRecordRequest {
                    verification_id: bad,
                })
                .await,
            &["verification_id"],
        );
    }
    assert_refused(
        app.flows()
            .get_flow(pb::GetFlowRequest {
                flow_id: sixty_thousand,
            })
            .await,
        &["flow_id"],
    );
    assert_eq!(app.sandbox.request_count(), before, "nothing went upstream");
    // The valid id itself still works, sent as is.
    let found = app
        .apps()
        .get_app(pb::GetAppRequest {
            app_id: app_id.clone(),
        })
        .await
        .expect("valid id")
        .into_inner();
    assert_eq!(found.app.expect("app").app_id, app_id);
    app.shutdown().await;
}

#[tokio::test]
async fn control_and_bidi_characters_never_reach_the_upstream() {
    let app = common::spawn_app().await;
    let before = app.sandbox.request_count();
    for name in [
        "nul\0name",
        "esc\u{1b}[2J",
        "bell\u{7}",
        "rtl\u{202E}gnp.exe",
        "iso\u{2067}late",
    ] {
        assert_refused(
            app.apps()
                .create_app(pb::CreateAppRequest {
                    name: name.into(),
                    ..Default::default()
                })
                .await,
            &["name"],
        );
    }
    assert_refused(
        app.templates()
            .create_template(pb::CreateTemplateRequest {
                app_id: "mRELxtHc".into(),
                name: "login\n".into(),
                text: "##code##\u{7}\u{202D}".into(),
                sender_id: "ACME\u{0}".into(),
                ..Default::default()
            })
            .await,
        &["name", "text", "sender_id"],
    );
    assert_refused(
        app.verifications()
            .send_custom_code(pb::SendCustomCodeRequest {
                app_id: "mRELxtHc".into(),
                code: "12\u{1b}4".into(),
                phone_number: common::TEST_NUMBER.into(),
                order_id: "order\r\n1".into(),
                ..Default::default()
            })
            .await,
        &["code", "order_id"],
    );
    assert_eq!(app.sandbox.request_count(), before, "nothing went upstream");
    app.shutdown().await;
}

#[tokio::test]
async fn runaway_flows_counts_and_times_are_refused() {
    let app = common::spawn_app().await;
    let before = app.sandbox.request_count();
    let node = pb::FlowNode {
        waiting_time_seconds: 30,
        trigger: FlowTrigger::SendFailed as i32,
        channel: Channel::Sms as i32,
        channel_cut: false,
    };
    assert_refused(
        app.flows()
            .create_flow(pb::CreateFlowRequest {
                name: "fallback".into(),
                nodes: vec![node; 20_000],
            })
            .await,
        &["nodes"],
    );
    let rate = |conversion_count, base_count, callback_time| pb::ReportConversionRateRequest {
        app_id: "mRELxtHc".into(),
        mcc: "460".into(),
        conversion_count,
        base_count,
        rate_percent: "10".into(),
        callback_time,
    };
    assert_refused(
        app.verifications()
            .report_conversion_rate(rate(Some(u64::MAX), Some(0), at(1_674_957_598)))
            .await,
        &["conversion_count", "base_count"],
    );
    // 1970 and the last second of 9999.
    for seconds in [0, 253_402_300_799] {
        assert_refused(
            app.verifications()
                .report_conversion_rate(rate(Some(1), Some(10), at(seconds)))
                .await,
            &["callback_time"],
        );
        assert_refused(
            app.verifications()
                .report_conversion(pb::ReportConversionRequest {
                    app_id: "mRELxtHc".into(),
                    verification_id: "22206051443051000003".into(),
                    phone_number: String::new(),
                    time: at(seconds),
                })
                .await,
            &["time"],
        );
    }
    assert_eq!(app.sandbox.request_count(), before, "nothing went upstream");
    app.shutdown().await;
}

//! End to end, one test per send-guard rule: the real server against the sandbox, each rule
//! proven by what it answers and by how many calls reached the sandbox (a refusal makes none).

mod common;

use std::time::Duration;

use common::{TEST_CODE, TEST_NUMBER, TestApp};
use itnio_otp_grpc::{
    guard::Policy,
    proto::v1::{self as pb, MatchState, verification_service_client::VerificationServiceClient},
    telemetry::metrics,
};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

const SEND: &str = "POST /verification/send";
const SEND_RULE: &str = "POST /verification/sendRule";
const RESEND: &str = "POST /verification/resend";
const VERIFY: &str = "POST /verification/verify";

/// UK mobiles (two 7-digit prefixes), a US number and a UK premium-rate number.
const GB_MOBILE: &str = "+44 7400 123456";
const GB_PREMIUM: &str = "+44 909 879 0000";
const US_NUMBER: &str = "+1 415 555 0134";

type Ids = (String, String);

async fn app_with(policy: &str) -> TestApp {
    let policy = Policy::parse(policy).expect("test policy");
    common::spawn_app_custom(|_| {}, |config| config.guard = policy).await
}

/// One more server on `app`'s sandbox, with its own policy (which may name apps made there).
async fn server_on(app: &TestApp, policy: &str) -> Channel {
    let mut config = common::upstream_config(&app.sandbox_url);
    config.guard = Policy::parse(policy).expect("test policy");
    let (addr, _server) = common::spawn_server(config, std::future::pending()).await;
    common::connect(addr).await
}

fn send_request(ids: &Ids, phone: &str) -> pb::SendVerificationRequest {
    pb::SendVerificationRequest {
        app_id: ids.0.clone(),
        template_id: ids.1.clone(),
        phone_number: phone.into(),
        ..Default::default()
    }
}

async fn send_on(
    channel: &Channel,
    request: pb::SendVerificationRequest,
) -> Result<pb::SendVerificationResponse, Status> {
    VerificationServiceClient::new(channel.clone())
        .send_verification(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn check(
    app: &TestApp,
    verification_id: &str,
    code: &str,
) -> Result<pb::CheckVerificationResponse, Status> {
    app.verifications()
        .check_verification(pb::CheckVerificationRequest {
            verification_id: verification_id.into(),
            code: code.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn info(status: &Status) -> tonic_types::ErrorInfo {
    status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo: {status:?}"))
}

/// The value of `metric` with these labels (in the exporter's order), 0 if never counted.
fn counted(metric: &str, labels: &str) -> u64 {
    let prefix = format!("{metric}{{{labels}}} ");
    metrics::render()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().expect("a count"))
}

fn refusals(reason: &str, country: &str, dry_run: bool) -> u64 {
    counted(
        "itnio_guard_refusals_total",
        &format!("reason=\"{reason}\",country=\"{country}\",dry_run=\"{dry_run}\""),
    )
}

#[tokio::test]
async fn phone_numbers_are_parsed_for_real_before_anything_is_sent() {
    let app = common::spawn_app().await;
    let ids = app.app_and_template("numbers").await;
    for (number, why) in [
        ("(555) 123-4567", "E.164"),
        ("999 00 1234 5678", "E.164"),
        ("+1 555 123 4567", "assigned"),
        ("+44 7400 12", "too short"),
        ("+990 1234 5678", "country calling code"),
    ] {
        let status = send_on(&app.channel, send_request(&ids, number))
            .await
            .expect_err(number);
        assert_eq!(status.code(), Code::InvalidArgument, "{number}");
        let details = status.get_error_details();
        let violation = &details.bad_request().expect("BadRequest").field_violations[0];
        assert_eq!(violation.field, "phone_number");
        assert!(
            violation.description.contains(why),
            "{number}: {violation:?}"
        );
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        assert!(
            !violation.description.contains(&digits[..6]),
            "{violation:?}"
        );
    }
    assert_eq!(app.sandbox.request_count_for(SEND), 0);
    let sent = send_on(&app.channel, send_request(&ids, "+44 (0)7400 123456"))
        .await
        .expect("a national trunk prefix in brackets is still E.164");
    assert_eq!(sent.phone_number, "447400123456");
    app.shutdown().await;
}

#[tokio::test]
async fn destinations_outside_the_policy_are_permission_denied_before_the_upstream() {
    let app = common::spawn_app().await;
    let (uk_only, anywhere) = (
        app.app_and_template("uk-only").await,
        app.app_and_template("anywhere").await,
    );
    let before = refusals("DESTINATION_NOT_ALLOWED", "GB", false);

    let status = send_on(&app.channel, send_request(&anywhere, GB_PREMIUM))
        .await
        .expect_err("premium rate");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let details = info(&status);
    assert_eq!(details.reason, "DESTINATION_NOT_ALLOWED");
    assert_eq!(details.metadata["country"], "GB");
    assert_eq!(details.metadata["number_type"], "premium_rate");
    assert_eq!(details.metadata["rule"], "denied_number_types");
    assert!(!status.message().contains("909"), "{}", status.message());
    assert_eq!(refusals("DESTINATION_NOT_ALLOWED", "GB", false), before + 1);

    let status = send_on(&app.channel, send_request(&anywhere, "+882 3421234"))
        .await
        .expect_err("non-geographic");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(info(&status).metadata["rule"], "denied_countries");
    assert_eq!(info(&status).metadata["country"], "ZZ");
    assert_eq!(app.sandbox.request_count_for(SEND), 0, "nothing was sent");

    // A policy for one app: only the UK there, every country elsewhere.
    let server = server_on(
        &app,
        &format!("[apps.{}]\nallowed_countries = [\"GB\"]\n", uk_only.0),
    )
    .await;
    let status = send_on(&server, send_request(&uk_only, US_NUMBER))
        .await
        .expect_err("not the UK");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(info(&status).metadata["rule"], "allowed_countries");
    assert_eq!(info(&status).metadata["country"], "US");
    assert_eq!(app.sandbox.request_count_for(SEND), 0);
    send_on(&server, send_request(&uk_only, GB_MOBILE))
        .await
        .expect("the UK");
    send_on(&server, send_request(&anywhere, US_NUMBER))
        .await
        .expect("another app");
    assert_eq!(app.sandbox.request_count_for(SEND), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn velocity_limits_refuse_per_number_then_prefix_then_country() {
    let app = app_with(
        r#"
        [defaults]
        one_pending = false
        per_number = { sends = 2, window = "1h" }
        per_prefix = { sends = 3, window = "1h", digits = 7 }
        per_country = { sends = 4, window = "1h" }
        "#,
    )
    .await;
    let ids = app.app_and_template("velocity").await;
    let before = refusals("SEND_RATE_EXCEEDED", "GB", false);
    // Checks the refusal's details; returns its QuotaFailure subject.
    let limited = |status: Status, scope: &str| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let details = status.get_error_details();
        let info = details.error_info().expect("info");
        assert_eq!(info.reason, "SEND_RATE_EXCEEDED");
        assert_eq!(info.metadata["limit"], scope);
        assert_eq!(info.metadata["country"], "GB");
        let delay = details.retry_info().expect("RetryInfo").retry_delay;
        let delay = delay.expect("a delay");
        // When the guard admits again: within two windows (a full bucket must slide out).
        assert!(
            delay > Duration::ZERO && delay <= Duration::from_secs(2 * 3600),
            "{delay:?}"
        );
        let quota = details.quota_failure().expect("QuotaFailure");
        quota.violations[0].subject.clone()
    };
    let sends = || app.sandbox.request_count_for(SEND);

    for _ in 0..2 {
        send_on(&app.channel, send_request(&ids, "+44 7400 123456"))
            .await
            .expect("within the number's limit");
    }
    let status = send_on(&app.channel, send_request(&ids, "+44 7400 123456"))
        .await
        .expect_err("third to one number");
    assert_eq!(limited(status, "per_number"), "per_number");
    assert_eq!(sends(), 2);

    send_on(&app.channel, send_request(&ids, "+44 7400 123457"))
        .await
        .expect("third to the prefix");
    let status = send_on(&app.channel, send_request(&ids, "+44 7400 123458"))
        .await
        .expect_err("fourth to the prefix");
    assert_eq!(limited(status, "per_prefix"), "per_prefix");
    assert_eq!(sends(), 3);

    send_on(&app.channel, send_request(&ids, "+44 7500 123456"))
        .await
        .expect("fourth to the country");
    let status = send_on(&app.channel, send_request(&ids, "+44 7900 123456"))
        .await
        .expect_err("fifth to the country");
    assert_eq!(limited(status, "per_country"), "per_country:GB");
    assert_eq!(sends(), 4);
    send_on(&app.channel, send_request(&ids, US_NUMBER))
        .await
        .expect("another country");
    assert_eq!(sends(), 5);
    assert_eq!(refusals("SEND_RATE_EXCEEDED", "GB", false), before + 3);
    app.shutdown().await;
}

#[tokio::test]
async fn a_second_send_while_one_is_pending_returns_it_without_sending() {
    let app = common::spawn_app().await;
    let (first, second) = (
        app.app_and_template("pending-1").await,
        app.app_and_template("pending-2").await,
    );
    let sends = || app.sandbox.request_count_for(SEND);
    let sent = send_on(&app.channel, send_request(&first, TEST_NUMBER))
        .await
        .expect("send");
    assert!(!sent.pending);
    let again = send_on(&app.channel, send_request(&first, TEST_NUMBER))
        .await
        .expect("pending");
    assert!(again.pending);
    assert_eq!(
        (&again.verification_id, &again.order_id),
        (&sent.verification_id, &sent.order_id)
    );
    assert_eq!(sends(), 1, "no second SMS");

    // Another app is another verification.
    let other = send_on(&app.channel, send_request(&second, TEST_NUMBER))
        .await
        .expect("other app");
    assert!(!other.pending);
    assert_eq!(sends(), 2);

    // Asked for, a new code goes out and becomes the pending one.
    let replaced = send_on(
        &app.channel,
        pb::SendVerificationRequest {
            replace_pending: true,
            ..send_request(&first, TEST_NUMBER)
        },
    )
    .await
    .expect("replace");
    assert!(!replaced.pending);
    assert_ne!(replaced.verification_id, sent.verification_id);
    assert_eq!(sends(), 3);

    // ResendVerification is the other way to ask: its new id becomes the pending one.
    let resent = app
        .verifications()
        .resend_verification(pb::ResendVerificationRequest {
            verification_id: replaced.verification_id.clone(),
            ..Default::default()
        })
        .await
        .expect("resend")
        .into_inner();
    assert_eq!(app.sandbox.request_count_for(RESEND), 1);
    let pending = send_on(&app.channel, send_request(&first, TEST_NUMBER))
        .await
        .expect("pending");
    assert!(pending.pending);
    assert_eq!(pending.verification_id, resent.verification_id);

    // A right code ends it: the next send sends.
    let matched = check(&app, &resent.verification_id, TEST_CODE)
        .await
        .expect("check");
    assert_eq!(matched.match_state(), MatchState::Matched);
    let fresh = send_on(&app.channel, send_request(&first, TEST_NUMBER))
        .await
        .expect("send after the match");
    assert!(!fresh.pending);
    assert_eq!(sends(), 4);

    // SendCustomCode: the same code while pending is answered, another code is sent.
    let custom = |code: &str| pb::SendCustomCodeRequest {
        app_id: second.0.clone(),
        code: code.into(),
        phone_number: "+44 7400 654321".into(),
        ..Default::default()
    };
    let mut client = app.verifications();
    let one = client
        .send_custom_code(custom("4711"))
        .await
        .expect("custom")
        .into_inner();
    let same = client
        .send_custom_code(custom("4711"))
        .await
        .expect("same code")
        .into_inner();
    assert!(!one.pending && same.pending);
    assert_eq!(same.verification_id, one.verification_id);
    let other_code = client
        .send_custom_code(custom("0815"))
        .await
        .expect("another code")
        .into_inner();
    assert!(!other_code.pending);
    assert_eq!(app.sandbox.request_count_for(SEND_RULE), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn checks_past_the_cap_are_failed_precondition_without_the_upstream() {
    let app = common::spawn_app().await;
    let ids = app.app_and_template("checks").await;
    let sent = send_on(&app.channel, send_request(&ids, TEST_NUMBER))
        .await
        .expect("send");
    for attempt in 1..=5 {
        let wrong = check(&app, &sent.verification_id, "0000")
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e:?}"));
        assert_eq!(wrong.match_state(), MatchState::WrongCode);
    }
    assert_eq!(app.sandbox.request_count_for(VERIFY), 5);
    for code in ["0000", TEST_CODE] {
        let status = check(&app, &sent.verification_id, code)
            .await
            .expect_err("past the cap");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let details = info(&status);
        assert_eq!(details.reason, "TOO_MANY_CHECK_ATTEMPTS");
        assert_eq!(details.metadata["max_check_attempts"], "5");
    }
    assert_eq!(app.sandbox.request_count_for(VERIFY), 5, "not called again");
    // The exhausted verification is no longer pending: the user can get a new code.
    let fresh = send_on(&app.channel, send_request(&ids, TEST_NUMBER))
        .await
        .expect("a new code");
    assert!(!fresh.pending);
    assert_eq!(app.sandbox.request_count_for(SEND), 2);
    check(&app, &fresh.verification_id, TEST_CODE)
        .await
        .expect("the new verification has its own attempts");
    app.shutdown().await;
}

#[tokio::test]
async fn dry_run_counts_and_logs_but_sends() {
    let app = app_with(
        r#"
        dry_run = true
        [defaults]
        per_number = { sends = 1, window = "1h" }
        "#,
    )
    .await;
    let ids = app.app_and_template("dry-run").await;
    let (destination, rate) = (
        refusals("DESTINATION_NOT_ALLOWED", "GB", true),
        refusals("SEND_RATE_EXCEEDED", "GB", true),
    );
    send_on(&app.channel, send_request(&ids, GB_PREMIUM))
        .await
        .expect("dry-run lets it through");
    send_on(&app.channel, send_request(&ids, GB_PREMIUM))
        .await
        .expect("and the second one too, though pending and over the limit");
    assert_eq!(app.sandbox.request_count_for(SEND), 2);
    assert_eq!(
        refusals("DESTINATION_NOT_ALLOWED", "GB", true),
        destination + 2
    );
    assert_eq!(refusals("SEND_RATE_EXCEEDED", "GB", true), rate + 1);
    assert!(
        counted(
            "itnio_guard_pending_returned_total",
            "country=\"GB\",dry_run=\"true\""
        ) >= 1
    );
    app.shutdown().await;
}

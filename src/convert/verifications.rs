//! Sending and checking codes, and conversion reports: gRPC requests to `/verification/*`,
//! `/postback/backfill` and `/backfillRate` bodies, and the replies back.

use chrono::Utc;

use crate::{
    idempotency::RequestId,
    phone::{Destination, PhoneRules},
    proto::v1::{self as pb, MatchState},
    upstream as wire,
};

use super::{
    FieldViolation, InvalidRequest, SEND_CHANNELS, Violations, channel_from_wire,
    limits::{CHECK_CODE_CHARS, CUSTOM_CODE_CHARS, MAX_COUNT},
};

/// The reply of send, sendRule and resend, before it is put in each RPC's response.
pub struct Sent {
    /// The new verification id.
    pub verification_id: String,
    /// Digits the code went to.
    pub phone_number: String,
    /// Channel used.
    pub channel: i32,
    /// SNA URL, when the channel is SNA.
    pub sna_url: String,
}

/// Checks what both sends share and builds the body; `template_id` and `code` are each send's
/// own. Fields are checked in message order, so violations come out in that order too. The
/// parsed phone number is stored in `$destination`.
macro_rules! send_body {
    ($v:expr, $req:expr, $phones:expr, $destination:ident,
     template_id: $template_id:expr, code: $code:expr $(,)?) => {{
        $v.app_id("app_id", &$req.app_id);
        let body = wire::SendRequest {
            app_id: $req.app_id.clone(),
            template_id: $template_id,
            code: $code,
            flow_id: $v.optional_numeric_id("flow_id", &$req.flow_id),
            to: {
                $destination = $v.phone("phone_number", &$req.phone_number, true, $phones);
                $destination
                    .as_ref()
                    .map(|d| d.digits.clone())
                    .unwrap_or_default()
            },
            channel: $v.channel("channel", $req.channel, SEND_CHANNELS),
            order_id: $v.order_id("order_id", &$req.order_id),
        };
        body
    }};
}

/// A checked send: the body for ITNIO, where it goes (for the send guard), and the caller's
/// request id, parsed once here.
#[derive(Debug)]
pub struct CheckedSend {
    /// The ITNIO body.
    pub body: wire::SendRequest,
    /// The parsed number.
    pub destination: Destination,
    /// The AIP-155 request id, if the caller gave one.
    pub request_id: Option<RequestId>,
}

/// Checks a `SendVerification` request and builds the `/verification/send` body.
pub fn send_request(
    req: &pb::SendVerificationRequest,
    phones: &PhoneRules,
) -> Result<CheckedSend, InvalidRequest> {
    let mut v = Violations::default();
    let destination;
    let body = send_body!(v, req, phones, destination,
        template_id: v.numeric_id("template_id", &req.template_id),
        code: None,
    );
    let request_id = v.request_id("request_id", &req.request_id);
    checked_send(v, body, destination, request_id)
}

/// Checks a `SendCustomCode` request and builds the `/verification/sendRule` body.
pub fn send_custom_code_request(
    req: &pb::SendCustomCodeRequest,
    phones: &PhoneRules,
) -> Result<CheckedSend, InvalidRequest> {
    let mut v = Violations::default();
    let destination;
    let body = send_body!(v, req, phones, destination,
        template_id: v.optional_numeric_id("template_id", &req.template_id),
        code: {
            v.text("code", &req.code, CUSTOM_CODE_CHARS);
            Some(req.code.clone())
        },
    );
    let request_id = v.request_id("request_id", &req.request_id);
    checked_send(v, body, destination, request_id)
}

/// The body and its destination once every field passed (a valid send always has a number).
fn checked_send(
    v: Violations,
    body: wire::SendRequest,
    destination: Option<Destination>,
    request_id: Option<RequestId>,
) -> Result<CheckedSend, InvalidRequest> {
    let body = v.finish(body)?;
    // `phone` records a violation whenever it returns no destination for a required number, so
    // this is never `None` here; were it, the number is what is missing.
    destination
        .map(|destination| CheckedSend {
            body,
            destination,
            request_id,
        })
        .ok_or_else(|| {
            InvalidRequest(vec![FieldViolation {
                field: "phone_number".into(),
                description: "is required".into(),
            }])
        })
}

/// Checks a `ResendVerification` request and builds the `/verification/resend` body; the
/// request id comes parsed beside it.
pub fn resend_request(
    req: &pb::ResendVerificationRequest,
) -> Result<(wire::ResendRequest, Option<RequestId>), InvalidRequest> {
    let mut v = Violations::default();
    v.verification_id("verification_id", &req.verification_id);
    let body = wire::ResendRequest {
        verification_id: req.verification_id.clone(),
        channel: v.channel("channel", req.channel, SEND_CHANNELS),
    };
    let request_id = v.request_id("request_id", &req.request_id);
    v.finish((body, request_id))
}

/// Checks a `CheckVerification` request and builds the `/verification/verify` body.
pub fn check_request(
    req: &pb::CheckVerificationRequest,
) -> Result<wire::CheckRequest, InvalidRequest> {
    let mut v = Violations::default();
    v.verification_id("verification_id", &req.verification_id);
    v.text("code", &req.code, CHECK_CODE_CHARS);
    v.finish(wire::CheckRequest {
        verification_id: req.verification_id.clone(),
        code: req.code.clone(),
    })
}

/// Checks a `ReportConversion` request and builds the `/postback/backfill` body.
pub fn conversion_request(
    req: &pb::ReportConversionRequest,
    phones: &PhoneRules,
) -> Result<wire::ConversionReport, InvalidRequest> {
    let mut v = Violations::default();
    v.app_id("app_id", &req.app_id);
    v.verification_id("verification_id", &req.verification_id);
    let number = v
        .phone("phone_number", &req.phone_number, false, phones)
        .map(|destination| destination.digits);
    let time = v
        .time_in_window("time", req.time.as_ref(), Utc::now())
        .map(|t| t.timestamp_millis().to_string());
    v.finish(wire::ConversionReport {
        app_id: req.app_id.clone(),
        verification_id: req.verification_id.clone(),
        number,
        time: time.unwrap_or_default(),
    })
}

/// Checks a `ReportConversionRate` request and builds the `/backfillRate` body.
pub fn conversion_rate_request(
    req: &pb::ReportConversionRateRequest,
) -> Result<wire::ConversionRateReport, InvalidRequest> {
    let mut v = Violations::default();
    v.app_id("app_id", &req.app_id);
    let mcc = &req.mcc;
    if mcc.is_empty() || mcc.len() > 3 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
        v.add("mcc", "must be a mobile country code of 1–3 digits");
    }
    counts(&mut v, req.conversion_count, req.base_count);
    if !is_percentage(&req.rate_percent) {
        v.add(
            "rate_percent",
            "must be a decimal from 0 to 100 with at most two decimals",
        );
    }
    let callback_time = v
        .time_in_window("callback_time", req.callback_time.as_ref(), Utc::now())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
    v.finish(wire::ConversionRateReport {
        app_id: req.app_id.clone(),
        mcc: mcc.clone(),
        backfill_number: req.conversion_count.map(|n| n.to_string()),
        backfill_cardinal_number: req.base_count.map(|n| n.to_string()),
        backfill_now: req.rate_percent.clone(),
        callback_time: callback_time.unwrap_or_default(),
    })
}

/// The counts behind a rate: each at most [`MAX_COUNT`], the base (the denominator) never 0, and
/// never fewer sends than conversions. One violation per field.
fn counts(v: &mut Violations, conversions: Option<u64>, base: Option<u64>) {
    if conversions.is_some_and(|n| n > MAX_COUNT) {
        v.count("conversion_count", conversions);
    } else if let (Some(conversions), Some(base)) = (conversions, base)
        && conversions > base
    {
        v.add("conversion_count", "must not exceed base_count");
    }
    if base == Some(0) {
        v.add(
            "base_count",
            "must be at least 1 (a rate over no sends is undefined)",
        );
    } else {
        v.count("base_count", base);
    }
}

/// A decimal 0–100 with at most two decimals, e.g. "0", "12.5", "100.00".
fn is_percentage(value: &str) -> bool {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = !whole.is_empty()
        && whole.len() <= 3
        && digits(whole)
        && digits(fraction)
        && fraction.len() <= 2
        && !(value.contains('.') && fraction.is_empty());
    well_formed
        && value
            .parse::<f64>()
            .is_ok_and(|rate| (0.0..=100.0).contains(&rate))
}

/// The reply of a send, sendRule or resend.
pub fn sent_from_wire(sent: wire::Sent) -> Sent {
    Sent {
        verification_id: sent.verification_id,
        phone_number: sent.to.unwrap_or_default(),
        channel: channel_from_wire(sent.channel.as_deref()) as i32,
        sna_url: sent.sna_url.unwrap_or_default(),
    }
}

/// The reply of a verify call.
pub fn check_from_wire(
    result: wire::CheckResult,
    requested_id: &str,
) -> pb::CheckVerificationResponse {
    pb::CheckVerificationResponse {
        verification_id: result
            .verification_id
            .unwrap_or_else(|| requested_id.to_owned()),
        phone_number: result.to.unwrap_or_default(),
        channel: channel_from_wire(result.channel.as_deref()) as i32,
        match_state: match_state_from_wire(result.matched) as i32,
    }
}

/// Upstream `matched` as proto.
pub fn match_state_from_wire(matched: Option<i32>) -> MatchState {
    match matched {
        Some(-1) => MatchState::NotVerified,
        Some(0) => MatchState::Matched,
        Some(1) => MatchState::Sending,
        Some(2) => MatchState::WrongCode,
        Some(3) => MatchState::NotFound,
        Some(4) => MatchState::AlreadyUsed,
        Some(5) => MatchState::Expired,
        _ => MatchState::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::tests::fields;
    use prost_types::Timestamp;

    /// E.164 only, no test numbers: the live default.
    const E164: PhoneRules = PhoneRules {
        default_region: None,
        test_numbers: false,
    };

    #[test]
    fn send_normalises_the_phone_number() {
        let request = pb::SendVerificationRequest {
            app_id: "mRELxtHc".into(),
            template_id: "455".into(),
            phone_number: "+91 98563-21412".into(),
            ..Default::default()
        };
        let CheckedSend {
            body,
            destination,
            request_id,
        } = send_request(&request, &E164).expect("valid");
        assert_eq!(request_id, None);
        let with_id = pb::SendVerificationRequest {
            request_id: "123e4567-e89b-12d3-a456-426614174000".into(),
            ..request.clone()
        };
        let parsed = send_request(&with_id, &E164).expect("valid").request_id;
        assert_eq!(parsed.expect("parsed").as_str(), with_id.request_id);
        assert_eq!(body.to, "919856321412");
        assert_eq!(destination.digits, body.to);
        assert_eq!(destination.country.as_str(), "IN");
        assert_eq!(destination.number_type, crate::phone::NumberType::Mobile);
        assert_eq!(body.template_id, Some(455));
        assert_eq!(body.channel, None);
    }

    #[test]
    fn send_reports_each_bad_field() {
        let err = send_request(
            &pb::SendVerificationRequest {
                app_id: "abc".into(),
                template_id: String::new(),
                flow_id: "one".into(),
                phone_number: "12345".into(),
                channel: 42,
                order_id: "x".repeat(65),
                request_id: "not-a-uuid".into(),
                replace_pending: false,
            },
            &E164,
        )
        .expect_err("invalid");
        assert_eq!(
            fields(err),
            [
                "app_id",
                "template_id",
                "flow_id",
                "phone_number",
                "channel",
                "order_id",
                "request_id"
            ]
        );
        let resend = resend_request(&pb::ResendVerificationRequest {
            verification_id: "22206051443051000003".into(),
            channel: 0,
            request_id: "123e4567".into(),
        })
        .expect_err("invalid request id");
        assert_eq!(fields(resend), ["request_id"]);
    }

    #[test]
    fn custom_code_and_check_lengths_differ() {
        let body = send_custom_code_request(
            &pb::SendCustomCodeRequest {
                app_id: "mRELxtHc".into(),
                template_id: "455".into(),
                flow_id: "77".into(),
                code: "1".into(),
                phone_number: "+91 98563 21412".into(),
                channel: pb::Channel::Sna as i32,
                order_id: "o".repeat(64),
                ..Default::default()
            },
            &E164,
        )
        .expect("valid")
        .body;
        assert_eq!(
            body,
            wire::SendRequest {
                app_id: "mRELxtHc".into(),
                template_id: Some(455),
                code: Some("1".into()),
                flow_id: Some(77),
                to: "919856321412".into(),
                channel: Some("sna".into()),
                order_id: Some("o".repeat(64)),
            }
        );
        let no_template = send_custom_code_request(
            &pb::SendCustomCodeRequest {
                app_id: "mRELxtHc".into(),
                code: "A1B2C3".into(),
                phone_number: "+919856321412".into(),
                ..Default::default()
            },
            &E164,
        )
        .expect("the template is optional")
        .body;
        assert_eq!(no_template.template_id, None);
        let err = send_custom_code_request(
            &pb::SendCustomCodeRequest {
                app_id: "mRELxtHc".into(),
                code: "12345678901".into(),
                phone_number: "+919856321412".into(),
                ..Default::default()
            },
            &E164,
        )
        .expect_err("code too long");
        assert_eq!(fields(err), ["code"]);
        let err = check_request(&pb::CheckVerificationRequest {
            verification_id: "22206051443051000003".into(),
            code: "123".into(),
        })
        .expect_err("too short");
        assert_eq!(fields(err), ["code"]);
    }

    #[test]
    fn check_replies_fall_back_to_the_requested_id() {
        let reply = |verification_id: Option<&str>| wire::CheckResult {
            verification_id: verification_id.map(str::to_owned),
            to: Some("91856321412".into()),
            channel: Some("call".into()),
            matched: Some(4),
        };
        assert_eq!(
            check_from_wire(reply(Some("22206051443051000004")), "22206051443051000003"),
            pb::CheckVerificationResponse {
                verification_id: "22206051443051000004".into(),
                phone_number: "91856321412".into(),
                channel: pb::Channel::Call as i32,
                match_state: MatchState::AlreadyUsed as i32,
            }
        );
        let fallback = check_from_wire(reply(None), "22206051443051000003");
        assert_eq!(fallback.verification_id, "22206051443051000003");
    }

    #[test]
    fn every_wire_match_state_has_its_own_meaning() {
        let table = [
            (Some(-1), MatchState::NotVerified),
            (Some(0), MatchState::Matched),
            (Some(1), MatchState::Sending),
            (Some(2), MatchState::WrongCode),
            (Some(3), MatchState::NotFound),
            (Some(4), MatchState::AlreadyUsed),
            (Some(5), MatchState::Expired),
            (Some(6), MatchState::Unspecified),
            (Some(-2), MatchState::Unspecified),
            (None, MatchState::Unspecified),
        ];
        for (wire, state) in table {
            assert_eq!(match_state_from_wire(wire), state, "matched = {wire:?}");
        }
    }

    fn rate_request(mcc: &str) -> pb::ReportConversionRateRequest {
        pb::ReportConversionRateRequest {
            app_id: "mRELxtHc".into(),
            mcc: mcc.into(),
            conversion_count: Some(100),
            base_count: Some(1000),
            rate_percent: "10.5".into(),
            callback_time: Some(Timestamp {
                seconds: 1_674_957_598,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn mcc_is_one_to_three_digits() {
        for bad in ["", "   ", "4600", "46a", "-46", "4 6", " 460 ", "460\n"] {
            let err = conversion_rate_request(&rate_request(bad)).expect_err(bad);
            assert_eq!(fields(err), ["mcc"], "{bad:?}");
        }
        for ok in ["4", "46", "460"] {
            let body = conversion_rate_request(&rate_request(ok)).expect(ok);
            assert_eq!(body.mcc, ok);
        }
        let body = conversion_rate_request(&rate_request("460")).expect("valid");
        assert_eq!(
            body,
            wire::ConversionRateReport {
                app_id: "mRELxtHc".into(),
                mcc: "460".into(),
                backfill_number: Some("100".into()),
                backfill_cardinal_number: Some("1000".into()),
                backfill_now: "10.5".into(),
                callback_time: "2023-01-29T01:59:58+00:00".into(),
            }
        );
    }

    #[test]
    fn resend_keeps_the_id_and_may_switch_channel() {
        let (body, request_id) = resend_request(&pb::ResendVerificationRequest {
            verification_id: "22206051443051000003".into(),
            channel: pb::Channel::Call as i32,
            request_id: "123E4567-E89B-12D3-A456-426614174000".into(),
        })
        .expect("valid");
        assert_eq!(
            body,
            wire::ResendRequest {
                verification_id: "22206051443051000003".into(),
                channel: Some("call".into()),
            }
        );
        // The request id is parsed once, here, and comes back in canonical form.
        assert_eq!(
            request_id.map(|id| id.to_string()).as_deref(),
            Some("123e4567-e89b-12d3-a456-426614174000")
        );
        let err = resend_request(&pb::ResendVerificationRequest {
            verification_id: " ".into(),
            channel: 9,
            ..Default::default()
        })
        .expect_err("invalid");
        assert_eq!(fields(err), ["verification_id", "channel"]);
    }

    #[test]
    fn percentages_have_at_most_two_decimals() {
        for ok in ["0", "10", "12.5", "99.99", "100", "100.00"] {
            assert!(is_percentage(ok), "{ok}");
        }
        for bad in [
            "", "-1", "100.01", "12.345", "1e2", "abc", "12.", ".5", " 10", "10\n",
        ] {
            assert!(!is_percentage(bad), "{bad}");
        }
    }

    #[test]
    fn conversion_time_is_sent_in_milliseconds() {
        let body = conversion_request(
            &pb::ReportConversionRequest {
                app_id: "mRELxtHc".into(),
                verification_id: "22206051443051000003".into(),
                phone_number: String::new(),
                time: Some(Timestamp {
                    seconds: 1_681_184_764,
                    nanos: 0,
                }),
            },
            &E164,
        )
        .expect("valid");
        assert_eq!(body.time, "1681184764000");
        assert_eq!(body.number, None);
    }

    #[test]
    fn phone_numbers_are_parsed_for_real_and_refused_with_a_reason() {
        let send = |phone: &str, rules: &PhoneRules| {
            send_request(
                &pb::SendVerificationRequest {
                    app_id: "mRELxtHc".into(),
                    template_id: "455".into(),
                    phone_number: phone.into(),
                    ..Default::default()
                },
                rules,
            )
        };
        let description = |InvalidRequest(list): InvalidRequest| {
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].field, "phone_number");
            list[0].description.clone()
        };
        let local = description(send("(555) 123-4567", &E164).expect_err("no country code"));
        assert!(local.contains("E.164"), "{local}");
        let test = description(send("+999 00 1234 5678", &E164).expect_err("live"));
        assert!(test.contains("sandbox"), "{test}");
        let unassigned = description(send("+1 555 123 4567", &E164).expect_err("unassigned"));
        assert!(unassigned.contains("assigned"), "{unassigned}");
        let sandbox = PhoneRules {
            default_region: None,
            test_numbers: true,
        };
        let CheckedSend {
            body, destination, ..
        } = send("+999 00 1234 5678", &sandbox).expect("test number");
        assert_eq!(body.to, "9990012345678");
        assert_eq!(destination.country, crate::phone::TEST_COUNTRY);
        let report = conversion_request(
            &pb::ReportConversionRequest {
                app_id: "mRELxtHc".into(),
                verification_id: "22206051443051000003".into(),
                phone_number: "+44 7400 123456".into(),
                time: Some(Timestamp {
                    seconds: Utc::now().timestamp(),
                    nanos: 0,
                }),
            },
            &E164,
        )
        .expect("valid");
        assert_eq!(report.number.as_deref(), Some("447400123456"));
        let err = conversion_request(
            &pb::ReportConversionRequest {
                app_id: "mRELxtHc".into(),
                verification_id: "22206051443051000003".into(),
                phone_number: "0740".into(),
                time: Some(Timestamp {
                    seconds: Utc::now().timestamp(),
                    nanos: 0,
                }),
            },
            &E164,
        )
        .expect_err("invalid");
        assert_eq!(fields(err), ["phone_number"]);
    }

    // The next three tests came with issue 9's input bounds and were lost when the guard branch
    // (issue 11) was merged: restored, as the mutants of `counts` survived without them.
    #[test]
    fn counts_are_bounded_and_consistent() {
        let with_counts = |conversions: Option<u64>, base: Option<u64>| {
            conversion_rate_request(&pb::ReportConversionRateRequest {
                conversion_count: conversions,
                base_count: base,
                ..rate_request("460")
            })
        };
        for (conversions, base) in [
            (None, None),
            (Some(0), Some(1)),
            (Some(5), Some(5)),
            (Some(MAX_COUNT), Some(MAX_COUNT)),
            (Some(3), None),
            (None, Some(MAX_COUNT)),
        ] {
            with_counts(conversions, base).expect("valid counts");
        }
        for (conversions, base, bad) in [
            (
                Some(u64::MAX),
                Some(0),
                &["conversion_count", "base_count"][..],
            ),
            (Some(1), Some(0), &["conversion_count", "base_count"]),
            (None, Some(0), &["base_count"]),
            (Some(MAX_COUNT + 1), None, &["conversion_count"]),
            (
                Some(MAX_COUNT + 1),
                Some(MAX_COUNT + 2),
                &["conversion_count", "base_count"],
            ),
            (None, Some(MAX_COUNT + 1), &["base_count"]),
            (Some(6), Some(5), &["conversion_count"]),
            (Some(MAX_COUNT), Some(5), &["conversion_count"]),
        ] {
            let err = with_counts(conversions, base).expect_err("invalid counts");
            assert_eq!(fields(err), bad, "{conversions:?} / {base:?}");
        }
    }

    #[test]
    fn report_times_must_be_plausible() {
        let at = |seconds: i64| Some(Timestamp { seconds, nanos: 0 });
        let in_a_week = (Utc::now() + chrono::TimeDelta::days(7)).timestamp();
        for time in [at(0), at(253_402_300_799), at(in_a_week), None] {
            let err = conversion_request(
                &pb::ReportConversionRequest {
                    app_id: "mRELxtHc".into(),
                    verification_id: "22206051443051000003".into(),
                    phone_number: String::new(),
                    time,
                },
                &E164,
            )
            .expect_err("implausible time");
            assert_eq!(fields(err), ["time"]);
            let err = conversion_rate_request(&pb::ReportConversionRateRequest {
                callback_time: time,
                ..rate_request("460")
            })
            .expect_err("implausible time");
            assert_eq!(fields(err), ["callback_time"]);
        }
    }

    #[test]
    fn ids_and_codes_are_checked_by_shape() {
        let long_id = "9".repeat(60_000);
        for (verification_id, code, bad) in [
            (long_id.as_str(), "1234", &["verification_id"][..]),
            ("2220605144\r\n3051000003", "1234", &["verification_id"]),
            ("22206051443051000003", "12\u{0}34", &["code"]),
            ("22206051443051000003", "\u{202E}1234", &["code"]),
        ] {
            let err = check_request(&pb::CheckVerificationRequest {
                verification_id: verification_id.into(),
                code: code.into(),
            })
            .expect_err("invalid");
            assert_eq!(fields(err), bad);
        }
        let err = resend_request(&pb::ResendVerificationRequest {
            verification_id: long_id.clone(),
            ..Default::default()
        })
        .expect_err("too long");
        assert_eq!(fields(err), ["verification_id"]);
        let err = conversion_request(
            &pb::ReportConversionRequest {
                app_id: "x".repeat(1 << 20),
                verification_id: "x\u{7}".into(),
                phone_number: String::new(),
                time: Some(Timestamp {
                    seconds: 1_681_184_764,
                    nanos: 0,
                }),
            },
            &E164,
        )
        .expect_err("invalid");
        assert_eq!(fields(err), ["app_id", "verification_id"]);
        let err = send_custom_code_request(
            &pb::SendCustomCodeRequest {
                app_id: "mREL\u{1b}tHc".into(),
                code: "12\n34".into(),
                phone_number: "+919856321412".into(),
                ..Default::default()
            },
            &E164,
        )
        .expect_err("invalid");
        assert_eq!(fields(err), ["app_id", "code"]);
    }
}

//! Sending and checking codes, plus the two conversion reports (API doc §4.8–4.11, 4.18, 4.19).
//!
//! These types carry phone numbers (`to`, `number`) and OTP codes (`code`), so their `Debug` is
//! written by hand and prints only whether such a field is present.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::UpstreamClient;
use super::endpoint::Endpoint;
use super::error::UpstreamError;
use super::{Redacted, lenient, redact_opt};

/// Body of `POST /verification/send` (platform-made code: `template_id` required, `code` unset)
/// and `POST /verification/sendRule` (caller-made `code`, template optional).
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    pub app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<i64>,
    /// Only for `sendRule`: the code to deliver, 1–10 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<i64>,
    /// Country code + number, 10–14 digits.
    pub to: String,
    /// `sms` (default), `call` or `sna`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Caller's own reference, globally unique.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

impl fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRequest")
            .field("app_id", &self.app_id)
            .field("template_id", &self.template_id)
            .field("code", &redact_opt(&self.code))
            .field("flow_id", &self.flow_id)
            .field("to", &Redacted)
            .field("channel", &self.channel)
            .field("order_id", &self.order_id)
            .finish()
    }
}

/// Reply of send, sendRule and resend.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Sent {
    /// For a resend, the *new* id.
    #[serde(deserialize_with = "lenient::string")]
    pub verification_id: String,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub to: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub channel: Option<String>,
    /// Only for the `sna` channel.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sna_url: Option<String>,
}

impl fmt::Debug for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sent")
            .field("verification_id", &self.verification_id)
            .field("to", &redact_opt(&self.to))
            .field("channel", &self.channel)
            .field("sna_url", &self.sna_url)
            .finish()
    }
}

/// Body of `POST /verification/resend`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResendRequest {
    pub verification_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Body of `POST /verification/verify`.
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRequest {
    pub verification_id: String,
    pub code: String,
}

impl fmt::Debug for CheckRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckRequest")
            .field("verification_id", &self.verification_id)
            .field("code", &Redacted)
            .finish()
    }
}

/// Reply of verify. A wrong or expired code is `status:"0"` with `matched != 0`
/// (-1 not yet verified, 0 ok, 1 sending, 2 wrong, 3 unknown id, 4 already used, 5 expired).
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckResult {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub verification_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub to: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub channel: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub matched: Option<i32>,
}

impl fmt::Debug for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckResult")
            .field("verification_id", &self.verification_id)
            .field("to", &redact_opt(&self.to))
            .field("channel", &self.channel)
            .field("matched", &self.matched)
            .finish()
    }
}

/// Body of `POST /postback/backfill`: one code was actually entered.
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionReport {
    pub app_id: String,
    pub verification_id: String,
    /// Phone number with country prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Unix milliseconds as a string (unit undocumented; the SMS sibling page uses ms).
    pub time: String,
}

impl fmt::Debug for ConversionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConversionReport")
            .field("app_id", &self.app_id)
            .field("verification_id", &self.verification_id)
            .field("number", &redact_opt(&self.number))
            .field("time", &self.time)
            .finish()
    }
}

/// Body of `POST /backfillRate`: the conversion rate per country. All strings, as the SDK sends.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionRateReport {
    pub app_id: String,
    pub mcc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_cardinal_number: Option<String>,
    /// Percent, 0–100, at most two decimals.
    pub backfill_now: String,
    /// ISO-8601, e.g. `2023-02-01T00:00:00+08:00`.
    pub callback_time: String,
}

impl UpstreamClient {
    /// `POST /verification/send`: ITNIO generates the code from the template.
    pub async fn send_verification(
        &self,
        req: &SendRequest,
        deadline: Option<Duration>,
    ) -> Result<Sent, UpstreamError> {
        self.call(Endpoint::VerificationSend, None, Some(req), deadline)
            .await
    }

    /// `POST /verification/sendRule`: delivers the caller's `code`.
    pub async fn send_custom_code(
        &self,
        req: &SendRequest,
        deadline: Option<Duration>,
    ) -> Result<Sent, UpstreamError> {
        self.call(Endpoint::VerificationSendRule, None, Some(req), deadline)
            .await
    }

    /// `POST /verification/resend`: returns a new verification id.
    pub async fn resend_verification(
        &self,
        req: &ResendRequest,
        deadline: Option<Duration>,
    ) -> Result<Sent, UpstreamError> {
        self.call(Endpoint::VerificationResend, None, Some(req), deadline)
            .await
    }

    /// `POST /verification/verify`.
    pub async fn check_verification(
        &self,
        req: &CheckRequest,
        deadline: Option<Duration>,
    ) -> Result<CheckResult, UpstreamError> {
        self.call(Endpoint::VerificationVerify, None, Some(req), deadline)
            .await
    }

    /// `POST /postback/backfill`.
    pub async fn report_conversion(
        &self,
        req: &ConversionReport,
        deadline: Option<Duration>,
    ) -> Result<(), UpstreamError> {
        self.call_no_data(Endpoint::PostbackBackfill, req, deadline)
            .await
    }

    /// `POST /backfillRate`.
    pub async fn report_conversion_rate(
        &self,
        req: &ConversionRateReport,
        deadline: Option<Duration>,
    ) -> Result<(), UpstreamError> {
        self.call_no_data(Endpoint::BackfillRate, req, deadline)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn send_rule() -> SendRequest {
        SendRequest {
            app_id: "mRELxtHc".into(),
            template_id: Some(1),
            code: Some("12345".into()),
            flow_id: None,
            to: "91856321412".into(),
            channel: Some("sms".into()),
            order_id: None,
        }
    }

    #[test]
    fn send_request_body() {
        assert_eq!(
            serde_json::to_value(send_rule()).expect("serialises"),
            json!({"appId":"mRELxtHc","templateId":1,"code":"12345","to":"91856321412","channel":"sms"})
        );
    }

    #[test]
    fn debug_hides_numbers_and_codes() {
        let shown = format!(
            "{:?} {:?} {:?} {:?} {:?}",
            send_rule(),
            CheckRequest {
                verification_id: "v1".into(),
                code: "5863".into()
            },
            ConversionReport {
                app_id: "a".into(),
                verification_id: "v1".into(),
                number: Some("8613512345678".into()),
                time: "1681184764000".into(),
            },
            Sent {
                verification_id: "v1".into(),
                to: Some("91856321412".into()),
                ..Default::default()
            },
            CheckResult {
                to: Some("91856321412".into()),
                matched: Some(0),
                ..Default::default()
            },
        );
        for secret in ["91856321412", "12345", "5863", "8613512345678"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn debug_still_tells_whether_an_optional_secret_is_there() {
        let with = format!("{:?}", send_rule());
        assert!(with.contains("code: Some(<redacted>)"), "{with}");
        let without = format!(
            "{:?}",
            SendRequest {
                code: None,
                ..send_rule()
            }
        );
        assert!(without.contains("code: None"), "{without}");
    }

    #[test]
    fn decodes_replies() {
        let sent: Sent = serde_json::from_value(json!({"verificationId":"22206051443051000003",
            "to":"91856321412","channel":"sms"}))
        .expect("decodes");
        assert_eq!(sent.verification_id, "22206051443051000003");
        assert_eq!(sent.sna_url, None);
        let checked: CheckResult =
            serde_json::from_value(json!({"verificationId":2220605144305100u64,"matched":"2"}))
                .expect("decodes");
        assert_eq!(checked.matched, Some(2));
        assert_eq!(checked.verification_id.as_deref(), Some("2220605144305100"));
    }

    #[test]
    fn rate_report_is_all_strings() {
        let body = ConversionRateReport {
            app_id: "mRELxtHc".into(),
            mcc: "460".into(),
            backfill_number: Some("100".into()),
            backfill_cardinal_number: None,
            backfill_now: "10".into(),
            callback_time: "2023-01-29T09:59:58+08:00".into(),
        };
        assert_eq!(
            serde_json::to_value(body).expect("serialises"),
            json!({"appId":"mRELxtHc","mcc":"460","backfillNumber":"100","backfillNow":"10",
                "callbackTime":"2023-01-29T09:59:58+08:00"})
        );
    }

    #[test]
    fn each_debug_names_its_type_and_shows_what_is_safe() {
        let check = format!(
            "{:?}",
            CheckRequest {
                verification_id: "v1".into(),
                code: "5863".into()
            }
        );
        assert_eq!(
            check,
            r#"CheckRequest { verification_id: "v1", code: <redacted> }"#
        );
        let report = format!(
            "{:?}",
            ConversionReport {
                app_id: "a".into(),
                verification_id: "v1".into(),
                number: Some("8613512345678".into()),
                time: "1681184764000".into(),
            }
        );
        assert_eq!(
            report,
            r#"ConversionReport { app_id: "a", verification_id: "v1", number: Some(<redacted>), time: "1681184764000" }"#
        );
        let sent = format!(
            "{:?}",
            Sent {
                verification_id: "v1".into(),
                to: Some("91856321412".into()),
                channel: Some("sms".into()),
                sna_url: None,
            }
        );
        assert_eq!(
            sent,
            r#"Sent { verification_id: "v1", to: Some(<redacted>), channel: Some("sms"), sna_url: None }"#
        );
        let checked = format!(
            "{:?}",
            CheckResult {
                verification_id: Some("v1".into()),
                to: Some("91856321412".into()),
                channel: None,
                matched: Some(0),
            }
        );
        assert_eq!(
            checked,
            r#"CheckResult { verification_id: Some("v1"), to: Some(<redacted>), channel: None, matched: Some(0) }"#
        );
    }
}

//! Delivery and verification records (API doc §4.12, 4.13).
//!
//! The docs type `sms`/`call` as an object on one page and an array on another (and the DOC
//! example uses arrays), so both become `Vec`s here; `call` cost arrives as `cost` or `costEur`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::UpstreamClient;
use super::endpoint::Endpoint;
use super::error::UpstreamError;
use super::{lenient, redact_opt};

/// What `GET /verification/record/{verificationId}` and `POST /verification/orderId/record`
/// return. The first carries `verificationId`, the second `orderId` and `flowId`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Record {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub verification_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub flow_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_one")]
    pub verifications: Option<Outcome>,
    #[serde(deserialize_with = "lenient::one_or_many")]
    pub sms: Vec<SmsAttempt>,
    #[serde(deserialize_with = "lenient::one_or_many")]
    pub call: Vec<CallAttempt>,
    /// Sub-fields undocumented; kept raw.
    #[serde(deserialize_with = "lenient::one_or_many")]
    pub sna: Vec<serde_json::Value>,
}

/// The verification result inside a record. `Debug` hides the receiving number.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Outcome {
    /// -1 not verified, 0 ok, 1 sending, 2 failed, 3 unknown id (4 used, 5 expired on verify).
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub matched: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub verified_date: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub ori_receiver: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub channel: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub order_id: Option<String>,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("matched", &self.matched)
            .field("verified_date", &self.verified_date)
            .field("ori_receiver", &redact_opt(&self.ori_receiver))
            .field("channel", &self.channel)
            .field("order_id", &self.order_id)
            .finish()
    }
}

/// One SMS delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SmsAttempt {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub submit_tm: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub send_tm: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub done_tm: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub mcc: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub mnc: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sender: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub charge_cnt: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub pay: Option<String>,
    /// -1 sending, 0 success, 1 failure.
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub status: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub reason: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub settle_pay: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub settle_price: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub settle_currency: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub quote_exchange: Option<String>,
}

/// One voice-call attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "CallAttemptWire")]
pub struct CallAttempt {
    /// 0 success, anything else a failure.
    pub termination_code: Option<i32>,
    pub termination_reason: Option<String>,
    pub submit_time: Option<String>,
    pub call_time: Option<String>,
    pub ringing_time: Option<String>,
    pub answer_time: Option<String>,
    pub hangup_time: Option<String>,
    pub call_duration: Option<i32>,
    pub charged_duration: Option<i32>,
    pub display_num: Option<String>,
    /// Billing increment, e.g. `"20+20"`.
    pub bill_periodstring: Option<String>,
    /// The regional supplier (not an OTP code).
    pub code: Option<String>,
    pub rate: Option<String>,
    /// From `cost` (the field tables) or `costEur` (the DOC example); `cost` wins if both.
    pub cost: Option<String>,
}

/// The call record as it appears on the wire, with both cost spellings.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct CallAttemptWire {
    #[serde(deserialize_with = "lenient::opt_i32")]
    termination_code: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    termination_reason: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    submit_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    call_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    ringing_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    answer_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    hangup_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    call_duration: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    charged_duration: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    display_num: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    bill_periodstring: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    rate: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    cost: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    cost_eur: Option<String>,
}

impl From<CallAttemptWire> for CallAttempt {
    fn from(w: CallAttemptWire) -> Self {
        Self {
            termination_code: w.termination_code,
            termination_reason: w.termination_reason,
            submit_time: w.submit_time,
            call_time: w.call_time,
            ringing_time: w.ringing_time,
            answer_time: w.answer_time,
            hangup_time: w.hangup_time,
            call_duration: w.call_duration,
            charged_duration: w.charged_duration,
            display_num: w.display_num,
            bill_periodstring: w.bill_periodstring,
            code: w.code,
            rate: w.rate,
            cost: w.cost.or(w.cost_eur),
        }
    }
}

/// Body of `POST /verification/orderId/record`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecordRequest {
    pub app_id: String,
    pub order_id: String,
}

impl UpstreamClient {
    /// `GET /verification/record/{verificationId}`.
    pub async fn get_record(
        &self,
        verification_id: &str,
        deadline: Option<Duration>,
    ) -> Result<Record, UpstreamError> {
        self.call(
            Endpoint::VerificationRecord,
            Some(verification_id),
            None::<&()>,
            deadline,
        )
        .await
    }

    /// `POST /verification/orderId/record`.
    pub async fn get_order_record(
        &self,
        req: &OrderRecordRequest,
        deadline: Option<Duration>,
    ) -> Result<Record, UpstreamError> {
        self.call(
            Endpoint::VerificationOrderIdRecord,
            None,
            Some(req),
            deadline,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// §4.13, DOC example (seed 001).
    fn doc_example() -> serde_json::Value {
        json!({"orderId":"1234566","flowId":1,
         "verifications":{"matched":0,"verifiedDate":"2022-07-12T13:39:47+08:00","oriReceiver":"91856321412","channel":"call","orderId":"1234566"},
         "sms":[{"submitTm":"2022-07-12T13:39:45+08:00","sendTm":"2022-07-12T13:39:45+08:00","doneTm":"2022-07-12T13:39:49+08:00",
           "mcc":460,"mnc":10,"sender":"","chargeCnt":1,"pay":"0.000002","status":0,"reason":"successR"}],
         "call":[{"terminationCode":100005,"terminationReason":"Temporarily Unavailable","submitTime":"2022-07-12T13:59:55+08:00",
           "callTime":"2022-07-12T13:59:56+08:00","ringingTime":"2022-07-12T13:59:56+08:00","answerTime":"2022-07-12T13:59:56+08:00",
           "hangupTime":"2022-07-12T13:59:56+08:00","callDuration":0,"chargedDuration":0,"displayNum":null,
           "billPeriodstring":"20+20","code":"661","rate":"0.138","costEur":"0"}]})
    }

    #[test]
    fn decodes_doc_example() {
        let r: Record = serde_json::from_value(doc_example()).expect("decodes");
        assert_eq!(r.order_id.as_deref(), Some("1234566"));
        assert_eq!(r.flow_id.as_deref(), Some("1"));
        let outcome = r.verifications.clone().expect("verifications");
        assert_eq!(outcome.matched, Some(0));
        assert_eq!(outcome.channel.as_deref(), Some("call"));
        assert_eq!(r.sms.len(), 1);
        assert_eq!(r.sms[0].mcc, Some(460));
        assert_eq!(r.sms[0].pay.as_deref(), Some("0.000002"));
        assert_eq!(r.call.len(), 1);
        assert_eq!(r.call[0].termination_code, Some(100005));
        assert_eq!(r.call[0].cost.as_deref(), Some("0"));
        assert_eq!(r.call[0].display_num, None);
        assert!(r.sna.is_empty());
        assert!(!format!("{r:?}").contains("91856321412"));
    }

    #[test]
    fn sms_as_object_and_string_numbers() {
        let r: Record = serde_json::from_value(json!({"verificationId":"22206051443051000003",
            "verifications":{"matched":"-1"},
            "sms":{"mcc":"460","mnc":"10","status":"-1","settlePay":"0.1"},
            "call":null,"sna":{"x":1}}))
        .expect("decodes");
        assert_eq!(r.sms.len(), 1);
        assert_eq!((r.sms[0].mcc, r.sms[0].status), (Some(460), Some(-1)));
        assert!(r.call.is_empty());
        assert_eq!(r.sna.len(), 1);
        assert_eq!(r.verifications.and_then(|v| v.matched), Some(-1));
    }

    #[test]
    fn cost_field_spellings() {
        let c: CallAttempt = serde_json::from_value(json!({"cost":"1.5"})).expect("cost");
        assert_eq!(c.cost.as_deref(), Some("1.5"));
        let c: CallAttempt =
            serde_json::from_value(json!({"cost":"1.5","costEur":"1.4"})).expect("both");
        assert_eq!(c.cost.as_deref(), Some("1.5"));
        let c: CallAttempt =
            serde_json::from_value(json!({"cost":null,"costEur":0.2})).expect("eur");
        assert_eq!(c.cost.as_deref(), Some("0.2"));
    }

    #[test]
    fn outcome_debug_hides_only_the_receiver() {
        let outcome = Outcome {
            matched: Some(0),
            verified_date: Some("2023-01-29".into()),
            ori_receiver: Some("91856321412".into()),
            channel: Some("call".into()),
            order_id: Some("o1".into()),
        };
        assert_eq!(
            format!("{outcome:?}"),
            r#"Outcome { matched: Some(0), verified_date: Some("2023-01-29"), ori_receiver: Some(<redacted>), channel: Some("call"), order_id: Some("o1") }"#
        );
    }
}

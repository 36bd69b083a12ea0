//! Verification records (`/verification/record/{verificationId}`,
//! `/verification/orderId/record`) and the lazily computed story behind them: which attempts
//! a task flow has made by now, and how far each SMS or call has progressed.
//!
//! Everything here is a pure function of the stored verification and the instant `now`, so a
//! record read twice at the same instant is the same, and tests need no sleeping.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::clock::{self, after};
use super::codes::{self, Script};
use super::envelope::{ApiError, ApiResult, Success};
use super::flows::Trigger;
use super::lenient::{self, opt_text};
use super::state::Shared;
use super::verifications::Verification;

/// Emulated seconds from an attempt's start to each step of its delivery.
mod timeline {
    pub const SMS_SENT: f64 = 2.0;
    pub const SMS_DONE: f64 = 4.0;
    pub const CALL_RINGING: f64 = 2.0;
    pub const CALL_ANSWERED: f64 = 6.0;
    pub const CALL_ANSWERED_HANGUP: f64 = 16.0;
    pub const CALL_UNANSWERED_HANGUP: f64 = 32.0;
}

/// One delivery attempt of a verification: the first send, or a flow node that fired.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    pub channel: Channel,
    pub start: DateTime<Utc>,
}

impl Attempt {
    /// Whether this attempt ends in failure, per the number's script.
    pub fn fails(self, script: Script) -> bool {
        match self.channel {
            Channel::Sms => script.sms_fails,
            Channel::Call => script.call_fails,
            Channel::Sna => false,
        }
    }

    /// When the attempt's final report (delivered or failed) is known.
    pub fn settled_at(self, script: Script, speed: f64) -> DateTime<Utc> {
        let secs = match self.channel {
            Channel::Sms => timeline::SMS_DONE,
            Channel::Call if self.fails(script) => timeline::CALL_UNANSWERED_HANGUP,
            Channel::Call => timeline::CALL_ANSWERED,
            Channel::Sna => 0.0,
        };
        after(self.start, secs, speed)
    }
}

/// The attempts made by `now`: the first send, then each flow node that has fired.
pub fn attempts(v: &Verification, now: DateTime<Utc>, speed: f64) -> Vec<Attempt> {
    let script = codes::script_for(&v.to);
    let mut previous = first_attempt(v);
    let mut attempts = vec![previous];
    for node in &v.flow {
        let mut fires_at = after(previous.start, node.waiting_time as f64, speed);
        if node.trigger() == Trigger::SendFailed {
            // The failure must be reported before it can trigger anything.
            fires_at = fires_at.max(previous.settled_at(script, speed));
        }
        let verified = v.checks.verified_at.is_some_and(|at| at <= fires_at);
        let holds = match node.trigger() {
            Trigger::SendFailed => previous.fails(script),
            Trigger::NotVerified => true,
        };
        if fires_at > now || fires_at > v.expires_at || verified || !holds {
            break;
        }
        let channel = if node.keeps_channel() {
            previous.channel
        } else {
            node.channel
        };
        previous = Attempt {
            channel,
            start: fires_at,
        };
        attempts.push(previous);
    }
    attempts
}

/// The send itself, always the first attempt.
pub fn first_attempt(v: &Verification) -> Attempt {
    Attempt {
        channel: v.channel,
        start: v.sent_at,
    }
}

/// The channel of the latest attempt at `now`.
pub fn current_channel(v: &Verification, now: DateTime<Utc>, speed: f64) -> Channel {
    attempts(v, now, speed)
        .last()
        .map_or(v.channel, |attempt| attempt.channel)
}

/// One SMS entry, field names as in the vendor's example.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SmsOut {
    submit_tm: String,
    send_tm: Option<String>,
    done_tm: Option<String>,
    mcc: i64,
    mnc: i64,
    sender: String,
    charge_cnt: i64,
    pay: &'static str,
    /// -1 sending, 0 delivered, 1 failed.
    status: i64,
    reason: &'static str,
}

/// One call entry, field names as in the vendor's example (`billPeriodstring`, `costEur`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallOut {
    termination_code: Option<i64>,
    termination_reason: Option<&'static str>,
    submit_time: String,
    call_time: String,
    ringing_time: Option<String>,
    answer_time: Option<String>,
    hangup_time: Option<String>,
    call_duration: i64,
    charged_duration: i64,
    display_num: Option<String>,
    bill_periodstring: &'static str,
    code: &'static str,
    rate: &'static str,
    cost_eur: &'static str,
}

/// The formatted instant `start + secs`, if it has happened by `now`.
fn reached(start: DateTime<Utc>, secs: f64, now: DateTime<Utc>, speed: f64) -> Option<String> {
    let at = after(start, secs, speed);
    (at <= now).then(|| clock::iso(at))
}

fn sms_entry(v: &Verification, attempt: Attempt, now: DateTime<Utc>, speed: f64) -> SmsOut {
    let (mcc, mnc) = codes::network_for(&v.to);
    let done_tm = reached(attempt.start, timeline::SMS_DONE, now, speed);
    let (status, reason) = match (&done_tm, attempt.fails(codes::script_for(&v.to))) {
        (None, _) => (-1, "sending"),
        (Some(_), false) => (0, "success"),
        (Some(_), true) => (1, "failed"),
    };
    SmsOut {
        submit_tm: clock::iso(attempt.start),
        send_tm: reached(attempt.start, timeline::SMS_SENT, now, speed),
        done_tm,
        mcc,
        mnc,
        sender: v.sender.clone(),
        charge_cnt: 1,
        pay: "0.0050",
        status,
        reason,
    }
}

fn call_entry(v: &Verification, attempt: Attempt, now: DateTime<Utc>, speed: f64) -> CallOut {
    let answered = !attempt.fails(codes::script_for(&v.to));
    let hangup = if answered {
        timeline::CALL_ANSWERED_HANGUP
    } else {
        timeline::CALL_UNANSWERED_HANGUP
    };
    let hangup_time = reached(attempt.start, hangup, now, speed);
    let ended = hangup_time.is_some();
    let (code, reason) = match (ended, answered) {
        (false, _) => (None, None),
        (true, true) => (Some(0), Some("Success")),
        (true, false) => (Some(100_005), Some("Temporarily Unavailable")),
    };
    let billed = ended && answered;
    CallOut {
        termination_code: code,
        termination_reason: reason,
        submit_time: clock::iso(attempt.start),
        call_time: clock::iso(attempt.start),
        ringing_time: reached(attempt.start, timeline::CALL_RINGING, now, speed),
        answer_time: answered
            .then(|| reached(attempt.start, timeline::CALL_ANSWERED, now, speed))
            .flatten(),
        hangup_time,
        call_duration: if billed { 10 } else { 0 },
        charged_duration: if billed { 20 } else { 0 },
        display_num: None,
        bill_periodstring: "20+20",
        code: "sandbox",
        rate: "0.138",
        cost_eur: if billed { "0.0460" } else { "0" },
    }
}

/// The `verifications` object of a record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VerificationsOut {
    matched: i64,
    verified_date: Option<String>,
    ori_receiver: String,
    channel: Channel,
    order_id: Option<String>,
}

/// What both record endpoints share; `sms` and `call` are always arrays, empty when unused.
#[derive(Debug, Serialize)]
struct Body {
    verifications: VerificationsOut,
    sms: Vec<SmsOut>,
    call: Vec<CallOut>,
}

/// `matched` as a record shows it: 0 verified, 5 expired, 2 only wrong checks so far,
/// 1 while the first attempt is still in flight, otherwise -1.
fn record_matched(v: &Verification, first: Attempt, now: DateTime<Utc>, speed: f64) -> i64 {
    if v.checks.verified_at.is_some() {
        0
    } else if now > v.expires_at {
        5
    } else if v.checks.last_at.is_some() {
        2
    } else if first.settled_at(codes::script_for(&v.to), speed) > now {
        1
    } else {
        -1
    }
}

fn body(v: &Verification, now: DateTime<Utc>, speed: f64) -> Body {
    let attempts = attempts(v, now, speed);
    let first = first_attempt(v);
    let last = attempts.last().copied().unwrap_or(first);
    let verifications = VerificationsOut {
        matched: record_matched(v, first, now, speed),
        verified_date: v.checks.verified_at.or(v.checks.last_at).map(clock::iso),
        ori_receiver: v.to.clone(),
        channel: last.channel,
        order_id: v.order_id.clone(),
    };
    let of = |channel| {
        attempts
            .iter()
            .copied()
            .filter(move |a| a.channel == channel)
    };
    Body {
        verifications,
        sms: of(Channel::Sms)
            .map(|a| sms_entry(v, a, now, speed))
            .collect(),
        call: of(Channel::Call)
            .map(|a| call_entry(v, a, now, speed))
            .collect(),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordById {
    verification_id: String,
    #[serde(flatten)]
    body: Body,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordByOrderId {
    order_id: String,
    flow_id: Option<i64>,
    #[serde(flatten)]
    body: Body,
}

/// `GET /verification/record/{verificationId}`.
pub async fn by_id(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let state = shared.state();
    let v = state
        .verifications
        .get(&id)
        .ok_or(ApiError::DataUnexisting)?;
    Success::data(RecordById {
        verification_id: v.id.clone(),
        body: body(v, clock::now(), shared.speed()),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderIdIn {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    order_id: Option<String>,
}

/// `POST /verification/orderId/record`: the record of the send with this orderId in this app.
pub async fn by_order_id(State(shared): State<Arc<Shared>>, body_bytes: Bytes) -> ApiResult {
    let input = lenient::body::<OrderIdIn>(&body_bytes)?;
    let app_id = lenient::required_text("appId", input.app_id.as_deref(), 1, 64)?;
    let order_id = lenient::required_text("orderId", input.order_id.as_deref(), 1, 64)?;
    let state = shared.state();
    let v = state
        .order_ids
        .get(&order_id)
        .and_then(|id| state.verifications.get(id))
        .filter(|v| v.app_id == app_id)
        .ok_or(ApiError::DataUnexisting)?;
    Success::data(RecordByOrderId {
        order_id,
        flow_id: v.flow_id,
        body: body(v, clock::now(), shared.speed()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sandbox::flows::FlowNode;
    use chrono::Duration;

    const SPEED: f64 = 1.0;

    fn secs(v: &Verification, s: i64) -> DateTime<Utc> {
        v.sent_at + Duration::seconds(s)
    }

    fn json_at(v: &Verification, s: i64) -> serde_json::Value {
        serde_json::to_value(body(v, secs(v, s), SPEED)).unwrap()
    }

    #[test]
    fn sms_goes_from_sending_to_delivered() {
        let v = Verification::sample("99900123456", Channel::Sms, "1234", Utc::now());
        let early = json_at(&v, 1);
        assert_eq!(early["sms"][0]["status"], -1);
        assert!(early["sms"][0]["sendTm"].is_null());
        assert_eq!(early["verifications"]["matched"], 1);
        let mid = json_at(&v, 3);
        assert!(mid["sms"][0]["sendTm"].is_string() && mid["sms"][0]["doneTm"].is_null());
        let done = json_at(&v, 5);
        assert_eq!(
            (
                done["sms"][0]["status"].as_i64(),
                done["sms"][0]["reason"].as_str()
            ),
            (Some(0), Some("success"))
        );
        assert_eq!(done["verifications"]["matched"], -1);
        assert_eq!(done["call"], serde_json::json!([]));
    }

    #[test]
    fn scripted_failures() {
        let v = Verification::sample("99901123456", Channel::Sms, "1234", Utc::now());
        assert_eq!(json_at(&v, 5)["sms"][0]["status"], 1);
        let v = Verification::sample("99902123456", Channel::Call, "1234", Utc::now());
        let ringing = json_at(&v, 20);
        assert!(
            ringing["call"][0]["hangupTime"].is_null()
                && ringing["call"][0]["answerTime"].is_null()
        );
        let over = json_at(&v, 33);
        assert_eq!(over["call"][0]["terminationCode"], 100_005);
        assert_eq!(over["call"][0]["callDuration"], 0);
        let v = Verification::sample("91856321412", Channel::Call, "1234", Utc::now());
        let answered = json_at(&v, 17);
        assert_eq!(
            (
                answered["call"][0]["terminationCode"].as_i64(),
                answered["call"][0]["chargedDuration"].as_i64()
            ),
            (Some(0), Some(20))
        );
        assert_eq!(answered["call"][0]["costEur"], "0.0460");
    }

    #[test]
    fn expiry_and_checks_show_in_matched() {
        let mut v = Verification::sample("99900123456", Channel::Sms, "1234", Utc::now());
        assert_eq!(json_at(&v, 301)["verifications"]["matched"], 5);
        v.checks.last_at = Some(secs(&v, 10));
        assert_eq!(json_at(&v, 11)["verifications"]["matched"], 2);
        v.checks.verified_at = Some(secs(&v, 12));
        assert_eq!(json_at(&v, 400)["verifications"]["matched"], 0);
    }

    #[test]
    fn failed_sms_falls_back_to_a_call() {
        let mut v = Verification::sample("99901123456", Channel::Sms, "1234", Utc::now());
        v.flow = vec![FlowNode::new(30, 1, Channel::Call, 0)];
        assert_eq!(attempts(&v, secs(&v, 29), SPEED).len(), 1);
        let later = json_at(&v, 47);
        assert_eq!(later["sms"].as_array().map(Vec::len), Some(1));
        assert_eq!(later["call"].as_array().map(Vec::len), Some(1));
        assert_eq!(later["verifications"]["channel"], "call");
        assert_eq!(later["call"][0]["terminationCode"], 0);
    }

    #[test]
    fn delivered_sms_ends_a_send_failed_flow() {
        let mut v = Verification::sample("99900123456", Channel::Sms, "1234", Utc::now());
        v.flow = vec![FlowNode::new(30, 1, Channel::Call, 0)];
        assert_eq!(attempts(&v, secs(&v, 100), SPEED).len(), 1);
    }

    #[test]
    fn not_verified_trigger_until_verified() {
        let mut v = Verification::sample("99900123456", Channel::Sms, "1234", Utc::now());
        v.flow = vec![
            FlowNode::new(30, 2, Channel::Call, 1),
            FlowNode::new(30, 2, Channel::Call, 0),
            FlowNode::new(30, 2, Channel::Sms, 0),
        ];
        let channels = |now| {
            attempts(&v, now, SPEED)
                .iter()
                .map(|a| a.channel)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            channels(secs(&v, 65)),
            [Channel::Sms, Channel::Sms, Channel::Call]
        );
        v.checks.verified_at = Some(secs(&v, 70));
        assert_eq!(attempts(&v, secs(&v, 200), SPEED).len(), 3);
    }

    #[test]
    fn send_failed_waits_for_the_hangup() {
        let mut v = Verification::sample("99903123456", Channel::Call, "1234", Utc::now());
        v.flow = vec![FlowNode::new(30, 1, Channel::Sms, 0)];
        assert_eq!(attempts(&v, secs(&v, 31), SPEED).len(), 1);
        let both = attempts(&v, secs(&v, 33), SPEED);
        assert_eq!(both[1].start, after(v.sent_at, 32.0, SPEED));
    }

    #[test]
    fn an_answered_call_settles_once_answered() {
        let v = Verification::sample("99900123456", Channel::Call, "1234", Utc::now());
        assert_eq!(json_at(&v, 5)["verifications"]["matched"], 1);
        assert_eq!(json_at(&v, 10)["verifications"]["matched"], -1);
    }

    #[test]
    fn matched_changes_just_after_the_boundary_instant() {
        let v = Verification::sample("99900123456", Channel::Sms, "1234", Utc::now());
        // Settled (doneTm) at 4 s: from that instant on, no longer in flight.
        assert_eq!(json_at(&v, 4)["verifications"]["matched"], -1);
        // Expires at 300 s: a read at the expiry instant is not yet expired.
        assert_eq!(json_at(&v, 300)["verifications"]["matched"], -1);
        assert_eq!(json_at(&v, 301)["verifications"]["matched"], 5);
    }

    #[test]
    fn a_node_fires_at_its_instant_and_not_after_the_expiry() {
        let mut v = Verification::sample("99900123456", Channel::Sms, "1234", Utc::now());
        v.flow = vec![FlowNode::new(30, 2, Channel::Call, 0)];
        assert_eq!(attempts(&v, secs(&v, 29), SPEED).len(), 1);
        assert_eq!(attempts(&v, secs(&v, 30), SPEED).len(), 2);
        // The code expires at 300 s: a node firing exactly then still fires, one later not.
        v.flow = vec![FlowNode::new(300, 2, Channel::Call, 0)];
        assert_eq!(attempts(&v, secs(&v, 300), SPEED).len(), 2);
        v.flow = vec![FlowNode::new(301, 2, Channel::Call, 0)];
        assert_eq!(attempts(&v, secs(&v, 400), SPEED).len(), 1);
    }
}

//! The verification endpoints: sending codes (`/verification/send`, `/verification/sendRule`,
//! `/verification/resend`) and checking them (`/verification/verify`), each a change to the
//! stored [`Verification`]s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Checks, Verification};
use crate::sandbox::channel::Channel;
use crate::sandbox::codes::{self, CodeType};
use crate::sandbox::envelope::{self, ApiError, ApiResult, Success};
use crate::sandbox::flows::FlowNode;
use crate::sandbox::lenient::{self, opt_int, opt_text};
use crate::sandbox::limits::Limit;
use crate::sandbox::state::{self, Bounds, Shared};
use crate::sandbox::templates::PLACEHOLDER;
use crate::sandbox::{clock, deliveries, records};

/// The text of a `sendRule` without a template.
const DEFAULT_TEXT: &str = "Your verification code is ##code##";

/// `matched` values of a check.
mod matched {
    pub const OK: i64 = 0;
    pub const WRONG: i64 = 2;
    pub const UNKNOWN_ID: i64 = 3;
    pub const USED: i64 = 4;
    pub const EXPIRED: i64 = 5;
}

/// A send request body (send, sendRule); unknown fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendIn {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    template_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    flow_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    to: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    channel: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    order_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    code: Option<String>,
}

/// Where the code of a send comes from.
#[derive(Debug, Clone)]
enum CodeSource {
    /// Generated from the template (`/verification/send`).
    Template,
    /// Given by the caller (`/verification/sendRule`).
    Given(String),
}

/// A validated send.
#[derive(Debug, Clone)]
struct SendRequest {
    app_id: String,
    template_id: Option<i64>,
    flow_id: Option<i64>,
    to: String,
    channel: Channel,
    order_id: Option<String>,
    code: CodeSource,
}

/// The reply of every send.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SendReply {
    verification_id: String,
    to: String,
    channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    sna_url: Option<String>,
}

impl SendIn {
    /// Validates the fields shared by send and sendRule.
    fn validate(self, code: CodeSource) -> Result<SendRequest, ApiError> {
        let order_id = self.order_id.filter(|id| !id.is_empty());
        if order_id.as_ref().is_some_and(|id| id.chars().count() > 64) {
            return Err(ApiError::parameter("orderId is longer than 64 characters"));
        }
        Ok(SendRequest {
            app_id: lenient::required_text("appId", self.app_id.as_deref(), 1, 64)?,
            template_id: self.template_id,
            flow_id: self.flow_id,
            to: phone_number(self.to.as_deref())?,
            channel: Channel::for_send(self.channel.as_deref())?,
            order_id,
            code,
        })
    }
}

/// Country code + number, 10–14 digits.
fn phone_number(to: Option<&str>) -> Result<String, ApiError> {
    let to = to.ok_or_else(|| ApiError::parameter("to is required"))?;
    if (10..=14).contains(&to.len()) && to.bytes().all(|b| b.is_ascii_digit()) {
        Ok(to.to_owned())
    } else {
        Err(ApiError::parameter("to must be 10-14 digits"))
    }
}

/// `POST /verification/send`: the platform generates the code from the (required) template.
pub async fn send(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let input = lenient::body::<SendIn>(&body)?;
    if input.template_id.is_none() {
        return Err(ApiError::parameter("templateId is required"));
    }
    let request = input.validate(CodeSource::Template)?;
    accept_and_follow(&shared, request)
}

/// `POST /verification/sendRule`: the caller gives the code (1–10 characters).
pub async fn send_rule(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let mut input = lenient::body::<SendIn>(&body)?;
    let code = lenient::required_text("code", input.code.take().as_deref(), 1, 10)?;
    let request = input.validate(CodeSource::Given(code))?;
    accept_and_follow(&shared, request)
}

/// Accepts a send and, when it runs a task flow, follows the flow into the inbox.
fn accept_and_follow(shared: &Arc<Shared>, request: SendRequest) -> ApiResult {
    let runs_flow = request.flow_id.is_some();
    let reply = accept(
        &mut shared.state(),
        request,
        clock::now(),
        shared.speed(),
        &shared.bounds,
    )?;
    if runs_flow {
        deliveries::follow_flow(shared, reply.verification_id.clone());
    }
    Success::data(reply)
}

/// What a send takes from the stored app, template and flow.
struct Resolved {
    total: Limit,
    phone: Limit,
    expiry_minutes: i64,
    code_kind: CodeType,
    code_length: usize,
    sender: String,
    text: String,
    flow: Vec<FlowNode>,
}

/// Looks up the app, the template (which must belong to the app) and the flow: -24 if absent.
fn resolve(state: &state::State, request: &SendRequest) -> Result<Resolved, ApiError> {
    let app = state
        .apps
        .get(&request.app_id)
        .ok_or(ApiError::DataUnexisting)?;
    let template = match request.template_id {
        Some(id) => {
            let template = state
                .templates
                .get(&id)
                .filter(|t| t.app_id == request.app_id);
            Some(template.ok_or(ApiError::DataUnexisting)?)
        }
        None => None,
    };
    let flow = match request.flow_id {
        Some(id) => state
            .flows
            .get(&id)
            .ok_or(ApiError::DataUnexisting)?
            .flow
            .clone(),
        None => Vec::new(),
    };
    Ok(Resolved {
        total: app.period_total_send_limit.clone(),
        phone: app.period_phone_send_limit.clone(),
        expiry_minutes: app.code_expiry,
        code_kind: template.map_or(CodeType::Numeric, |t| t.code_kind()),
        code_length: template.map_or(4, |t| usize::try_from(t.code_length).unwrap_or(4)),
        sender: template
            .and_then(|t| t.sender_id.clone())
            .unwrap_or_default(),
        text: template.map_or(DEFAULT_TEXT, |t| t.text()).to_owned(),
        flow,
    })
}

/// Validates a send against the stored data (-24, then -20 for a used orderId, then the
/// period limits) and stores the new verification.
fn accept(
    state: &mut state::State,
    request: SendRequest,
    now: DateTime<Utc>,
    speed: f64,
    bounds: &Bounds,
) -> Result<SendReply, ApiError> {
    let resolved = resolve(state, &request)?;
    envelope::unless_taken(
        request
            .order_id
            .as_ref()
            .is_some_and(|id| state.order_ids.contains_key(id)),
    )?;
    let log = state.sends.entry(request.app_id.clone()).or_default();
    log.check(&resolved.total, &resolved.phone, &request.to, now)?;
    let code = match request.code {
        CodeSource::Given(code) => code,
        CodeSource::Template => {
            codes::generate_code(resolved.code_kind, resolved.code_length, &request.to)
        }
    };
    let verification = Verification {
        id: String::new(),
        app_id: request.app_id,
        flow_id: request.flow_id,
        flow: resolved.flow,
        to: request.to,
        channel: request.channel,
        order_id: request.order_id,
        template_id: request.template_id,
        text: resolved.text.replace(PLACEHOLDER, &code),
        code,
        sender: resolved.sender,
        sent_at: now,
        expires_at: clock::after(now, resolved.expiry_minutes as f64 * 60.0, speed),
        checks: Checks::default(),
    };
    Ok(store(state, verification, now, speed, bounds))
}

/// Gives the verification a fresh id, records the send, delivers its first attempt to the
/// inbox, and answers like the vendor.
fn store(
    state: &mut state::State,
    mut verification: Verification,
    now: DateTime<Utc>,
    speed: f64,
    bounds: &Bounds,
) -> SendReply {
    verification.id = loop {
        let candidate = codes::verification_id(now, state.next_verification_seq());
        if !state.verifications.contains_key(&candidate) {
            break candidate;
        }
    };
    state
        .sends
        .entry(verification.app_id.clone())
        .or_default()
        .push(&verification.to, now);
    let first = records::first_attempt(&verification);
    if let Some(message) = deliveries::message(&verification, first, speed) {
        state.inbox.deliver(message, bounds.max_inbox_messages);
    }
    let reply = SendReply {
        verification_id: verification.id.clone(),
        to: verification.to.clone(),
        channel: verification.channel,
        sna_url: (verification.channel == Channel::Sna)
            .then(|| format!("https://sandbox.invalid/sna/{}", verification.id)),
    };
    state.insert_verification(verification, bounds);
    reply
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResendIn {
    #[serde(default, deserialize_with = "opt_text")]
    verification_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    channel: Option<String>,
}

/// `POST /verification/resend`: the same app, number, code and template under a new
/// verificationId (no flow, no orderId); counts toward the period limits.
pub async fn resend(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let input = lenient::body::<ResendIn>(&body)?;
    let id = lenient::required_text("verificationId", input.verification_id.as_deref(), 1, 64)?;
    let channel = Channel::for_send(input.channel.as_deref())?;
    let reply = resend_in(
        &mut shared.state(),
        &id,
        channel,
        clock::now(),
        (shared.speed(), &shared.bounds),
    )?;
    Success::data(reply)
}

fn resend_in(
    state: &mut state::State,
    id: &str,
    channel: Channel,
    now: DateTime<Utc>,
    (speed, bounds): (f64, &Bounds),
) -> Result<SendReply, ApiError> {
    let original = state
        .verifications
        .get(id)
        .ok_or(ApiError::DataUnexisting)?;
    let app = state
        .apps
        .get(&original.app_id)
        .ok_or(ApiError::DataUnexisting)?;
    let (total, phone) = (&app.period_total_send_limit, &app.period_phone_send_limit);
    state
        .sends
        .entry(original.app_id.clone())
        .or_default()
        .check(total, phone, &original.to, now)?;
    let verification = Verification {
        id: String::new(),
        flow_id: None,
        flow: Vec::new(),
        channel,
        order_id: None,
        sent_at: now,
        expires_at: clock::after(now, app.code_expiry as f64 * 60.0, speed),
        checks: Checks::default(),
        ..original.clone()
    };
    Ok(store(state, verification, now, speed, bounds))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyIn {
    #[serde(default, deserialize_with = "opt_text")]
    verification_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    code: Option<String>,
}

/// The reply of a check; `to` and `channel` are null for an unknown verificationId.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyReply {
    verification_id: String,
    to: Option<String>,
    channel: Option<Channel>,
    matched: i64,
}

/// `POST /verification/verify`: always status "0"; the outcome is `matched`
/// (0 ok, 2 wrong, 3 unknown id, 4 already used, 5 expired).
pub async fn verify(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let input = lenient::body::<VerifyIn>(&body)?;
    let id = lenient::required_text("verificationId", input.verification_id.as_deref(), 1, 64)?;
    let code = lenient::required_text("code", input.code.as_deref(), 4, 10)?;
    let now = clock::now();
    let mut state = shared.state();
    let reply = match state.verifications.get_mut(&id) {
        None => VerifyReply {
            verification_id: id,
            to: None,
            channel: None,
            matched: matched::UNKNOWN_ID,
        },
        Some(verification) => VerifyReply {
            matched: check(verification, &code, now),
            channel: Some(records::current_channel(verification, now, shared.speed())),
            to: Some(verification.to.clone()),
            verification_id: id,
        },
    };
    Success::data(reply)
}

/// Checks `code` at `now` and records the attempt. Codes compare case-insensitively.
fn check(verification: &mut Verification, code: &str, now: DateTime<Utc>) -> i64 {
    let result = if verification.checks.verified_at.is_some() {
        matched::USED
    } else if now > verification.expires_at {
        matched::EXPIRED
    } else if verification.code.eq_ignore_ascii_case(code) {
        verification.checks.verified_at = Some(now);
        matched::OK
    } else {
        matched::WRONG
    };
    verification.checks.last_at = Some(now);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    // Equivalent mutants of `resend_in` (tests/sandbox.rs `a_resend_starts_afresh` and
    // `a_resent_sms_is_sent_at_the_resend` cover the other fields): deleting `id: String::new()`
    // (`store` gives every verification a fresh id) and deleting `flow_id: None` (a flow id is
    // only shown by the order-id lookup, and a resend has no order id). cargo-mutants 27 lists
    // field deletions even when excluded.
    use super::*;

    fn bounds() -> Bounds {
        Bounds::of(&crate::sandbox::SandboxConfig::new("k", "s"))
    }

    fn request(to: &str, code: CodeSource) -> SendRequest {
        SendRequest {
            app_id: "A".into(),
            template_id: None,
            flow_id: None,
            to: to.into(),
            channel: Channel::Sms,
            order_id: None,
            code,
        }
    }

    #[test]
    fn unknown_app_is_data_unexisting() {
        let mut state = state::State::default();
        let err = accept(
            &mut state,
            request("99900123456", CodeSource::Template),
            Utc::now(),
            1.0,
            &bounds(),
        )
        .unwrap_err();
        assert_eq!(err, ApiError::DataUnexisting);
    }

    #[test]
    fn checks_follow_the_state_machine() {
        let now = Utc::now();
        let mut v = Verification::sample("99900123456", Channel::Sms, "AB12", now);
        v.expires_at = now + chrono::Duration::seconds(3);
        assert_eq!(
            check(&mut v.clone(), "AB12", now + chrono::Duration::seconds(4)),
            matched::EXPIRED
        );
        assert_eq!(check(&mut v, "0000", now), matched::WRONG);
        assert_eq!(check(&mut v, "ab12", now), matched::OK);
        assert_eq!(check(&mut v, "AB12", now), matched::USED);
    }

    #[test]
    fn phone_numbers() {
        assert!(phone_number(Some("91856321412")).is_ok());
        assert!(phone_number(Some("123456789")).is_err());
        assert!(phone_number(Some("+9185632141")).is_err());
    }

    #[test]
    fn send_replies_have_sna_url_only_for_sna() {
        let mut state = state::State::default();
        let v = |channel| Verification::sample("99900123456", channel, "1234", Utc::now());
        let reply = serde_json::to_value(store(
            &mut state,
            v(Channel::Sms),
            Utc::now(),
            1.0,
            &bounds(),
        ))
        .unwrap();
        assert!(reply.get("snaUrl").is_none());
        let reply = serde_json::to_value(store(
            &mut state,
            v(Channel::Sna),
            Utc::now(),
            1.0,
            &bounds(),
        ))
        .unwrap();
        assert!(
            reply["snaUrl"]
                .as_str()
                .unwrap()
                .starts_with("https://sandbox.invalid/sna/")
        );
    }

    #[test]
    fn the_code_is_the_one_sent() {
        let v = Verification::sample("99900123456", Channel::Sms, "AB12", Utc::now());
        assert_eq!(v.code(), "AB12");
    }

    #[test]
    fn order_ids_are_at_most_64_characters_and_empty_means_none() {
        let validate = |order_id: &str| {
            SendIn {
                app_id: Some("A".into()),
                template_id: None,
                flow_id: None,
                to: Some("99900123456".into()),
                channel: None,
                order_id: Some(order_id.into()),
                code: None,
            }
            .validate(CodeSource::Template)
            .map(|request| request.order_id)
        };
        assert_eq!(validate(&"é".repeat(64)), Ok(Some("é".repeat(64))));
        assert_eq!(validate("o-1"), Ok(Some("o-1".into())));
        assert_eq!(validate(""), Ok(None));
        assert!(validate(&"o".repeat(65)).is_err());
    }

    #[test]
    fn a_code_checked_at_its_expiry_instant_still_counts() {
        let now = Utc::now();
        let mut v = Verification::sample("99900123456", Channel::Sms, "AB12", now);
        let at_expiry = v.expires_at;
        assert_eq!(check(&mut v, "AB12", at_expiry), matched::OK);
    }
}

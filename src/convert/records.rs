//! Delivery records: the upstream record (by verificationId or by orderId) as proto.

use prost_types::{ListValue, Struct, Value, value::Kind};

use crate::{
    proto::v1::watch_record_request::Selector,
    proto::v1::{self as pb, DeliveryStatus},
    upstream as wire,
};

use super::{
    InvalidRequest, Violations, channel_from_wire, limits::MAX_ORDER_ID_CHARS, timestamp_from_wire,
    verifications::match_state_from_wire,
};

/// Which record a watch follows: what [`watch_key`] reads from a `WatchRecord` request, and
/// what the record pollers of `watch` are keyed by (it lives here, below them, so `watch` uses
/// `convert` and never the reverse).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchKey {
    /// One verification, by id.
    Verification(String),
    /// A caller reference within an app: every attempt of a task flow.
    Order {
        /// The application.
        app_id: String,
        /// The caller's reference.
        order_id: String,
    },
}

/// Checks a `GetRecord` request.
pub fn get_request(req: &pb::GetRecordRequest) -> Result<(), InvalidRequest> {
    let mut v = Violations::default();
    v.verification_id("verification_id", &req.verification_id);
    v.finish(())
}

/// Checks a `GetOrderRecord` request and builds the `/verification/orderId/record` body.
pub fn order_request(
    field_prefix: &str,
    app_id: &str,
    order_id: &str,
) -> Result<wire::OrderRecordRequest, InvalidRequest> {
    let mut v = Violations::default();
    v.app_id(&format!("{field_prefix}app_id"), app_id);
    v.text(
        &format!("{field_prefix}order_id"),
        order_id,
        1..=MAX_ORDER_ID_CHARS,
    );
    v.finish(wire::OrderRecordRequest {
        app_id: app_id.to_owned(),
        order_id: order_id.to_owned(),
    })
}

/// Checks a `WatchRecord` request and names the record to follow.
pub fn watch_key(req: &pb::WatchRecordRequest) -> Result<WatchKey, InvalidRequest> {
    match &req.selector {
        Some(Selector::VerificationId(id)) => {
            let mut v = Violations::default();
            v.verification_id("verification_id", id);
            v.finish(WatchKey::Verification(id.clone()))
        }
        Some(Selector::Order(order)) => {
            let body = order_request("order.", &order.app_id, &order.order_id)?;
            Ok(WatchKey::Order {
                app_id: body.app_id,
                order_id: body.order_id,
            })
        }
        None => {
            let mut v = Violations::default();
            v.add("selector", "set verification_id or order");
            v.finish(WatchKey::Verification(String::new()))
        }
    }
}

/// The upstream record as proto.
pub fn from_wire(record: wire::Record) -> pb::Record {
    let outcome = record.verifications.map(outcome_from_wire);
    let order_id = record
        .order_id
        .or_else(|| outcome.as_ref().map(|o| o.order_id.clone()))
        .unwrap_or_default();
    pb::Record {
        verification_id: record.verification_id.unwrap_or_default(),
        order_id,
        flow_id: record.flow_id.unwrap_or_default(),
        outcome,
        sms_attempts: record.sms.into_iter().map(sms_from_wire).collect(),
        call_attempts: record.call.into_iter().map(call_from_wire).collect(),
        sna_attempts: record.sna.into_iter().filter_map(json_object).collect(),
    }
}

fn outcome_from_wire(outcome: wire::Outcome) -> pb::VerificationOutcome {
    pb::VerificationOutcome {
        match_state: match_state_from_wire(outcome.matched) as i32,
        verified_time: timestamp_from_wire(outcome.verified_date.as_deref()),
        phone_number: outcome.ori_receiver.unwrap_or_default(),
        channel: channel_from_wire(outcome.channel.as_deref()) as i32,
        order_id: outcome.order_id.unwrap_or_default(),
    }
}

fn sms_from_wire(sms: wire::SmsAttempt) -> pb::SmsAttempt {
    let status = match sms.status {
        Some(-1) => DeliveryStatus::Sending,
        Some(0) => DeliveryStatus::Delivered,
        Some(1) => DeliveryStatus::Failed,
        _ => DeliveryStatus::Unspecified,
    };
    pb::SmsAttempt {
        submit_time: timestamp_from_wire(sms.submit_tm.as_deref()),
        send_time: timestamp_from_wire(sms.send_tm.as_deref()),
        done_time: timestamp_from_wire(sms.done_tm.as_deref()),
        mcc: sms.mcc.unwrap_or_default(),
        mnc: sms.mnc.unwrap_or_default(),
        sender: sms.sender.unwrap_or_default(),
        charge_count: sms.charge_cnt.unwrap_or_default(),
        cost: sms.pay.unwrap_or_default(),
        status: status as i32,
        reason: sms.reason.unwrap_or_default(),
        settle_cost: sms.settle_pay.unwrap_or_default(),
        settle_price: sms.settle_price.unwrap_or_default(),
        settle_currency: sms.settle_currency.unwrap_or_default(),
        quote_exchange_rate: sms.quote_exchange.unwrap_or_default(),
    }
}

fn call_from_wire(call: wire::CallAttempt) -> pb::CallAttempt {
    let status = match call.termination_code {
        None => DeliveryStatus::Sending,
        Some(0) => DeliveryStatus::Delivered,
        Some(_) => DeliveryStatus::Failed,
    };
    pb::CallAttempt {
        submit_time: timestamp_from_wire(call.submit_time.as_deref()),
        call_time: timestamp_from_wire(call.call_time.as_deref()),
        ringing_time: timestamp_from_wire(call.ringing_time.as_deref()),
        answer_time: timestamp_from_wire(call.answer_time.as_deref()),
        hangup_time: timestamp_from_wire(call.hangup_time.as_deref()),
        call_duration_seconds: call.call_duration.unwrap_or_default(),
        charged_duration_seconds: call.charged_duration.unwrap_or_default(),
        display_number: call.display_num.unwrap_or_default(),
        billing_increment: call.bill_periodstring.unwrap_or_default(),
        supplier_code: call.code.unwrap_or_default(),
        rate: call.rate.unwrap_or_default(),
        cost: call.cost.unwrap_or_default(),
        status: status as i32,
        termination_code: call.termination_code,
        termination_reason: call.termination_reason.unwrap_or_default(),
    }
}

/// A JSON object as a protobuf `Struct`; SNA entries have no documented fields.
fn json_object(value: serde_json::Value) -> Option<Struct> {
    match json_to_value(value).kind? {
        Kind::StructValue(object) => Some(object),
        _ => None,
    }
}

fn json_to_value(value: serde_json::Value) -> Value {
    use serde_json::Value as Json;
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(Struct {
            fields: map
                .into_iter()
                .map(|(k, v)| (k, json_to_value(v)))
                .collect(),
        }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Channel, MatchState};

    #[test]
    fn every_sms_status_has_its_own_meaning() {
        for (wire_value, expected) in [
            (Some(-1), DeliveryStatus::Sending),
            (Some(0), DeliveryStatus::Delivered),
            (Some(1), DeliveryStatus::Failed),
            (Some(2), DeliveryStatus::Unspecified),
            (None, DeliveryStatus::Unspecified),
        ] {
            let sms = wire::SmsAttempt {
                status: wire_value,
                ..Default::default()
            };
            assert_eq!(sms_from_wire(sms).status, expected as i32, "{wire_value:?}");
        }
    }

    #[test]
    fn a_flow_record_keeps_both_channels() {
        let record = wire::Record {
            order_id: Some("1234566".into()),
            flow_id: Some("1".into()),
            verifications: Some(wire::Outcome {
                matched: Some(0),
                verified_date: Some("2022-07-12T13:39:47+08:00".into()),
                ori_receiver: Some("91856321412".into()),
                channel: Some("call".into()),
                order_id: None,
            }),
            sms: vec![wire::SmsAttempt {
                status: Some(0),
                pay: Some("0.000002".into()),
                ..Default::default()
            }],
            call: vec![wire::CallAttempt {
                termination_code: Some(100005),
                cost: Some("0".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let record = from_wire(record);
        let outcome = record.outcome.expect("outcome");
        assert_eq!(outcome.match_state, MatchState::Matched as i32);
        assert_eq!(outcome.channel, Channel::Call as i32);
        assert_eq!(
            record.sms_attempts[0].status,
            DeliveryStatus::Delivered as i32
        );
        assert_eq!(
            record.call_attempts[0].status,
            DeliveryStatus::Failed as i32
        );
        assert_eq!(record.order_id, "1234566");
    }

    #[test]
    fn sna_entries_become_structs() {
        let sna = serde_json::json!({"postVerify": true, "n": 2});
        let object = json_object(sna).expect("object");
        assert_eq!(object.fields.len(), 2);
        assert!(json_object(serde_json::json!(3)).is_none());
    }

    #[test]
    fn record_lookups_check_ids_by_shape() {
        use crate::convert::tests::fields;
        use crate::proto::v1::OrderSelector;

        let long = "a".repeat(60_000);
        let err = get_request(&pb::GetRecordRequest {
            verification_id: long.clone(),
        })
        .expect_err("too long");
        assert_eq!(fields(err), ["verification_id"]);
        let err = order_request("", &long, "o\u{7}").expect_err("invalid");
        assert_eq!(fields(err), ["app_id", "order_id"]);
        let body = order_request("", "mRELxtHc", &"o".repeat(64)).expect("at the limit");
        assert_eq!(body.order_id.len(), 64);
        let watch = |selector| pb::WatchRecordRequest {
            selector: Some(selector),
        };
        let err = watch_key(&watch(Selector::VerificationId("1\r\n2".into()))).expect_err("ctl");
        assert_eq!(fields(err), ["verification_id"]);
        let err = watch_key(&watch(Selector::Order(OrderSelector {
            app_id: "mREL\nxtHc".into(),
            order_id: "o".repeat(65),
        })))
        .expect_err("invalid");
        assert_eq!(fields(err), ["order.app_id", "order.order_id"]);
        let key = watch_key(&watch(Selector::VerificationId(
            "22206051443051000003".into(),
        )))
        .expect("valid");
        assert_eq!(key, WatchKey::Verification("22206051443051000003".into()));
    }
}

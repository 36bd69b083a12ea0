//! Property tests of reply decoding (`client::decode` with the `lenient` field decoders):
//! arbitrary bytes and arbitrary JSON never panic, and every valid reply, with its ints as
//! numbers or as strings, decodes to exactly what was encoded.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::UpstreamError;
use super::client::decode;
use super::lenient::OneOrMany;
use super::{App, CheckResult, Endpoint, Flow, FlowNode, PeriodLimit, Sent};
use crate::fuzzing::upstream_reply;

/// Field names the wire types read, so generated objects reach the field decoders.
const KEYS: &[&str] = &[
    "status",
    "reason",
    "data",
    "appId",
    "name",
    "codeExpiry",
    "createTime",
    "enabled",
    "unit",
    "period",
    "limit",
    "periodTotalSendLimit",
    "templateId",
    "text",
    "codeType",
    "codeLength",
    "language",
    "flowId",
    "flow",
    "waitingTime",
    "channel",
    "channelCut",
    "verificationId",
    "to",
    "snaUrl",
    "matched",
    "orderId",
    "verifications",
    "sms",
    "call",
    "sna",
    "mcc",
    "pay",
    "cost",
    "costEur",
    "terminationCode",
    "submitTm",
    "verifiedDate",
    "oriReceiver",
];

/// Any JSON value, three levels deep, with keys the decoders look for.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "-?[0-9]{1,20}(\\.[0-9]{0,3})?".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..8).prop_map(
                |pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }
            ),
        ]
    })
}

/// An integer on the wire: a number, or the same number as a (possibly padded) string.
fn wire_int(value: i64, as_text: u8) -> Value {
    match as_text % 3 {
        0 => json!(value),
        1 => json!(value.to_string()),
        _ => json!(format!(" {value} ")),
    }
}

fn success(data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"status": "0", "reason": "success", "data": data})).expect("json")
}

fn period_limit() -> impl Strategy<Value = PeriodLimit> {
    (
        any::<bool>(),
        any::<Option<i32>>(),
        any::<Option<i32>>(),
        any::<Option<i64>>(),
    )
        .prop_map(|(enabled, unit, period, limit)| PeriodLimit {
            enabled,
            unit,
            period,
            limit,
        })
}

fn flow_node() -> impl Strategy<Value = (FlowNode, u8)> {
    (
        any::<i32>(),
        any::<i32>(),
        any::<String>(),
        any::<Option<i32>>(),
        any::<u8>(),
    )
        .prop_map(|(waiting_time, status, channel, channel_cut, as_text)| {
            let node = FlowNode {
                waiting_time,
                status,
                channel,
                channel_cut,
            };
            (node, as_text)
        })
}

fn node_json((node, as_text): &(FlowNode, u8)) -> Value {
    let mut value = json!({
        "waitingTime": wire_int(node.waiting_time.into(), *as_text),
        "status": wire_int(node.status.into(), as_text / 3),
        "channel": node.channel,
    });
    if let Some(cut) = node.channel_cut {
        value["channelCut"] = wire_int(cut.into(), as_text / 9);
    }
    value
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        upstream_reply(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(data in any_json(), status in any_json()) {
        upstream_reply(&success(data.clone()));
        upstream_reply(&serde_json::to_vec(&data).expect("json"));
        let envelope = json!({"status": status, "data": data});
        upstream_reply(&serde_json::to_vec(&envelope).expect("json"));
    }

    #[test]
    fn apps_round_trip(
        app_id in any::<String>(),
        name in any::<String>(),
        code_expiry in any::<Option<i32>>(),
        create_time in any::<Option<String>>(),
        total in proptest::option::of(period_limit()),
        as_text in any::<u8>(),
    ) {
        let mut data = json!({
            "appId": app_id,
            "name": name,
            "createTime": create_time,
            "periodTotalSendLimit": total,
        });
        if let Some(minutes) = code_expiry {
            data["codeExpiry"] = wire_int(minutes.into(), as_text);
        }
        let app: App = decode(Endpoint::AppDetails, &success(data)).expect("valid reply");
        prop_assert_eq!(
            app,
            App {
                app_id,
                name,
                code_expiry,
                create_time,
                period_total_send_limit: total,
                period_phone_send_limit: None,
            }
        );
    }

    #[test]
    fn flow_lists_round_trip(
        flows in proptest::collection::vec(
            (1i64..=i64::MAX, any::<String>(), proptest::collection::vec(flow_node(), 0..4)),
            0..4,
        ),
        as_text in any::<u8>(),
    ) {
        let data: Vec<Value> = flows
            .iter()
            .map(|(id, name, nodes)| {
                json!({
                    "flowId": wire_int(*id, as_text),
                    "name": name,
                    "flow": nodes.iter().map(node_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let OneOrMany(decoded) =
            decode::<OneOrMany<Flow>>(Endpoint::FlowList, &success(Value::from(data)))
                .expect("valid reply");
        let expected: Vec<Flow> = flows
            .into_iter()
            .map(|(id, name, nodes)| Flow {
                // A padded string id is kept as sent; a number becomes its decimal text.
                flow_id: match as_text % 3 {
                    2 => format!(" {id} "),
                    _ => id.to_string(),
                },
                name,
                flow: nodes.into_iter().map(|(node, _)| node).collect(),
            })
            .collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn sends_and_checks_round_trip(
        verification_id in any::<String>(),
        to in any::<Option<String>>(),
        channel in any::<Option<String>>(),
        matched in any::<Option<i32>>(),
        as_text in any::<u8>(),
    ) {
        let sent: Sent = decode(
            Endpoint::VerificationSend,
            &success(json!({"verificationId": verification_id, "to": to, "channel": channel})),
        )
        .expect("valid reply");
        prop_assert!(sent.verification_id == verification_id);
        prop_assert!(sent.to == to && sent.channel == channel && sent.sna_url.is_none());
        let mut data = json!({"verificationId": verification_id, "to": to, "channel": channel});
        if let Some(matched) = matched {
            data["matched"] = wire_int(matched.into(), as_text);
        }
        let checked: CheckResult =
            decode(Endpoint::VerificationVerify, &success(data)).expect("valid reply");
        prop_assert!(checked.verification_id.as_deref() == Some(verification_id.as_str()));
        prop_assert!(checked.to == to && checked.channel == channel);
        prop_assert_eq!(checked.matched, matched);
    }

    #[test]
    fn rejections_keep_their_status_and_hide_long_numbers(
        status in any::<i32>().prop_filter("not success", |s| *s != 0),
        reason in any::<String>(),
        digits in "[0-9]{4,20}",
        as_text in any::<u8>(),
    ) {
        let reply = json!({
            "status": wire_int(status.into(), as_text),
            "reason": format!("{reason}{digits}"),
            "data": {"appId": 7},
        });
        match decode::<App>(Endpoint::AppAdd, &serde_json::to_vec(&reply).expect("json")) {
            Err(UpstreamError::Rejected { status: got, reason, .. }) => {
                prop_assert_eq!(got, status);
                prop_assert!(!reason.contains(&digits), "{}", reason);
                prop_assert!(!reason.chars().any(char::is_control));
            }
            other => prop_assert!(false, "expected a rejection, got {:?}", other.map(|_| ())),
        }
    }
}

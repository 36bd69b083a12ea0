//! Entry points for the cargo-fuzz targets in `fuzz/` (and the property tests): each takes raw
//! bytes, runs one of the crate's parsers on them and panics only if an invariant breaks. Not
//! part of the crate's API (hidden from its docs); the functions it reaches stay private.
//!
//! - [`upstream_reply`]: any bytes as every ITNIO reply type: decoding never panics.
//! - [`request_validation`]: the first byte picks a gRPC request message, the rest is decoded
//!   as its protobuf; a request `convert` accepts yields a body whose every string is within
//!   its limit and free of refused characters, whose ids have their documented shape, and a
//!   refused one names each bad field once.
//! - [`grpc_timeout`]: any text as a `grpc-timeout` value: a parsed timeout is well formed and
//!   the upstream deadline derived from it never exceeds it.

use std::collections::HashSet;
use std::time::Duration;

use prost::Message;
use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use tonic::metadata::MetadataValue;

use crate::convert::limits::{
    self, APP_ID_CHARS, Layout, MAX_FLOW_NODES, VERIFICATION_ID_CHARS, has_forbidden_char,
    is_token_id,
};
use crate::convert::records::WatchKey;
use crate::convert::{InvalidRequest, apps, flows, records, templates, verifications};
use crate::phone::PhoneRules;
use crate::proto::v1 as pb;
use crate::upstream::client::decode;
use crate::upstream::lenient::OneOrMany;
use crate::upstream::{App, CheckResult, Endpoint, Flow, Record, Sent, Template};

/// Decodes `bytes` as every reply type the client reads; only a panic is a failure.
pub fn upstream_reply(bytes: &[u8]) {
    let e = Endpoint::VerificationRecord;
    let _ = decode::<App>(e, bytes);
    let _ = decode::<Template>(e, bytes);
    let _ = decode::<OneOrMany<Template>>(e, bytes);
    let _ = decode::<Flow>(e, bytes);
    let _ = decode::<OneOrMany<Flow>>(e, bytes);
    let _ = decode::<Sent>(e, bytes);
    let _ = decode::<CheckResult>(e, bytes);
    let _ = decode::<Record>(e, bytes);
    let _ = decode::<IgnoredAny>(e, bytes);
}

/// Phone numbers as a live server without `PHONE_DEFAULT_REGION` reads them, plus the sandbox's
/// test numbers (so fuzzed sends get past the number more often).
const PHONES: PhoneRules = PhoneRules {
    default_region: None,
    test_numbers: true,
};

/// How many request messages [`request_validation`] chooses from (by `bytes[0] % REQUESTS`).
pub const REQUESTS: u8 = 18;

/// Validates `bytes[1..]` as the request `bytes[0]` picks and checks the outcome.
pub fn request_validation(bytes: &[u8]) {
    let Some((&pick, message)) = bytes.split_first() else {
        return;
    };
    match pick % REQUESTS {
        0 => body(message, apps::create_request),
        1 => body(message, apps::update_request),
        2 => path(message, apps::get_request, |r: &pb::GetAppRequest| {
            app_id(&r.app_id)
        }),
        3 => body(message, templates::create_request),
        4 => body(message, templates::update_request),
        5 => path(
            message,
            templates::get_request,
            |r: &pb::GetTemplateRequest| numeric(&r.template_id),
        ),
        6 => body(message, flows::create_request),
        7 => body(message, flows::update_request),
        8 => path(message, flows::get_request, |r: &pb::GetFlowRequest| {
            numeric(&r.flow_id)
        }),
        9 => body(message, |r| {
            verifications::send_request(r, &PHONES).map(|checked| checked.body)
        }),
        10 => body(message, |r| {
            verifications::send_custom_code_request(r, &PHONES).map(|checked| checked.body)
        }),
        11 => body(message, |r| {
            verifications::resend_request(r).map(|(body, _)| body)
        }),
        12 => body(message, verifications::check_request),
        13 => body(message, |r| verifications::conversion_request(r, &PHONES)),
        14 => body(message, verifications::conversion_rate_request),
        15 => path(message, records::get_request, |r: &pb::GetRecordRequest| {
            verification_id(&r.verification_id)
        }),
        16 => body(message, |r: &pb::GetOrderRecordRequest| {
            records::order_request("", &r.app_id, &r.order_id)
        }),
        _ => watch(message),
    }
}

/// Parses `text` as a `grpc-timeout` value and checks what came out.
pub fn grpc_timeout(text: &str) {
    let parsed = crate::service::parse_grpc_timeout(text);
    if let Some(timeout) = parsed {
        // A parsed value ends in an ASCII unit, so this splits on a character boundary.
        let (digits, unit) = text.split_at(text.len() - 1);
        assert!((1..=8).contains(&digits.len()), "{text:?}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        assert!(
            matches!(unit, "H" | "M" | "S" | "m" | "u" | "n"),
            "{text:?}"
        );
        assert!(
            timeout <= Duration::from_secs(99_999_999 * 3600),
            "{text:?}"
        );
    }
    let Ok(value) = MetadataValue::try_from(text) else {
        return;
    };
    let mut request = tonic::Request::new(());
    request.metadata_mut().insert("grpc-timeout", value);
    let deadline = crate::service::deadline(&request);
    assert_eq!(deadline.is_some(), parsed.is_some(), "{text:?}");
    if let (Some(deadline), Some(timeout)) = (deadline, parsed) {
        assert!(deadline <= timeout, "{text:?}");
    }
}

/// A request whose accepted form is a JSON body.
fn body<M, B>(bytes: &[u8], convert: impl FnOnce(&M) -> Result<B, InvalidRequest>)
where
    M: Message + Default,
    B: Serialize,
{
    let Ok(request) = M::decode(bytes) else {
        return;
    };
    match convert(&request) {
        Ok(body) => {
            let json = serde_json::to_value(&body).expect("wire bodies serialise");
            assert_clean_json("", &json);
        }
        Err(error) => assert_each_field_once(error),
    }
}

/// A request whose accepted form is an id put in a URL path.
fn path<M: Message + Default>(
    bytes: &[u8],
    convert: impl FnOnce(&M) -> Result<(), InvalidRequest>,
    id_is_valid: impl FnOnce(&M) -> bool,
) {
    let Ok(request) = M::decode(bytes) else {
        return;
    };
    match convert(&request) {
        Ok(()) => assert!(id_is_valid(&request), "an accepted path id has its shape"),
        Err(error) => assert_each_field_once(error),
    }
}

fn watch(bytes: &[u8]) {
    let Ok(request) = pb::WatchRecordRequest::decode(bytes) else {
        return;
    };
    match records::watch_key(&request) {
        Ok(WatchKey::Verification(id)) => assert!(verification_id(&id)),
        Ok(WatchKey::Order {
            app_id: app,
            order_id,
        }) => {
            assert!(app_id(&app));
            assert_clean_json("orderId", &Value::String(order_id));
        }
        Err(error) => assert_each_field_once(error),
    }
}

fn app_id(id: &str) -> bool {
    is_token_id(id, &APP_ID_CHARS)
}

fn verification_id(id: &str) -> bool {
    is_token_id(id, &VERIFICATION_ID_CHARS)
}

fn numeric(id: &str) -> bool {
    limits::numeric_id(id).is_some()
}

/// Every string of an accepted body: template `text` is multi-line text of at most 256
/// characters, every other string one clean line of at most 64; ids have their shape; lists
/// stay within the node limit.
fn assert_clean_json(key: &str, value: &Value) {
    match value {
        Value::String(text) => {
            let (layout, max) = if key == "text" {
                (Layout::MultiLine, 256)
            } else {
                (Layout::SingleLine, 64)
            };
            assert!(!has_forbidden_char(text, layout), "{key}: {text:?}");
            assert!(text.chars().count() <= max, "{key} is too long");
            match key {
                "appId" => assert!(app_id(text), "appId {text:?}"),
                "verificationId" => assert!(verification_id(text), "verificationId {text:?}"),
                "templateId" | "flowId" => assert!(numeric(text), "{key} {text:?}"),
                _ => {}
            }
        }
        Value::Array(items) => {
            assert!(
                items.len() <= MAX_FLOW_NODES,
                "{key} has {} items",
                items.len()
            );
            items.iter().for_each(|item| assert_clean_json(key, item));
        }
        Value::Object(fields) => fields
            .iter()
            .for_each(|(key, value)| assert_clean_json(key, value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A refusal is INVALID_ARGUMENT with at least one violation and one per field.
fn assert_each_field_once(InvalidRequest(violations): InvalidRequest) {
    assert!(!violations.is_empty());
    let mut seen = HashSet::new();
    for violation in &violations {
        assert!(seen.insert(&violation.field), "{} twice", violation.field);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn timeouts_keep_their_invariants() {
        for text in ["1S", "99999999H", "1é", "+5S", "", "S", "٥S", "10x"] {
            grpc_timeout(text);
        }
    }

    #[test]
    fn each_request_kind_is_reachable() {
        let valid: [(u8, Vec<u8>); 3] = [
            (
                2,
                pb::GetAppRequest {
                    app_id: "mRELxtHc".into(),
                }
                .encode_to_vec(),
            ),
            (
                5,
                pb::GetTemplateRequest {
                    template_id: "455".into(),
                }
                .encode_to_vec(),
            ),
            (
                17,
                pb::WatchRecordRequest {
                    selector: Some(pb::watch_record_request::Selector::VerificationId(
                        "22206051443051000003".into(),
                    )),
                }
                .encode_to_vec(),
            ),
        ];
        for (pick, message) in valid {
            request_validation(&[&[pick][..], &message].concat());
        }
        for pick in 0..=u8::MAX {
            request_validation(&[pick]);
        }
        request_validation(&[]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The fuzz target's oracle over arbitrary protobuf bytes, in the normal suite.
        #[test]
        fn arbitrary_requests_keep_the_validation_invariants(
            pick in 0..REQUESTS,
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            request_validation(&[&[pick][..], &bytes].concat());
        }

        #[test]
        fn arbitrary_timeouts_keep_their_invariants(text in "\\PC{0,10}|[0-9]{1,9}[HMSmunx]") {
            grpc_timeout(&text);
        }
    }
}

//! Proto ⇄ upstream wire conversion, with validation of every documented constraint.
//!
//! Each `*_request` function checks a whole gRPC request and either returns the wire request or
//! every bad field at once (as [`InvalidRequest`], which `crate::error` maps to INVALID_ARGUMENT
//! with a `BadRequest` field violation each), so nothing invalid reaches
//! ITNIO. Each `*_from_wire` function turns a leniently decoded upstream reply into proto.
//! Descriptions say what the constraint is and never echo the value (it may be a phone number
//! or a code).

pub mod apps;
pub mod flows;
pub mod limits;
pub mod records;
pub mod templates;
pub mod verifications;

use std::ops::RangeInclusive;

use chrono::DateTime;
use prost_types::Timestamp;

use self::limits::Layout;
use crate::{
    idempotency::RequestId,
    phone::{Destination, PhoneRules},
    proto::v1::Channel,
};

/// One invalid request field, named by its proto path (e.g. `nodes[0].channel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Proto field path.
    pub field: String,
    /// What is wrong, for humans; never echoes the value.
    pub description: String,
}

/// A request that broke documented constraints, with every bad field; nothing was called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {} field(s)", .0.len())]
pub struct InvalidRequest(pub Vec<FieldViolation>);

/// Collects field violations while a request is checked.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records one bad field.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// `Ok(value)` when nothing was recorded, else every violation.
    pub fn finish<T>(self, value: T) -> Result<T, InvalidRequest> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(InvalidRequest(self.0))
        }
    }

    /// Checks a single-line string: required when `chars` starts above 0, its length in
    /// characters, and no control or bidi formatting character ([`limits::Layout`]).
    pub fn text(&mut self, field: &str, value: &str, chars: RangeInclusive<usize>) -> bool {
        self.text_in(field, value, chars, Layout::SingleLine)
    }

    /// Checks an optional integer against its documented range.
    pub fn range<T>(&mut self, field: &str, value: Option<T>, allowed: RangeInclusive<T>)
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if let Some(value) = value
            && !allowed.contains(&value)
        {
            let (min, max) = (allowed.start(), allowed.end());
            self.add(field, format!("must be between {min} and {max}"));
        }
    }

    /// Parses a required decimal id (templateId and flowId are integers upstream).
    pub fn numeric_id(&mut self, field: &str, value: &str) -> Option<i64> {
        if value.is_empty() {
            self.add(field, "is required");
            return None;
        }
        self.optional_numeric_id(field, value)
    }

    /// Parses an optional decimal id; empty means absent. Only the canonical form is taken
    /// ([`limits::numeric_id`]): what passes goes into a URL byte for byte.
    pub fn optional_numeric_id(&mut self, field: &str, value: &str) -> Option<i64> {
        if value.is_empty() {
            return None;
        }
        let id = limits::numeric_id(value);
        if id.is_none() {
            self.add(
                field,
                "must be a positive decimal id without sign, spaces or leading zeros",
            );
        }
        id
    }

    /// Parses a phone number by `rules` (see [`crate::phone`]); the description says why a
    /// number was refused, never what it was.
    pub fn phone(
        &mut self,
        field: &str,
        value: &str,
        required: bool,
        rules: &PhoneRules,
    ) -> Option<Destination> {
        if value.trim().is_empty() {
            if required {
                self.add(field, "is required");
            }
            return None;
        }
        match rules.parse(value) {
            Ok(destination) => Some(destination),
            Err(why) => {
                self.add(field, why.to_string());
                None
            }
        }
    }

    /// Checks an optional caller reference: at most 64 characters, single-line; empty means
    /// absent.
    pub fn order_id(&mut self, field: &str, value: &str) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        self.text(field, value, 1..=limits::MAX_ORDER_ID_CHARS);
        Some(value.to_owned())
    }

    /// Checks an optional AIP-155 request id: a UUID, or empty for none.
    pub fn request_id(&mut self, field: &str, value: &str) -> Option<RequestId> {
        RequestId::parse(value).unwrap_or_else(|description| {
            self.add(field, description);
            None
        })
    }

    /// Maps a proto channel to the wire name; `allowed` lists what this field takes.
    pub fn channel(&mut self, field: &str, value: i32, allowed: &[Channel]) -> Option<String> {
        match Channel::try_from(value) {
            Ok(Channel::Unspecified) => None,
            Ok(channel) if allowed.contains(&channel) => Some(channel_to_wire(channel).to_owned()),
            _ => {
                let names: Vec<&str> = allowed.iter().map(|c| c.as_str_name()).collect();
                self.add(field, format!("must be one of {}", names.join(", ")));
                None
            }
        }
    }
}

/// Every channel a send may use.
pub const SEND_CHANNELS: &[Channel] = &[Channel::Sms, Channel::Call, Channel::Sna];

/// The wire name of a channel.
pub fn channel_to_wire(channel: Channel) -> &'static str {
    match channel {
        Channel::Call => "call",
        Channel::Sna => "sna",
        Channel::Sms | Channel::Unspecified => "sms",
    }
}

/// A wire channel name as proto; unknown or absent names are `Unspecified`.
pub fn channel_from_wire(channel: Option<&str>) -> Channel {
    match channel.map(str::to_ascii_lowercase).as_deref() {
        Some("sms") => Channel::Sms,
        Some("call") => Channel::Call,
        Some("sna") => Channel::Sna,
        _ => Channel::Unspecified,
    }
}

/// Parses an ISO-8601 upstream time; unreadable or absent times become `None`.
pub fn timestamp_from_wire(value: Option<&str>) -> Option<Timestamp> {
    let parsed = DateTime::parse_from_rfc3339(value?.trim()).ok()?;
    Some(Timestamp {
        seconds: parsed.timestamp(),
        nanos: i32::try_from(parsed.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// A proto timestamp as a UTC date-time, if it is in range.
pub fn timestamp_to_datetime(value: &Timestamp) -> Option<DateTime<chrono::Utc>> {
    let nanos = u32::try_from(value.nanos).ok()?;
    DateTime::from_timestamp(value.seconds, nanos)
}

/// `Some(value)` unless it is empty.
pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The violated field names of a validation error, in order.
    pub(crate) fn fields(err: InvalidRequest) -> Vec<String> {
        err.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn upstream_times_with_offsets_parse() {
        let ts = timestamp_from_wire(Some("2022-07-12T13:39:45+08:00")).expect("parses");
        assert_eq!(ts.seconds, 1_657_604_385);
        assert_eq!(timestamp_from_wire(Some("yesterday")), None);
        assert_eq!(timestamp_from_wire(None), None);
    }

    /// The violated fields one check records.
    fn violated(check: impl FnOnce(&mut Violations)) -> Vec<String> {
        let mut v = Violations::default();
        check(&mut v);
        match v.finish(()) {
            Ok(()) => Vec::new(),
            Err(err) => fields(err),
        }
    }

    #[test]
    fn ids_must_be_positive() {
        for bad in ["0", "-5", "+0", "1.5", "x"] {
            assert_eq!(
                violated(|v| assert_eq!(v.numeric_id("flow_id", bad), None)),
                ["flow_id"],
                "{bad:?}"
            );
        }
        let mut v = Violations::default();
        assert_eq!(v.numeric_id("flow_id", "42"), Some(42));
        assert_eq!(v.optional_numeric_id("flow_id", "1"), Some(1));
        assert_eq!(v.optional_numeric_id("flow_id", ""), None);
        assert!(v.finish(()).is_ok());
        assert_eq!(violated(|v| _ = v.numeric_id("id", "")), ["id"]);
        // Never trimmed into a different-looking id: what passes goes into the URL as is.
        for bad in [" ", " 42 ", "42\n", "\r\n42", "042", "4 2"] {
            assert_eq!(violated(|v| _ = v.numeric_id("id", bad)), ["id"], "{bad:?}");
            assert_eq!(
                violated(|v| _ = v.optional_numeric_id("id", bad)),
                ["id"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn order_ids_take_up_to_64_characters() {
        let mut v = Violations::default();
        let longest = "é".repeat(64);
        assert_eq!(v.order_id("order_id", &longest), Some(longest.clone()));
        assert_eq!(v.order_id("order_id", ""), None);
        assert!(v.finish(()).is_ok());
        let too_long = "x".repeat(65);
        assert_eq!(
            violated(|v| _ = v.order_id("order_id", &too_long)),
            ["order_id"]
        );
        for bad in ["order\n1", "order\u{202E}1", "\u{1b}[2J"] {
            assert_eq!(
                violated(|v| _ = v.order_id("order_id", bad)),
                ["order_id"],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn blank_text_is_missing_even_at_a_valid_length() {
        assert_eq!(violated(|v| _ = v.text("name", "    ", 4..=32)), ["name"]);
        assert_eq!(violated(|v| _ = v.text("name", "\t \n ", 1..=32)), ["name"]);
        assert!(violated(|v| _ = v.text("name", "a b ", 4..=32)).is_empty());
        assert!(violated(|v| _ = v.text("name", "", 0..=32)).is_empty());
        let mut v = Violations::default();
        v.text("name", "    ", 4..=32);
        let Err(InvalidRequest(list)) = v.finish(()) else {
            panic!("expected a violation");
        };
        assert_eq!(list[0].description, "is required");
    }

    #[test]
    fn every_channel_crosses_the_wire_both_ways() {
        for (channel, wire) in [
            (Channel::Sms, "sms"),
            (Channel::Call, "call"),
            (Channel::Sna, "sna"),
        ] {
            assert_eq!(channel_to_wire(channel), wire);
            assert_eq!(channel_from_wire(Some(wire)), channel);
            assert_eq!(channel_from_wire(Some(&wire.to_uppercase())), channel);
        }
        assert_eq!(channel_from_wire(Some("fax")), Channel::Unspecified);
        assert_eq!(channel_from_wire(None), Channel::Unspecified);
        let mut v = Violations::default();
        assert_eq!(
            v.channel("channel", Channel::Sna as i32, SEND_CHANNELS)
                .as_deref(),
            Some("sna")
        );
        assert_eq!(v.channel("channel", 0, SEND_CHANNELS), None);
        assert!(v.finish(()).is_ok());
        let sms_only = violated(|v| _ = v.channel("nodes[0].channel", 3, &[Channel::Sms]));
        assert_eq!(sms_only, ["nodes[0].channel"]);
    }

    #[test]
    fn empty_optional_text_is_absent() {
        assert_eq!(non_empty("ACME").as_deref(), Some("ACME"));
        assert_eq!(non_empty(""), None);
    }

    #[test]
    fn violations_collect_every_field() {
        let mut v = Violations::default();
        v.text("name", "abc", 4..=32);
        v.range("code_expiry_minutes", Some(61), 1..=60);
        v.numeric_id("template_id", "x1");
        v.channel("channel", 99, SEND_CHANNELS);
        let Err(InvalidRequest(list)) = v.finish(()) else {
            panic!("expected violations");
        };
        let fields: Vec<_> = list.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "code_expiry_minutes", "template_id", "channel"]
        );
    }
}

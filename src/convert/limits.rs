//! Every bound on request input, in one place: lengths, id shapes, the characters a field may
//! hold, numeric ceilings and the plausible time window. `docs/limits.md` is this file's table
//! for callers; keep the two in step.
//!
//! Where the API reference gives a limit it is used as is (names 4–32, template text 1–256,
//! codes, order ids); where it is silent the limit here is ours, chosen far above any real value
//! and written down so callers can rely on it. Ids are checked against their documented shape
//! *before* they are put in a URL: a value that passes is sent byte for byte, one that does not
//! is refused, never trimmed or stripped into a different id.

use std::ops::RangeInclusive;

use chrono::{DateTime, TimeDelta, Utc};
use prost_types::Timestamp;

use super::{Violations, timestamp_to_datetime};

/// App, template and flow names (API reference: 4–32 characters).
pub const NAME_CHARS: RangeInclusive<usize> = 4..=32;
/// Template text (API reference: 1–256 characters, with `##code##`).
pub const TEMPLATE_TEXT_CHARS: RangeInclusive<usize> = 1..=256;
/// Template sender id: not documented. GSM alphanumeric senders have at most 11 characters and
/// numeric ones at most 15 digits (E.164); 20 leaves room for a `+` and provider prefixes.
pub const MAX_SENDER_ID_CHARS: usize = 20;
/// appId (send pages: 4–32 characters; samples are 8 alphanumerics like `mRELxtHc`).
pub const APP_ID_CHARS: RangeInclusive<usize> = 4..=32;
/// verificationId: documented only as a string; samples are 20 digits. 64 leaves room for a
/// longer scheme without letting a path id grow unbounded.
pub const VERIFICATION_ID_CHARS: RangeInclusive<usize> = 1..=64;
/// templateId and flowId are positive integers upstream: at most 19 digits (fits an `i64`).
pub const MAX_NUMERIC_ID_DIGITS: usize = 19;
/// orderId (API reference: 0–64 characters; empty means none).
pub const MAX_ORDER_ID_CHARS: usize = 64;
/// sendRule `code` (API reference: 1–10 characters).
pub const CUSTOM_CODE_CHARS: RangeInclusive<usize> = 1..=10;
/// verify `code` (API reference: 4–10 characters).
pub const CHECK_CODE_CHARS: RangeInclusive<usize> = 4..=10;
/// Flow nodes: not documented. Codes expire after at most 60 minutes and a node waits 30–120 s,
/// so a real fallback chain has a handful of nodes; 10 allows twenty minutes of fallbacks.
pub const MAX_FLOW_NODES: usize = 10;
/// `conversion_count` and `base_count`: not documented. A trillion is far above any real send
/// volume (an app's period limit tops out at 10 billion).
pub const MAX_COUNT: u64 = 1_000_000_000_000;
/// The earliest plausible report time: 2020-01-01T00:00:00Z (the API's docs date from 2022).
pub const EARLIEST_TIME_SECONDS: i64 = 1_577_836_800;
/// How far ahead of our clock a report time may be: clock skew, not the future.
pub const MAX_FUTURE_SKEW: TimeDelta = TimeDelta::hours(24);

/// Which layout characters a text field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Names, ids, codes: one line, no direction marks.
    SingleLine,
    /// Template text: line breaks (CR, LF) and the direction marks right-to-left messages need
    /// (LRM, RLM, ALM) are allowed; overrides and isolates are not.
    MultiLine,
}

/// Whether `c` is refused in a field of this layout: every C0/C1 control and DEL (except line
/// breaks in multi-line text), the bidi embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069, the "Trojan Source" characters), and in single-line fields also the bidi
/// marks (U+200E, U+200F, U+061C), the line/paragraph separators and the byte-order mark.
pub fn is_forbidden_char(c: char, layout: Layout) -> bool {
    match c {
        '\n' | '\r' => layout == Layout::SingleLine,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => true,
        '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}' => {
            layout == Layout::SingleLine
        }
        c => c.is_control(),
    }
}

/// Whether `value` holds a character refused in this layout.
pub fn has_forbidden_char(value: &str, layout: Layout) -> bool {
    value.chars().any(|c| is_forbidden_char(c, layout))
}

/// The shape of appId and verificationId: ASCII letters, digits, `-` and `_`. Such an id needs
/// no escaping in a URL path and cannot be a dot segment.
pub fn is_token_id(value: &str, chars: &RangeInclusive<usize>) -> bool {
    chars.contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The shape of templateId and flowId: a positive decimal integer in canonical form (no sign,
/// no leading zero, no spaces), so its text and its number are the same id.
pub fn numeric_id(value: &str) -> Option<i64> {
    let canonical = (1..=MAX_NUMERIC_ID_DIGITS).contains(&value.len())
        && !value.starts_with('0')
        && value.bytes().all(|b| b.is_ascii_digit());
    canonical.then(|| value.parse::<i64>().ok()).flatten()
}

impl Violations {
    /// Checks a text field: required when `chars` starts above 0, its length in characters,
    /// then its characters. At most one violation; `true` when there was none.
    pub fn text_in(
        &mut self,
        field: &str,
        value: &str,
        chars: RangeInclusive<usize>,
        layout: Layout,
    ) -> bool {
        let count = value.chars().count();
        let problem = if value.trim().is_empty() && *chars.start() > 0 {
            "is required".to_owned()
        } else if !chars.contains(&count) {
            let (min, max) = (chars.start(), chars.end());
            format!("must be {min}–{max} characters")
        } else if has_forbidden_char(value, layout) {
            forbidden_description(layout).to_owned()
        } else {
            return true;
        };
        self.add(field, problem);
        false
    }

    /// Checks a required appId against its shape.
    pub fn app_id(&mut self, field: &str, value: &str) {
        self.token_id(field, value, APP_ID_CHARS);
    }

    /// Checks a required verificationId against its shape.
    pub fn verification_id(&mut self, field: &str, value: &str) {
        self.token_id(field, value, VERIFICATION_ID_CHARS);
    }

    fn token_id(&mut self, field: &str, value: &str, chars: RangeInclusive<usize>) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if !is_token_id(value, &chars) {
            let (min, max) = (chars.start(), chars.end());
            self.add(
                field,
                format!("must be {min}–{max} ASCII letters, digits, '-' or '_'"),
            );
        }
    }

    /// Checks an optional count against [`MAX_COUNT`].
    pub fn count(&mut self, field: &str, value: Option<u64>) {
        self.range(field, value, 0..=MAX_COUNT);
    }

    /// Checks a required timestamp and that it lies in the plausible window: not before
    /// 2020 and at most [`MAX_FUTURE_SKEW`] after `now`.
    pub fn time_in_window(
        &mut self,
        field: &str,
        value: Option<&Timestamp>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let Some(value) = value else {
            self.add(field, "is required");
            return None;
        };
        let Some(time) = timestamp_to_datetime(value) else {
            self.add(field, "is not a valid timestamp");
            return None;
        };
        if time.timestamp() < EARLIEST_TIME_SECONDS || time > now + MAX_FUTURE_SKEW {
            self.add(
                field,
                "must be after 2020-01-01T00:00:00Z and at most 24 hours ahead of now",
            );
            return None;
        }
        Some(time)
    }
}

fn forbidden_description(layout: Layout) -> &'static str {
    match layout {
        Layout::SingleLine => {
            "must not contain control characters, line breaks or bidirectional formatting characters"
        }
        Layout::MultiLine => {
            "must not contain control characters other than line breaks, nor bidirectional overrides or isolates"
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::convert::tests::fields;

    /// The violated fields one check records.
    fn violated(check: impl FnOnce(&mut Violations)) -> Vec<String> {
        let mut v = Violations::default();
        check(&mut v);
        v.finish(()).err().map(fields).unwrap_or_default()
    }

    const OVERRIDES_AND_ISOLATES: [char; 9] = [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}',
    ];

    #[test]
    fn the_forbidden_characters_by_layout() {
        use Layout::{MultiLine, SingleLine};
        for c in [
            '\0', '\u{7}', '\u{8}', '\t', '\u{b}', '\u{1b}', '\u{7f}', '\u{80}', '\u{85}',
        ]
        .into_iter()
        .chain(['\u{9f}'])
        .chain(OVERRIDES_AND_ISOLATES)
        {
            assert!(is_forbidden_char(c, SingleLine), "{c:?}");
            assert!(is_forbidden_char(c, MultiLine), "{c:?}");
        }
        for c in [
            '\n', '\r', '\u{200E}', '\u{200F}', '\u{061C}', '\u{2028}', '\u{2029}', '\u{FEFF}',
        ] {
            assert!(is_forbidden_char(c, SingleLine), "{c:?}");
            assert!(!is_forbidden_char(c, MultiLine), "{c:?}");
        }
        for c in [
            ' ', 'a', 'é', 'ß', '中', 'ع', '\u{a0}', '\u{200D}', '😀', '\u{2065}', '\u{206A}',
        ] {
            assert!(!is_forbidden_char(c, SingleLine), "{c:?}");
            assert!(!is_forbidden_char(c, MultiLine), "{c:?}");
        }
    }

    #[test]
    fn refused_characters_are_named_by_layout() {
        let description = |value: &str, layout| {
            let mut v = Violations::default();
            v.text_in("f", value, 1..=64, layout);
            let Err(super::super::InvalidRequest(list)) = v.finish(()) else {
                panic!("expected a violation");
            };
            list[0].description.clone()
        };
        assert_eq!(
            description("a\nb", Layout::SingleLine),
            "must not contain control characters, line breaks or bidirectional formatting characters"
        );
        assert_eq!(
            description("a\u{7}b", Layout::MultiLine),
            "must not contain control characters other than line breaks, nor bidirectional overrides or isolates"
        );
    }

    #[test]
    fn numeric_ids_are_canonical_positive_i64() {
        assert_eq!(numeric_id("1"), Some(1));
        assert_eq!(numeric_id("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "",
            "0",
            "00",
            "01",
            "-1",
            "+1",
            " 1",
            "1 ",
            "9223372036854775808",
            "1e3",
        ] {
            assert_eq!(numeric_id(bad), None, "{bad:?}");
        }
        assert_eq!(numeric_id(&"1".repeat(MAX_NUMERIC_ID_DIGITS + 1)), None);
    }

    #[test]
    fn token_ids_have_a_length_range() {
        assert!(is_token_id("abcd", &APP_ID_CHARS));
        assert!(!is_token_id("abc", &APP_ID_CHARS));
        assert!(is_token_id(&"a".repeat(32), &APP_ID_CHARS));
        assert!(!is_token_id(&"a".repeat(33), &APP_ID_CHARS));
        assert!(is_token_id("A-z_09", &APP_ID_CHARS));
        for bad in [
            "abc.d",
            "abc/d",
            "abc%d",
            "abc d",
            "abcé",
            "ab\ncd",
            "ab\u{202E}cd",
        ] {
            assert!(!is_token_id(bad, &APP_ID_CHARS), "{bad:?}");
        }
        assert_eq!(violated(|v| v.app_id("app_id", "")), ["app_id"]);
        let mut v = Violations::default();
        v.app_id("app_id", "");
        let Err(super::super::InvalidRequest(list)) = v.finish(()) else {
            panic!("expected a violation");
        };
        assert_eq!(list[0].description, "is required");
    }

    #[test]
    fn counts_stop_at_a_trillion() {
        assert!(violated(|v| v.count("n", Some(MAX_COUNT))).is_empty());
        assert!(violated(|v| v.count("n", None)).is_empty());
        assert_eq!(violated(|v| v.count("n", Some(MAX_COUNT + 1))), ["n"]);
    }

    #[test]
    fn the_time_window_is_2020_to_a_day_ahead() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let at = |seconds: i64, nanos: i32| Timestamp { seconds, nanos };
        let check = |t: Timestamp| {
            let mut v = Violations::default();
            let time = v.time_in_window("t", Some(&t), now);
            (time.map(|t| t.timestamp()), v.finish(()).is_ok())
        };
        let ahead = (now + MAX_FUTURE_SKEW).timestamp();
        assert_eq!(
            check(at(EARLIEST_TIME_SECONDS, 0)),
            (Some(EARLIEST_TIME_SECONDS), true)
        );
        assert_eq!(check(at(ahead, 0)), (Some(ahead), true));
        assert_eq!(
            check(at(EARLIEST_TIME_SECONDS - 1, 999_999_999)),
            (None, false)
        );
        assert_eq!(check(at(ahead, 1)), (None, false));
        assert_eq!(check(at(0, 0)), (None, false));
        assert_eq!(check(at(253_402_300_799, 0)), (None, false));
        assert_eq!(check(at(1_700_000_000, -1)), (None, false));
        assert_eq!(check(at(i64::MAX, 0)), (None, false));
        let mut v = Violations::default();
        assert_eq!(v.time_in_window("t", None, now), None);
        assert_eq!(fields(v.finish(()).expect_err("required")), ["t"]);
    }

    /// Any character the single-line layout refuses.
    fn forbidden_single_line() -> impl Strategy<Value = char> {
        prop_oneof![
            (0u32..0x20).prop_map(|c| char::from_u32(c).expect("C0")),
            (0x7fu32..0xa0).prop_map(|c| char::from_u32(c).expect("C1")),
            proptest::sample::select(OVERRIDES_AND_ISOLATES.to_vec()),
            proptest::sample::select(vec!['\u{200E}', '\u{200F}', '\u{061C}', '\u{2028}']),
        ]
    }

    /// Any character the multi-line layout refuses.
    fn forbidden_multi_line() -> impl Strategy<Value = char> {
        forbidden_single_line().prop_filter("line breaks and marks are allowed", |c| {
            !matches!(
                c,
                '\n' | '\r' | '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{2028}'
            )
        })
    }

    /// Printable text: no control or format characters at all.
    fn clean_text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..=max).prop_map(|chars| {
            chars
                .into_iter()
                .filter(|&c| !is_forbidden_char(c, Layout::SingleLine) && !c.is_whitespace())
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_with_a_forbidden_char_is_refused(
            before in clean_text(10),
            after in clean_text(10),
            single in forbidden_single_line(),
            multi in forbidden_multi_line(),
        ) {
            let one_line = format!("x{before}{single}{after}");
            prop_assert_eq!(violated(|v| _ = v.text("f", &one_line, 1..=64)), ["f"]);
            prop_assert_eq!(violated(|v| _ = v.order_id("f", &one_line)), ["f"]);
            prop_assert!(!is_token_id(&one_line, &VERIFICATION_ID_CHARS));
            let message = format!("x{before}{multi}{after}");
            prop_assert_eq!(
                violated(|v| _ = v.text_in("f", &message, 1..=256, Layout::MultiLine)),
                ["f"]
            );
            let clean = format!("x{before}{after}");
            prop_assert!(violated(|v| _ = v.text("f", &clean, 1..=64)).is_empty());
        }

        #[test]
        fn lengths_pass_at_the_limit_and_fail_one_past_it(
            c in any::<char>().prop_filter("printable", |&c| {
                !is_forbidden_char(c, Layout::SingleLine) && !c.is_whitespace()
            }),
            max in 1usize..300,
        ) {
            let at_limit: String = std::iter::repeat_n(c, max).collect();
            let over: String = std::iter::repeat_n(c, max + 1).collect();
            prop_assert!(violated(|v| _ = v.text("f", &at_limit, 1..=max)).is_empty());
            prop_assert_eq!(violated(|v| _ = v.text("f", &over, 1..=max)), ["f"]);
        }

        #[test]
        fn token_ids_at_and_past_their_limits(id in "[A-Za-z0-9_-]{65}") {
            prop_assert!(is_token_id(&id[..64], &VERIFICATION_ID_CHARS));
            prop_assert!(!is_token_id(&id, &VERIFICATION_ID_CHARS));
            prop_assert!(is_token_id(&id[..32], &APP_ID_CHARS));
            prop_assert!(!is_token_id(&id[..33], &APP_ID_CHARS));
            prop_assert!(is_token_id(&id[..4], &APP_ID_CHARS));
            prop_assert!(!is_token_id(&id[..3], &APP_ID_CHARS));
        }

        #[test]
        fn every_positive_i64_is_a_numeric_id(id in 1i64..=i64::MAX) {
            prop_assert_eq!(numeric_id(&id.to_string()), Some(id));
            prop_assert_eq!(numeric_id(&format!("0{id}")), None);
            prop_assert_eq!(numeric_id(&format!("{id} ")), None);
        }
    }
}

//! Tolerant field decoders for ITNIO replies, used with `#[serde(deserialize_with = "…")]`.
//!
//! The vendor's own docs and samples disagree on types (§6, §7 A4–A6): ids and ints arrive as
//! numbers or strings (`"mcc":"460"`, `"templateId":455`), any field may be `null`, and record
//! `sms`/`call` are an object in one place and an array in another. These helpers accept all of
//! those shapes. Their error messages never quote the rejected value (it may be a phone number)
//! and start with `MESSAGE_PREFIX`, which tells the error sanitiser they are safe to show.

/// Marks an error message written here (and therefore free of wire values).
pub(crate) const MESSAGE_PREFIX: &str = "lenient: ";

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Integer from a number, an integral float or a numeric string; `null`/`""` → `None`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(D::Error::custom(
                        "lenient: expected an integer, found another number",
                    )),
                }
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse::<i64>().map(Some).map_err(|_| {
                    D::Error::custom("lenient: expected an integer, found a non-numeric string")
                })
            }
        }
        other => Err(D::Error::custom(format!(
            "lenient: expected an integer, found {}",
            kind(&other)
        ))),
    }
}

/// Like [`opt_i64`], for fields documented as `Int` (32-bit).
pub fn opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    match opt_i64(d)? {
        None => Ok(None),
        Some(v) => i32::try_from(v)
            .map(Some)
            .map_err(|_| D::Error::custom("lenient: integer out of 32-bit range")),
    }
}

/// [`opt_i32`] for a non-optional field: `null`/absent → 0.
pub fn i32_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    Ok(opt_i32(d)?.unwrap_or_default())
}

/// Text from a string, a number or a bool; `null` → `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(D::Error::custom(format!(
            "lenient: expected a string, found {}",
            kind(&other)
        ))),
    }
}

/// [`opt_string`] for a non-optional field: `null`/absent → `""`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string(d)?.unwrap_or_default())
}

/// Boolean from `true`/`false`, `0`/`1` or their string forms; `null` → `false`.
pub fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(b),
        Value::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(D::Error::custom(
                "lenient: expected a boolean, found another string",
            )),
        },
        other => Err(D::Error::custom(format!(
            "lenient: expected a boolean, found {}",
            kind(&other)
        ))),
    }
}

/// A list that may arrive as an array, a single object, `null` or not at all (→ empty).
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(d)?;
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        single => vec![single],
    };
    items
        .into_iter()
        .filter(|item| !item.is_null())
        .map(|item| T::deserialize(item).map_err(|e| D::Error::custom(e.to_string())))
        .collect()
}

/// An optional object that may also arrive as a one-element array; `null`/`[]` → `None`.
pub fn opt_one<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Ok(one_or_many::<D, T>(d)?.into_iter().next())
}

/// A whole `data` payload that is a list in one of the [`one_or_many`] shapes.
pub(crate) struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_or_many(d).map(OneOrMany)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Probe {
        #[serde(deserialize_with = "opt_i32")]
        a: Option<i32>,
        #[serde(deserialize_with = "opt_i64")]
        b: Option<i64>,
        #[serde(deserialize_with = "opt_string")]
        c: Option<String>,
        #[serde(deserialize_with = "string")]
        d: String,
        #[serde(deserialize_with = "one_or_many")]
        e: Vec<Item>,
        #[serde(deserialize_with = "bool_or_false")]
        f: bool,
        #[serde(deserialize_with = "i32_or_zero")]
        g: i32,
        #[serde(deserialize_with = "opt_one")]
        h: Option<Item>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Item {
        #[serde(deserialize_with = "opt_i32")]
        x: Option<i32>,
    }

    fn probe(json: &str) -> Probe {
        serde_json::from_str(json).expect("probe decodes")
    }

    #[test]
    fn ints_from_numbers_and_strings() {
        let p = probe(r#"{"a":"460","b":10000000000,"g":"7"}"#);
        assert_eq!((p.a, p.b, p.g), (Some(460), Some(10_000_000_000), 7));
        let p = probe(r#"{"a":5.0,"b":" 12 ","g":null}"#);
        assert_eq!((p.a, p.b, p.g), (Some(5), Some(12), 0));
        let p = probe(r#"{"a":"","b":null}"#);
        assert_eq!((p.a, p.b), (None, None));
    }

    #[test]
    fn strings_from_numbers() {
        let p = probe(r#"{"c":455,"d":1}"#);
        assert_eq!(p.c.as_deref(), Some("455"));
        assert_eq!(p.d, "1");
        let p = probe(r#"{"c":null,"d":null}"#);
        assert_eq!((p.c, p.d), (None, String::new()));
    }

    #[test]
    fn absent_null_and_unknown_fields() {
        assert_eq!(probe(r#"{"zzz":[1,2,{"q":1}]}"#), Probe::default());
        assert_eq!(
            probe(r#"{"a":null,"b":null,"c":null,"d":null,"e":null,"f":null,"g":null,"h":null}"#),
            Probe::default()
        );
    }

    #[test]
    fn one_or_many_shapes() {
        assert_eq!(probe(r#"{"e":{"x":"1"}}"#).e, vec![Item { x: Some(1) }]);
        assert_eq!(
            probe(r#"{"e":[{"x":1},{"x":2}]}"#).e,
            vec![Item { x: Some(1) }, Item { x: Some(2) }]
        );
        assert_eq!(probe(r#"{"e":[]}"#).e, vec![]);
        assert_eq!(probe(r#"{"h":[{"x":3}]}"#).h, Some(Item { x: Some(3) }));
        assert_eq!(probe(r#"{"h":{"x":3}}"#).h, Some(Item { x: Some(3) }));
        assert_eq!(probe(r#"{"h":[]}"#).h, None);
    }

    #[test]
    fn whole_payload_lists() {
        let OneOrMany(v): OneOrMany<Item> = serde_json::from_str("null").expect("null");
        assert!(v.is_empty());
        let OneOrMany(v): OneOrMany<Item> = serde_json::from_str(r#"{"x":1}"#).expect("object");
        assert_eq!(v, vec![Item { x: Some(1) }]);
    }

    #[test]
    fn booleans() {
        assert!(probe(r#"{"f":true}"#).f);
        assert!(probe(r#"{"f":"true"}"#).f);
        assert!(probe(r#"{"f":1}"#).f);
        assert!(!probe(r#"{"f":"0"}"#).f);
    }

    #[test]
    fn errors_do_not_echo_values() {
        for json in [
            r#"{"a":"9990012345x"}"#,
            r#"{"a":9990012345}"#,
            r#"{"c":{"to":"9990012345"}}"#,
            r#"{"e":[{"x":"9990012345x"}]}"#,
        ] {
            let err = serde_json::from_str::<Probe>(json).expect_err("rejected");
            assert!(!err.to_string().contains("9990012345"), "{err}");
            let shown = super::super::error::sanitize_json_error(&err);
            assert!(
                shown.contains(": expected") || shown.contains("range"),
                "{shown}"
            );
        }
    }
}

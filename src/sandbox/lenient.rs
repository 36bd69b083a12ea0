//! Lenient readers for request fields, because the vendor's own samples send numbers as
//! strings (`"codeExpiry":"5"`, `"channelCut":"0"`), strings as numbers (`"mcc":460`) and
//! explicit `null` for absent fields. Use with `#[serde(default, deserialize_with = "…")]`.

use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::envelope::ApiError;

/// Parses a request body; anything that is not the expected JSON is a parameter exception.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| ApiError::parameter(format!("body: {err}")))
}

/// An integer given as a JSON number or a numeric string; `null` or `""` means absent.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    int_from(Value::deserialize(d)?).map_err(D::Error::custom)
}

/// A string given as a JSON string or a number; `null` means absent.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text_from(Value::deserialize(d)?).map_err(D::Error::custom)
}

/// A boolean given as `true`/`false`, `"true"`/`"false"` or 1/0; `null` means absent.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    bool_from(Value::deserialize(d)?).map_err(D::Error::custom)
}

fn int_from(value: Value) -> Result<Option<i64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| format!("{n} is not an integer")),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{s:?} is not an integer")),
        other => Err(format!("expected an integer, got {other}")),
    }
}

fn text_from(value: Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(format!("expected a string, got {other}")),
    }
}

fn bool_from(value: Value) -> Result<Option<bool>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(Some(false)),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(Some(true)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(format!("{s:?} is not a boolean")),
        },
        other => Err(format!("expected a boolean, got {other}")),
    }
}

/// Checks that `value` lies in `min..=max`, naming the field when it does not.
pub fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::parameter(format!(
            "{field} {value} is outside {min}..={max}"
        )))
    }
}

/// An optional integer in `min..=max`, or `default` when absent.
pub fn ranged_or(
    field: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
    default: i64,
) -> Result<i64, ApiError> {
    in_range(field, value.unwrap_or(default), min, max)
}

/// A required integer in `min..=max`.
pub fn required_ranged(
    field: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let value = value.ok_or_else(|| ApiError::parameter(format!("{field} is required")))?;
    in_range(field, value, min, max)
}

/// A required string whose length in characters is in `min..=max`.
pub fn required_text(
    field: &str,
    value: Option<&str>,
    min: usize,
    max: usize,
) -> Result<String, ApiError> {
    let value = value.ok_or_else(|| ApiError::parameter(format!("{field} is required")))?;
    let len = value.chars().count();
    if (min..=max).contains(&len) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::parameter(format!(
            "{field} has {len} characters, not {min}..={max}"
        )))
    }
}

/// A numeric id from a path segment (`/template/details/455`).
pub fn path_id(field: &str, text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::parameter(format!("{field} {text:?} is not an integer")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    struct Probe {
        #[serde(default, deserialize_with = "opt_int")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "opt_text")]
        s: Option<String>,
        #[serde(default, deserialize_with = "opt_bool")]
        b: Option<bool>,
    }

    fn probe(json: &str) -> Result<Probe, ApiError> {
        body(json.as_bytes())
    }

    #[test]
    fn numbers_may_be_strings_and_strings_numbers() {
        let p = probe(r#"{"n":"5","s":460,"b":"true"}"#).unwrap();
        assert_eq!(
            (p.n, p.s.as_deref(), p.b),
            (Some(5), Some("460"), Some(true))
        );
    }

    #[test]
    fn null_and_missing_mean_absent() {
        let p = probe(r#"{"n":null,"s":null,"b":null,"extra":1}"#).unwrap();
        assert_eq!((p.n, p.s, p.b), (None, None, None));
        let p = probe("{}").unwrap();
        assert_eq!((p.n, p.s, p.b), (None, None, None));
    }

    #[test]
    fn garbage_is_a_parameter_exception() {
        assert!(probe(r#"{"n":"five"}"#).is_err());
        assert!(probe(r#"{"n":1.5}"#).is_err());
        assert!(probe("not json").is_err());
        assert!(probe(r#"{"s":[1]}"#).is_err());
    }

    #[test]
    fn ranges_and_lengths() {
        assert!(ranged_or("x", None, 1, 60, 5).is_ok_and(|v| v == 5));
        assert!(ranged_or("x", Some(61), 1, 60, 5).is_err());
        assert!(required_ranged("x", None, 1, 2).is_err());
        assert!(required_text("name", Some("abc"), 4, 32).is_err());
        assert!(required_text("name", Some("abcd"), 4, 32).is_ok());
    }

    #[test]
    fn integers_as_floats_strings_and_blanks() {
        let n = |json: &str| probe(json).map(|p| p.n);
        assert_eq!(n(r#"{"n":5.0}"#).unwrap(), Some(5));
        assert_eq!(n(r#"{"n":-7.0}"#).unwrap(), Some(-7));
        assert_eq!(
            n(r#"{"n":8999999999999998.0}"#).unwrap(),
            Some(8_999_999_999_999_998)
        );
        assert!(n(r#"{"n":9e15}"#).is_err());
        assert!(n(r#"{"n":-9e15}"#).is_err());
        assert!(n(r#"{"n":18446744073709551615}"#).is_err());
        assert_eq!(n(r#"{"n":" 7 "}"#).unwrap(), Some(7));
        assert_eq!(n(r#"{"n":"  "}"#).unwrap(), None);
        assert_eq!(n(r#"{"n":""}"#).unwrap(), None);
        assert!(n(r#"{"n":true}"#).is_err());
    }

    #[test]
    fn booleans_as_words_and_digits() {
        let b = |json: &str| probe(json).map(|p| p.b);
        for (json, expected) in [
            (r#"{"b":true}"#, Some(true)),
            (r#"{"b":false}"#, Some(false)),
            (r#"{"b":1}"#, Some(true)),
            (r#"{"b":0}"#, Some(false)),
            (r#"{"b":" TRUE "}"#, Some(true)),
            (r#"{"b":"False"}"#, Some(false)),
            (r#"{"b":"1"}"#, Some(true)),
            (r#"{"b":"0"}"#, Some(false)),
            (r#"{"b":" "}"#, None),
        ] {
            assert_eq!(b(json).unwrap(), expected, "{json}");
        }
        for json in [r#"{"b":2}"#, r#"{"b":"yes"}"#, r#"{"b":[true]}"#] {
            assert!(b(json).is_err(), "{json}");
        }
    }

    #[test]
    fn bounds_are_inclusive_and_counted_in_characters() {
        assert!(in_range("x", 1, 1, 60).is_ok_and(|v| v == 1));
        assert!(in_range("x", 60, 1, 60).is_ok_and(|v| v == 60));
        assert!(in_range("x", 0, 1, 60).is_err());
        assert!(required_ranged("x", Some(2), 1, 2).is_ok_and(|v| v == 2));
        assert!(required_ranged("x", Some(3), 1, 2).is_err());
        assert!(required_text("name", Some("éééé"), 4, 4).is_ok_and(|v| v == "éééé"));
        assert!(required_text("name", Some("abcde"), 4, 4).is_err());
        assert!(required_text("name", None, 0, 4).is_err());
    }

    #[test]
    fn path_ids_are_trimmed_integers() {
        assert_eq!(path_id("templateId", " 455 "), Ok(455));
        assert!(path_id("templateId", "45x").is_err());
    }
}

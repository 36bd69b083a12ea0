//! Tolerant field decoders for ITNIO replies, used with `#[serde(deserialize_with = "…")]`.
//!
//! The vendor's own docs and samples disagree on types (§6, §7 A4–A6): ids and ints arrive as
//! numbers or strings (`"mcc":"460"`, `"templateId":455`), any field may be `null`, and record
//! `sms`/`call` are an object in one place and an array in another. These helpers accept all of
//! those shapes. Their error messages never quote the rejected value (it may be a phone number)
//! and start with `MESSAGE_PREFIX`, which tells the error sanitiser they are safe to show.

/// Marks an error message written here (and therefore free of wire values).
pub(crate) const MESSAGE_PREFIX: &str = "lenient: ";

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, Error as _, IgnoredAny, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};

/// One wire value as the lenient decoders see it, read straight from the JSON stream: text is
/// borrowed when it has no escapes, and arrays or objects are skipped without being built.
pub(crate) enum Scalar<'de> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Text(Cow<'de, str>),
    /// An array or an object, already consumed; the name says which.
    Nested(&'static str),
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Int(_) | Self::Uint(_) | Self::Float(_) => "a number",
            Self::Text(_) => "a string",
            Self::Nested(kind) => kind,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

struct ScalarVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Uint(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v)))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested("an array"))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Nested("an object"))
    }
}

fn unexpected<E: de::Error>(expected: &str, found: &Scalar<'_>) -> E {
    E::custom(format!(
        "lenient: expected {expected}, found {}",
        found.kind()
    ))
}

/// Integer from a number, an integral float or a numeric string; `null`/`""` → `None`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Null => Ok(None),
        Scalar::Int(i) => Ok(Some(i)),
        Scalar::Uint(u) => i64::try_from(u)
            .map(Some)
            .map_err(|_| D::Error::custom("lenient: expected an integer, found another number")),
        Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        Scalar::Float(_) => Err(D::Error::custom(
            "lenient: expected an integer, found another number",
        )),
        Scalar::Text(s) => {
            let t = s.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse::<i64>().map(Some).map_err(|_| {
                    D::Error::custom("lenient: expected an integer, found a non-numeric string")
                })
            }
        }
        other => Err(unexpected("an integer", &other)),
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
    match Scalar::deserialize(d)? {
        Scalar::Null => Ok(None),
        Scalar::Text(s) => Ok(Some(s.into_owned())),
        Scalar::Int(i) => Ok(Some(i.to_string())),
        Scalar::Uint(u) => Ok(Some(u.to_string())),
        // serde_json's own float formatting, as a `Value` would print it.
        Scalar::Float(f) => Ok(Some(
            serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string()),
        )),
        Scalar::Bool(b) => Ok(Some(b.to_string())),
        other => Err(unexpected("a string", &other)),
    }
}

/// [`opt_string`] for a non-optional field: `null`/absent → `""`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string(d)?.unwrap_or_default())
}

/// Boolean from `true`/`false`, `0`/`1` or their string forms; `null` → `false`.
pub fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Null => Ok(false),
        Scalar::Bool(b) => Ok(b),
        Scalar::Int(i) => Ok(i != 0),
        Scalar::Uint(u) => Ok(u != 0),
        Scalar::Float(f) => Ok(f != 0.0),
        Scalar::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(D::Error::custom(
                "lenient: expected a boolean, found another string",
            )),
        },
        other => Err(unexpected("a boolean", &other)),
    }
}

/// A list that may arrive as an array, a single value, `null` or not at all (→ empty); `null`
/// items are dropped. Items are decoded as they stream by, never through a generic value.
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    d.deserialize_any(OneOrManyVisitor(PhantomData))
}

struct OneOrManyVisitor<T>(PhantomData<T>);

impl<T> OneOrManyVisitor<T> {
    fn one<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: Deserialize<'de>,
    {
        T::deserialize(d).map(|item| vec![item])
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for OneOrManyVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list, a single item or null")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // At most a modest pre-allocation: the hint comes from the wire.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element::<Option<T>>()? {
            items.extend(item);
        }
        Ok(items)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Self::one(MapAccessDeserializer::new(map))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Self::one(v.into_deserializer())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Self::one(v.into_deserializer())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Self::one(v.into_deserializer())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Self::one(v.into_deserializer())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Self::one(BorrowedStrDeserializer::new(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        T::deserialize(StrDeserializer::<E>::new(v)).map(|item| vec![item])
    }
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
    fn floats_must_be_integral_and_in_range() {
        assert_eq!(probe(r#"{"b":8.0e15}"#).b, Some(8_000_000_000_000_000));
        for json in [
            r#"{"b":5.5}"#,
            r#"{"b":9.0e15}"#,
            r#"{"b":1e300}"#,
            r#"{"b":18446744073709551615}"#,
        ] {
            let err = serde_json::from_str::<Probe>(json).expect_err("rejected");
            assert!(err.to_string().contains("found another number"), "{err}");
        }
    }

    #[test]
    fn errors_name_what_was_found() {
        for (json, found) in [
            (r#"{"a":{"x":1}}"#, "found an object"),
            (r#"{"c":[1]}"#, "found an array"),
            (r#"{"f":[true]}"#, "found an array"),
            (r#"{"a":true}"#, "found a boolean"),
        ] {
            let err = serde_json::from_str::<Probe>(json).expect_err("rejected");
            assert!(err.to_string().contains(found), "{json}: {err}");
        }
        let err = serde_json::from_str::<Probe>(r#"{"e":"x"}"#).expect_err("a string is no item");
        assert!(err.to_string().contains("expected struct Item"), "{err}");
    }

    #[test]
    fn single_scalars_are_one_item_lists() {
        use serde_json::{Value, json};
        let list = |text: &str| -> Vec<Value> {
            let OneOrMany(v) = serde_json::from_str(text).expect("decodes");
            v
        };
        assert_eq!(list(r#""x""#), [json!("x")]);
        assert_eq!(list(r#""a\"b""#), [json!("a\"b")]);
        assert_eq!(list("true"), [json!(true)]);
        assert_eq!(list("-1"), [json!(-1)]);
        assert_eq!(list("7"), [json!(7)]);
        assert_eq!(list("1.5"), [json!(1.5)]);
        assert_eq!(list("[1,null,2]"), [json!(1), json!(2)]);
        assert_eq!(
            probe(r#"{"c":"a\"b","d":1.5}"#),
            Probe {
                c: Some("a\"b".into()),
                d: "1.5".into(),
                ..Probe::default()
            }
        );
        assert_eq!(
            probe(r#"{"c":18446744073709551615,"d":-3}"#).c.as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(probe(r#"{"d":true}"#).d, "true");
    }

    #[test]
    fn booleans_from_every_number_kind() {
        assert!(probe(r#"{"f":-1}"#).f);
        assert!(!probe(r#"{"f":0}"#).f);
        assert!(probe(r#"{"f":0.5}"#).f);
        assert!(!probe(r#"{"f":0.0}"#).f);
        assert!(!probe(r#"{"f":""}"#).f);
        assert!(serde_json::from_str::<Probe>(r#"{"f":"yes"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"f":{}}"#).is_err());
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

    #[test]
    fn what_the_decoders_expect_is_named_for_other_formats() {
        // serde_json always finds a visit method; a format with byte strings falls back to
        // `expecting`, whose text ends up in the error.
        use serde::de::value::{BytesDeserializer, Error};
        let scalar = Scalar::deserialize(BytesDeserializer::<Error>::new(b"x"))
            .err()
            .expect("bytes are no JSON value");
        assert!(
            scalar.to_string().ends_with("expected any JSON value"),
            "{scalar}"
        );
        let list = one_or_many::<_, IgnoredAny>(BytesDeserializer::<Error>::new(b"x"))
            .expect_err("bytes are no list");
        assert!(
            list.to_string()
                .ends_with("expected a list, a single item or null"),
            "{list}"
        );
    }

    // Equivalent mutant: `OneOrManyVisitor::visit_unit -> Ok(Default::default())` returns the
    // same empty `Vec` as `Vec::new()`.
}

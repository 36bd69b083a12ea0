//! The customer callbacks: `/backfillRate` (conversion rate per country) and
//! `/postback/backfill` (one code was actually entered). Both are validated and
//! acknowledged without `data`; nothing else changes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use chrono::DateTime;
use serde::Deserialize;

use super::envelope::{ApiError, ApiResult, Success};
use super::lenient::{self, opt_text};
use super::state::Shared;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackfillRateIn {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    mcc: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    backfill_number: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    backfill_cardinal_number: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    backfill_now: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    callback_time: Option<String>,
}

/// `POST /backfillRate`: validated and acknowledged; nothing else changes.
pub async fn backfill_rate(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let input = lenient::body::<BackfillRateIn>(&body)?;
    let app_id = lenient::required_text("appId", input.app_id.as_deref(), 1, 64)?;
    digits("mcc", input.mcc.as_deref(), 1, 3)?;
    optional_digits("backfillNumber", input.backfill_number.as_deref())?;
    optional_digits(
        "backfillCardinalNumber",
        input.backfill_cardinal_number.as_deref(),
    )?;
    percentage(input.backfill_now.as_deref())?;
    let callback_time = input
        .callback_time
        .ok_or_else(|| ApiError::parameter("callbackTime is required"))?;
    DateTime::parse_from_rfc3339(&callback_time)
        .map_err(|_| ApiError::parameter("callbackTime is not ISO-8601"))?;
    if !shared.state().apps.contains_key(&app_id) {
        return Err(ApiError::DataUnexisting);
    }
    Success::empty()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostbackIn {
    #[serde(default, deserialize_with = "opt_text")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    verification_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    number: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    time: Option<String>,
}

/// `POST /postback/backfill`: validated and acknowledged; the verification must belong to the app.
pub async fn postback(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let input = lenient::body::<PostbackIn>(&body)?;
    let app_id = lenient::required_text("appId", input.app_id.as_deref(), 1, 64)?;
    let id = lenient::required_text("verificationId", input.verification_id.as_deref(), 1, 64)?;
    optional_digits("number", input.number.as_deref())?;
    let time = input
        .time
        .ok_or_else(|| ApiError::parameter("time is required"))?;
    if !is_digits(&time) && DateTime::parse_from_rfc3339(&time).is_err() {
        return Err(ApiError::parameter(
            "time is neither epoch digits nor ISO-8601",
        ));
    }
    let state = shared.state();
    match state.verifications.get(&id) {
        Some(verification) if verification.app_id == app_id => Success::empty(),
        _ => Err(ApiError::DataUnexisting),
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn digits(field: &str, value: Option<&str>, min: usize, max: usize) -> Result<(), ApiError> {
    match value {
        Some(text) if is_digits(text) && (min..=max).contains(&text.len()) => Ok(()),
        _ => Err(ApiError::parameter(format!(
            "{field} must be {min}-{max} digits"
        ))),
    }
}

fn optional_digits(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        None | Some("") => Ok(()),
        Some(text) if is_digits(text) => Ok(()),
        Some(_) => Err(ApiError::parameter(format!("{field} must be digits"))),
    }
}

/// A rate in percent: 0–100 with at most two decimals.
fn percentage(value: Option<&str>) -> Result<(), ApiError> {
    let text = value.ok_or_else(|| ApiError::parameter("backfillNow is required"))?;
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let shaped = is_digits(whole) && fraction.is_none_or(|f| f.len() <= 2 && is_digits(f));
    let in_range = text
        .parse::<f64>()
        .is_ok_and(|rate| (0.0..=100.0).contains(&rate));
    if shaped && in_range {
        Ok(())
    } else {
        Err(ApiError::parameter(
            "backfillNow must be 0-100 with at most two decimals",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_percentages_with_two_decimals() {
        for ok in ["10", "0", "100", "99.99", "12.5"] {
            assert!(percentage(Some(ok)).is_ok(), "{ok}");
        }
        for bad in ["100.01", "1.234", "-1", "abc", "1.", ""] {
            assert!(percentage(Some(bad)).is_err(), "{bad}");
        }
        assert!(percentage(None).is_err());
    }

    #[test]
    fn digit_fields() {
        assert!(digits("mcc", Some("460"), 1, 3).is_ok());
        assert!(digits("mcc", Some("4600"), 1, 3).is_err());
        assert!(optional_digits("n", None).is_ok());
        assert!(optional_digits("n", Some("12a")).is_err());
    }

    #[test]
    fn optional_digit_fields_accept_digits_and_blank() {
        assert!(optional_digits("n", Some("")).is_ok());
        assert!(optional_digits("n", Some("1000")).is_ok());
        assert!(is_digits("0123456789"));
        assert!(!is_digits(""));
        assert!(!is_digits("12 3"));
    }
}

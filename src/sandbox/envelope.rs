//! The vendor's reply envelope, its status codes and their reasons.
//!
//! Every reply is HTTP 200 with `{"status":"<code>","reason":"<text>"}` plus `data` on
//! success. Errors carry no `data` key. `status` is always a JSON string.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// Names (and orderIds) are unique: `-20 Data existing` when another object holds it.
pub fn unless_taken(taken: bool) -> Result<(), ApiError> {
    if taken {
        Err(ApiError::DataExisting)
    } else {
        Ok(())
    }
}

/// The business failures the emulator answers with. The `#[error]` texts are the EN reasons
/// from the vendor's global status-code table (§5), sent verbatim on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("Authentication error")]
    Authentication,
    #[error("Restricted IP access")]
    RestrictedIp,
    #[error("timestamp expires")]
    TimestampExpires,
    #[error("Port program unusual")]
    Internal,
    #[error("Data existing")]
    DataExisting,
    /// A request field broke a documented rule; the text is for logs, never the wire.
    #[error("Parameter exception")]
    Parameter(String),
    #[error("Data unexisting")]
    DataUnexisting,
    #[error("Period total send limit")]
    PeriodTotalSendLimit,
    #[error("Period phone send limit")]
    PeriodPhoneSendLimit,
}

impl ApiError {
    /// A parameter exception, with why (for logs).
    pub fn parameter(why: impl Into<String>) -> Self {
        Self::Parameter(why.into())
    }

    /// The wire status code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Authentication => "-1",
            Self::RestrictedIp => "-2",
            Self::TimestampExpires => "-16",
            Self::Internal => "-18",
            Self::DataExisting => "-20",
            Self::Parameter(_) => "-22",
            Self::DataUnexisting => "-24",
            Self::PeriodTotalSendLimit => "-27",
            Self::PeriodPhoneSendLimit => "-28",
        }
    }
}

/// The EN reason for any documented status code (used for injected statuses too).
pub fn reason_for(code: &str) -> &'static str {
    match code {
        "0" => "success",
        "-1" => "Authentication error",
        "-2" => "Restricted IP access",
        "-10" => "The customer's balance is insufficient",
        "-16" => "timestamp expires",
        "-18" => "Port program unusual",
        "-20" => "Data existing",
        "-21" => "Data validation exception",
        "-22" => "Parameter exception",
        "-23" => "Data caps",
        "-24" => "Data unexisting",
        "-25" => "Out of time range",
        "-26" => "Getting fee fail",
        "-27" => "Period total send limit",
        "-28" => "Period phone send limit",
        "-29" => "SMS content has sensitive words",
        _ => "Unknown status",
    }
}

/// A successful reply: `status` "0", `reason` "success", and `data` unless there is none.
#[derive(Debug)]
pub struct Success(Option<Value>);

/// What every API handler returns.
pub type ApiResult = Result<Success, ApiError>;

impl Success {
    /// A success carrying `data`.
    pub fn data(data: impl Serialize) -> ApiResult {
        let value = serde_json::to_value(data).map_err(|err| {
            tracing::error!(%err, "sandbox reply did not serialise");
            ApiError::Internal
        })?;
        Ok(Self(Some(value)))
    }

    /// A success without `data` (the callbacks).
    pub fn empty() -> ApiResult {
        Ok(Self(None))
    }
}

/// The envelope with an arbitrary status code (used for injected statuses).
pub fn envelope(code: &str, data: Option<Value>) -> Response {
    let mut body = Map::new();
    body.insert("status".into(), Value::String(code.to_owned()));
    body.insert("reason".into(), Value::String(reason_for(code).to_owned()));
    if let Some(data) = data {
        body.insert("data".into(), data);
    }
    Json(Value::Object(body)).into_response()
}

impl IntoResponse for Success {
    fn into_response(self) -> Response {
        envelope("0", self.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Parameter(why) = &self {
            tracing::debug!(%why, "sandbox parameter exception");
        }
        envelope(self.code(), None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons_match_codes() {
        for err in [
            ApiError::Authentication,
            ApiError::RestrictedIp,
            ApiError::TimestampExpires,
            ApiError::Internal,
            ApiError::DataExisting,
            ApiError::parameter("x"),
            ApiError::DataUnexisting,
            ApiError::PeriodTotalSendLimit,
            ApiError::PeriodPhoneSendLimit,
        ] {
            assert_eq!(err.to_string(), reason_for(err.code()));
        }
    }

    /// Every status of the API doc's global list has its own reason, injected ones included.
    #[test]
    fn every_documented_status_has_its_reason() {
        for (code, reason) in [
            ("0", "success"),
            ("-1", "Authentication error"),
            ("-2", "Restricted IP access"),
            ("-10", "The customer's balance is insufficient"),
            ("-16", "timestamp expires"),
            ("-18", "Port program unusual"),
            ("-20", "Data existing"),
            ("-21", "Data validation exception"),
            ("-22", "Parameter exception"),
            ("-23", "Data caps"),
            ("-24", "Data unexisting"),
            ("-25", "Out of time range"),
            ("-26", "Getting fee fail"),
            ("-27", "Period total send limit"),
            ("-28", "Period phone send limit"),
            ("-29", "SMS content has sensitive words"),
            ("-99", "Unknown status"),
        ] {
            assert_eq!(reason_for(code), reason, "{code}");
        }
    }
}

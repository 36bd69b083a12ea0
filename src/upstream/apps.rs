//! OTP applications (API doc §4.1–4.3): the container for code expiry and send limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::UpstreamClient;
use super::endpoint::Endpoint;
use super::error::UpstreamError;
use super::lenient;

/// A per-period send cap. Every sub-field is always serialised, so a disabled limit goes out as
/// `{"enabled":false,"unit":null,"period":null,"limit":null}` like the documented sample.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeriodLimit {
    #[serde(deserialize_with = "lenient::bool_or_false")]
    pub enabled: bool,
    /// 1 = day, 2 = hour, 3 = minute, 4 = second.
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub unit: Option<i32>,
    /// 1–90 units.
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub period: Option<i32>,
    /// Up to 10 billion, hence 64 bits.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub limit: Option<i64>,
}

impl PeriodLimit {
    /// The documented shape of "no limit".
    pub fn disabled() -> Self {
        Self::default()
    }
}

/// Body of `POST /app/add` and `PUT /app/update/{appId}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRequest {
    /// Repeated in the PUT body (the update table marks it required); `update_app` fills it from
    /// its path argument.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub name: String,
    /// Minutes, 1–60 (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_expiry: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_total_send_limit: Option<PeriodLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_phone_send_limit: Option<PeriodLimit>,
}

/// An application as ITNIO returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct App {
    #[serde(deserialize_with = "lenient::string")]
    pub app_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub code_expiry: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub create_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_one")]
    pub period_total_send_limit: Option<PeriodLimit>,
    #[serde(deserialize_with = "lenient::opt_one")]
    pub period_phone_send_limit: Option<PeriodLimit>,
}

impl UpstreamClient {
    /// `POST /app/add`.
    pub async fn create_app(
        &self,
        req: &AppRequest,
        deadline: Option<Duration>,
    ) -> Result<App, UpstreamError> {
        self.call(Endpoint::AppAdd, None, Some(req), deadline).await
    }

    /// `PUT /app/update/{appId}`; the body's `appId` is always `app_id`.
    pub async fn update_app(
        &self,
        app_id: &str,
        req: &AppRequest,
        deadline: Option<Duration>,
    ) -> Result<App, UpstreamError> {
        let body = AppRequest {
            app_id: Some(app_id.to_owned()),
            ..req.clone()
        };
        self.call(Endpoint::AppUpdate, Some(app_id), Some(&body), deadline)
            .await
    }

    /// `GET /app/details/{appId}`.
    pub async fn get_app(
        &self,
        app_id: &str,
        deadline: Option<Duration>,
    ) -> Result<App, UpstreamError> {
        self.call(Endpoint::AppDetails, Some(app_id), None::<&()>, deadline)
            .await
    }
}

#[cfg(test)]
mod tests {
    //! Equivalent mutant: `PeriodLimit::disabled -> Default::default()` is what `disabled` already
    //! returns (a name for the documented "no limit" shape), so no test can tell them apart.

    use super::*;
    use serde_json::json;

    #[test]
    fn request_matches_documented_samples() {
        let req = AppRequest {
            app_id: None,
            name: "test_app".into(),
            code_expiry: Some(5),
            period_total_send_limit: Some(PeriodLimit {
                enabled: true,
                unit: Some(1),
                period: Some(1),
                limit: Some(1),
            }),
            period_phone_send_limit: Some(PeriodLimit::disabled()),
        };
        assert_eq!(
            serde_json::to_value(&req).expect("serialises"),
            json!({"name":"test_app","codeExpiry":5,
                "periodTotalSendLimit":{"enabled":true,"unit":1,"period":1,"limit":1},
                "periodPhoneSendLimit":{"enabled":false,"unit":null,"period":null,"limit":null}})
        );
        let minimal = AppRequest {
            name: "abcd".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&minimal).expect("serialises"),
            json!({"name":"abcd"})
        );
    }

    #[test]
    fn decodes_documented_example() {
        let app: App = serde_json::from_value(json!({"name":"test_app","appId":"mRELxtHc",
            "periodTotalSendLimit":{"unit":1,"period":1,"limit":1,"enabled":true},
            "periodPhoneSendLimit":{"unit":1,"period":1,"limit":1,"enabled":true},
            "codeExpiry":5,"createTime":"2022-01-01T00:00:00+08:00"}))
        .expect("decodes");
        let limit = PeriodLimit {
            enabled: true,
            unit: Some(1),
            period: Some(1),
            limit: Some(1),
        };
        assert_eq!(
            app,
            App {
                app_id: "mRELxtHc".into(),
                name: "test_app".into(),
                code_expiry: Some(5),
                create_time: Some("2022-01-01T00:00:00+08:00".into()),
                period_total_send_limit: Some(limit.clone()),
                period_phone_send_limit: Some(limit),
            }
        );
    }

    #[test]
    fn decodes_loose_shapes() {
        let app: App = serde_json::from_value(json!({"appId":"a1","name":null,"codeExpiry":"5",
            "periodTotalSendLimit":null,
            "periodPhoneSendLimit":{"enabled":false,"unit":null,"period":null,"limit":"10000000000"},
            "extra":{"x":1}}))
        .expect("decodes");
        assert_eq!(app.code_expiry, Some(5));
        assert_eq!(app.name, "");
        assert_eq!(app.period_total_send_limit, None);
        assert_eq!(
            app.period_phone_send_limit.and_then(|l| l.limit),
            Some(10_000_000_000)
        );
    }
}

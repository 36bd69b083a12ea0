//! Verification-code templates (API doc §4.4–4.7): message text with `##code##`, code shape and
//! voice settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::UpstreamClient;
use super::endpoint::Endpoint;
use super::error::UpstreamError;
use super::lenient::{self, OneOrMany};

/// Body of `POST /template/add` and `PUT /template/update/{templateId}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRequest {
    /// Required on add; not a documented field on update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The vendor SDK repeats it in the PUT body; `update_template` fills it from its path
    /// argument.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    pub name: String,
    /// Must contain `##code##`.
    pub text: String,
    /// 1 = numeric, 2 = alpha, 3 = alphanumeric, 4 = hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_type: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_length: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_rate: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_cnt: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
}

/// A template as ITNIO returns it; `templateId` is an int on the wire, kept as text here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Template {
    #[serde(deserialize_with = "lenient::string")]
    pub template_id: String,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub app_id: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub text: String,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub code_type: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub code_length: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub speech_rate: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub language: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub max_duration: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    pub repeat_cnt: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sender_id: Option<String>,
}

impl UpstreamClient {
    /// `POST /template/add`.
    pub async fn create_template(
        &self,
        req: &TemplateRequest,
        deadline: Option<Duration>,
    ) -> Result<Template, UpstreamError> {
        self.call(Endpoint::TemplateAdd, None, Some(req), deadline)
            .await
    }

    /// `PUT /template/update/{templateId}`; the body's `templateId` is always `template_id`.
    pub async fn update_template(
        &self,
        template_id: &str,
        req: &TemplateRequest,
        deadline: Option<Duration>,
    ) -> Result<Template, UpstreamError> {
        let body = TemplateRequest {
            template_id: Some(template_id.to_owned()),
            ..req.clone()
        };
        self.call(
            Endpoint::TemplateUpdate,
            Some(template_id),
            Some(&body),
            deadline,
        )
        .await
    }

    /// `GET /template/details/{templateId}`.
    pub async fn get_template(
        &self,
        template_id: &str,
        deadline: Option<Duration>,
    ) -> Result<Template, UpstreamError> {
        self.call(
            Endpoint::TemplateDetails,
            Some(template_id),
            None::<&()>,
            deadline,
        )
        .await
    }

    /// `GET /template/list`: every template of the account. `data` is documented as an object
    /// but describes a list, so an array, a single object and `null` are all accepted.
    pub async fn list_templates(
        &self,
        deadline: Option<Duration>,
    ) -> Result<Vec<Template>, UpstreamError> {
        let OneOrMany(templates) = self
            .call(Endpoint::TemplateList, None, None::<&()>, deadline)
            .await?;
        Ok(templates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_uses_numbers_for_ints_and_skips_none() {
        let req = TemplateRequest {
            app_id: Some("mRELxtHc".into()),
            name: "name".into(),
            text: "##code## is your verification".into(),
            code_type: Some(1),
            code_length: Some(4),
            language: Some("EN".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&req).expect("serialises"),
            json!({"appId":"mRELxtHc","name":"name","text":"##code## is your verification",
                "codeType":1,"codeLength":4,"language":"EN"})
        );
    }

    #[test]
    fn decodes_int_template_id() {
        let t: Template = serde_json::from_value(json!({"templateId":455,"appId":"mRELxtHc",
            "name":"name","text":"##code## is your verification,expires in 5 minutes! ",
            "codeType":1,"codeLength":"4","speechRate":50,"language":"EN","maxDuration":59,
            "repeatCnt":1,"senderId":"senderId"}))
        .expect("decodes");
        assert_eq!(t.template_id, "455");
        assert_eq!(t.code_length, Some(4));
        assert_eq!(t.sender_id.as_deref(), Some("senderId"));
    }
}

//! Task flows (API doc §4.14–4.17): ordered fallback nodes ("if the last attempt ended in
//! `status`, wait `waitingTime` seconds, then send on `channel`").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::UpstreamClient;
use super::endpoint::Endpoint;
use super::error::UpstreamError;
use super::lenient::{self, OneOrMany};

/// One fallback step; sent and received with the same field names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FlowNode {
    /// Seconds, 30–120.
    #[serde(deserialize_with = "lenient::i32_or_zero")]
    pub waiting_time: i32,
    /// Trigger: 1 = send failed, 2 = not verified. Not a result code.
    #[serde(deserialize_with = "lenient::i32_or_zero")]
    pub status: i32,
    /// `sms` or `call`.
    #[serde(deserialize_with = "lenient::string")]
    pub channel: String,
    /// 0 = switch channel, 1 = do not switch.
    #[serde(
        deserialize_with = "lenient::opt_i32",
        skip_serializing_if = "Option::is_none"
    )]
    pub channel_cut: Option<i32>,
}

/// Body of `POST /flow/add` and `PUT /flow/update/{flowId}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRequest {
    /// The vendor SDK repeats it in the PUT body; `update_flow` fills it from its path argument.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    pub name: String,
    pub flow: Vec<FlowNode>,
}

/// A flow as ITNIO returns it; `flowId` is an int on the wire, kept as text here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Flow {
    #[serde(deserialize_with = "lenient::string")]
    pub flow_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    #[serde(deserialize_with = "lenient::one_or_many")]
    pub flow: Vec<FlowNode>,
}

impl UpstreamClient {
    /// `POST /flow/add`.
    pub async fn create_flow(
        &self,
        req: &FlowRequest,
        deadline: Option<Duration>,
    ) -> Result<Flow, UpstreamError> {
        self.call(Endpoint::FlowAdd, None, Some(req), deadline)
            .await
    }

    /// `PUT /flow/update/{flowId}` (the page's sample says POST; header, samples and SDK say
    /// PUT); the body's `flowId` is always `flow_id`.
    pub async fn update_flow(
        &self,
        flow_id: &str,
        req: &FlowRequest,
        deadline: Option<Duration>,
    ) -> Result<Flow, UpstreamError> {
        let body = FlowRequest {
            flow_id: Some(flow_id.to_owned()),
            ..req.clone()
        };
        self.call(Endpoint::FlowUpdate, Some(flow_id), Some(&body), deadline)
            .await
    }

    /// `GET /flow/details/{flowId}`.
    pub async fn get_flow(
        &self,
        flow_id: &str,
        deadline: Option<Duration>,
    ) -> Result<Flow, UpstreamError> {
        self.call(Endpoint::FlowDetails, Some(flow_id), None::<&()>, deadline)
            .await
    }

    /// `GET /flow/list`: an array, a single object or `null` (→ empty).
    pub async fn list_flows(&self, deadline: Option<Duration>) -> Result<Vec<Flow>, UpstreamError> {
        let OneOrMany(flows) = self
            .call(Endpoint::FlowList, None, None::<&()>, deadline)
            .await?;
        Ok(flows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_matches_documented_sample() {
        let req = FlowRequest {
            flow_id: None,
            name: "name".into(),
            flow: vec![FlowNode {
                waiting_time: 30,
                status: 1,
                channel: "sms".into(),
                channel_cut: Some(1),
            }],
        };
        assert_eq!(
            serde_json::to_value(&req).expect("serialises"),
            json!({"name":"name","flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":1}]})
        );
    }

    #[test]
    fn decodes_documented_example_and_string_ints() {
        let f: Flow = serde_json::from_value(json!({"flowId":1,"name":"name",
            "flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":"0"}]}))
        .expect("decodes");
        assert_eq!(
            f,
            Flow {
                flow_id: "1".into(),
                name: "name".into(),
                flow: vec![FlowNode {
                    waiting_time: 30,
                    status: 1,
                    channel: "sms".into(),
                    channel_cut: Some(0),
                }],
            }
        );
        let f: Flow = serde_json::from_value(json!({"flowId":"2","flow":null})).expect("decodes");
        assert!(f.flow.is_empty());
    }
}

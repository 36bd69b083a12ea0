//! The flow endpoints (`/flow/add`, `/flow/update/{flowId}`, `/flow/details/{flowId}`,
//! `/flow/list`): what callers send, how it is checked, and the changes to the stored [`Flow`]s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::{Flow, FlowNode};
use crate::sandbox::channel::Channel;
use crate::sandbox::envelope::{self, ApiError, ApiResult, Success};
use crate::sandbox::lenient::{self, opt_int, opt_text};
use crate::sandbox::state::{self, Shared};

/// A flow as callers send it (a repeated `flowId` is ignored).
#[derive(Debug, Deserialize)]
struct FlowIn {
    #[serde(default, deserialize_with = "opt_text")]
    name: Option<String>,
    #[serde(default)]
    flow: Option<Vec<NodeIn>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeIn {
    #[serde(default, deserialize_with = "opt_int")]
    waiting_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    status: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    channel: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    channel_cut: Option<i64>,
}

impl FlowIn {
    fn validate(self) -> Result<Flow, ApiError> {
        let name = lenient::required_text("name", self.name.as_deref(), 4, 32)?;
        let nodes = self
            .flow
            .filter(|nodes| !nodes.is_empty())
            .ok_or_else(|| ApiError::parameter("flow is empty"))?;
        let flow = nodes
            .into_iter()
            .map(NodeIn::validate)
            .collect::<Result<_, _>>()?;
        Ok(Flow {
            flow_id: 0,
            name,
            flow,
        })
    }
}

impl NodeIn {
    fn validate(self) -> Result<FlowNode, ApiError> {
        Ok(FlowNode {
            waiting_time: lenient::required_ranged("waitingTime", self.waiting_time, 30, 120)?,
            status: lenient::required_ranged("status", self.status, 1, 2)?,
            channel: Channel::for_flow(self.channel.as_deref())?,
            channel_cut: lenient::ranged_or("channelCut", self.channel_cut, 0, 1, 0)?,
        })
    }
}

/// `POST /flow/add`.
pub async fn add(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let flow = lenient::body::<FlowIn>(&body)?.validate()?;
    let flow = create(&mut shared.state(), flow)?;
    Success::data(flow)
}

/// `PUT /flow/update/{flowId}`: replaces name and nodes. Verifications already sent keep the
/// nodes they started with.
pub async fn update(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = lenient::path_id("flowId", &id)?;
    let flow = lenient::body::<FlowIn>(&body)?.validate()?;
    let flow = replace(&mut shared.state(), id, flow)?;
    Success::data(flow)
}

/// `GET /flow/details/{flowId}`.
pub async fn details(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let id = lenient::path_id("flowId", &id)?;
    let flow = shared
        .state()
        .flows
        .get(&id)
        .cloned()
        .ok_or(ApiError::DataUnexisting)?;
    Success::data(flow)
}

/// `GET /flow/list`: every flow, oldest first.
pub async fn list(State(shared): State<Arc<Shared>>) -> ApiResult {
    let flows: Vec<Flow> = shared.state().flows.values().cloned().collect();
    Success::data(flows)
}

fn create(state: &mut state::State, mut flow: Flow) -> Result<Flow, ApiError> {
    ensure_name_free(state, &flow.name, None)?;
    flow.flow_id = state.next_flow_id();
    state.flows.insert(flow.flow_id, flow.clone());
    Ok(flow)
}

fn replace(state: &mut state::State, id: i64, mut flow: Flow) -> Result<Flow, ApiError> {
    if !state.flows.contains_key(&id) {
        return Err(ApiError::DataUnexisting);
    }
    ensure_name_free(state, &flow.name, Some(id))?;
    flow.flow_id = id;
    state.flows.insert(id, flow.clone());
    Ok(flow)
}

/// Flow names are unique; `except` is the flow being renamed.
fn ensure_name_free(state: &state::State, name: &str, except: Option<i64>) -> Result<(), ApiError> {
    let taken = state
        .flows
        .values()
        .any(|f| f.name == name && Some(f.flow_id) != except);
    envelope::unless_taken(taken)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sandbox::flows::Trigger;

    fn flow(json: &str) -> Result<Flow, ApiError> {
        lenient::body::<FlowIn>(json.as_bytes())?.validate()
    }

    #[test]
    fn vendor_samples_are_accepted() {
        let f = flow(r#"{"name":"name","flowId":"8","flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":"0"}]}"#).unwrap();
        assert_eq!(f.flow[0].trigger(), Trigger::SendFailed);
        assert!(!f.flow[0].keeps_channel());
    }

    #[test]
    fn constraints_are_enforced() {
        for bad in [
            r#"{"name":"name","flow":[]}"#,
            r#"{"name":"name"}"#,
            r#"{"name":"nam","flow":[{"waitingTime":30,"status":1,"channel":"sms"}]}"#,
            r#"{"name":"name","flow":[{"waitingTime":29,"status":1,"channel":"sms"}]}"#,
            r#"{"name":"name","flow":[{"waitingTime":30,"status":3,"channel":"sms"}]}"#,
            r#"{"name":"name","flow":[{"waitingTime":30,"status":1,"channel":"sna"}]}"#,
            r#"{"name":"name","flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":2}]}"#,
        ] {
            assert!(flow(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut state = state::State::default();
        let json = r#"{"name":"name","flow":[{"waitingTime":30,"status":2,"channel":"call"}]}"#;
        let first = create(&mut state, flow(json).unwrap()).unwrap();
        assert_eq!(first.flow_id, state::FLOW_ID_BASE + 1);
        assert_eq!(
            create(&mut state, flow(json).unwrap()).unwrap_err(),
            ApiError::DataExisting
        );
        assert!(replace(&mut state, first.flow_id, flow(json).unwrap()).is_ok());
        assert_eq!(
            replace(&mut state, first.flow_id + 1, flow(json).unwrap()).unwrap_err(),
            ApiError::DataUnexisting
        );
    }

    #[test]
    fn channel_cut_one_keeps_the_channel_and_status_two_waits_for_a_check() {
        let f = flow(r#"{"name":"name","flow":[{"waitingTime":120,"status":2,"channel":"call","channelCut":1}]}"#).unwrap();
        assert_eq!(f.flow[0].trigger(), Trigger::NotVerified);
        assert!(f.flow[0].keeps_channel());
    }
}

//! `itnio.otp.v1.FlowService`: task flows, over `/flow/*`.

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    convert::flows as convert,
    proto::v1::{self as pb, flow_service_server::FlowService},
};

use super::deadline;

/// Serves `FlowService` by calling ITNIO.
#[derive(Clone)]
pub struct FlowApi {
    accounts: Accounts,
}

impl FlowApi {
    /// A service calling ITNIO on each caller's account.
    pub fn new(accounts: Accounts) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl FlowService for FlowApi {
    async fn create_flow(
        &self,
        request: Request<pb::CreateFlowRequest>,
    ) -> Result<Response<pb::CreateFlowResponse>, Status> {
        let body = convert::create_request(request.get_ref())?;
        let flow = self
            .accounts
            .client_for(&request)?
            .create_flow(&body, deadline(&request))
            .await?;
        Ok(Response::new(pb::CreateFlowResponse {
            flow: Some(convert::from_wire(flow)),
        }))
    }

    async fn update_flow(
        &self,
        request: Request<pb::UpdateFlowRequest>,
    ) -> Result<Response<pb::UpdateFlowResponse>, Status> {
        let body = convert::update_request(request.get_ref())?;
        let flow_id = &request.get_ref().flow_id;
        let flow = self
            .accounts
            .client_for(&request)?
            .update_flow(flow_id, &body, deadline(&request))
            .await?;
        Ok(Response::new(pb::UpdateFlowResponse {
            flow: Some(convert::from_wire(flow)),
        }))
    }

    async fn get_flow(
        &self,
        request: Request<pb::GetFlowRequest>,
    ) -> Result<Response<pb::GetFlowResponse>, Status> {
        convert::get_request(request.get_ref())?;
        let flow_id = &request.get_ref().flow_id;
        let flow = self
            .accounts
            .client_for(&request)?
            .get_flow(flow_id, deadline(&request))
            .await?;
        Ok(Response::new(pb::GetFlowResponse {
            flow: Some(convert::from_wire(flow)),
        }))
    }

    async fn list_flows(
        &self,
        request: Request<pb::ListFlowsRequest>,
    ) -> Result<Response<pb::ListFlowsResponse>, Status> {
        let flows = self
            .accounts
            .client_for(&request)?
            .list_flows(deadline(&request))
            .await?;
        Ok(Response::new(pb::ListFlowsResponse {
            flows: flows.into_iter().map(convert::from_wire).collect(),
        }))
    }
}

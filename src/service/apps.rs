//! `itnio.otp.v1.AppService`: applications, over `/app/*`.

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    convert::apps as convert,
    proto::v1::{self as pb, app_service_server::AppService},
};

use super::deadline;

/// Serves `AppService` by calling ITNIO.
#[derive(Clone)]
pub struct AppApi {
    accounts: Accounts,
}

impl AppApi {
    /// A service calling ITNIO on each caller's account.
    pub fn new(accounts: Accounts) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl AppService for AppApi {
    async fn create_app(
        &self,
        request: Request<pb::CreateAppRequest>,
    ) -> Result<Response<pb::CreateAppResponse>, Status> {
        let body = convert::create_request(request.get_ref())?;
        let app = self
            .accounts
            .client_for(&request)?
            .create_app(&body, deadline(&request))
            .await?;
        Ok(Response::new(pb::CreateAppResponse {
            app: Some(convert::from_wire(app)),
        }))
    }

    async fn update_app(
        &self,
        request: Request<pb::UpdateAppRequest>,
    ) -> Result<Response<pb::UpdateAppResponse>, Status> {
        let body = convert::update_request(request.get_ref())?;
        let app_id = &request.get_ref().app_id;
        let app = self
            .accounts
            .client_for(&request)?
            .update_app(app_id, &body, deadline(&request))
            .await?;
        Ok(Response::new(pb::UpdateAppResponse {
            app: Some(convert::from_wire(app)),
        }))
    }

    async fn get_app(
        &self,
        request: Request<pb::GetAppRequest>,
    ) -> Result<Response<pb::GetAppResponse>, Status> {
        convert::get_request(request.get_ref())?;
        let app_id = &request.get_ref().app_id;
        let app = self
            .accounts
            .client_for(&request)?
            .get_app(app_id, deadline(&request))
            .await?;
        Ok(Response::new(pb::GetAppResponse {
            app: Some(convert::from_wire(app)),
        }))
    }
}

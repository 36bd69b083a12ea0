//! `itnio.otp.v1.TemplateService`: templates, over `/template/*`.

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    convert::templates as convert,
    proto::v1::{self as pb, template_service_server::TemplateService},
};

use super::deadline;

/// Serves `TemplateService` by calling ITNIO.
#[derive(Clone)]
pub struct TemplateApi {
    accounts: Accounts,
}

impl TemplateApi {
    /// A service calling ITNIO on each caller's account.
    pub fn new(accounts: Accounts) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl TemplateService for TemplateApi {
    async fn create_template(
        &self,
        request: Request<pb::CreateTemplateRequest>,
    ) -> Result<Response<pb::CreateTemplateResponse>, Status> {
        let body = convert::create_request(request.get_ref())?;
        let template = self
            .accounts
            .client_for(&request)?
            .create_template(&body, deadline(&request))
            .await?;
        Ok(Response::new(pb::CreateTemplateResponse {
            template: Some(convert::from_wire(template)),
        }))
    }

    async fn update_template(
        &self,
        request: Request<pb::UpdateTemplateRequest>,
    ) -> Result<Response<pb::UpdateTemplateResponse>, Status> {
        let body = convert::update_request(request.get_ref())?;
        let template_id = &request.get_ref().template_id;
        let template = self
            .accounts
            .client_for(&request)?
            .update_template(template_id, &body, deadline(&request))
            .await?;
        Ok(Response::new(pb::UpdateTemplateResponse {
            template: Some(convert::from_wire(template)),
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        convert::get_request(request.get_ref())?;
        let template_id = &request.get_ref().template_id;
        let template = self
            .accounts
            .client_for(&request)?
            .get_template(template_id, deadline(&request))
            .await?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(convert::from_wire(template)),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let templates = self
            .accounts
            .client_for(&request)?
            .list_templates(deadline(&request))
            .await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: templates.into_iter().map(convert::from_wire).collect(),
        }))
    }
}

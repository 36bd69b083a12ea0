//! `itnio.otp.v1.VerificationService`: sending and checking codes, conversion reports.

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    convert::verifications as convert,
    proto::v1::{self as pb, verification_service_server::VerificationService},
};

use super::deadline;

/// Serves `VerificationService` by calling ITNIO.
#[derive(Clone)]
pub struct VerificationApi {
    accounts: Accounts,
}

impl VerificationApi {
    /// A service calling ITNIO on each caller's account.
    pub fn new(accounts: Accounts) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl VerificationService for VerificationApi {
    async fn send_verification(
        &self,
        request: Request<pb::SendVerificationRequest>,
    ) -> Result<Response<pb::SendVerificationResponse>, Status> {
        let body = convert::send_request(request.get_ref())?;
        let sent = self
            .accounts
            .client_for(&request)?
            .send_verification(&body, deadline(&request))
            .await?;
        let sent = convert::sent_from_wire(sent);
        Ok(Response::new(pb::SendVerificationResponse {
            verification_id: sent.verification_id,
            phone_number: sent.phone_number,
            channel: sent.channel,
            sna_url: sent.sna_url,
        }))
    }

    async fn send_custom_code(
        &self,
        request: Request<pb::SendCustomCodeRequest>,
    ) -> Result<Response<pb::SendCustomCodeResponse>, Status> {
        let body = convert::send_custom_code_request(request.get_ref())?;
        let sent = self
            .accounts
            .client_for(&request)?
            .send_custom_code(&body, deadline(&request))
            .await?;
        let sent = convert::sent_from_wire(sent);
        Ok(Response::new(pb::SendCustomCodeResponse {
            verification_id: sent.verification_id,
            phone_number: sent.phone_number,
            channel: sent.channel,
            sna_url: sent.sna_url,
        }))
    }

    async fn resend_verification(
        &self,
        request: Request<pb::ResendVerificationRequest>,
    ) -> Result<Response<pb::ResendVerificationResponse>, Status> {
        let body = convert::resend_request(request.get_ref())?;
        let sent = self
            .accounts
            .client_for(&request)?
            .resend_verification(&body, deadline(&request))
            .await?;
        let sent = convert::sent_from_wire(sent);
        Ok(Response::new(pb::ResendVerificationResponse {
            verification_id: sent.verification_id,
            phone_number: sent.phone_number,
            channel: sent.channel,
            sna_url: sent.sna_url,
        }))
    }

    async fn check_verification(
        &self,
        request: Request<pb::CheckVerificationRequest>,
    ) -> Result<Response<pb::CheckVerificationResponse>, Status> {
        let body = convert::check_request(request.get_ref())?;
        let result = self
            .accounts
            .client_for(&request)?
            .check_verification(&body, deadline(&request))
            .await?;
        let response = convert::check_from_wire(result, &body.verification_id);
        Ok(Response::new(response))
    }

    async fn report_conversion(
        &self,
        request: Request<pb::ReportConversionRequest>,
    ) -> Result<Response<pb::ReportConversionResponse>, Status> {
        let body = convert::conversion_request(request.get_ref())?;
        self.accounts
            .client_for(&request)?
            .report_conversion(&body, deadline(&request))
            .await?;
        Ok(Response::new(pb::ReportConversionResponse {}))
    }

    async fn report_conversion_rate(
        &self,
        request: Request<pb::ReportConversionRateRequest>,
    ) -> Result<Response<pb::ReportConversionRateResponse>, Status> {
        let body = convert::conversion_rate_request(request.get_ref())?;
        self.accounts
            .client_for(&request)?
            .report_conversion_rate(&body, deadline(&request))
            .await?;
        Ok(Response::new(pb::ReportConversionRateResponse {}))
    }
}

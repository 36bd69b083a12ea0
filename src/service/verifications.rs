//! `itnio.otp.v1.VerificationService`: sending and checking codes, conversion reports.
//!
//! The three sends are each a few lines: convert and validate the request, then hand it to the
//! [`SendPipeline`] (deduplication, quota, guard, ITNIO, records: see [`crate::send`]). Checks are
//! capped by the send [`Guard`] before ITNIO is called.

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    caller::Caller,
    convert::verifications as convert,
    guard::Guard,
    idempotency::{RequestId, fingerprint},
    phone::PhoneRules,
    proto::v1::{self as pb, MatchState, verification_service_server::VerificationService},
    send::{NewSend, Send, SendPipeline, SendRequest, SendResponse},
};

use super::deadline;

/// Serves `VerificationService` by calling ITNIO.
#[derive(Clone)]
pub struct VerificationApi {
    accounts: Accounts,
    sends: SendPipeline,
    guard: Guard,
    phones: PhoneRules,
}

impl VerificationApi {
    /// A service calling ITNIO on each caller's account, its sends run by `sends`, its checks
    /// capped by `guard`, phone numbers read by `phones`.
    pub fn new(accounts: Accounts, sends: SendPipeline, guard: Guard, phones: PhoneRules) -> Self {
        Self {
            accounts,
            sends,
            guard,
            phones,
        }
    }

    /// Runs a checked send of `request`'s caller on its account.
    async fn send<T>(
        &self,
        request: &Request<T>,
        send: Send,
        fingerprint: [u8; 32],
        request_id: Option<RequestId>,
    ) -> Result<SendResponse, Status> {
        let upstream = self.accounts.client_for(request)?;
        let send = SendRequest {
            caller: Caller::of(request),
            deadline: deadline(request),
            request_id,
            fingerprint,
            send,
        };
        Ok(self.sends.run(send, upstream).await?)
    }
}

#[tonic::async_trait]
impl VerificationService for VerificationApi {
    async fn send_verification(
        &self,
        request: Request<pb::SendVerificationRequest>,
    ) -> Result<Response<pb::SendVerificationResponse>, Status> {
        let checked = convert::send_request(request.get_ref(), &self.phones)?;
        let fingerprint = fingerprint(
            "SendVerification",
            &pb::SendVerificationRequest {
                request_id: String::new(),
                ..request.get_ref().clone()
            },
        );
        let send = Send::Generated(NewSend {
            body: checked.body,
            destination: checked.destination,
            replace_pending: request.get_ref().replace_pending,
        });
        let sent = self
            .send(&request, send, fingerprint, checked.request_id)
            .await?;
        Ok(Response::new(sent))
    }

    async fn send_custom_code(
        &self,
        request: Request<pb::SendCustomCodeRequest>,
    ) -> Result<Response<pb::SendCustomCodeResponse>, Status> {
        let checked = convert::send_custom_code_request(request.get_ref(), &self.phones)?;
        let fingerprint = fingerprint(
            "SendCustomCode",
            &pb::SendCustomCodeRequest {
                request_id: String::new(),
                ..request.get_ref().clone()
            },
        );
        let send = Send::Custom(NewSend {
            body: checked.body,
            destination: checked.destination,
            replace_pending: request.get_ref().replace_pending,
        });
        let sent = self
            .send(&request, send, fingerprint, checked.request_id)
            .await?;
        Ok(Response::new(pb::SendCustomCodeResponse {
            verification_id: sent.verification_id,
            phone_number: sent.phone_number,
            channel: sent.channel,
            sna_url: sent.sna_url,
            order_id: sent.order_id,
            pending: sent.pending,
        }))
    }

    async fn resend_verification(
        &self,
        request: Request<pb::ResendVerificationRequest>,
    ) -> Result<Response<pb::ResendVerificationResponse>, Status> {
        let (body, request_id) = convert::resend_request(request.get_ref())?;
        let fingerprint = fingerprint(
            "ResendVerification",
            &pb::ResendVerificationRequest {
                request_id: String::new(),
                ..request.get_ref().clone()
            },
        );
        let sent = self
            .send(&request, Send::Resend(body), fingerprint, request_id)
            .await?;
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
        let upstream = self.accounts.client_for(&request)?;
        let ticket = self
            .guard
            .admit_check(&body.verification_id, &Caller::of(&request))
            .await?;
        let result = upstream
            .check_verification(&body, deadline(&request))
            .await?;
        let response = convert::check_from_wire(result, &body.verification_id);
        let settled = !matches!(
            response.match_state(),
            MatchState::WrongCode | MatchState::Sending | MatchState::Unspecified
        );
        self.guard.checked(ticket, settled).await;
        Ok(Response::new(response))
    }

    async fn report_conversion(
        &self,
        request: Request<pb::ReportConversionRequest>,
    ) -> Result<Response<pb::ReportConversionResponse>, Status> {
        let body = convert::conversion_request(request.get_ref(), &self.phones)?;
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

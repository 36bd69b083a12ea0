//! `itnio.otp.v1.VerificationService`: sending and checking codes, conversion reports.
//!
//! The three sends run through [`Sends`]: deduplicated by `request_id`, counted against the
//! caller's quota, and given an order id when the caller has none, so every send can be found.

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    caller::Caller,
    convert::verifications::{self as convert, Sent},
    idempotency::{self, Lookup, RequestId, SendAttempt, Sends},
    proto::v1::{self as pb, verification_service_server::VerificationService},
};

use super::deadline;

/// Serves `VerificationService` by calling ITNIO.
#[derive(Clone)]
pub struct VerificationApi {
    accounts: Accounts,
    sends: Sends,
}

impl VerificationApi {
    /// A service calling ITNIO on each caller's account, its sends run through `sends`.
    pub fn new(accounts: Accounts, sends: Sends) -> Self {
        Self { accounts, sends }
    }
}

/// What a send needs from its gRPC request before the upstream call.
struct SendContext {
    caller: Caller,
    deadline: Option<Duration>,
    /// Validated by `convert` together with the other fields.
    request_id: Option<RequestId>,
}

impl SendContext {
    fn of<T>(request: &Request<T>, request_id: &str) -> Self {
        Self {
            caller: Caller::of(request),
            deadline: deadline(request),
            request_id: RequestId::parse(request_id).ok().flatten(),
        }
    }

    /// The send as deduplication sees it. A send without an order id gets one here.
    fn with_order_id(self, fingerprint: [u8; 32], order_id: &mut Option<String>) -> SendAttempt {
        let order_id = order_id
            .get_or_insert_with(|| {
                idempotency::generated_order_id(&self.caller, self.request_id.as_ref())
            })
            .clone();
        self.attempt(fingerprint, Lookup::order_id(order_id))
    }

    fn attempt(self, fingerprint: [u8; 32], lookup: Lookup) -> SendAttempt {
        SendAttempt {
            caller: self.caller,
            request_id: self.request_id,
            fingerprint,
            lookup,
            deadline: self.deadline,
        }
    }
}

/// The three send responses share their fields.
macro_rules! sent_response {
    ($response:ident, $sent:expr, $order_id:expr) => {{
        let sent: Sent = $sent;
        pb::$response {
            verification_id: sent.verification_id,
            phone_number: sent.phone_number,
            channel: sent.channel,
            sna_url: sent.sna_url,
            order_id: $order_id,
        }
    }};
}

#[tonic::async_trait]
impl VerificationService for VerificationApi {
    async fn send_verification(
        &self,
        request: Request<pb::SendVerificationRequest>,
    ) -> Result<Response<pb::SendVerificationResponse>, Status> {
        let upstream = self.accounts.client_for(&request)?;
        let context = SendContext::of(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let mut body = convert::send_request(&request)?;
        let fingerprint = idempotency::fingerprint(
            "SendVerification",
            &pb::SendVerificationRequest {
                request_id: String::new(),
                ..request
            },
        );
        let attempt = context.with_order_id(fingerprint, &mut body.order_id);
        let deadline = attempt.deadline;
        let order_id = attempt.lookup.value.clone();
        let send = async move {
            let sent = upstream.send_verification(&body, deadline).await?;
            Ok(sent_response!(
                SendVerificationResponse,
                convert::sent_from_wire(sent),
                order_id
            ))
        };
        Ok(Response::new(self.sends.run(attempt, send).await?))
    }

    async fn send_custom_code(
        &self,
        request: Request<pb::SendCustomCodeRequest>,
    ) -> Result<Response<pb::SendCustomCodeResponse>, Status> {
        let upstream = self.accounts.client_for(&request)?;
        let context = SendContext::of(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let mut body = convert::send_custom_code_request(&request)?;
        let fingerprint = idempotency::fingerprint(
            "SendCustomCode",
            &pb::SendCustomCodeRequest {
                request_id: String::new(),
                ..request
            },
        );
        let attempt = context.with_order_id(fingerprint, &mut body.order_id);
        let deadline = attempt.deadline;
        let order_id = attempt.lookup.value.clone();
        let send = async move {
            let sent = upstream.send_custom_code(&body, deadline).await?;
            Ok(sent_response!(
                SendCustomCodeResponse,
                convert::sent_from_wire(sent),
                order_id
            ))
        };
        Ok(Response::new(self.sends.run(attempt, send).await?))
    }

    async fn resend_verification(
        &self,
        request: Request<pb::ResendVerificationRequest>,
    ) -> Result<Response<pb::ResendVerificationResponse>, Status> {
        let upstream = self.accounts.client_for(&request)?;
        let context = SendContext::of(&request, &request.get_ref().request_id);
        let request = request.into_inner();
        let body = convert::resend_request(&request)?;
        let fingerprint = idempotency::fingerprint(
            "ResendVerification",
            &pb::ResendVerificationRequest {
                request_id: String::new(),
                ..request
            },
        );
        // ITNIO's resend takes no order id: the original verification is how to look it up.
        let lookup = Lookup::verification_id(body.verification_id.clone());
        let attempt = context.attempt(fingerprint, lookup);
        let deadline = attempt.deadline;
        let send = async move {
            let sent = upstream.resend_verification(&body, deadline).await?;
            let sent = convert::sent_from_wire(sent);
            Ok(pb::ResendVerificationResponse {
                verification_id: sent.verification_id,
                phone_number: sent.phone_number,
                channel: sent.channel,
                sna_url: sent.sna_url,
            })
        };
        Ok(Response::new(self.sends.run(attempt, send).await?))
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

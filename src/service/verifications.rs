//! `itnio.otp.v1.VerificationService`: sending and checking codes, conversion reports.
//!
//! The three sends run through [`Sends`]: deduplicated by `request_id`, counted against the
//! caller's quota, and given an order id when the caller has none, so every send can be found.
//! Inside that, the send [`Guard`] decides before ITNIO is called (and checks are capped by it).

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::{
    accounts::Accounts,
    caller::Caller,
    convert::verifications::{self as convert, Sent},
    guard::{Admission, Guard, PendingSend, SendTarget},
    idempotency::{self, Lookup, RequestId, SendAttempt, Sends},
    phone::PhoneRules,
    proto::v1::{self as pb, MatchState, verification_service_server::VerificationService},
};

use super::deadline;

/// Serves `VerificationService` by calling ITNIO.
#[derive(Clone)]
pub struct VerificationApi {
    accounts: Accounts,
    sends: Sends,
    guard: Guard,
    phones: PhoneRules,
}

impl VerificationApi {
    /// A service calling ITNIO on each caller's account, its sends run through `sends` and
    /// `guard`, phone numbers read by `phones`.
    pub fn new(accounts: Accounts, sends: Sends, guard: Guard, phones: PhoneRules) -> Self {
        Self {
            accounts,
            sends,
            guard,
            phones,
        }
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

/// What the guard keeps of a send, to answer later sends while it is pending.
fn pending_send(sent: Sent, order_id: String) -> PendingSend {
    PendingSend {
        verification_id: sent.verification_id,
        phone_number: sent.phone_number,
        channel: sent.channel,
        sna_url: sent.sna_url,
        order_id,
    }
}

/// The two send responses share their fields; `pending` says whether it is the pending one.
macro_rules! sent_response {
    ($response:ident, $send:expr, $pending:expr) => {{
        let send: PendingSend = $send;
        pb::$response {
            verification_id: send.verification_id,
            phone_number: send.phone_number,
            channel: send.channel,
            sna_url: send.sna_url,
            order_id: send.order_id,
            pending: $pending,
        }
    }};
}

/// Runs a send through the guard: the pending verification, a refusal, or `send` (whose
/// response is recorded as the new pending one).
macro_rules! guarded_send {
    ($guard:expr, $target:expr, $response:ident, $send:expr) => {{
        let guard: Guard = $guard;
        let permit = match guard.admit_send($target).await? {
            Admission::Pending(pending) => return Ok(sent_response!($response, pending, true)),
            Admission::Send(permit) => permit,
        };
        let send: PendingSend = $send;
        guard.sent(permit, send.clone()).await;
        Ok(sent_response!($response, send, false))
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
        let (mut body, destination) = convert::send_request(&request, &self.phones)?;
        let target = SendTarget {
            app_id: body.app_id.clone(),
            caller: context.caller.clone(),
            destination,
            custom_code: None,
            replace_pending: request.replace_pending,
        };
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
        let guard = self.guard.clone();
        let send = async move {
            guarded_send!(guard, target, SendVerificationResponse, {
                let sent = upstream.send_verification(&body, deadline).await?;
                pending_send(convert::sent_from_wire(sent), order_id)
            })
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
        let (mut body, destination) = convert::send_custom_code_request(&request, &self.phones)?;
        let target = SendTarget {
            app_id: body.app_id.clone(),
            caller: context.caller.clone(),
            destination,
            custom_code: Some(request.code.clone()),
            replace_pending: request.replace_pending,
        };
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
        let guard = self.guard.clone();
        let send = async move {
            guarded_send!(guard, target, SendCustomCodeResponse, {
                let sent = upstream.send_custom_code(&body, deadline).await?;
                pending_send(convert::sent_from_wire(sent), order_id)
            })
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
        let caller = context.caller.clone();
        let attempt = context.attempt(fingerprint, lookup);
        let deadline = attempt.deadline;
        let guard = self.guard.clone();
        let send = async move {
            let original = guard.admit_resend(&body.verification_id, &caller).await?;
            let sent = upstream.resend_verification(&body, deadline).await?;
            let sent = convert::sent_from_wire(sent);
            let response = pb::ResendVerificationResponse {
                verification_id: sent.verification_id.clone(),
                phone_number: sent.phone_number.clone(),
                channel: sent.channel,
                sna_url: sent.sna_url.clone(),
            };
            if let Some(original) = original {
                guard
                    .resent(original, &caller, pending_send(sent, String::new()))
                    .await;
            }
            Ok(response)
        };
        Ok(Response::new(self.sends.run(attempt, send).await?))
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

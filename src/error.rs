//! The one place where failures become gRPC statuses.
//!
//! [`ServiceError`] is the error of every RPC: either the request was invalid (found before any
//! upstream call) or the upstream call failed. Its conversion into [`tonic::Status`] is the
//! mapping table of the README: one `match`, with `google.rpc.ErrorInfo` on every error,
//! `BadRequest` on validation failures, `QuotaFailure` on limits and `RetryInfo` where a retry
//! can help. Status messages are for humans and never carry ids, phone numbers, codes or secrets.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use crate::convert::FieldViolation;
use crate::{
    accounts::UnknownAccount,
    auth::AuthError,
    convert::InvalidRequest,
    guard::{GuardError, GuardRefusal},
    idempotency::Lookup,
    limits::LimitError,
    send::SendError,
    store::StoreError,
    upstream::{UpstreamError, UpstreamStatus},
};

/// The `ErrorInfo.domain` of every error we return.
pub const ERROR_DOMAIN: &str = "itniotech.com";

/// The RetryInfo delay of calls shed under load: long enough for in-flight calls to finish.
const OVERLOAD_RETRY_AFTER: Duration = Duration::from_millis(500);

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request broke documented constraints; the upstream was not called.
    #[error("invalid request: {} field(s)", .0.len())]
    InvalidArgument(Vec<FieldViolation>),
    /// The upstream call failed or was refused.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A send failed: refused by its idempotency record, its quota, the guard or the shared
    /// store, or its ITNIO call failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A check the send guard refused, or could not count.
    #[error(transparent)]
    Guard(#[from] GuardError),
}

impl From<InvalidRequest> for ServiceError {
    fn from(InvalidRequest(violations): InvalidRequest) -> Self {
        Self::InvalidArgument(violations)
    }
}

impl From<InvalidRequest> for Status {
    fn from(error: InvalidRequest) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<SendError> for Status {
    fn from(error: SendError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<GuardError> for Status {
    fn from(error: GuardError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<LimitError> for Status {
    fn from(error: LimitError) -> Self {
        let mut details = ErrorDetails::new();
        let (reason, subject, description, message, limit) = match error {
            LimitError::MessageTooLarge { limit } => (
                "MESSAGE_TOO_LARGE",
                "request_message",
                format!("at most {limit} bytes per request message"),
                format!("the request message is larger than {limit} bytes"),
                limit,
            ),
            LimitError::TooManyWatchedRecords { limit } => {
                // Watches end when their records are final: a retry can succeed.
                details.set_retry_info(Some(Duration::from_secs(1)));
                (
                    "WATCH_RECORD_LIMIT_EXCEEDED",
                    "watched_records",
                    format!("at most {limit} distinct records watched per caller"),
                    format!(
                        "this caller already watches {limit} records; end a watch or wait for \
                         one to finish"
                    ),
                    limit,
                )
            }
            LimitError::RequestBodyTimeout { timeout } => return request_body_timeout(timeout),
        };
        details.add_quota_failure_violation(subject, description);
        let metadata = HashMap::from([("limit".to_owned(), limit.to_string())]);
        details.set_error_info(reason, ERROR_DOMAIN, metadata);
        Status::with_error_details(Code::ResourceExhausted, message, details)
    }
}

/// A stream that sent its headers but not its whole request in time: no quota, a slow client.
fn request_body_timeout(timeout: Duration) -> Status {
    let millis = timeout.as_millis().to_string();
    let metadata = HashMap::from([("timeout_ms".to_owned(), millis)]);
    let details = ErrorDetails::with_error_info("REQUEST_BODY_TIMEOUT", ERROR_DOMAIN, metadata);
    let message = format!(
        "the request message did not arrive within {} ms of its headers",
        timeout.as_millis()
    );
    Status::with_error_details(Code::DeadlineExceeded, message, details)
}

/// How one upstream business status is presented.
struct StatusMapping {
    code: Code,
    retry_after: Option<Duration>,
    quota_subject: Option<&'static str>,
}

/// The status-code table: ITNIO's business status → gRPC code. Keep in step with the README.
fn map_upstream_status(status: UpstreamStatus) -> StatusMapping {
    use UpstreamStatus as S;
    let (code, retry_after, quota_subject) = match status {
        S::AuthenticationError | S::IpRestricted => (Code::Internal, None, None),
        // The client already re-signed and retried once: our clock is off.
        S::TimestampExpired => (Code::Internal, None, None),
        S::BalanceInsufficient | S::RateUnavailable => (Code::FailedPrecondition, None, None),
        S::SystemError => (Code::Unavailable, Some(Duration::from_secs(1)), None),
        S::DataExists => (Code::AlreadyExists, None, None),
        S::DataValidation | S::ParameterError | S::SensitiveWords => {
            (Code::InvalidArgument, None, None)
        }
        S::DataCap => (Code::ResourceExhausted, None, Some("data cap")),
        S::PeriodTotalLimit => (
            Code::ResourceExhausted,
            None,
            Some("period_total_send_limit"),
        ),
        S::PeriodPhoneLimit => (
            Code::ResourceExhausted,
            None,
            Some("period_phone_send_limit"),
        ),
        S::DataNotFound => (Code::NotFound, None, None),
        S::OutOfTimeRange => (Code::OutOfRange, None, None),
        S::Success | S::Unknown(_) => (Code::Unknown, None, None),
    };
    StatusMapping {
        code,
        retry_after,
        quota_subject,
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidArgument(violations) => invalid_argument(&violations),
            ServiceError::Upstream(error) => upstream_status(&error, None),
            ServiceError::Send(error) => send_status(error),
            ServiceError::Guard(GuardError::Refused(refusal)) => guard_status(&refusal),
            ServiceError::Guard(GuardError::Store(error)) => send_status(error.into()),
        }
    }
}

/// The statuses of sends: idempotency, quotas, the shared store, the guard and ITNIO.
fn send_status(error: SendError) -> Status {
    let mut details = ErrorDetails::new();
    let mut metadata = HashMap::new();
    let (code, reason, message) = match error {
        SendError::Guard(refusal) => return guard_status(&refusal),
        SendError::Upstream(error) => return upstream_status(&error, None),
        SendError::Uncertain { error, lookup } => return upstream_status(&error, Some(&lookup)),
        SendError::StateUnavailable(_) => {
            details.set_retry_info(Some(Duration::from_secs(1)));
            (
                Code::Unavailable,
                "STATE_STORE_UNAVAILABLE",
                "the shared state store is unavailable; nothing was sent".to_owned(),
            )
        }
        SendError::RequestIdReused { request_id } => {
            metadata.insert("request_id".to_owned(), request_id);
            (
                Code::FailedPrecondition,
                "REQUEST_ID_REUSED",
                "this request_id was already used for a different request; use a new request_id"
                    .to_owned(),
            )
        }
        SendError::OutcomeUnknown { request_id, lookup } => {
            metadata.insert("request_id".to_owned(), request_id);
            metadata.insert(lookup.field.to_owned(), lookup.value);
            let message = format!(
                "an earlier attempt with this request_id may have been sent and will not be sent \
                 again; look the verification up by the {} in this error's metadata",
                lookup.field
            );
            (Code::FailedPrecondition, "OUTCOME_UNKNOWN", message)
        }
        SendError::RequestInProgress { request_id } => {
            metadata.insert("request_id".to_owned(), request_id);
            details.set_retry_info(Some(Duration::from_secs(1)));
            (
                Code::Aborted,
                "REQUEST_IN_PROGRESS",
                "the first attempt with this request_id is still in progress; retry with the \
                 same request_id"
                    .to_owned(),
            )
        }
        SendError::CallerRateExceeded {
            caller,
            limit,
            retry_after,
        } => {
            metadata.insert("caller".to_owned(), caller.clone());
            metadata.insert("sends_per_minute".to_owned(), limit.to_string());
            details.add_quota_failure_violation(
                format!("caller:{caller}"),
                format!("at most {limit} sends per minute"),
            );
            details.set_retry_info(Some(retry_after));
            (
                Code::ResourceExhausted,
                "CALLER_SEND_RATE_EXCEEDED",
                format!("this caller may send at most {limit} codes per minute"),
            )
        }
    };
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// The statuses of the send guard: who is refused, and by which rule. Never the number.
fn guard_status(refusal: &GuardRefusal) -> Status {
    let mut details = ErrorDetails::new();
    let mut metadata = HashMap::new();
    let (code, message) = match refusal {
        GuardRefusal::DestinationNotAllowed {
            country,
            number_type,
            rule,
        } => {
            metadata.insert("country".to_owned(), country.to_string());
            metadata.insert("number_type".to_owned(), number_type.as_str().to_owned());
            metadata.insert("rule".to_owned(), (*rule).to_owned());
            let message = format!(
                "sending codes to this destination ({country}, {}) is not allowed",
                number_type.as_str()
            );
            (Code::PermissionDenied, message)
        }
        GuardRefusal::SendRateExceeded {
            scope,
            country,
            sends,
            window,
            retry_after,
        } => {
            let window = humantime::format_duration(*window).to_string();
            metadata.insert("country".to_owned(), country.to_string());
            metadata.insert("limit".to_owned(), (*scope).to_owned());
            let subject = match *scope {
                "per_country" => format!("per_country:{country}"),
                other => other.to_owned(),
            };
            details.add_quota_failure_violation(
                subject,
                format!("at most {sends} sends per {window}"),
            );
            details.set_retry_info(Some(*retry_after));
            let message = format!("too many codes sent ({scope}: at most {sends} per {window})");
            (Code::ResourceExhausted, message)
        }
        GuardRefusal::TooManyCheckAttempts { max } => {
            metadata.insert("max_check_attempts".to_owned(), max.to_string());
            let message =
                format!("this verification was checked {max} times already; send a new code");
            (Code::FailedPrecondition, message)
        }
    };
    details.set_error_info(refusal.reason(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

impl From<UpstreamError> for Status {
    fn from(error: UpstreamError) -> Self {
        upstream_status(&error, None)
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        Self::Send(SendError::StateUnavailable(error))
    }
}

fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let mut details = ErrorDetails::new();
    for violation in violations {
        details.add_bad_request_violation(&violation.field, &violation.description);
    }
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    let metadata = HashMap::from([("fields".to_owned(), fields.join(","))]);
    details.set_error_info("INVALID_REQUEST", ERROR_DOMAIN, metadata);
    let message = format!("invalid request: check {}", fields.join(", "));
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `lookup` names a send that may have been processed, so the caller can find it.
fn upstream_status(error: &UpstreamError, lookup: Option<&Lookup>) -> Status {
    let endpoint = error.endpoint().as_str();
    let mut metadata = HashMap::from([("endpoint".to_owned(), endpoint.to_owned())]);
    if let Some(lookup) = lookup {
        metadata.insert(lookup.field.to_owned(), lookup.value.clone());
    }
    let mut details = ErrorDetails::new();
    let (code, reason, message) = match error {
        UpstreamError::Rejected { status, reason, .. } => {
            let known = UpstreamStatus::from_code(*status);
            let mapping = map_upstream_status(known);
            let reason_text = redact_digits(reason);
            metadata.insert("upstream_status".to_owned(), status.to_string());
            metadata.insert("upstream_reason".to_owned(), reason_text);
            if let Some(subject) = mapping.quota_subject {
                details.add_quota_failure_violation(subject, known.description());
            }
            if mapping.retry_after.is_some() {
                details.set_retry_info(mapping.retry_after);
            }
            let message = format!(
                "ITNIO refused the call: {} (status {status})",
                known.description()
            );
            (mapping.code, known.name(), message)
        }
        UpstreamError::Timeout { .. } => (
            Code::DeadlineExceeded,
            "UPSTREAM_TIMEOUT",
            "ITNIO did not answer in time; the request may have been processed".to_owned(),
        ),
        UpstreamError::Connect { .. } => {
            details.set_retry_info(Some(Duration::from_secs(1)));
            (
                Code::Unavailable,
                "UPSTREAM_UNREACHABLE",
                "ITNIO could not be reached".to_owned(),
            )
        }
        UpstreamError::Interrupted { .. } => {
            details.set_retry_info(Some(Duration::from_secs(1)));
            (
                Code::Unavailable,
                "UPSTREAM_CONNECTION_LOST",
                "the connection to ITNIO failed after the request was sent; it may have been \
                 processed"
                    .to_owned(),
            )
        }
        UpstreamError::Http { status, .. } => {
            metadata.insert("http_status".to_owned(), status.to_string());
            let retryable = *status == 429 || *status >= 500;
            if retryable {
                details.set_retry_info(Some(Duration::from_secs(1)));
            }
            let code = if retryable {
                Code::Unavailable
            } else {
                Code::Internal
            };
            let message = format!("ITNIO answered HTTP {status}");
            (code, "UPSTREAM_HTTP_ERROR", message)
        }
        UpstreamError::Decode { .. } => (
            Code::Unavailable,
            "UPSTREAM_BAD_RESPONSE",
            "ITNIO sent a reply that could not be read".to_owned(),
        ),
        UpstreamError::ResponseTooLarge { limit, .. } => {
            metadata.insert("limit_bytes".to_owned(), limit.to_string());
            (
                Code::Unavailable,
                "UPSTREAM_RESPONSE_TOO_LARGE",
                "ITNIO sent a reply larger than this service accepts".to_owned(),
            )
        }
        UpstreamError::Overloaded { limit, .. } => {
            metadata.insert("limit".to_owned(), limit.to_string());
            details.add_quota_failure_violation(
                "upstream_concurrency",
                format!("at most {limit} ITNIO calls in flight"),
            );
            details.set_retry_info(Some(OVERLOAD_RETRY_AFTER));
            (
                Code::ResourceExhausted,
                "UPSTREAM_CONCURRENCY_EXCEEDED",
                "too many ITNIO calls in flight; nothing was sent, retry shortly".to_owned(),
            )
        }
    };
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// Refused calls: UNAUTHENTICATED when we do not know who calls, PERMISSION_DENIED when we do
/// but the callers file does not allow the method. The message never echoes a credential.
impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        let mut metadata = HashMap::new();
        let (code, reason) = match &error {
            AuthError::MissingCredentials => (Code::Unauthenticated, "MISSING_CREDENTIALS"),
            AuthError::MalformedAuthorization => (Code::Unauthenticated, "MALFORMED_AUTHORIZATION"),
            AuthError::InvalidToken => (Code::Unauthenticated, "INVALID_TOKEN"),
            AuthError::UnknownCertificate => (Code::Unauthenticated, "UNKNOWN_CLIENT_CERTIFICATE"),
            AuthError::MethodNotAllowed { caller, method } => {
                metadata.insert("caller".to_owned(), caller.clone());
                metadata.insert("method".to_owned(), method.clone());
                (Code::PermissionDenied, "METHOD_NOT_ALLOWED")
            }
        };
        let mut details = ErrorDetails::new();
        details.set_error_info(reason, ERROR_DOMAIN, metadata);
        Status::with_error_details(code, error.to_string(), details)
    }
}

/// A reload removed the caller's account while its call was being authenticated: retrying
/// lets the new callers file decide.
impl From<UnknownAccount> for Status {
    fn from(error: UnknownAccount) -> Self {
        let mut details = ErrorDetails::new();
        let metadata = HashMap::from([("account".to_owned(), error.account.clone())]);
        details.set_error_info("ACCOUNT_NOT_CONFIGURED", ERROR_DOMAIN, metadata);
        details.set_retry_info(Some(Duration::from_secs(1)));
        Status::with_error_details(Code::Unavailable, error.to_string(), details)
    }
}

/// Upstream reason texts are free text; long digit runs (phone numbers, ids) are masked.
fn redact_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    for ch in text.chars().chain(std::iter::once('\0')) {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        if digits.len() >= 6 {
            out.push('…');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        if ch != '\0' {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Endpoint;

    fn rejected(status: i32) -> Status {
        let error = UpstreamError::Rejected {
            endpoint: Endpoint::VerificationSend,
            status,
            reason: "whatever".to_owned(),
        };
        ServiceError::from(error).into()
    }

    #[test]
    fn table_maps_every_documented_status() {
        let table = [
            (-1, Code::Internal),
            (-2, Code::Internal),
            (-16, Code::Internal),
            (-10, Code::FailedPrecondition),
            (-26, Code::FailedPrecondition),
            (-18, Code::Unavailable),
            (-20, Code::AlreadyExists),
            (-21, Code::InvalidArgument),
            (-22, Code::InvalidArgument),
            (-29, Code::InvalidArgument),
            (-23, Code::ResourceExhausted),
            (-27, Code::ResourceExhausted),
            (-28, Code::ResourceExhausted),
            (-24, Code::NotFound),
            (-25, Code::OutOfRange),
            (-99, Code::Unknown),
        ];
        for (upstream, code) in table {
            assert_eq!(rejected(upstream).code(), code, "status {upstream}");
        }
    }

    #[test]
    fn rejected_carries_error_info_and_quota_failure() {
        let status = rejected(-27);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.reason, "PERIOD_TOTAL_LIMIT");
        assert_eq!(info.metadata["upstream_status"], "-27");
        assert_eq!(info.metadata["endpoint"], "POST /verification/send");
        assert!(details.quota_failure().is_some());
    }

    #[test]
    fn shed_upstream_calls_are_resource_exhausted_with_retry_info() {
        let status: Status = ServiceError::from(UpstreamError::Overloaded {
            endpoint: Endpoint::VerificationSend,
            limit: 7,
        })
        .into();
        assert_eq!(status.code(), Code::ResourceExhausted);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "UPSTREAM_CONCURRENCY_EXCEEDED");
        assert_eq!(info.metadata["limit"], "7");
        assert_eq!(
            details.retry_info().and_then(|r| r.retry_delay),
            Some(OVERLOAD_RETRY_AFTER)
        );
        assert!(details.quota_failure().is_some());
    }

    #[test]
    fn own_limits_are_resource_exhausted_with_their_reason() {
        let cases = [
            (
                LimitError::MessageTooLarge { limit: 1024 },
                1024,
                "MESSAGE_TOO_LARGE",
                None,
            ),
            (
                LimitError::TooManyWatchedRecords { limit: 3 },
                3,
                "WATCH_RECORD_LIMIT_EXCEEDED",
                Some(Duration::from_secs(1)),
            ),
        ];
        for (error, limit, reason, retry) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), Code::ResourceExhausted, "{reason}");
            assert!(status.message().contains(&limit.to_string()), "{reason}");
            let details = status.get_error_details();
            let info = details.error_info().expect("error info");
            assert_eq!(info.reason, reason);
            assert_eq!(info.domain, ERROR_DOMAIN);
            assert_eq!(info.metadata["limit"], limit.to_string());
            assert_eq!(details.retry_info().and_then(|r| r.retry_delay), retry);
            assert_eq!(
                details.quota_failure().map(|q| q.violations.len()),
                Some(1),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_slow_request_body_is_deadline_exceeded() {
        let status = Status::from(LimitError::RequestBodyTimeout {
            timeout: Duration::from_millis(1500),
        });
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("1500 ms"), "{}", status.message());
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "REQUEST_BODY_TIMEOUT");
        assert_eq!(info.metadata["timeout_ms"], "1500");
        assert!(details.quota_failure().is_none());
    }

    #[test]
    fn validation_lists_each_field() {
        let status: Status = ServiceError::InvalidArgument(vec![
            FieldViolation {
                field: "name".into(),
                description: "must be 4–32 characters".into(),
            },
            FieldViolation {
                field: "code_expiry_minutes".into(),
                description: "must be 1–60".into(),
            },
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations.len(), 2);
        assert_eq!(bad.field_violations[1].field, "code_expiry_minutes");
        assert!(details.error_info().is_some());
    }

    #[test]
    fn http_errors_are_retryable_only_for_429_and_5xx() {
        let table = [
            (429, Code::Unavailable),
            (500, Code::Unavailable),
            (503, Code::Unavailable),
            (400, Code::Internal),
            (404, Code::Internal),
            (428, Code::Internal),
            (499, Code::Internal),
        ];
        for (http, code) in table {
            let error = UpstreamError::Http {
                endpoint: Endpoint::VerificationRecord,
                status: http,
            };
            let status = Status::from(ServiceError::from(error));
            assert_eq!(status.code(), code, "HTTP {http}");
            let details = status.get_error_details();
            let retry = details.retry_info().and_then(|r| r.retry_delay);
            let expected = (code == Code::Unavailable).then(|| Duration::from_secs(1));
            assert_eq!(retry, expected, "RetryInfo for HTTP {http}");
            let info = details.error_info().expect("error info");
            assert_eq!(info.reason, "UPSTREAM_HTTP_ERROR");
            assert_eq!(info.metadata["http_status"], http.to_string());
            assert_eq!(status.message(), format!("ITNIO answered HTTP {http}"));
        }
    }

    #[test]
    fn transport_failures_keep_where_the_call_failed() {
        let endpoint = Endpoint::AppDetails;
        let detail = || "detail".to_owned();
        let table = [
            (
                UpstreamError::Timeout { endpoint },
                Code::DeadlineExceeded,
                "UPSTREAM_TIMEOUT",
                false,
            ),
            (
                UpstreamError::Connect {
                    endpoint,
                    detail: detail(),
                },
                Code::Unavailable,
                "UPSTREAM_UNREACHABLE",
                true,
            ),
            (
                UpstreamError::Decode {
                    endpoint,
                    detail: detail(),
                },
                Code::Unavailable,
                "UPSTREAM_BAD_RESPONSE",
                false,
            ),
        ];
        for (error, code, reason, retry) in table {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{reason}");
            let details = status.get_error_details();
            assert_eq!(details.error_info().expect("info").reason, reason);
            assert_eq!(details.retry_info().is_some(), retry, "{reason}");
            assert!(!status.message().contains("detail"), "{reason}");
        }
    }

    #[test]
    fn reason_text_digit_runs_are_masked() {
        assert_eq!(redact_digits("number 8613512345678 bad"), "number … bad");
        assert_eq!(redact_digits("limit 90 reached"), "limit 90 reached");
    }
}

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

use crate::upstream::{UpstreamError, UpstreamStatus};

/// The `ErrorInfo.domain` of every error we return.
pub const ERROR_DOMAIN: &str = "itniotech.com";

/// One invalid request field, named by its proto path (e.g. `nodes[0].channel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Proto field path.
    pub field: String,
    /// What is wrong, for humans; never echoes the value.
    pub description: String,
}

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request broke documented constraints; the upstream was not called.
    #[error("invalid request: {} field(s)", .0.len())]
    InvalidArgument(Vec<FieldViolation>),
    /// The upstream call failed or was refused.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
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
            ServiceError::Upstream(error) => upstream_status(&error),
        }
    }
}

impl From<UpstreamError> for Status {
    fn from(error: UpstreamError) -> Self {
        upstream_status(&error)
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

fn upstream_status(error: &UpstreamError) -> Status {
    let endpoint = error.endpoint().as_str();
    let mut metadata = HashMap::from([("endpoint".to_owned(), endpoint.to_owned())]);
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
    };
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
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
    fn reason_text_digit_runs_are_masked() {
        assert_eq!(redact_digits("number 8613512345678 bad"), "number … bad");
        assert_eq!(redact_digits("limit 90 reached"), "limit 90 reached");
    }
}

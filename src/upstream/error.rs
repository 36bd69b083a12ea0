//! Failures at the REST edge, kept apart by *where* the call failed (smithy-rs style):
//! not sent ([`UpstreamError::Connect`]), maybe processed ([`UpstreamError::Timeout`]), HTTP-level
//! refusal ([`UpstreamError::Http`]), unreadable or oversized reply ([`UpstreamError::Decode`],
//! [`UpstreamError::ResponseTooLarge`]) and a business
//! "no" from ITNIO ([`UpstreamError::Rejected`]). Each needs a different gRPC code and retry rule.
//!
//! No variant carries a secret, a phone number, an OTP code or a concrete path id: the endpoint is
//! the route template, and `detail` strings are built by this crate, never copied from a body.

use super::endpoint::Endpoint;
use super::status::UpstreamStatus;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// ITNIO answered HTTP 200 with a non-"0" status.
    #[error("{endpoint}: rejected with status {status}: {reason}")]
    Rejected {
        endpoint: Endpoint,
        status: i32,
        reason: String,
    },
    /// No reply within the timeout; the request may have been processed.
    #[error("{endpoint}: no reply within the timeout (the request may have been processed)")]
    Timeout { endpoint: Endpoint },
    /// Could not connect / send (nothing was processed).
    #[error("{endpoint}: could not send the request: {detail}")]
    Connect { endpoint: Endpoint, detail: String },
    /// The connection failed after the request may have been written, before a status line
    /// arrived or while the body was read: the request may have been processed.
    #[error(
        "{endpoint}: connection lost before the reply (the request may have been processed): {detail}"
    )]
    Interrupted { endpoint: Endpoint, detail: String },
    /// Reply with a non-200 HTTP status.
    #[error("{endpoint}: HTTP status {status}")]
    Http { endpoint: Endpoint, status: u16 },
    /// 200 reply whose body could not be decoded.
    #[error("{endpoint}: undecodable reply: {detail}")]
    Decode { endpoint: Endpoint, detail: String },
    /// Reply body larger than the configured cap; reading stopped there (ITNIO may have
    /// processed the request).
    #[error("{endpoint}: reply body larger than {limit} bytes")]
    ResponseTooLarge { endpoint: Endpoint, limit: usize },
    /// `UPSTREAM_MAX_CONCURRENCY` calls were in flight and none finished within the queue
    /// wait: shed without being sent.
    #[error("{endpoint}: not sent, {limit} ITNIO calls already in flight")]
    Overloaded { endpoint: Endpoint, limit: usize },
}

impl UpstreamError {
    /// The route the failed call was made to.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Self::Rejected { endpoint, .. }
            | Self::Timeout { endpoint }
            | Self::Connect { endpoint, .. }
            | Self::Interrupted { endpoint, .. }
            | Self::Http { endpoint, .. }
            | Self::Decode { endpoint, .. }
            | Self::ResponseTooLarge { endpoint, .. }
            | Self::Overloaded { endpoint, .. } => *endpoint,
        }
    }

    /// Whether ITNIO may have acted on the request: a timeout, a connection lost after the
    /// request was written, an HTTP 5xx (a gateway may have passed it on), an unreadable or an
    /// oversized reply. `false` means it certainly did not (never reached it, or it answered "no").
    pub fn may_have_been_processed(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::Interrupted { .. }
            | Self::Decode { .. }
            | Self::ResponseTooLarge { .. } => true,
            Self::Http { status, .. } => *status >= 500,
            Self::Rejected { .. } | Self::Connect { .. } | Self::Overloaded { .. } => false,
        }
    }

    /// The named upstream status of a [`UpstreamError::Rejected`], `None` otherwise.
    pub fn upstream_status(&self) -> Option<UpstreamStatus> {
        match self {
            Self::Rejected { status, .. } => Some(UpstreamStatus::from_code(*status)),
            _ => None,
        }
    }
}

/// Why [`super::UpstreamClient::new`] refused a configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstream base URL is invalid: {0}")]
    BaseUrl(String),
    #[error("upstream timeout must be greater than zero")]
    ZeroTimeout,
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// Turns a serde_json error into a short description that never echoes a value from the body.
///
/// serde's messages quote the offending value (`invalid type: string "9990012345", expected i32`);
/// we keep only the category, what was expected, a missing field's name and the position.
pub(crate) fn sanitize_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let mut out = String::from(match err.classify() {
        Category::Syntax => "malformed JSON",
        Category::Eof => "truncated JSON",
        Category::Data => "unexpected JSON shape",
        Category::Io => "I/O error",
    });
    let msg = err.to_string();
    let msg = msg.split(" at line ").next().unwrap_or_default();
    if let Some(safe) = msg.strip_prefix(super::lenient::MESSAGE_PREFIX) {
        out.push_str(": ");
        out.push_str(safe);
    } else if let Some(field) = msg.strip_prefix("missing field ") {
        out.push_str(": missing field ");
        out.push_str(field);
    } else if let Some((_, expected)) = msg.split_once(", expected ") {
        out.push_str(": expected ");
        out.push_str(expected);
    } else if let Some(rest) = msg.strip_prefix("expected ") {
        // Syntax errors such as "expected value" carry no data.
        out.push_str(": expected ");
        out.push_str(rest);
    }
    if err.line() > 0 {
        out.push_str(&format!(" at line {} column {}", err.line(), err.column()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_route_template() {
        let e = UpstreamError::Rejected {
            endpoint: Endpoint::VerificationRecord,
            status: -24,
            reason: "Data unexisting".into(),
        };
        assert_eq!(
            e.to_string(),
            "GET /verification/record/{verificationId}: rejected with status -24: Data unexisting"
        );
        assert_eq!(e.upstream_status(), Some(UpstreamStatus::DataNotFound));
        assert_eq!(e.endpoint(), Endpoint::VerificationRecord);
    }

    #[test]
    fn only_failures_after_sending_may_have_been_processed() {
        let endpoint = Endpoint::VerificationSend;
        let maybe = [
            UpstreamError::Timeout { endpoint },
            UpstreamError::Interrupted {
                endpoint,
                detail: "reset".into(),
            },
            UpstreamError::Http {
                endpoint,
                status: 500,
            },
            UpstreamError::Decode {
                endpoint,
                detail: "truncated".into(),
            },
        ];
        assert!(maybe.iter().all(UpstreamError::may_have_been_processed));
        let not = [
            UpstreamError::Overloaded { endpoint, limit: 1 },
            UpstreamError::Connect {
                endpoint,
                detail: "refused".into(),
            },
            UpstreamError::Http {
                endpoint,
                status: 499,
            },
            UpstreamError::Rejected {
                endpoint,
                status: -27,
                reason: "limit".into(),
            },
        ];
        assert!(!not.iter().any(UpstreamError::may_have_been_processed));
        assert_eq!(maybe[1].endpoint(), endpoint);
    }

    #[test]
    fn sanitized_serde_errors_do_not_echo_values() {
        let err = serde_json::from_str::<i32>(r#""9990012345""#).expect_err("string is no i32");
        let s = sanitize_json_error(&err);
        assert!(!s.contains("9990012345"), "{s}");
        assert!(s.contains("expected i32"), "{s}");
        assert!(s.contains("line 1"), "{s}");

        let err = serde_json::from_str::<serde_json::Value>("{\"to\":\"8613512345678\"")
            .expect_err("truncated");
        let s = sanitize_json_error(&err);
        assert!(!s.contains("8613512345678"), "{s}");
        assert!(s.starts_with("truncated JSON"), "{s}");

        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            code: String,
        }
        let err = serde_json::from_str::<Needs>("{}").expect_err("missing");
        assert!(sanitize_json_error(&err).contains("missing field `code`"));

        let err = serde_json::from_str::<Vec<u8>>("[1, 2, x]").expect_err("syntax");
        assert!(sanitize_json_error(&err).starts_with("malformed JSON"));

        // Decoding an already parsed `data` value has no position to report.
        let err = serde_json::from_value::<i32>(serde_json::json!("x")).expect_err("no i32");
        assert_eq!(
            sanitize_json_error(&err),
            "unexpected JSON shape: expected i32"
        );
    }
}

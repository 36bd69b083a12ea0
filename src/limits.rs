//! [`LimitError`]: a request refused because it would go past one of this service's own limits
//! (message size and request body timeout in `transport/`, watched records per caller in
//! `watch/`). It sits below the modules that raise it; `error.rs`, above them, turns it into its
//! gRPC status (`RESOURCE_EXHAUSTED` with `QuotaFailure`, or `DEADLINE_EXCEEDED`).

use std::time::Duration;

/// A request refused because it would go past one of this service's own limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A request message longer than `GRPC_MAX_MESSAGE_BYTES`.
    #[error("request message larger than {limit} bytes")]
    MessageTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A request whose message did not arrive whole within `GRPC_REQUEST_BODY_TIMEOUT` of its
    /// headers.
    #[error("request body not received within {timeout:?}")]
    RequestBodyTimeout {
        /// The timeout.
        timeout: Duration,
    },
    /// The caller already watches `WATCH_MAX_RECORDS_PER_CALLER` distinct records.
    #[error("caller watches too many records")]
    TooManyWatchedRecords {
        /// The limit.
        limit: usize,
    },
}

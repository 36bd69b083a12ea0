//! Why a send failed: the error of the send pipeline, owned here and mapped to gRPC statuses in
//! [`crate::error`] (the one place codes and details are chosen).

use std::time::Duration;

use crate::{guard::GuardRefusal, idempotency::Lookup, store::StoreError, upstream::UpstreamError};

/// Why a send was refused, or failed, before or while calling ITNIO.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The shared state store (Redis) cannot be reached: sends fail closed.
    #[error(transparent)]
    StateUnavailable(#[from] StoreError),
    /// The request id was used before by this caller for a different request.
    #[error("request id reused for a different request")]
    RequestIdReused {
        /// The id.
        request_id: String,
    },
    /// An earlier attempt with this request id may have been processed; it is never resent.
    #[error("an earlier attempt's outcome is unknown")]
    OutcomeUnknown {
        /// The id.
        request_id: String,
        /// How to look the send up.
        lookup: Lookup,
    },
    /// The first attempt with this request id is still running past the repeat's deadline.
    #[error("the first attempt is still in progress")]
    RequestInProgress {
        /// The id.
        request_id: String,
    },
    /// The caller went past its `sends_per_minute`.
    #[error("caller send rate exceeded")]
    CallerRateExceeded {
        /// The caller's name.
        caller: String,
        /// Its limit per minute.
        limit: u32,
        /// When the window resets.
        retry_after: Duration,
    },
    /// The send guard refused the send.
    #[error(transparent)]
    Guard(#[from] GuardRefusal),
    /// ITNIO refused the send, or could not be reached, before it could process it.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The ITNIO call failed in a way that may still have sent a code; `lookup` finds it.
    #[error("{error} (outcome unknown)")]
    Uncertain {
        /// What went wrong.
        error: UpstreamError,
        /// How to look the send up.
        lookup: Lookup,
    },
}

impl SendError {
    /// A failed ITNIO call, with the lookup attached when ITNIO may have processed it.
    pub fn from_upstream(error: UpstreamError, lookup: &Lookup) -> Self {
        if error.may_have_been_processed() {
            Self::Uncertain {
                error,
                lookup: lookup.clone(),
            }
        } else {
            Self::Upstream(error)
        }
    }
}

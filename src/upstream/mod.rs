//! The signed REST client for the ITNIO Tech OTP API, and its wire types.
//!
//! - `client.rs` is the one choke point: signing, timeouts, the `-16` retry, logging and turning
//!   every failure into an [`UpstreamError`].
//! - `concurrency.rs`: the cap on calls in flight, shared by every account's client.
//! - `sign.rs`, `status.rs`, `endpoint.rs`, `error.rs`: the pieces every call shares;
//!   `base_url.rs`: the default base URL and the check of a configured one.
//! - `apps.rs`, `templates.rs`, `flows.rs`, `verifications.rs`, `records.rs`: one file per
//!   resource, each with its request/response types and its `impl UpstreamClient` methods.
//! - `lenient.rs`: decoders for the vendor's loose typing (ints as strings, objects as arrays,
//!   nulls everywhere).
//!
//! Every public item is also re-exported here, so both `upstream::App` and `upstream::apps::App`
//! work. These types follow the documented wire format only; the sandbox has its own on purpose.

pub mod apps;
pub mod base_url;
pub mod client;
pub mod concurrency;
pub mod endpoint;
pub mod error;
pub mod flows;
pub mod lenient;
#[cfg(test)]
mod proptests;
pub mod records;
pub mod sign;
pub mod status;
pub mod templates;
pub mod verifications;

use std::fmt;

pub use apps::{App, AppRequest, PeriodLimit};
pub use client::{UpstreamClient, UpstreamConfig};
pub use concurrency::{ConcurrencyConfig, ConcurrencyLimit};
pub use endpoint::Endpoint;
pub use error::{BuildError, UpstreamError};
pub use flows::{Flow, FlowNode, FlowRequest};
pub use records::{CallAttempt, OrderRecordRequest, Outcome, Record, SmsAttempt};
pub use sign::sign;
pub use status::UpstreamStatus;
pub use templates::{Template, TemplateRequest};
pub use verifications::{
    CheckRequest, CheckResult, ConversionRateReport, ConversionReport, ResendRequest, SendRequest,
    Sent,
};

/// `Debug` stand-in for a phone number or a code.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Shows only whether an optional personal value is present.
fn redact_opt<T>(value: &Option<T>) -> Option<Redacted> {
    value.as_ref().map(|_| Redacted)
}

//! Cross-cutting observability, kept out of the services: the per-RPC tower layer (request id,
//! one access-log line, gRPC metrics), the Prometheus recorder and its admin HTTP endpoint, and
//! log setup with URL redaction.
//!
//! ```text
//!  tonic Server ──layer──► rpc::RpcLayer ──► routes (health, reflection, 5 services)
//!                            │  x-request-id in/out, x-itnio-mode out, span per call
//!                            └─ on the response body's end or drop: access line + metrics
//!  upstream/client.rs ──► metrics::upstream_attempt (counts, latency, notes the status for the line)
//!  watch/             ──► metrics::{StreamGauge, PollerGauge, poll}
//!  admin::serve       ──► GET /metrics (Prometheus text)
//! ```

pub mod admin;
pub mod logging;
pub mod metrics;
pub mod rpc;

pub use rpc::{CallerSlot, RpcLayer};

use std::time::Duration;

/// One ITNIO HTTP attempt, seen from the choke point in `upstream/client.rs`: counted and timed,
/// and its business status noted for the current call's access line.
pub(crate) fn upstream_attempt(
    endpoint: &'static str,
    upstream_status: Option<i32>,
    failure: Option<&'static str>,
    duration: Duration,
) {
    metrics::upstream_attempt(endpoint, upstream_status, failure, duration);
    rpc::note_upstream_status(upstream_status);
}

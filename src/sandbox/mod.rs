//! An in-memory, stateful emulator of the ITNIO Tech OTP REST API, served over real HTTP.
//!
//! All 19 documented endpoints answer like the vendor: HTTP 200, the `{"status","reason","data"}`
//! envelope with `status` as a string, MD5-signed headers (`Api-Key`, `Timestamp`, `Sign`),
//! lenient inputs (numbers as strings, `null` as absent, unknown fields ignored) and the
//! documented validation (-22), uniqueness (-20), not-found (-24) and period limits (-27/-28).
//! It shares no types with the REST client; the two meet only at the wire format.
//!
//! ## Time
//! Deliveries and task flows unfold over time and are computed lazily whenever a record is
//! read or a code is checked (only the inbox's flow followers run in the background).
//! Emulated durations (delivery progress, flow `waitingTime`, code expiry) are divided by
//! [`SandboxConfig::speed`];
//! reported timestamps are real wall-clock times (`+08:00`, like the vendor's examples).
//! Period send limits use real time, unscaled.
//!
//! Delivery timeline of one attempt (seconds ÷ speed):
//! - SMS: submitted at 0 (`status` -1, sending), `sendTm` at 2, `doneTm` at 4 with `status` 0
//!   (`reason` "success") or 1 (`reason` "failed").
//! - Call: `submitTime`/`callTime` at 0, ringing at 2; answered at 6 and hung up at 16
//!   (`terminationCode` 0 "Success", 10 s talk, 20 s charged); unanswered calls hang up at 32
//!   (`terminationCode` 100005 "Temporarily Unavailable").
//!
//! ## Test numbers
//! Every `to` starting with `999` is a test number:
//! - its generated code is known: the first `codeLength` characters of `1234567890`
//!   (codeType 1 numeric, 3 alphanumeric, 4 hex) or of `ABCDEFGHIJ` (codeType 2 alpha);
//!   `sendRule` still uses the caller's code;
//! - digits 4–5 script the deliveries: `99900…` everything is delivered, `99901…` every SMS
//!   fails, `99902…` every call is never answered, `99903…` both fail (other digits: delivered).
//!
//! Non-test numbers get random codes and always deliver.
//!
//! ## Task flows
//! A send with a `flowId` runs the flow's nodes in order. Node k fires `waitingTime` seconds
//! (÷ speed) after the previous attempt started, if its trigger holds then: 1 = the previous
//! attempt failed (a node with trigger 1 waits for the previous attempt's final report if it
//! is still pending), 2 = the code is not verified yet. A fired node adds an attempt to the
//! same record on the node's channel (`channelCut` 0) or the previous attempt's channel
//! (`channelCut` 1). The flow ends at the first trigger that does not hold, at a successful
//! check, or once the code has expired.
//!
//! ## Choices where the vendor's docs are silent
//! - Records always carry `sms` and `call` arrays (empty when unused); `sna` sends add no
//!   entries (the vendor's `sna` fields are undocumented). Times not reached yet are `null`.
//! - `verifications.channel` in records and `channel` in verify replies are the channel of the
//!   latest attempt; `verifiedDate` is the first correct check, else the last check, else null.
//! - Record `matched`: 0 verified, 5 expired, 2 only wrong checks so far, 1 while the first
//!   attempt is in flight, otherwise -1.
//! - Verify with an unknown verificationId answers status "0" with `matched` 3 and
//!   `to`/`channel` null.
//! - -24 also for a template of another app, an unknown appId in `/backfillRate`, and a
//!   `/postback/backfill` whose verificationId is unknown or belongs to another app.
//! - Resend keeps app, number, code and sender but starts no flow and carries no orderId.
//!
//! ## Control endpoints (no signature, not counted)
//! - `POST /_sandbox/inject` `{"endpoint":"POST /verification/send","status":"-27","times":1}`
//!   → `{"ok":true}`: the next `times` authenticated requests to that endpoint answer that
//!   status with no data and change nothing.
//! - `POST /_sandbox/inject` `{"endpoint":"GET /flow/list","fault":"reset_mid_body","times":1}`:
//!   the same with a transport fault instead (latency, an HTTP error status, a connection reset
//!   before the status line or mid-body, a truncated, non-JSON, HTML, mislabelled, huge or
//!   trickling body); see `faults` for the list and their parameters. A new injection for an
//!   endpoint replaces the pending one; `times` 0 cancels.
//! - `GET /_sandbox/stats` → `{"total":N,"byEndpoint":{"POST /app/add":3,…},"stored":{…}}`.
//! - `POST /_sandbox/reset` → `{"ok":true}`: forgets everything; ids keep counting up.
//!
//! Endpoints are named `"<METHOD> <documented route template>"`, e.g.
//! `"GET /verification/record/{verificationId}"`, whatever base path they came under.
//!
//! ## Base paths and ids
//! The API answers at bare paths and under [`BASE_PATHS`] (`/otp`, the vendor's, and `/v3/otp`,
//! what the vendor's Java SDK requests from its default base), so any client works unchanged.
//! templateIds and flowIds count up from nine-digit bases (see `state`), so an id never occurs
//! inside a base URL (the SDK drops an id from a URL that already contains its text).
//!
//! ## Inbox
//! Every SMS and call attempt is kept as a message a phone would receive (`inbox`), served as a
//! page, JSON and Server-Sent Events (`inbox_routes`). Flow fallbacks are pushed when they fire
//! by a follower task per flow send (`deliveries`), the one place with background tasks.
//!
//! ## Bounds
//! Verifications (with their records) and inbox messages are purged after a TTL (default twice
//! the longest code expiry) and capped, oldest evicted first (`state::Bounds`).
//!
//! ## Files
//! Imports point down only (`tests/module_graph.rs` checks it): this file routes every endpoint
//! to its handler; the handlers (`apps/routes.rs`, `templates/routes.rs`, `flows/routes.rs`,
//! `verifications/routes.rs`, `records`, `callbacks`, `control`, `inbox_routes`, the `gate`)
//! lock `state`; `state` holds the stored entities, each in its resource's `mod.rs` (`apps`,
//! `templates`, `flows`, `verifications`) next to `inbox`, `limits`, `traffic` and `config`
//! ([`SandboxConfig`]); those build on the leaves (`envelope`, `lenient`, `channel`, `codes`,
//! `clock`, `faults`, `wire`). A resource's `routes.rs` is a child of its `mod.rs`, so it may
//! build and change the entity's private fields without the entity importing its handlers.

mod apps;
mod auth;
mod callbacks;
mod channel;
mod clock;
mod codes;
mod config;
mod control;
mod deliveries;
mod envelope;
mod faults;
mod flows;
mod gate;
mod inbox;
mod inbox_routes;
mod lenient;
mod limits;
mod records;
mod state;
mod templates;
mod traffic;
mod verifications;
mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post, put};

pub use config::{DEFAULT_MAX_INBOX_MESSAGES, DEFAULT_MAX_VERIFICATIONS, SandboxConfig};
pub use faults::{DEFAULT_HUGE_BODY_BYTES, Fault};
pub use gate::BASE_PATHS;
use state::Shared;
pub use state::{FLOW_ID_BASE, TEMPLATE_ID_BASE};
pub use traffic::ENDPOINTS;
use traffic::Injected;

/// A handle on one emulator; clones share its state.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl Sandbox {
    /// A fresh emulator with no apps, templates, flows or verifications. A `speed` that is not
    /// a positive finite number is treated as 1.0.
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// The axum router: all 19 endpoints at bare paths ("/app/add") and under each of
    /// [`BASE_PATHS`] ("/otp/app/add", "/v3/otp/app/add"), plus the control endpoints and the inbox.
    /// With a non-empty `allowed_ips`, serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` ([`Sandbox::serve`] does the same):
    /// a caller whose address is unknown is not allowed.
    pub fn router(&self) -> Router {
        let api = self.api_routes();
        let mut router = Router::new().merge(api.clone());
        for base in BASE_PATHS {
            router = router.nest(base, api.clone());
        }
        router
            .merge(control::routes())
            .merge(inbox_routes::routes())
            .with_state(self.shared.clone())
    }

    /// The 19 endpoints behind the gate, relative to a base path.
    fn api_routes(&self) -> Router<Arc<Shared>> {
        let gate = middleware::from_fn_with_state(self.shared.clone(), gate::gate);
        Router::new()
            .route("/app/add", post(apps::routes::add))
            .route("/app/update/{appId}", put(apps::routes::update))
            .route("/app/details/{appId}", get(apps::routes::details))
            .route("/template/add", post(templates::routes::add))
            .route(
                "/template/update/{templateId}",
                put(templates::routes::update),
            )
            .route(
                "/template/details/{templateId}",
                get(templates::routes::details),
            )
            .route("/template/list", get(templates::routes::list))
            .route("/verification/send", post(verifications::routes::send))
            .route(
                "/verification/sendRule",
                post(verifications::routes::send_rule),
            )
            .route("/verification/resend", post(verifications::routes::resend))
            .route("/verification/verify", post(verifications::routes::verify))
            .route("/verification/record/{verificationId}", get(records::by_id))
            .route("/verification/orderId/record", post(records::by_order_id))
            .route("/flow/add", post(flows::routes::add))
            .route("/flow/update/{flowId}", put(flows::routes::update))
            .route("/flow/details/{flowId}", get(flows::routes::details))
            .route("/flow/list", get(flows::routes::list))
            .route("/backfillRate", post(callbacks::backfill_rate))
            .route("/postback/backfill", post(callbacks::postback))
            .route_layer(gate)
    }

    /// Serves on an already-bound listener until `shutdown` resolves. Shutting down also ends
    /// open inbox streams and flow followers, so the graceful shutdown never waits on them.
    /// Connections are wired (`wire`), so injected faults can reset them.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = self
            .router()
            .layer(middleware::map_request(wire::split_peer))
            .into_make_service_with_connect_info::<wire::Peer>();
        let shared = self.shared.clone();
        axum::serve(wire::WiredListener(listener), service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                shared.close();
            })
            .await
    }

    /// Forgets all data, counters and injections, like `POST /_sandbox/reset`.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Number of API requests received (control endpoints excluded), all endpoints.
    pub fn request_count(&self) -> u64 {
        self.shared.traffic().total()
    }

    /// Number of API requests received for one endpoint, named by its documented route
    /// template, e.g. "GET /verification/record/{verificationId}" or "POST /app/add".
    pub fn request_count_for(&self, endpoint: &str) -> u64 {
        self.shared.traffic().count_for(endpoint)
    }

    /// Makes the next `times` requests to `endpoint` (same naming) answer HTTP 200 with this
    /// business status (e.g. "-27") and no data, after authentication, without changing state.
    /// `times` 0 cancels a pending injection.
    pub fn inject_status(&self, endpoint: &str, status: &str, times: u32) {
        let injected = Injected::Status(status.to_owned());
        self.shared.traffic().inject(endpoint, injected, times);
    }

    /// Makes the next `times` authenticated requests to `endpoint` suffer `fault` (see
    /// `POST /_sandbox/inject`); the connection resets need the sandbox served by [`Sandbox::serve`].
    /// `times` 0 cancels a pending injection.
    pub fn inject_fault(&self, endpoint: &str, fault: Fault, times: u32) {
        let injected = Injected::Fault(fault);
        self.shared.traffic().inject(endpoint, injected, times);
    }
}

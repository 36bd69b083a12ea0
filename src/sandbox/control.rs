//! The unsigned `/_sandbox/` endpoints that let out-of-process tests inject statuses and
//! transport faults, read request counters and clear everything between tests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::faults::{Fault, FaultParams};
use super::state::Shared;
use super::traffic::{ENDPOINTS, Injected};

/// The control routes, to be merged outside the API gate.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/inject", post(inject))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/reset", post(reset))
}

/// `POST /_sandbox/reset`: forgets apps, templates, flows, verifications, the inbox, counters
/// and pending injections. Ids keep counting up.
async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset();
    Json(json!({"ok": true})).into_response()
}

/// `{"endpoint", "status" | "fault" (+ its parameters), "times"}`.
#[derive(Debug, Deserialize)]
struct InjectRequest {
    endpoint: String,
    /// A business status answered in the envelope, e.g. `"-27"`.
    #[serde(default)]
    status: Option<String>,
    /// A transport fault ([`Fault::NAMES`]).
    #[serde(default)]
    fault: Option<String>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default)]
    bytes: Option<u64>,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

impl InjectRequest {
    /// What to inject; an unknown endpoint or fault, a bad parameter, or not exactly one of
    /// `status` and `fault` is an error for the caller.
    fn injected(&self) -> Result<Injected, String> {
        if !ENDPOINTS.contains(&self.endpoint.as_str()) {
            return Err(format!(
                "unknown endpoint {:?}; expected one of {ENDPOINTS:?}",
                self.endpoint
            ));
        }
        let params = FaultParams {
            latency_ms: self.latency_ms,
            http_status: self.http_status,
            bytes: self.bytes,
        };
        match (&self.status, &self.fault) {
            (Some(_), None)
                if self.latency_ms.or(self.bytes).is_some() || self.http_status.is_some() =>
            {
                Err("a status takes no fault parameters".into())
            }
            (Some(status), None) => Ok(Injected::Status(status.clone())),
            (None, Some(fault)) => Fault::parse(fault, params).map(Injected::Fault),
            _ => Err("give exactly one of status and fault".into()),
        }
    }
}

/// `POST /_sandbox/inject`; a request that cannot be honoured is a 400 saying why, so typos show.
async fn inject(State(shared): State<Arc<Shared>>, Json(request): Json<InjectRequest>) -> Response {
    match request.injected() {
        Ok(injected) => {
            shared
                .traffic()
                .inject(&request.endpoint, injected, request.times);
            Json(json!({"ok": true})).into_response()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": error})),
        )
            .into_response(),
    }
}

/// `GET /_sandbox/stats`: request counters, how much is stored (after purging) and how many
/// inbox streams are open.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let stored = {
        let state = shared.state();
        json!({
            "verifications": state.verifications.len(),
            "inboxMessages": state.inbox.len(),
            "liveStreams": state.inbox.subscribers(),
        })
    };
    let traffic = shared.traffic();
    Json(json!({"total": traffic.total(), "byEndpoint": traffic.by_endpoint(), "stored": stored}))
        .into_response()
}

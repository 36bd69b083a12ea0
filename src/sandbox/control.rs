//! The unsigned `/_sandbox/` endpoints that let out-of-process tests inject statuses, read
//! request counters and clear everything between tests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::state::Shared;
use super::traffic::ENDPOINTS;

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

#[derive(Debug, Deserialize)]
struct InjectRequest {
    endpoint: String,
    status: String,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

/// `POST /_sandbox/inject`; an endpoint that is not one of the 19 is a 400, so typos show.
async fn inject(State(shared): State<Arc<Shared>>, Json(request): Json<InjectRequest>) -> Response {
    if !ENDPOINTS.contains(&request.endpoint.as_str()) {
        let error = format!(
            "unknown endpoint {:?}; expected one of {ENDPOINTS:?}",
            request.endpoint
        );
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error": error})),
        )
            .into_response();
    }
    shared
        .traffic()
        .inject(&request.endpoint, &request.status, request.times);
    Json(json!({"ok": true})).into_response()
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

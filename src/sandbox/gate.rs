//! The middleware in front of every API route: count the request, check the caller, and
//! answer an injected status if one is pending. Handlers only see authenticated requests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::envelope::envelope;
use super::state::Shared;
use super::{auth, clock};

/// Runs before every API handler.
pub async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let endpoint = endpoint_of(&request);
    shared.traffic().record(&endpoint);
    if let Err(err) = auth::check(
        &shared.config,
        peer_ip(&request),
        request.headers(),
        clock::now(),
    ) {
        return err.into_response();
    }
    if let Some(status) = shared.traffic().take_injection(&endpoint) {
        return envelope(&status, None);
    }
    next.run(request).await
}

/// `"<METHOD> <route template>"`, the name counters and injections use.
fn endpoint_of(request: &Request) -> String {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    format!("{} {}", request.method(), path)
}

/// The caller's address, known when served with connect info (as [`super::Sandbox::serve`] does).
fn peer_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

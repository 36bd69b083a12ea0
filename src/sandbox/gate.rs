//! The middleware in front of every API route: count the request, check the caller, and
//! answer an injected status or fault if one is pending. Handlers only see authenticated requests.
//! It owns [`BASE_PATHS`], the prefixes it strips to name an endpoint (the router mounts the API
//! under each of them).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::envelope::envelope;
use super::state::Shared;
use super::traffic::Injected;
use super::{auth, clock};

/// The base paths the API answers under besides the bare one: the vendor's (`/otp`) and the
/// one its Java SDK builds from its default base URL (`/v3/otp`).
pub const BASE_PATHS: [&str; 2] = ["/otp", "/v3/otp"];

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
    // Bound first, so the traffic lock is released before any await.
    let injected = shared.traffic().take_injection(&endpoint);
    match injected {
        Some(Injected::Status(status)) => envelope(&status, None),
        Some(Injected::Fault(fault)) => fault.apply(request, next).await,
        None => next.run(request).await,
    }
}

/// `"<METHOD> <route template>"`, the name counters and injections use, whatever base path
/// (bare, `/otp`, `/v3/otp`) the request came under.
fn endpoint_of(request: &Request) -> String {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    format!("{} {}", request.method(), without_base(path))
}

/// The route relative to the base path.
fn without_base(path: &str) -> &str {
    BASE_PATHS
        .iter()
        .find_map(|base| path.strip_prefix(base).filter(|rest| rest.starts_with('/')))
        .unwrap_or(path)
}

/// The caller's address, known when served with connect info (as [`super::Sandbox::serve`] does).
fn peer_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_stripped() {
        assert_eq!(without_base("/otp/app/add"), "/app/add");
        assert_eq!(without_base("/v3/otp/flow/list"), "/flow/list");
        assert_eq!(without_base("/app/add"), "/app/add");
        assert_eq!(without_base("/otpx/app/add"), "/otpx/app/add");
    }
}

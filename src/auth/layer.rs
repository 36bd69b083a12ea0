//! The tower layer that authenticates every call before tonic routes it to a service.
//!
//! It works on the HTTP request because only there is the method's path visible (a tonic
//! interceptor never sees it). A refused call is answered right here with its gRPC status, so
//! the service — and the upstream — never hear of it.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{
    Status,
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;
use tower_service::Service;
use x509_cert::{Certificate, der::Decode};

use super::{
    Access,
    policy::{Credentials, normalize_subject},
};
use crate::{caller::Caller, telemetry::CallerSlot};

/// Services anyone may call: probes and tooling need them, and they reveal nothing private.
const OPEN_SERVICES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Wraps the server's routes in [`AuthService`].
#[derive(Clone)]
pub struct AuthLayer {
    access: Access,
}

impl AuthLayer {
    /// Lets through what `access` allows.
    pub fn new(access: Access) -> Self {
        Self { access }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            access: self.access.clone(),
        }
    }
}

/// Authenticates each request, attaches its [`Caller`], and refuses what the policy forbids.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    access: Access,
}

type Request = http::Request<Body>;
type Response = http::Response<Body>;

impl<S> Service<Request> for AuthService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone is not ready; the readied one serves this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = request.uri().path();
        if OPEN_SERVICES.iter().any(|open| path.starts_with(open)) {
            return Box::pin(inner.call(request));
        }
        let caller = match &self.access {
            Access::Open => Caller::anonymous(),
            Access::Callers(policy) => {
                let method = path.trim_start_matches('/');
                match policy.get().check(&credentials(&request), method) {
                    Ok(caller) => caller,
                    Err(refused) => {
                        tracing::info!(method, reason = %refused, "call refused");
                        let status = Status::from(refused);
                        return Box::pin(std::future::ready(Ok(status.into_http())));
                    }
                }
            }
        };
        // The slot records the caller on the call's `rpc` span too, so every line of the call
        // (the handler's, and its spawned tasks') carries caller and account.
        if let Some(slot) = request.extensions().get::<CallerSlot>() {
            slot.fill(&caller);
        }
        request.extensions_mut().insert(caller);
        Box::pin(inner.call(request))
    }
}

/// The bearer token and the verified client certificate's subject, as far as present.
fn credentials(request: &Request) -> Credentials<'_> {
    Credentials {
        authorization: request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.to_str().unwrap_or("")),
        client_subject: client_subject(request),
    }
}

/// The subject of the client certificate rustls verified for this connection (mTLS only).
fn client_subject(request: &Request) -> Option<String> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    let leaf = Certificate::from_der(certs.first()?).ok()?;
    normalize_subject(&leaf.tbs_certificate.subject.to_string()).ok()
}

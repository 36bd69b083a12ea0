//! Request messages over `GRPC_MAX_MESSAGE_BYTES` answer RESOURCE_EXHAUSTED, the gRPC convention.
//!
//! tonic checks each message's length prefix against the service's `max_decoding_message_size`
//! before reading the message (so an oversized one is never buffered) but answers OUT_OF_RANGE.
//! This layer, the innermost, turns exactly that answer into the status [`LimitError`] maps to
//! (in `error.rs`), so the telemetry layer and the caller both see RESOURCE_EXHAUSTED with an
//! `ErrorInfo`.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{Code, Status, body::Body};
use tower_layer::Layer;
use tower_service::Service;

use crate::limits::LimitError;

/// How tonic's decoder words a message over the size limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

/// Wraps the services in [`MessageSizeService`].
#[derive(Clone)]
pub struct MessageSizeLayer {
    limit: usize,
}

impl MessageSizeLayer {
    /// Reports `limit` (the services' `max_decoding_message_size`) in the refusals.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSizeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSizeService {
            inner,
            limit: self.limit,
        }
    }
}

/// Rewrites tonic's "message too large" refusal into RESOURCE_EXHAUSTED.
#[derive(Clone)]
pub struct MessageSizeService<S> {
    inner: S,
    limit: usize,
}

impl<S> Service<http::Request<Body>> for MessageSizeService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        let limit = self.limit;
        Box::pin(async move {
            let response = response.await?;
            if is_too_large(&response) {
                let status = Status::from(LimitError::MessageTooLarge { limit });
                return Ok(status.into_http());
            }
            Ok(response)
        })
    }
}

/// Whether `response` is tonic's trailers-only refusal of an oversized request message.
fn is_too_large(response: &http::Response<Body>) -> bool {
    Status::from_header_map(response.headers()).is_some_and(|status| {
        status.code() == Code::OutOfRange && status.message().starts_with(TONIC_TOO_LARGE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: Status) -> http::Response<Body> {
        status.into_http()
    }

    #[test]
    fn only_tonics_size_refusal_is_rewritten() {
        let tonic = Status::out_of_range(format!(
            "{TONIC_TOO_LARGE}: found 2000000 bytes, the limit is: 1048576 bytes"
        ));
        assert!(is_too_large(&response(tonic)));
        // ITNIO's "out of time range" is OUT_OF_RANGE too, with another message.
        assert!(!is_too_large(&response(Status::out_of_range(
            "ITNIO refused the call"
        ))));
        assert!(!is_too_large(&response(Status::internal(TONIC_TOO_LARGE))));
        assert!(!is_too_large(&http::Response::new(Body::empty())));
    }
}

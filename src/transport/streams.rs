//! The tower layer that tells each connection when it carries a stream.
//!
//! A request marks its connection (found by remote address in [`Connections`]) as past its
//! handshake and busy; the connection counts as busy until the response body is dropped, which
//! for a server stream (WatchRecord) is when the stream ends. A connection with no busy stream
//! starts its idle clock.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;
use tower_service::Service;

use super::connection::{Connections, StreamGuard};

/// Wraps the server's routes in [`StreamService`].
#[derive(Clone)]
pub struct StreamLayer {
    connections: Connections,
}

impl StreamLayer {
    /// Reports streams to the connections of `connections`.
    pub fn new(connections: Connections) -> Self {
        Self { connections }
    }
}

impl<S> Layer<S> for StreamLayer {
    type Service = StreamService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamService {
            inner,
            connections: self.connections.clone(),
        }
    }
}

/// Counts each request as a stream of its connection until its response body is gone.
#[derive(Clone)]
pub struct StreamService<S> {
    inner: S,
    connections: Connections,
}

impl<S> Service<http::Request<Body>> for StreamService<S>
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
        let guard = remote_addr(&request)
            .and_then(|remote| self.connections.get(remote))
            .map(|connection| connection.stream_started());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match guard {
                Some(guard) => response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _guard: guard,
                    })
                }),
                None => response,
            })
        })
    }
}

/// The peer of the connection `request` came on, as tonic records it (plaintext or TLS).
fn remote_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// A response body that keeps its stream counted until it is dropped.
struct Tracked {
    body: Body,
    _guard: StreamGuard,
}

impl HttpBody for Tracked {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

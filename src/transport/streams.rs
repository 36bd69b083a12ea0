//! The tower layer that tells each connection when it carries a stream, and bounds how long a
//! stream may take to send its request.
//!
//! A request marks its connection (found by remote address in [`Connections`]) as past its
//! handshake and busy; the connection counts as busy until the response body is dropped, which
//! for a server stream (WatchRecord) is when the stream ends. A connection with no busy stream
//! starts its idle clock. Every request of this API is one message, so its body must end within
//! `GRPC_REQUEST_BODY_TIMEOUT` of its headers: a stream that sends headers and then nothing
//! fails with DEADLINE_EXCEEDED instead of being held for as long as the client likes.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::{
    body::Body,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tower_layer::Layer;
use tower_service::Service;

use super::connection::{Connections, StreamGuard};
use crate::limits::LimitError;

/// Wraps the server's routes in [`StreamService`].
#[derive(Clone)]
pub struct StreamLayer {
    connections: Connections,
    body_timeout: Duration,
}

impl StreamLayer {
    /// Reports streams to the connections of `connections`; a request body must end within
    /// `body_timeout` of its headers.
    pub fn new(connections: Connections, body_timeout: Duration) -> Self {
        Self {
            connections,
            body_timeout,
        }
    }
}

impl<S> Layer<S> for StreamLayer {
    type Service = StreamService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamService {
            inner,
            connections: self.connections.clone(),
            body_timeout: self.body_timeout,
        }
    }
}

/// Counts each request as a stream of its connection until its response body is gone.
#[derive(Clone)]
pub struct StreamService<S> {
    inner: S,
    connections: Connections,
    body_timeout: Duration,
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
        let timeout = self.body_timeout;
        let request = request.map(|body| {
            Body::new(Deadlined {
                body,
                timeout,
                deadline: Box::pin(tokio::time::sleep(timeout)),
                ended: false,
            })
        });
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

/// A request body that fails once its deadline passes before it has ended.
struct Deadlined {
    body: Body,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// The body ended (or failed) in time: the deadline no longer applies.
    ended: bool,
}

impl HttpBody for Deadlined {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if this.ended {
            return frame;
        }
        match frame {
            Poll::Ready(Some(Ok(frame))) => {
                this.ended = this.body.is_end_stream();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.ended = true;
                Poll::Ready(other)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.ended = true;
                    let timeout = this.timeout;
                    let status = tonic::Status::from(LimitError::RequestBodyTimeout { timeout });
                    Poll::Ready(Some(Err(status)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    //! Equivalent mutant (excluded in `.cargo/mutants.toml`): `StreamService::poll_ready` ->
    //! `Poll::from(Ok(()))`. The layer wraps tonic's router, which is always ready (as for
    //! `AuthService`); the same holds for `MessageSizeService::poll_ready`.

    use super::*;

    use crate::transport::TransportConfig;

    /// Bodies wrapped in `Body::new` are replaced by `Body::empty()` when they report their end
    /// (tonic drops the wrapper, and with it a [`Tracked`] body's stream guard), and hyper sets
    /// END_STREAM on the headers when the body it is given reports its end: both wrappers must
    /// answer exactly as the body inside them.
    #[tokio::test(start_paused = true)]
    async fn the_wrappers_report_the_end_of_the_body_inside() {
        let remote = SocketAddr::from(([127, 0, 0, 1], 1));
        let connections = Connections::new(&TransportConfig::default());
        let _socket = connections.admit((), remote).expect("room");
        let tracked = |body| Tracked {
            body,
            _guard: connections
                .get(remote)
                .expect("registered")
                .stream_started(),
        };
        let deadlined = |body| Deadlined {
            body,
            timeout: Duration::from_secs(1),
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            ended: false,
        };
        let message = || Body::new(String::from("a message"));
        assert!(tracked(Body::empty()).is_end_stream());
        assert!(!tracked(message()).is_end_stream());
        assert!(deadlined(Body::empty()).is_end_stream());
        assert!(!deadlined(message()).is_end_stream());
        // hyper sends a content-length for a body of known size.
        assert_eq!(tracked(message()).size_hint().exact(), Some(9));
        assert_eq!(deadlined(message()).size_hint().exact(), Some(9));
    }

    #[test]
    fn a_request_is_traced_to_its_connection_by_the_peer_tonic_records() {
        let remote = SocketAddr::from(([192, 0, 2, 1], 4321));
        let mut request = http::Request::new(());
        assert_eq!(remote_addr(&request), None);
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(remote),
        });
        assert_eq!(remote_addr(&request), Some(remote));
    }
}

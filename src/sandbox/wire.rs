//! Raw control of the sandbox's TCP connections, for the faults that break a connection rather
//! than answer on it (a reset before the status line, a reset in the middle of the body).
//!
//! [`Sandbox::serve`](super::Sandbox::serve) accepts through a [`WiredListener`]: every
//! connection is a [`WiredIo`] sharing a [`Wire`] with the requests it carries (as an extension).
//! A handler that calls [`Wire::cut`] makes every later read and write on that connection fail,
//! so hyper gives up on it before writing another byte, and when the socket is dropped it is
//! closed with `SO_LINGER` 0: the peer gets a TCP RST, not a polite FIN.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A switch shared by one connection and its requests; once cut, the connection is reset.
#[derive(Debug, Clone, Default)]
pub struct Wire(Arc<AtomicBool>);

impl Wire {
    /// Breaks the connection: nothing more is read or written, and it closes with a reset.
    pub fn cut(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cut(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Accepts TCP connections as [`WiredIo`]s.
pub struct WiredListener(pub TcpListener);

impl Listener for WiredListener {
    type Io = WiredIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop, which retries (and backs off on) accept errors.
        let (stream, addr) = Listener::accept(&mut self.0).await;
        (WiredIo::new(stream), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that fails every operation once its [`Wire`] is cut and is then closed with a
/// reset.
#[derive(Debug)]
pub struct WiredIo {
    stream: TcpStream,
    wire: Wire,
}

impl WiredIo {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            wire: Wire::default(),
        }
    }

    /// `Err` once the wire is cut.
    fn check(&self) -> io::Result<()> {
        if self.wire.is_cut() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection cut by an injected fault",
            ));
        }
        Ok(())
    }
}

impl Drop for WiredIo {
    fn drop(&mut self) {
        if self.wire.is_cut() {
            // A zero linger makes close() send RST and discard unsent data; it never blocks
            // (the deprecation warns about a non-zero linger blocking the thread on drop).
            #[allow(deprecated)]
            let _ = self.stream.set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for WiredIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WiredIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The connect info of a wired connection: the peer's address and the connection's wire.
#[derive(Debug, Clone)]
pub struct Peer {
    addr: SocketAddr,
    wire: Wire,
}

impl Connected<IncomingStream<'_, WiredListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, WiredListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            wire: stream.io().wire.clone(),
        }
    }
}

/// Splits a [`Peer`] into what handlers read: `ConnectInfo<SocketAddr>` (as when the router is
/// served with plain socket-address connect info) and the [`Wire`].
pub async fn split_peer(mut request: Request) -> Request {
    if let Some(ConnectInfo(peer)) = request.extensions_mut().remove::<ConnectInfo<Peer>>() {
        request.extensions_mut().insert(ConnectInfo(peer.addr));
        request.extensions_mut().insert(peer.wire);
    }
    request
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Equivalent mutant (excluded in `.cargo/mutants.toml`): `WiredIo::is_write_vectored` ->
    //! true. A `WiredIo` only ever wraps a `TcpStream`, which always answers true.

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connected pair: our wired end and the peer's plain end.
    async fn pair() -> (WiredIo, TcpStream) {
        let mut listener = WiredListener(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        let (peer, (io, _)) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (io, peer.unwrap())
    }

    #[tokio::test]
    async fn an_intact_wire_passes_everything_through() {
        let (mut io, mut peer) = pair().await;
        // As the socket: hyper then writes a response's buffers with one vectored write.
        assert!(io.is_write_vectored());
        io.write_all(b"ping").await.unwrap();
        io.flush().await.unwrap();
        let mut buf = [0; 4];
        peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        peer.write_all(b"pong").await.unwrap();
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        io.shutdown().await.unwrap();
        assert_eq!(peer.read(&mut buf).await.unwrap(), 0, "a clean FIN");
    }

    #[tokio::test]
    async fn a_cut_wire_fails_every_operation_and_resets_the_peer() {
        let (mut io, mut peer) = pair().await;
        let wire = io.wire.clone();
        assert!(!wire.is_cut());
        wire.cut();
        assert!(wire.is_cut());
        let reset = |e: io::Error| assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        reset(io.write(b"x").await.unwrap_err());
        reset(io.flush().await.unwrap_err());
        reset(io.shutdown().await.unwrap_err());
        let mut buf = [0; 1];
        reset(io.read(&mut buf).await.unwrap_err());
        let vectored = [io::IoSlice::new(b"x")];
        reset(io.write_vectored(&vectored).await.unwrap_err());
        drop(io);
        let error = peer.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "RST, not FIN");
    }
}

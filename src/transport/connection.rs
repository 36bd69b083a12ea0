//! Accepted gRPC connections, each counted against `GRPC_MAX_CONNECTIONS` and watched for the
//! handshake and idle timeouts.
//!
//! [`accept`] refuses a connection beyond the cap at once (accepted and closed before any byte
//! is read: no TLS, no HTTP/2 state), so a flood costs one `accept` per attempt and never holds
//! up the connections already served. Each admitted socket is a [`Guarded`] stream: until the
//! first request headers arrive it must finish TLS and the HTTP/2 preface within the handshake
//! timeout, and while it carries no stream it may stay idle for the idle timeout; past either,
//! its next read fails and hyper drops the connection. The [`Connections`] registry lets the
//! stream layer (see [`super::streams`]) find the state of the connection a request came on, by
//! the remote address tonic puts in every request.

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures_util::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tonic::transport::server::Connected;

use super::TransportConfig;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again: without it
/// the accept loop spins at full CPU until a descriptor is free.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The open connections of one listener, by remote address, and the cap on how many there are.
#[derive(Clone)]
pub struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    permits: Arc<Semaphore>,
    open: Mutex<HashMap<SocketAddr, Arc<ConnectionState>>>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
}

impl Connections {
    /// Open connections admitted under `config`'s cap and timeouts.
    pub fn new(config: &TransportConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(config.max_connections)),
                open: Mutex::new(HashMap::new()),
                handshake_timeout: config.handshake_timeout,
                idle_timeout: config.idle_timeout,
            }),
        }
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// The state of the open connection from `remote`, if any.
    pub(super) fn get(&self, remote: SocketAddr) -> Option<Arc<ConnectionState>> {
        self.lock().get(&remote).cloned()
    }

    /// Admits `tcp` if a connection slot is free; `None` means it must be refused.
    pub fn admit<IO>(&self, io: IO, remote: SocketAddr) -> Option<Guarded<IO>> {
        let permit = Arc::clone(&self.shared.permits).try_acquire_owned().ok()?;
        let state = Arc::new(ConnectionState::new(Instant::now()));
        self.lock().insert(remote, Arc::clone(&state));
        let first = state.deadline(
            self.shared.handshake_timeout,
            self.shared.idle_timeout,
            None,
        );
        Some(Guarded {
            io,
            state,
            timer: Box::pin(tokio::time::sleep_until(first.unwrap_or_else(Instant::now))),
            connections: self.clone(),
            remote,
            _permit: permit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<ConnectionState>>> {
        // Single inserts and removes: a panic elsewhere cannot leave the map half-changed.
        self.shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts plaintext connections on `listener` (TCP_NODELAY on: tonic's `Server::tcp_nodelay`
/// does not reach a listener bound by the caller, and with Nagle on the first reply of each
/// connection waits ~40 ms), admitting each one through `connections` and closing at once those
/// beyond the cap.
pub fn accept(
    listener: TcpListener,
    connections: Connections,
) -> impl Stream<Item = io::Result<Guarded<TcpStream>>> + Send + 'static {
    futures_util::stream::unfold(
        (listener, connections),
        |(listener, connections)| async move {
            let guarded = admit_next(&listener, &connections).await;
            Some((Ok(guarded), (listener, connections)))
        },
    )
}

/// Waits for the next connection there is room for; refused ones are closed on the spot.
pub async fn admit_next(listener: &TcpListener, connections: &Connections) -> Guarded<TcpStream> {
    loop {
        match listener.accept().await {
            Ok((tcp, remote)) => {
                if let Some(guarded) = connections.admit(tcp, remote) {
                    // Best effort: a socket that refuses the option still works, only slower.
                    let _ = guarded.io.set_nodelay(true);
                    return guarded;
                }
                tracing::debug!(%remote, "connection refused: GRPC_MAX_CONNECTIONS reached");
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// What the stream layer and the socket know about one connection.
pub(super) struct ConnectionState {
    inner: Mutex<Activity>,
}

struct Activity {
    accepted: Instant,
    /// Whether request headers have arrived: the handshake is over.
    handshaken: bool,
    /// Streams in progress.
    streams: usize,
    /// When the last stream ended (or the handshake, if none ended yet).
    idle_since: Instant,
    /// The connection's task, woken when its last stream ends so it starts the idle clock.
    waker: Option<Waker>,
}

impl ConnectionState {
    fn new(now: Instant) -> Self {
        Self {
            inner: Mutex::new(Activity {
                accepted: now,
                handshaken: false,
                streams: 0,
                idle_since: now,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Activity> {
        // Plain counters: still consistent after a panic elsewhere.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed if nothing happens: the handshake deadline before the
    /// first request, the idle deadline without streams, none while a stream is open. `waker`,
    /// the connection's task, is remembered to be woken when the last stream ends.
    fn deadline(
        &self,
        handshake_timeout: Duration,
        idle_timeout: Duration,
        waker: Option<&Waker>,
    ) -> Option<Instant> {
        let mut activity = self.lock();
        if let Some(waker) = waker {
            match &activity.waker {
                Some(known) if known.will_wake(waker) => {}
                _ => activity.waker = Some(waker.clone()),
            }
        }
        if !activity.handshaken {
            Some(activity.accepted + handshake_timeout)
        } else if activity.streams == 0 {
            Some(activity.idle_since + idle_timeout)
        } else {
            None
        }
    }

    /// A stream started: the handshake is over and the connection is busy until it ends.
    pub(super) fn stream_started(self: &Arc<Self>) -> StreamGuard {
        let mut activity = self.lock();
        if !activity.handshaken {
            activity.handshaken = true;
            activity.idle_since = Instant::now();
        }
        activity.streams += 1;
        StreamGuard {
            state: Arc::clone(self),
        }
    }
}

/// Counts one stream as in progress on its connection until dropped.
pub(super) struct StreamGuard {
    state: Arc<ConnectionState>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut activity = self.state.lock();
        activity.streams = activity.streams.saturating_sub(1);
        if activity.streams == 0 {
            activity.idle_since = Instant::now();
            // The connection's task may be parked on a read with no deadline armed.
            if let Some(waker) = activity.waker.take() {
                waker.wake();
            }
        }
    }
}

/// An admitted socket: holds a connection slot until dropped and fails its reads and writes once
/// its handshake or idle deadline has passed.
pub struct Guarded<IO> {
    io: IO,
    state: Arc<ConnectionState>,
    timer: Pin<Box<Sleep>>,
    connections: Connections,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Guarded<IO> {
    /// The wrapped socket.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Whether the connection is past its deadline; otherwise arms the timer to wake this task
    /// at the deadline (and remembers the task for the end of the last stream).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let shared = &self.connections.shared;
        let Some(deadline) = self.state.deadline(
            shared.handshake_timeout,
            shared.idle_timeout,
            Some(cx.waker()),
        ) else {
            return false;
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    fn timed_out(&self) -> io::Error {
        let what = if self.state.lock().handshaken {
            "connection idle for GRPC_IDLE_TIMEOUT"
        } else {
            "no request within GRPC_HANDSHAKE_TIMEOUT"
        };
        tracing::debug!(remote = %self.remote, "closing connection: {what}");
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<IO> Drop for Guarded<IO> {
    fn drop(&mut self) {
        let mut open = self.connections.lock();
        if open
            .get(&self.remote)
            .is_some_and(|state| Arc::ptr_eq(state, &self.state))
        {
            open.remove(&self.remote);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(this.timed_out()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(this.timed_out()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(this.timed_out()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Requests keep the connection information of the socket itself (remote address, and for TLS
/// the peer certificates), so nothing downstream sees the wrapper.
impl<IO: Connected> Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    //! Equivalent mutant (excluded in `.cargo/mutants.toml`): `known.will_wake(waker)` -> false
    //! in [`ConnectionState::deadline`] stores a clone of the same task's waker on every poll
    //! instead of keeping the equal one; the same task is woken either way.

    use super::*;

    const HANDSHAKE: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn connections(max_connections: usize) -> Connections {
        Connections::new(&TransportConfig {
            max_connections,
            handshake_timeout: HANDSHAKE,
            idle_timeout: IDLE,
            ..TransportConfig::default()
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A waker that raises the returned flag when woken.
    fn flag_waker() -> (Waker, Arc<std::sync::atomic::AtomicBool>) {
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (Waker::from(Arc::new(Flag(Arc::clone(&woken)))), woken)
    }

    #[tokio::test(start_paused = true)]
    async fn connections_beyond_the_cap_are_refused_until_one_closes() {
        let connections = connections(2);
        let first = connections.admit((), addr(1)).expect("room");
        let _second = connections.admit((), addr(2)).expect("room");
        assert!(connections.admit((), addr(3)).is_none(), "over the cap");
        assert_eq!(connections.open(), 2);
        drop(first);
        assert_eq!(connections.open(), 1);
        assert!(connections.get(addr(1)).is_none());
        assert!(connections.admit((), addr(3)).is_some(), "a freed slot");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_does_not_unregister_its_successor_from_the_same_address() {
        let connections = connections(2);
        let old = connections.admit((), addr(1)).expect("room");
        let new = connections.admit((), addr(1)).expect("room");
        drop(old);
        let state = connections
            .get(addr(1))
            .expect("the new one stays registered");
        assert!(Arc::ptr_eq(&state, &new.state));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_the_handshake_then_none_while_busy_then_idle() {
        let connections = connections(1);
        let guarded = connections.admit((), addr(1)).expect("room");
        let accepted = Instant::now();
        let state = Arc::clone(&guarded.state);
        let deadline = || state.deadline(HANDSHAKE, IDLE, None);
        assert_eq!(deadline(), Some(accepted + HANDSHAKE));
        tokio::time::advance(Duration::from_secs(3)).await;
        let first = state.stream_started();
        let second = state.stream_started();
        assert_eq!(deadline(), None, "busy");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(first);
        assert_eq!(deadline(), None, "still one stream");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(second);
        assert_eq!(deadline(), Some(Instant::now() + IDLE));
        // A new stream after an idle spell does not count as a handshake again.
        tokio::time::advance(Duration::from_secs(7)).await;
        let third = state.stream_started();
        drop(third);
        assert_eq!(deadline(), Some(Instant::now() + IDLE));
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_last_stream_wakes_the_connection() {
        let connections = connections(1);
        let guarded = connections.admit((), addr(1)).expect("room");
        let stream = guarded.state.stream_started();
        let (waker, woken) = flag_waker();
        assert_eq!(guarded.state.deadline(HANDSHAKE, IDLE, Some(&waker)), None);
        drop(stream);
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_fail_once_the_deadline_passes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let connections = connections(1);
        let (socket, mut peer) = tokio::io::duplex(64);
        let mut guarded = connections.admit(socket, addr(1)).expect("room");
        peer.write_all(b"hi").await.expect("write");
        let mut buf = [0_u8; 2];
        guarded.read_exact(&mut buf).await.expect("in time");
        tokio::time::advance(HANDSHAKE).await;
        let read = guarded
            .read(&mut buf)
            .await
            .expect_err("past the handshake deadline");
        assert_eq!(read.kind(), io::ErrorKind::TimedOut);
        let write = guarded.write(b"x").await.expect_err("writes too");
        assert_eq!(write.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_last_stream_wakes_the_newest_waker() {
        // A task's waker may change between polls (a task moved to another worker): the one
        // woken must be the last one seen, or the connection never arms its idle timer.
        let connections = connections(1);
        let guarded = connections.admit((), addr(1)).expect("room");
        let stream = guarded.state.stream_started();
        let (old, old_woken) = flag_waker();
        let (new, new_woken) = flag_waker();
        assert_eq!(guarded.state.deadline(HANDSHAKE, IDLE, Some(&old)), None);
        assert_eq!(guarded.state.deadline(HANDSHAKE, IDLE, Some(&new)), None);
        drop(stream);
        assert!(new_woken.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!old_woken.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_vectored_exactly_when_the_socket_supports_it() {
        // hyper queues a frame's buffers for one vectored write only if the socket says it can
        // take them; otherwise it copies them into one buffer first.
        struct Plain;
        impl AsyncWrite for Plain {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Poll::Ready(Ok(buf.len()))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let connections = connections(2);
        let (socket, _peer) = tokio::io::duplex(64);
        let vectored = connections.admit(socket, addr(1)).expect("room");
        assert!(vectored.is_write_vectored());
        let plain = connections.admit(Plain, addr(2)).expect("room");
        assert!(!plain.is_write_vectored());
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_first_request_the_idle_deadline_replaces_the_handshake_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let connections = connections(1);
        let (socket, mut peer) = tokio::io::duplex(64);
        let mut guarded = connections.admit(socket, addr(1)).expect("room");
        let mut buf = [0_u8; 2];
        peer.write_all(b"hi").await.expect("write");
        // The read arms the timer for the handshake deadline.
        guarded.read_exact(&mut buf).await.expect("in time");
        // A request came and went: the connection is idle from now, for up to IDLE.
        drop(guarded.state.stream_started());
        tokio::time::advance(HANDSHAKE * 2).await;
        peer.write_all(b"hi").await.expect("write");
        guarded
            .read_exact(&mut buf)
            .await
            .expect("past the handshake deadline, within the idle one");
        tokio::time::advance(IDLE).await;
        let read = guarded.read(&mut buf).await.expect_err("idle too long");
        assert_eq!(read.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn flush_and_shutdown_reach_the_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A buffering socket: only a flush passes the bytes on, only a shutdown ends the stream.
        let connections = connections(1);
        let (socket, mut peer) = tokio::io::duplex(64);
        let buffered = tokio::io::BufWriter::new(socket);
        let mut guarded = connections.admit(buffered, addr(1)).expect("room");
        guarded.write_all(b"hi").await.expect("write");
        guarded.flush().await.expect("flush");
        let mut buf = [0_u8; 2];
        tokio::time::timeout(Duration::from_secs(1), peer.read_exact(&mut buf))
            .await
            .expect("flushed to the peer")
            .expect("read");
        guarded.shutdown().await.expect("shutdown");
        let read = tokio::time::timeout(Duration::from_secs(1), peer.read(&mut buf))
            .await
            .expect("the peer sees the end")
            .expect("read");
        assert_eq!(read, 0);
    }
}

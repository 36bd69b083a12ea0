//! A fault-injecting HTTP/1.1 proxy between the service and the sandbox, for the faults the
//! sandbox cannot make itself: a reply slower than the deadline, a connection reset before the
//! status line or in the middle of the body, a gateway's 503 and a malformed reply.
//!
//! The proxy counts every request that reaches it per `"METHOD /path"`: that is the upstream's
//! view, so "ITNIO was called exactly once" is asserted on it.

#![allow(dead_code)]
#![allow(
    clippy::disallowed_methods,
    reason = "test harness: plain tasks for the proxy"
)]

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use itnio_otp_grpc::sandbox::Sandbox;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A sandbox (time sped up) on port 0 and a fault proxy in front of it.
pub async fn sandbox_behind_proxy() -> (Sandbox, FaultProxy) {
    let config = crate::common::sandbox_config();
    let (sandbox, addr, _) = crate::common::serve_sandbox(config, std::future::pending()).await;
    (sandbox, FaultProxy::start(format!("http://{addr}")).await)
}

/// The send endpoint, as the proxy counts it.
pub const SEND: &str = "POST /verification/send";

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards, then holds the reply back this long.
    Slow(Duration),
    /// Forwards, then resets the connection before the status line.
    ResetBeforeStatus,
    /// Forwards, sends the status line, headers and half the body, then resets.
    ResetMidBody,
    /// Answers HTTP 503 itself, as a gateway would.
    ServiceUnavailable,
    /// Forwards, then answers 200 with a body that is not JSON.
    Malformed,
}

impl Fault {
    /// Every fault the issue lists.
    pub const ALL: [Fault; 5] = [
        Fault::Slow(Duration::from_millis(1500)),
        Fault::ResetBeforeStatus,
        Fault::ResetMidBody,
        Fault::ServiceUnavailable,
        Fault::Malformed,
    ];

    /// Whether the sandbox behind the proxy saw (and processed) the request.
    pub fn forwards(self) -> bool {
        self != Fault::ServiceUnavailable
    }
}

#[derive(Default)]
struct Shared {
    counts: HashMap<String, u64>,
    faults: HashMap<String, VecDeque<Fault>>,
}

/// A running proxy; it stops with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl FaultProxy {
    /// Proxies to `upstream` (e.g. `http://127.0.0.1:1234`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let client = reqwest::Client::new();
        let proxy = Self { addr, shared };
        let accepting = proxy.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (proxy, client, upstream) =
                    (accepting.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move { proxy.serve(stream, client, upstream).await });
            }
        });
        proxy
    }

    /// The base URL the service should call.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to the next request to `endpoint` (`"POST /verification/send"`).
    pub fn inject(&self, endpoint: &str, fault: Fault) {
        let mut shared = self.shared.lock().expect("lock");
        shared
            .faults
            .entry(endpoint.to_owned())
            .or_default()
            .push_back(fault);
    }

    /// Requests that reached the proxy for `endpoint`.
    pub fn count(&self, endpoint: &str) -> u64 {
        let shared = self.shared.lock().expect("lock");
        shared.counts.get(endpoint).copied().unwrap_or(0)
    }

    /// Waits (bounded) until `endpoint` has seen `n` requests.
    pub async fn wait_for(&self, endpoint: &str, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.count(endpoint) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{endpoint} never reached {n} requests"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn serve(self, mut stream: TcpStream, client: reqwest::Client, upstream: String) {
        let mut buffer = Vec::new();
        while let Some(request) = read_request(&mut stream, &mut buffer).await {
            let endpoint = format!("{} {}", request.method, request.path);
            let fault = {
                let mut shared = self.shared.lock().expect("lock");
                *shared.counts.entry(endpoint.clone()).or_default() += 1;
                shared
                    .faults
                    .get_mut(&endpoint)
                    .and_then(VecDeque::pop_front)
            };
            if fault == Some(Fault::ServiceUnavailable) {
                let reply = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
                if stream.write_all(reply).await.is_err() {
                    return;
                }
                continue;
            }
            let (status, body) = forward(&client, &upstream, &request).await;
            let head = |length: usize| {
                format!(
                    "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
                )
            };
            match fault {
                None => {
                    let mut reply = head(body.len()).into_bytes();
                    reply.extend_from_slice(&body);
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
                Some(Fault::Slow(delay)) => {
                    tokio::time::sleep(delay).await;
                    let mut reply = head(body.len()).into_bytes();
                    reply.extend_from_slice(&body);
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
                Some(Fault::ResetBeforeStatus) => return reset(stream),
                Some(Fault::ResetMidBody) => {
                    let mut reply = head(body.len()).into_bytes();
                    reply.extend_from_slice(&body[..body.len() / 2]);
                    let _ = stream.write_all(&reply).await;
                    let _ = stream.flush().await;
                    return reset(stream);
                }
                Some(Fault::Malformed) => {
                    let garbage = b"{\"status\":\"0\",\"data\":{\"verificationId\":";
                    let mut reply = head(garbage.len()).into_bytes();
                    reply.extend_from_slice(garbage);
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
                Some(Fault::ServiceUnavailable) => unreachable!("answered above"),
            }
        }
    }
}

/// Drops the connection with an RST rather than a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

struct HttpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one request (head and `content-length` body); `None` when the client closed.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<HttpRequest> {
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    request: &HttpRequest,
) -> (u16, Vec<u8>) {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("method");
    let mut forwarded = client
        .request(method, format!("{upstream}{}", request.path))
        .body(request.body.clone());
    for (name, value) in &request.headers {
        if !matches!(name.as_str(), "host" | "connection" | "content-length") {
            forwarded = forwarded.header(name, value);
        }
    }
    let response = forwarded.send().await.expect("the sandbox answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

//! The sandbox's transport faults as a raw HTTP/1.1 client sees them on the socket: injected
//! through `POST /_sandbox/inject`, each fault must put exactly the documented bytes (or the
//! documented absence of bytes, or a TCP reset) on the wire, and run the endpoint's handler
//! only where documented. The control API refuses what it cannot honour with a 400.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]
#![allow(clippy::unwrap_used)]

mod common;

use std::{io::ErrorKind, net::SocketAddr, time::Duration};

use itnio_otp_grpc::sandbox::{Fault, Sandbox, SandboxConfig};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

const KEY: &str = "fault-key";
const SECRET: &str = "fault-secret";
const SEND: &str = "POST /verification/send";

/// A sandbox served by `Sandbox::serve` on port 0.
async fn start() -> (Sandbox, SocketAddr) {
    let config = SandboxConfig::new(KEY, SECRET);
    let (sandbox, addr, _) = common::serve_sandbox(config, std::future::pending()).await;
    (sandbox, addr)
}

/// What came back on the socket: every byte until the end, and how it ended.
#[derive(Debug)]
struct Raw {
    bytes: Vec<u8>,
    /// `None`: a clean end of stream (FIN); otherwise the read error (a reset).
    ended_by: Option<ErrorKind>,
}

impl Raw {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn head_and_body(&self) -> (String, Vec<u8>) {
        let split = self
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", self.text()));
        let head = String::from_utf8_lossy(&self.bytes[..split]).to_lowercase();
        (head, self.bytes[split + 4..].to_vec())
    }

    fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.head_and_body();
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    }
}

/// The request line and the signed headers, without the blank line that ends them.
fn signed_head(method: &str, path: &str) -> String {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let sign: String = Md5::digest(format!("{KEY}{SECRET}{timestamp}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{method} {path} HTTP/1.1\r\nhost: sandbox\r\napi-key: {KEY}\r\ntimestamp: {timestamp}\r\nsign: {sign}\r\n"
    )
}

/// Sends one signed request with `Connection: close` and reads until the connection ends.
async fn raw(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Raw {
    let body = body.to_string();
    let request = format!(
        "{}connection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        signed_head(method, path),
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0; 8192];
    let ended_by = loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the sandbox answers within 10 s");
        match read {
            Ok(0) => break None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e.kind()),
        }
    };
    Raw { bytes, ended_by }
}

async fn inject(addr: SocketAddr, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/_sandbox/inject"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn stored_verifications(addr: SocketAddr) -> u64 {
    let stats: Value = reqwest::get(format!("http://{addr}/_sandbox/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["stored"]["verifications"].as_u64().unwrap()
}

/// An app and a template; returns the body of a valid send.
async fn send_body(addr: SocketAddr) -> Value {
    let app = raw(addr, "POST", "/app/add", &json!({"name": "faults_app"})).await;
    let app: Value = serde_json::from_slice(&app.head_and_body().1).unwrap();
    let app_id = app["data"]["appId"].as_str().unwrap().to_owned();
    let template = json!({"appId": app_id, "name": "faults_t", "text": "##code##", "codeType": 1, "codeLength": 4});
    let template = raw(addr, "POST", "/template/add", &template).await;
    let template: Value = serde_json::from_slice(&template.head_and_body().1).unwrap();
    json!({"appId": app_id, "templateId": template["data"]["templateId"], "to": "99900123456"})
}

/// Injects `fault` (a JSON object with `fault` and its parameters) on the send endpoint, sends,
/// and returns what came back and whether the send took effect.
async fn send_under(addr: SocketAddr, send: &Value, fault: Value) -> (Raw, bool) {
    let mut body = fault;
    body["endpoint"] = json!(SEND);
    assert_eq!(inject(addr, body).await, (200, json!({"ok": true})));
    let before = stored_verifications(addr).await;
    let raw = raw(addr, "POST", "/verification/send", send).await;
    (raw, stored_verifications(addr).await > before)
}

#[tokio::test]
async fn every_fault_puts_its_documented_bytes_on_the_wire() {
    let (_sandbox, addr) = start().await;
    let send = send_body(addr).await;
    let normal = raw(addr, "POST", "/verification/send", &send).await;
    let (_, normal_body) = normal.head_and_body();
    let normal_json: Value = serde_json::from_slice(&normal_body).unwrap();
    assert_eq!(normal_json["status"], "0");

    let (reply, ran) = send_under(addr, &send, json!({"fault": "reset_before_status"})).await;
    assert!(reply.bytes.is_empty(), "{:?}", reply.text());
    assert_eq!(reply.ended_by, Some(ErrorKind::ConnectionReset));
    assert!(ran, "the send took effect; only its reply was lost");

    let (reply, ran) = send_under(addr, &send, json!({"fault": "reset_mid_body"})).await;
    assert_eq!(reply.ended_by, Some(ErrorKind::ConnectionReset));
    let (head, body) = reply.head_and_body();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let announced: usize = reply.header("content-length").unwrap().parse().unwrap();
    assert_eq!(body.len(), announced / 2, "half of the announced body");
    assert!(ran);

    let (reply, ran) = send_under(addr, &send, json!({"fault": "truncated_body"})).await;
    assert_eq!(reply.ended_by, None, "a well-framed reply");
    let (_, body) = reply.head_and_body();
    let announced: usize = reply.header("content-length").unwrap().parse().unwrap();
    assert_eq!(
        body.len(),
        announced,
        "the length announces the truncated body"
    );
    assert!(body.len() > 10 && serde_json::from_slice::<Value>(&body).is_err());
    assert!(
        normal_body.starts_with(&body[..10]),
        "a prefix of a real reply"
    );
    assert!(ran);

    let (reply, ran) = send_under(addr, &send, json!({"fault": "non_json"})).await;
    assert!(reply.text().starts_with("HTTP/1.1 200"));
    assert_eq!(
        reply.header("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert!(serde_json::from_slice::<Value>(&reply.head_and_body().1).is_err());
    assert!(!ran);

    let (reply, ran) = send_under(addr, &send, json!({"fault": "html_error_page"})).await;
    assert!(reply.text().starts_with("HTTP/1.1 200"));
    assert_eq!(
        reply.header("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    assert!(reply.text().contains("<html>"));
    assert!(!ran);

    let (reply, ran) = send_under(addr, &send, json!({"fault": "wrong_content_type"})).await;
    assert_eq!(
        reply.header("content-type").unwrap(),
        "text/html; charset=iso-8859-1"
    );
    let body: Value = serde_json::from_slice(&reply.head_and_body().1).unwrap();
    assert_eq!(body["status"], "0", "the real reply, mislabelled");
    assert!(ran);

    for status in [429, 500, 502, 503] {
        let fault = json!({"fault": "http_status", "http_status": status});
        let (reply, ran) = send_under(addr, &send, fault).await;
        assert!(
            reply.text().starts_with(&format!("HTTP/1.1 {status} ")),
            "{}",
            reply.text()
        );
        assert!(reply.text().contains("nginx"));
        assert!(!ran, "a gateway answered: the send never reached the API");
    }

    let started = Instant::now();
    let fault = json!({"fault": "latency", "latency_ms": 300});
    let (reply, ran) = send_under(addr, &send, fault).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(reply.text().starts_with("HTTP/1.1 200"));
    assert!(ran);

    let fault = json!({"fault": "huge_body", "bytes": 1_000_000});
    let (reply, ran) = send_under(addr, &send, fault).await;
    assert_eq!(reply.header("transfer-encoding").unwrap(), "chunked");
    assert!(reply.header("content-length").is_none());
    assert!(reply.bytes.len() > 1_000_000, "{}", reply.bytes.len());
    assert!(!ran);
}

#[tokio::test]
async fn a_trickle_announces_the_whole_reply_and_sends_its_first_byte() {
    let (sandbox, addr) = start().await;
    sandbox.inject_fault("GET /flow/list", Fault::Trickle, 1);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{}\r\n", signed_head("GET", "/flow/list"));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0; 1024];
    // Headers and the first body byte come at once; the rest follows one byte a second.
    while !seen.ends_with(b"\r\n\r\n{") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("headers and a first byte at once")
            .unwrap();
        assert!(n > 0, "closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).to_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(length > 10, "the whole reply is announced: {length}");
}

#[tokio::test]
async fn resets_need_the_wired_connections_of_serve() {
    let sandbox = Sandbox::new(SandboxConfig::new(KEY, SECRET));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = sandbox
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    for fault in [Fault::ResetBeforeStatus, Fault::ResetMidBody] {
        sandbox.inject_fault("GET /flow/list", fault, 1);
        let reply = raw(addr, "GET", "/flow/list", &json!({})).await;
        assert!(reply.text().starts_with("HTTP/1.1 501"), "{}", reply.text());
        assert_eq!(reply.ended_by, None);
    }
}

#[tokio::test]
async fn the_control_api_refuses_what_it_cannot_honour() {
    let (_sandbox, addr) = start().await;
    let refused = [
        (json!({"endpoint": SEND}), "exactly one of status and fault"),
        (
            json!({"endpoint": SEND, "status": "-27", "fault": "trickle"}),
            "exactly one of status and fault",
        ),
        (
            json!({"endpoint": SEND, "status": "-27", "latency_ms": 5}),
            "a status takes no fault parameters",
        ),
        (
            json!({"endpoint": SEND, "status": "-27", "http_status": 503}),
            "a status takes no fault parameters",
        ),
        (
            json!({"endpoint": SEND, "status": "-27", "bytes": 5}),
            "a status takes no fault parameters",
        ),
        (
            json!({"endpoint": SEND, "fault": "explode"}),
            "unknown fault",
        ),
        (json!({"endpoint": SEND, "fault": "latency"}), "latency_ms"),
        (
            json!({"endpoint": SEND, "fault": "trickle", "bytes": 5}),
            "takes no bytes",
        ),
        (
            json!({"endpoint": "POST /nope", "fault": "trickle"}),
            "unknown endpoint",
        ),
    ];
    for (body, why) in refused {
        let (status, answer) = inject(addr, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["ok"], false);
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(why), "{body}: {error}");
    }
}

#[tokio::test]
async fn times_counts_down_and_zero_cancels() {
    let (_sandbox, addr) = start().await;
    let empty = json!({});
    let list = || raw(addr, "GET", "/flow/list", &empty);
    let fault = |times| json!({"endpoint": "GET /flow/list", "fault": "non_json", "times": times});
    assert_eq!(inject(addr, fault(2)).await.0, 200);
    for _ in 0..2 {
        assert!(list().await.text().contains("text/plain"));
    }
    assert!(list().await.text().contains("application/json"));
    assert_eq!(inject(addr, fault(5)).await.0, 200);
    assert_eq!(inject(addr, fault(0)).await.0, 200);
    assert!(list().await.text().contains("application/json"));

    // The original form, a business status, still works beside the faults.
    let status = json!({"endpoint": "GET /flow/list", "status": "-18", "times": 1});
    assert_eq!(inject(addr, status).await, (200, json!({"ok": true})));
    let reply: Value = serde_json::from_slice(&list().await.head_and_body().1).unwrap();
    assert_eq!(reply["status"], "-18");
    let reply: Value = serde_json::from_slice(&list().await.head_and_body().1).unwrap();
    assert_eq!(reply["status"], "0");
}

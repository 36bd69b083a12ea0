//! Benchmark: the facade's memory when the upstream answers with a 50 MB reply (issue 9 item 2).
//!
//! Serves a valid 50 MB `GET /flow/list` reply (Content-Length set) from a minimal HTTP server in
//! this process, starts the real `itnio-otp-grpc` binary pointed at it (the environment's
//! `ITNIO_MAX_RESPONSE_BYTES`, if set, is passed through) and calls ListFlows `CALLS` times, one
//! after another, then `CALLS` at once. Prints the facade's RSS before, its peak (`VmHWM`) and its
//! RSS two seconds after, with the gRPC outcome. Run: `cargo bench --bench large_reply`.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark: plain tasks, real time"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use common::binary::Binary;

use itnio_otp_grpc::proto::v1::{self as pb, flow_service_client::FlowServiceClient};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tonic::transport::Channel;

const REPLY_BYTES: usize = 50 * 1000 * 1000;
const CALLS: usize = 2;

/// A valid flow list envelope of about `REPLY_BYTES` bytes.
fn reply_body() -> Vec<u8> {
    let mut body = br#"{"status":"0","reason":"success","data":["#.to_vec();
    let mut n = 0u64;
    while body.len() < REPLY_BYTES {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(
            format!(
                r#"{{"flowId":{n},"name":"flow-{n}","flow":[{{"waitingTime":30,"status":1,"channel":"sms","channelCut":0}}]}}"#
            )
            .as_bytes(),
        );
        n += 1;
    }
    body.extend_from_slice(b"]}");
    body
}

/// Answers every request on every connection with `body`.
async fn serve(listener: TcpListener, body: Arc<Vec<u8>>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                request.clear();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if socket.write_all(head.as_bytes()).await.is_err()
                    || socket.write_all(&body).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The facade (killed on drop) and its gRPC address.
struct Facade {
    binary: Binary,
    addr: SocketAddr,
}

async fn start_facade(upstream: SocketAddr) -> Facade {
    let base_url = format!("http://{upstream}");
    let mut envs = vec![
        ("ALLOW_UNAUTHENTICATED", "true"),
        ("ITNIO_API_KEY", "bench-key"),
        ("ITNIO_API_SECRET", "bench-secret"),
        ("ITNIO_BASE_URL", &base_url),
        ("ITNIO_TIMEOUT", "60s"),
        // Warnings, and the line with the address.
        ("RUST_LOG", "warn,itnio_otp_grpc::server=info"),
    ];
    let cap = std::env::var("ITNIO_MAX_RESPONSE_BYTES");
    if let Ok(cap) = &cap {
        envs.push(("ITNIO_MAX_RESPONSE_BYTES", cap));
    }
    let binary = Binary::spawn_echoing(common::binary::command(&envs));
    let addr = binary.addr("gRPC server listening").await;
    Facade { binary, addr }
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn connect(addr: SocketAddr) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            return channel;
        }
        assert!(Instant::now() < deadline, "facade did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn list_flows(channel: Channel) -> String {
    let result = FlowServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .list_flows(pb::ListFlowsRequest {})
        .await;
    match result {
        Ok(reply) => format!("OK, {} flows", reply.into_inner().flows.len()),
        Err(status) => {
            let reason = tonic_types::StatusExt::get_error_details(&status)
                .error_info()
                .map(|info| info.reason.clone())
                .unwrap_or_default();
            format!("{:?} {reason}", status.code())
        }
    }
}

#[tokio::main]
async fn main() {
    if !common::under_cargo_bench() {
        return;
    }
    let body = Arc::new(reply_body());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, body.clone()));
    let facade = start_facade(upstream).await;
    let channel = connect(facade.addr).await;
    let pid = facade.binary.pid();
    let cap = std::env::var("ITNIO_MAX_RESPONSE_BYTES").unwrap_or_else(|_| "default".into());
    println!(
        "reply: {:.1} MB valid flow list; ITNIO_MAX_RESPONSE_BYTES={cap}\n",
        body.len() as f64 / 1e6
    );
    println!("| step | outcome | RSS before MiB | peak RSS MiB | RSS 2 s after MiB |");
    println!("|---|---|---|---|---|");
    let (start_rss, _) = memory(pid);
    for n in 1..=CALLS {
        let (before, _) = memory(pid);
        let outcome = list_flows(channel.clone()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (after, peak) = memory(pid);
        println!(
            "| call {n} of {CALLS} in a row | {outcome} | {before:.1} | {peak:.1} | {after:.1} |"
        );
    }
    let (before, _) = memory(pid);
    let calls: Vec<_> = (0..CALLS)
        .map(|_| tokio::spawn(list_flows(channel.clone())))
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.expect("call task"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, peak) = memory(pid);
    println!(
        "| {CALLS} at once | {} | {before:.1} | {peak:.1} | {after:.1} |",
        outcomes.join("; ")
    );
    println!("\nfacade RSS at start: {start_rss:.1} MiB");
}

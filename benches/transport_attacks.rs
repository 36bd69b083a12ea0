//! Benchmark: the issue-9 attacks at full scale against the real binary, before and after the
//! transport limits, side by side in one run.
//!
//! Starts the sandbox in this process and the facade as a child process pointed at it, once per
//! binary: `BEFORE_BIN` (optional, e.g. a release build of the previous commit) and this build.
//! Each attack gets a fresh facade:
//! 1. 10,000 unary calls at once on one connection, `ROUNDS` times: RSS after the first round,
//!    after all, and after 5 s idle;
//! 2. 10,000 streams that send headers and no body (100 connections × 100): how long they are
//!    held, RSS, Health/Check latency meanwhile;
//! 3. 20,000 idle TCP connections (from helper processes, 5,000 each: one process cannot hold
//!    them all under a 20,000 descriptor limit): Health/Check latency and the facade's CPU;
//! 4. 2,000 WatchRecord streams from one caller (one connection): how long a fresh caller waits
//!    for its first message.
//!
//! Run: `BEFORE_BIN=/path/to/old/itnio-otp-grpc cargo bench --bench transport_attacks`.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark: plain tasks, real time"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    io::Read,
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::binary::Binary;

use itnio_otp_grpc::{
    proto::v1::{
        self as pb, app_service_client::AppServiceClient,
        record_service_client::RecordServiceClient,
        verification_service_client::VerificationServiceClient, watch_record_request::Selector,
    },
    sandbox::SandboxConfig,
};
use tokio::net::TcpStream;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const CALLS: usize = 10_000;
const HEADER_ONLY_CONNECTIONS: usize = 100;
const HEADER_ONLY_PER_CONNECTION: usize = 100;
const IDLE_CONNECTIONS: usize = 20_000;
const IDLE_PER_HELPER: usize = 5_000;
const WATCHES: usize = 2_000;
/// How long the header-only streams are watched for an end.
const HOLD_WINDOW: Duration = Duration::from_secs(15);
const HELPER_ENV: &str = "TRANSPORT_ATTACK_IDLE_HELPER";

/// The facade binary `bin` (killed on drop), its gRPC and its health address.
struct Facade {
    binary: Binary,
    grpc: SocketAddr,
    health: SocketAddr,
}

impl Facade {
    async fn start(bin: &str, sandbox_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut command = common::binary::command_for(
            bin,
            &[
                ("HEALTH_LISTEN_ADDR", "127.0.0.1:0"),
                ("ITNIO_API_KEY", "bench-key"),
                ("ITNIO_API_SECRET", "bench-secret"),
                ("ITNIO_BASE_URL", sandbox_url),
                ("ALLOW_UNAUTHENTICATED", "true"),
                ("RUST_LOG", "error,itnio_otp_grpc::server=info"),
            ],
        );
        command.envs(extra.iter().copied());
        let binary = Binary::spawn(command);
        Self {
            grpc: binary.addr("gRPC server listening").await,
            health: binary.addr("gRPC health listening").await,
            binary,
        }
    }

    /// (CPU seconds used so far, resident bytes now), from /proc.
    fn usage(&self) -> (f64, u64) {
        let pid = self.binary.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .expect("stat")
            .split_whitespace()
            .collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        (ticks / 100.0, rss_kib * 1024)
    }

    fn rss_mb(&self) -> f64 {
        self.usage().1 as f64 / 1e6
    }
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Connect + Health/Check on a fresh connection: the latency, or why it failed.
async fn health_latency(addr: SocketAddr) -> String {
    let started = Instant::now();
    let check = async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .map_err(|e| format!("connect failed ({e})"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(|s| format!("{:?}", s.code()))
    };
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(_)) => format!("{:.1} ms", started.elapsed().as_secs_f64() * 1e3),
        Ok(Err(e)) => format!("failed: {e} after {:?}", started.elapsed()),
        Err(_) => "timed out (5 s)".to_owned(),
    }
}

/// An app and a template under a name no other attack used in the shared sandbox.
async fn app(channel: &Channel) -> (String, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    common::app_and_template(channel, &format!("bench-{}-{n}", std::process::id())).await
}

/// 1. `CALLS` GetApp calls at once on one connection, `rounds` times.
async fn many_calls(bin: &str, sandbox_url: &str, rounds: usize) -> Vec<String> {
    let facade = Facade::start(bin, sandbox_url, &[]).await;
    let channel = connect(facade.grpc).await;
    let (app_id, _) = app(&channel).await;
    let rss_start = facade.rss_mb();
    let mut peak = rss_start;
    let mut after_first = 0.0;
    let started = Instant::now();
    let mut failed = 0_usize;
    let mut first_error = String::new();
    for round in 0..rounds {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..CALLS {
            let mut client = AppServiceClient::new(channel.clone());
            let app_id = app_id.clone();
            calls.spawn(async move { client.get_app(pb::GetAppRequest { app_id }).await });
        }
        while let Some(result) = calls.join_next().await {
            if let Ok(Err(status)) = result {
                failed += 1;
                if failed == 1 {
                    first_error = format!("{:?}: {}", status.code(), status.message());
                }
            }
            if calls.len() % 1000 == 0 {
                peak = peak.max(facade.rss_mb());
            }
        }
        peak = peak.max(facade.rss_mb());
        if round == 0 {
            after_first = facade.rss_mb();
        }
    }
    let elapsed = started.elapsed();
    let after_all = facade.rss_mb();
    drop(channel);
    tokio::time::sleep(Duration::from_secs(5)).await;
    vec![
        format!("RSS at start: {rss_start:.0} MB"),
        format!("RSS after {CALLS} calls: {after_first:.0} MB"),
        format!(
            "RSS after {} calls: {after_all:.0} MB (peak {peak:.0} MB)",
            CALLS * rounds
        ),
        format!("RSS 5 s after the client left: {:.0} MB", facade.rss_mb()),
        format!(
            "{} calls in {:.1} s, {failed} failed (first: {first_error})",
            CALLS * rounds,
            elapsed.as_secs_f64()
        ),
    ]
}

/// 2. Streams that send headers and never a body.
async fn header_only(bin: &str, sandbox_url: &str) -> Vec<String> {
    let facade = Facade::start(bin, sandbox_url, &[]).await;
    let rss_start = facade.rss_mb();
    let started = Instant::now();
    let mut responses = tokio::task::JoinSet::new();
    let mut bodies = Vec::new();
    for _ in 0..HEADER_ONLY_CONNECTIONS {
        let tcp = TcpStream::connect(facade.grpc).await.expect("connect");
        let (send, connection) = h2::client::handshake(tcp).await.expect("h2");
        tokio::spawn(connection);
        let mut send = send.ready().await.expect("ready");
        for _ in 0..HEADER_ONLY_PER_CONNECTION {
            let request = http::Request::post(format!(
                "http://{}/itnio.otp.v1.AppService/GetApp",
                facade.grpc
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
            let (response, body) = send.send_request(request, false).expect("send");
            bodies.push(body);
            responses.spawn(async move {
                let _ = response.await;
                started.elapsed()
            });
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_held = facade.rss_mb();
    let health = health_latency(facade.health).await;
    let grpc_health = health_latency(facade.grpc).await;
    let mut ended = Vec::new();
    let window = tokio::time::sleep_until((started + HOLD_WINDOW).into());
    tokio::pin!(window);
    loop {
        tokio::select! {
            next = responses.join_next() => match next {
                Some(Ok(at)) => ended.push(at),
                Some(Err(_)) => {}
                None => break,
            },
            () = &mut window => break,
        }
    }
    let total = HEADER_ONLY_CONNECTIONS * HEADER_ONLY_PER_CONNECTION;
    let held = match ended.iter().min() {
        Some(first) => format!(
            "first ended after {:.1} s; {} of {total} ended within {HOLD_WINDOW:?}",
            first.as_secs_f64(),
            ended.len()
        ),
        None => format!("none of {total} ended within {HOLD_WINDOW:?} (held longer)"),
    };
    drop(bodies);
    vec![
        format!("RSS {rss_start:.0} MB → {rss_held:.0} MB with the streams open"),
        held,
        format!("Health/Check meanwhile: health port {health}, gRPC port {grpc_health}"),
    ]
}

/// 3. Idle TCP connections, held by helper processes.
async fn idle_connections(bin: &str, sandbox_url: &str) -> Vec<String> {
    let facade = Facade::start(bin, sandbox_url, &[]).await;
    let established = connect(facade.grpc).await;
    let mut helpers = Vec::new();
    for _ in 0..IDLE_CONNECTIONS / IDLE_PER_HELPER {
        let mut helper = Command::new(std::env::current_exe().expect("this bench"))
            .env(HELPER_ENV, format!("{} {IDLE_PER_HELPER}", facade.grpc))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("helper");
        let mut ready = [0_u8; 1];
        helper
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut ready)
            .expect("helper connected");
        helpers.push(helper);
    }
    let (cpu_start, _) = facade.usage();
    let window = Instant::now();
    let health = health_latency(facade.health).await;
    let grpc_fresh = health_latency(facade.grpc).await;
    let started = Instant::now();
    let established_check = match tokio::time::timeout(
        Duration::from_secs(5),
        HealthClient::new(established).check(HealthCheckRequest::default()),
    )
    .await
    {
        Ok(Ok(_)) => format!("{:.1} ms", started.elapsed().as_secs_f64() * 1e3),
        Ok(Err(status)) => format!("failed: {:?}", status.code()),
        Err(_) => "timed out (5 s)".into(),
    };
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(window.elapsed())).await;
    let (cpu_end, rss) = facade.usage();
    let cpu = (cpu_end - cpu_start) / window.elapsed().as_secs_f64() * 100.0;
    // After the handshake timeout (10 s by default) the silent connections are gone.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let later = health_latency(facade.grpc).await;
    for mut helper in helpers {
        drop(helper.stdin.take());
        let _ = helper.wait();
    }
    vec![
        format!(
            "Health/Check: health port {health}, gRPC port (new connection) {grpc_fresh}, \
             gRPC port (connection opened before) {established_check}"
        ),
        format!(
            "facade CPU {cpu:.0} % of one core, RSS {:.0} MB",
            rss as f64 / 1e6
        ),
        format!("gRPC port 15 s into the attack (new connection): {later}"),
    ]
}

/// 4. A fresh caller's first WatchRecord message behind another caller's 2,000 watches.
async fn fairness(bin: &str, sandbox_url: &str, extra: &[(&str, &str)]) -> Vec<String> {
    let facade = Facade::start(bin, sandbox_url, extra).await;
    let fresh = connect(facade.grpc).await;
    let (app_id, template_id) = app(&fresh).await;
    let sent = VerificationServiceClient::new(fresh.clone())
        .send_verification(pb::SendVerificationRequest {
            app_id,
            template_id,
            phone_number: "9990000000001".into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    let greedy = connect(facade.grpc).await;
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..WATCHES {
        let mut client = RecordServiceClient::new(greedy.clone());
        opening.spawn(async move {
            client
                .watch_record(pb::WatchRecordRequest {
                    selector: Some(Selector::VerificationId(format!("226{i:017}"))),
                })
                .await
                .map(tonic::Response::into_inner)
        });
    }
    let results = opening.join_all().await;
    let refused = results.iter().filter(|r| r.is_err()).count();
    let started = Instant::now();
    let mut mine = RecordServiceClient::new(fresh)
        .watch_record(pb::WatchRecordRequest {
            selector: Some(Selector::VerificationId(sent.verification_id)),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(120), mine.message()).await;
    let waited = match first {
        Ok(Ok(Some(_))) => format!("{:.2} s", started.elapsed().as_secs_f64()),
        other => format!("no message ({other:?})"),
    };
    vec![format!(
        "fresh caller's first message after {waited} ({} watches open, {refused} refused)",
        WATCHES - refused
    )]
}

/// Helper process: holds `count` idle connections to `addr` until stdin closes.
fn idle_helper(spec: &str) {
    let (addr, count) = spec.split_once(' ').expect("addr count");
    let addr: SocketAddr = addr.parse().expect("addr");
    let count: usize = count.parse().expect("count");
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(tcp) = std::net::TcpStream::connect(addr) {
            held.push(tcp);
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().write_all(b"x");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read(&mut [0_u8; 1]);
}

fn main() {
    if let Ok(spec) = std::env::var(HELPER_ENV) {
        idle_helper(&spec);
        return;
    }
    if !common::under_cargo_bench() {
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut config = SandboxConfig::new("bench-key", "bench-secret");
        config.speed = 100.0;
        config.max_verifications = 1_000_000;
        let (_, addr, _) = common::serve_sandbox(config, std::future::pending()).await;
        let sandbox_url = format!("http://{addr}");

        let after = env!("CARGO_BIN_EXE_itnio-otp-grpc").to_owned();
        let mut binaries = Vec::new();
        if let Ok(before) = std::env::var("BEFORE_BIN") {
            binaries.push(("before", before));
        }
        binaries.push(("after", after));
        let only = std::env::var("ONLY").unwrap_or_default();
        let run = |name: &str| only.is_empty() || only.split(',').any(|o| o == name);
        for (label, bin) in &binaries {
            println!("== {label}: {bin}");
            if run("calls") {
                println!("1. {CALLS} unary calls at once on one connection, {rounds} rounds:");
                for line in many_calls(bin, &sandbox_url, rounds).await {
                    println!("   {line}");
                }
            }
            if run("header") {
                println!(
                    "2. {} header-only streams ({HEADER_ONLY_CONNECTIONS} connections):",
                    HEADER_ONLY_CONNECTIONS * HEADER_ONLY_PER_CONNECTION
                );
                for line in header_only(bin, &sandbox_url).await {
                    println!("   {line}");
                }
            }
            if run("idle") {
                println!("3. {IDLE_CONNECTIONS} idle connections:");
                for line in idle_connections(bin, &sandbox_url).await {
                    println!("   {line}");
                }
            }
            if run("fair") {
                let uncapped = [
                    ("GRPC_MAX_CONCURRENT_STREAMS", "4000"),
                    ("WATCH_MAX_RECORDS_PER_CALLER", "4000"),
                ];
                println!("4. {WATCHES} WatchRecord streams from one caller (cap raised):");
                for line in fairness(bin, &sandbox_url, &uncapped).await {
                    println!("   {line}");
                }
                if *label == "after" {
                    let streams = [("GRPC_MAX_CONCURRENT_STREAMS", "4000")];
                    println!("4b. the same with the default WATCH_MAX_RECORDS_PER_CALLER:");
                    for line in fairness(bin, &sandbox_url, &streams).await {
                        println!("   {line}");
                    }
                }
            }
        }
    });
}

//! Benchmark: many concurrent WatchRecord streams against the real binary.
//!
//! Starts the sandbox in this process and the facade as a child process pointed at it, sends
//! `VERIFICATIONS` verifications, then measures two configurations side by side in one run:
//! one watcher per verification, and `WATCHERS_PER_VERIFICATION` watchers per verification.
//! Reports upstream polls per second (counted by the sandbox), the facade's CPU time and its
//! resident memory per open stream (from /proc). Run: `cargo bench --bench watch_streams`.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark: plain tasks, real time"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::binary::Binary;

use itnio_otp_grpc::{
    proto::v1::{
        self as pb, app_service_client::AppServiceClient,
        record_service_client::RecordServiceClient, template_service_client::TemplateServiceClient,
        verification_service_client::VerificationServiceClient, watch_record_request::Selector,
    },
    sandbox::{Sandbox, SandboxConfig},
};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const VERIFICATIONS: usize = 100;
const WATCHERS_PER_VERIFICATION: usize = 100;
const STREAMS_PER_CONNECTION: usize = 100;
const WINDOW: Duration = Duration::from_secs(20);
const RECORD_BY_ID: &str = "GET /verification/record/{verificationId}";

/// The facade (killed on drop) and its gRPC address.
struct Facade {
    binary: Binary,
    addr: SocketAddr,
}

impl Facade {
    async fn start(sandbox_url: &str) -> Self {
        let binary = Binary::start(&[
            ("ITNIO_API_KEY", "bench-key"),
            ("ITNIO_API_SECRET", "bench-secret"),
            ("ITNIO_BASE_URL", sandbox_url),
            ("ALLOW_UNAUTHENTICATED", "true"),
            // The sandbox's test numbers, many to one prefix: the guard only counts.
            ("ALLOW_TEST_NUMBERS", "true"),
            ("GUARD_DRY_RUN", "true"),
            ("RUST_LOG", "warn,itnio_otp_grpc::server=info"),
        ]);
        let addr = binary.addr("gRPC server listening").await;
        Self { binary, addr }
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
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

async fn send_verifications(channel: &Channel, tag: &str) -> Vec<String> {
    let app = AppServiceClient::new(channel.clone())
        .create_app(pb::CreateAppRequest {
            name: format!("bench-{tag}"),
            code_expiry_minutes: Some(60),
            ..Default::default()
        })
        .await
        .expect("app")
        .into_inner()
        .app
        .expect("app");
    let template = TemplateServiceClient::new(channel.clone())
        .create_template(pb::CreateTemplateRequest {
            app_id: app.app_id.clone(),
            name: format!("bench-{tag}"),
            text: "##code##".into(),
            ..Default::default()
        })
        .await
        .expect("template")
        .into_inner()
        .template
        .expect("template");
    let mut sender = VerificationServiceClient::new(channel.clone());
    let mut ids = Vec::new();
    for i in 0..VERIFICATIONS {
        let sent = sender
            .send_verification(pb::SendVerificationRequest {
                app_id: app.app_id.clone(),
                template_id: template.template_id.clone(),
                phone_number: format!("+99900{i:06}"),
                ..Default::default()
            })
            .await
            .expect("send")
            .into_inner();
        ids.push(sent.verification_id);
    }
    ids
}

/// Opens `per_verification` streams on each id and waits for every first message.
async fn open_streams(
    addr: SocketAddr,
    ids: &[String],
    per_verification: usize,
) -> Vec<tonic::Streaming<pb::WatchRecordResponse>> {
    let total = ids.len() * per_verification;
    let mut channels = Vec::new();
    for _ in 0..total.div_ceil(STREAMS_PER_CONNECTION) {
        channels.push(connect(addr).await);
    }
    let mut opening = tokio::task::JoinSet::new();
    for n in 0..total {
        let mut client = RecordServiceClient::new(channels[n / STREAMS_PER_CONNECTION].clone());
        let id = ids[n % ids.len()].clone();
        opening.spawn(async move {
            let mut stream = client
                .watch_record(pb::WatchRecordRequest {
                    selector: Some(Selector::VerificationId(id)),
                })
                .await
                .expect("watch")
                .into_inner();
            stream.next().await.expect("first message").expect("record");
            stream
        });
    }
    opening.join_all().await
}

struct Measurement {
    streams: usize,
    polls_per_second: f64,
    cpu_percent: f64,
    rss_growth: u64,
}

async fn measure(
    facade: &Facade,
    sandbox: &Sandbox,
    ids: &[String],
    per_verification: usize,
) -> Measurement {
    let (_, rss_before) = facade.usage();
    let streams = open_streams(facade.addr, ids, per_verification).await;
    // Let the pollers reach their steady backoff before measuring.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (cpu_start, _) = facade.usage();
    let polls_start = sandbox.request_count_for(RECORD_BY_ID);
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let elapsed = started.elapsed().as_secs_f64();
    let polls = sandbox.request_count_for(RECORD_BY_ID) - polls_start;
    let (cpu_end, rss_after) = facade.usage();
    let measurement = Measurement {
        streams: streams.len(),
        polls_per_second: polls as f64 / elapsed,
        cpu_percent: 100.0 * (cpu_end - cpu_start) / elapsed,
        rss_growth: rss_after.saturating_sub(rss_before),
    };
    drop(streams);
    tokio::time::sleep(Duration::from_secs(2)).await;
    measurement
}

#[tokio::main]
async fn main() {
    if !common::under_cargo_bench() {
        return;
    }
    let mut config = SandboxConfig::new("bench-key", "bench-secret");
    config.speed = 1.0;
    let (sandbox, addr, _) = common::serve_sandbox(config, std::future::pending()).await;
    let sandbox_url = format!("http://{addr}");
    let facade = Facade::start(&sandbox_url).await;
    let channel = connect(facade.addr).await;

    let few_ids = send_verifications(&channel, "one-each").await;
    let many_ids = send_verifications(&channel, "hundred-each").await;
    let one_each = measure(&facade, &sandbox, &few_ids, 1).await;
    let hundred_each = measure(&facade, &sandbox, &many_ids, WATCHERS_PER_VERIFICATION).await;

    println!(
        "| watchers | streams | upstream polls/s | facade CPU % | RSS growth | RSS per stream |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, m) in [
        ("1 per verification", &one_each),
        ("100 per verification", &hundred_each),
    ] {
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} MiB | {:.2} KiB |",
            m.streams,
            m.polls_per_second,
            m.cpu_percent,
            m.rss_growth as f64 / 1_048_576.0,
            m.rss_growth as f64 / 1024.0 / m.streams as f64,
        );
    }
    println!(
        "ratio of polls/s (100 per verification ÷ 1 per verification): {:.2}",
        hundred_each.polls_per_second / one_each.polls_per_second
    );
}

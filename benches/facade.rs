//! Benchmark: what the facade costs on top of a direct REST call (issue 10).
//!
//! One run starts the sandbox (`itnio-otp-grpc sandbox`) and the facade (`itnio-otp-grpc`,
//! pointed at the sandbox with its credentials) as child processes and measures three paths side
//! by side, at concurrency 1, 16 and 64:
//! - **floor**: `grpc.health.v1.Health/Check` on the facade (one gRPC hop, no upstream);
//! - **direct**: the signed REST call to the sandbox that the RPC stands for;
//! - **facade**: the RPC (`ListFlows`, `GetRecord`, `SendVerification`) through the facade.
//!
//! Reported per cell: req/s, p50/p99/p99.9 latency, CPU µs per request of the facade and of the
//! sandbox and of this process, the load generator (summed over all threads from
//! `/proc/PID/task/*/schedstat`, nanosecond resolution; `/proc/PID/stat` ticks are too coarse for
//! the idle figure), the facade's RSS, and each figure
//! as a ratio to the floor and the direct path of the same run. Also: the first call on a fresh
//! connection, exec → SERVING, idle CPU per second and idle RSS of a fresh facade. Then the
//! targets of issue 10 item 2 marked PASS/FAIL, and the chain accounting: the facade's own CPU
//! beyond a gRPC server and a REST client, what the sandbox and the load generator pay more for
//! the same work in the facade chain, and the c=64 ratio a facade with no glue would reach.
//!
//! Run: `cargo bench --bench facade` (3 rounds of 2 s per cell, medians; ~3 minutes) or
//! `cargo bench --bench facade -- --quick` (1 round of 0.8 s per cell; ~30 s). `FACADE_BENCH_SECS`
//! and `FACADE_BENCH_ROUNDS` override either; `FACADE_BENCH_BIN` runs another `itnio-otp-grpc`
//! binary than this build's (to compare two builds in one time window); `FACADE_BENCH_WORKERS`
//! sets the facade's `WORKER_THREADS`; `ITNIO_HTTP_VERSION` and `REDIS_URL` reach the facade as
//! they are (nothing else of the environment does: the processes start from the shared test
//! harness, `tests/common/binary.rs`). The load generator runs in this process and shares
//! the machine's cores with both servers, equally for all three paths. It prints the facade's
//! pid and each cell as it starts on stderr, to attach a profiler (`perf record -p PID`) to one.
//!
//! Redis: `cargo bench --bench facade -- --redis` (or `FACADE_BENCH_REDIS=1`; ~1.5× as long)
//! also starts a `redis-server` on a free loopback port and a second facade with `REDIS_URL`
//! pointing at it, and adds a `facade+redis` cell beside each facade cell, in the same rounds.
//! For every cell that sends it reports the store's work per send: Redis `INFO commandstats`
//! deltas (calls per command and in total) and `redis-server`'s CPU, and the facade's
//! `itnio_store_round_trips_total` (summed over labels; "n/a" if not exported). Then Redis ÷
//! memory for each cell, and in one line: SendVerification c=64 req/s and c=1 p50.

#![allow(
    clippy::disallowed_methods,
    reason = "measures real time with std's clock (tokio's test-util clock locks on every \
              reading) and spawns plain load-generator tasks"
)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "facade/store.rs"]
mod store;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path as FilePath, PathBuf},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    binary::{BINARY, Binary},
    temp::TempDir,
};

use itnio_otp_grpc::{
    proto::v1::{
        self as pb, app_service_client::AppServiceClient, flow_service_client::FlowServiceClient,
        record_service_client::RecordServiceClient, template_service_client::TemplateServiceClient,
        verification_service_client::VerificationServiceClient,
    },
    upstream::sign,
};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const KEY: &str = "bench-key";
const SECRET: &str = "bench-secret";
const CONCURRENCIES: [usize; 3] = [1, 16, 64];
/// gRPC load spreads over at most this many HTTP/2 connections (h2load's `-c 4 -m 16` at c=64).
const MAX_CONNECTIONS: usize = 4;
const WARMUP: Duration = Duration::from_millis(250);
const FRESH_CONNECTIONS: usize = 20;
const STARTS: usize = 5;
const IDLE_WINDOW: Duration = Duration::from_secs(3);
const READY_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process of the benchmark's binary (`FACADE_BENCH_BIN`, or this build's), killed on
/// drop.
struct Server {
    binary: Binary,
    addr: SocketAddr,
}

/// The send guard as a high-volume app would run it: every rule on and counting, the prefix and
/// country ceilings far above the benchmark's sends (hundreds of thousands to one prefix, on
/// purpose), so none is refused and the guard does its full work on every send.
fn write_guard_policy(dir: &TempDir) -> PathBuf {
    dir.write(
        "guard.toml",
        "[defaults]\n\
         per_prefix = { sends = 1000000000, window = \"1h\", digits = 7 }\n\
         per_country = { sends = 1000000000, window = \"1h\" }\n",
    )
}

/// The variables of the bench's own environment that reach the facade as they are (the harness
/// clears every other one).
const FACADE_PASSED_THROUGH: [&str; 2] = ["ITNIO_HTTP_VERSION", "REDIS_URL"];

impl Server {
    /// The binary with `args` and `envs`, the sandbox's test numbers allowed; its log is echoed.
    /// `FACADE_BENCH_BIN` runs another build (an A/B of two builds in one time window).
    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Binary {
        let program = std::env::var_os("FACADE_BENCH_BIN").unwrap_or_else(|| BINARY.into());
        let mut command = common::binary::command_for(program, &[("ALLOW_TEST_NUMBERS", "true")]);
        command.args(args).envs(envs.iter().copied());
        Binary::spawn_echoing(command)
    }

    async fn sandbox() -> Self {
        let binary = Self::spawn(
            &["sandbox"],
            &[
                ("SANDBOX_LISTEN_ADDR", "127.0.0.1:0"),
                ("SANDBOX_API_KEY", KEY),
                ("SANDBOX_API_SECRET", SECRET),
                // The send cells store hundreds of thousands of verifications: the default cap
                // would evict the one GetRecord reads (-24).
                ("SANDBOX_MAX_VERIFICATIONS", "100000000"),
                // Warnings, and the line with the address (the sandbox logs no request at info).
                ("RUST_LOG", "warn,itnio_otp_grpc=info"),
            ],
        );
        let addr = binary.addr("ITNIO sandbox listening").await;
        Self { binary, addr }
    }

    /// A facade calling the sandbox at `sandbox`; its state in Redis at `redis_url` if given,
    /// else in memory (or in the environment's `REDIS_URL`).
    async fn facade(sandbox: SocketAddr, guard_policy: &FilePath, redis_url: Option<&str>) -> Self {
        let base_url = format!("http://{sandbox}");
        let mut envs = vec![
            // No callers file: the bench measures the RPC path, not token checks.
            ("ALLOW_UNAUTHENTICATED", "true".to_owned()),
            ("ITNIO_API_KEY", KEY.into()),
            ("ITNIO_API_SECRET", SECRET.into()),
            ("ITNIO_BASE_URL", base_url),
            (
                "GUARD_POLICY_FILE",
                guard_policy.to_string_lossy().into_owned(),
            ),
            // Warnings, and the lines with the addresses (no request is logged at warn).
            ("RUST_LOG", "warn,itnio_otp_grpc::server=info".into()),
        ];
        for name in FACADE_PASSED_THROUGH {
            if let Ok(value) = std::env::var(name) {
                envs.push((name, value));
            }
        }
        // `FACADE_BENCH_WORKERS=N`: the facade's WORKER_THREADS (default: its own default, the
        // CPUs it may use), e.g. 1 for the Deployment's one-CPU limit.
        if let Ok(workers) = std::env::var("FACADE_BENCH_WORKERS") {
            envs.push(("WORKER_THREADS", workers));
        }
        if let Some(url) = redis_url {
            envs.push(("REDIS_URL", url.to_owned()));
        }
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let binary = Self::spawn(&[], &envs);
        let addr = binary.addr("gRPC server listening").await;
        Self { binary, addr }
    }

    fn pid(&self) -> u32 {
        self.binary.pid()
    }

    /// Where the facade serves `/metrics`.
    async fn metrics_addr(&self) -> SocketAddr {
        self.binary.addr("metrics listening").await
    }

    /// Polls Health/Check until SERVING; returns the channel that saw it.
    async fn wait_serving(&self) -> Channel {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "facade did not become SERVING");
            if let Ok(channel) = endpoint(self.addr).connect().await {
                let status = HealthClient::new(channel.clone())
                    .check(HealthCheckRequest::default())
                    .await
                    .map(|r| r.into_inner().status);
                if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                    return channel;
                }
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
}

fn endpoint(addr: SocketAddr) -> tonic::transport::Endpoint {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .tcp_nodelay(true)
}

/// CPU time used so far by every thread of `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    schedstat(pid).0
}

/// CPU nanoseconds and the number of times a thread of `pid` was switched onto a CPU, summed
/// over its threads (`/proc/PID/task/*/schedstat`: time on CPU, wait time, timeslices run).
/// Switches per request count the wake-ups a call costs, which decide latency at c=1 and are
/// steadier than times on a shared machine.
fn schedstat(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| {
            let mut fields = s.split_whitespace();
            let ns = fields.next()?.parse::<u64>().ok()?;
            let runs = fields.nth(1)?.parse::<u64>().ok()?;
            Some((ns, runs))
        })
        .fold((0, 0), |(ns, runs), (n, r)| (ns + n, runs + r))
}

/// Resident set size of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// What is called

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    ListFlows,
    GetRecord,
    SendVerification,
}

impl Method {
    const ALL: [Method; 3] = [Self::ListFlows, Self::GetRecord, Self::SendVerification];

    fn name(self) -> &'static str {
        match self {
            Self::ListFlows => "ListFlows",
            Self::GetRecord => "GetRecord",
            Self::SendVerification => "SendVerification",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Floor,
    Direct,
    Facade,
    /// The RPC through a second facade whose state is in Redis (`--redis`).
    FacadeRedis,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::Direct => "direct",
            Self::Facade => "facade",
            Self::FacadeRedis => "facade+redis",
        }
    }
}

/// Ids created once through the facade before measuring.
struct Fixture {
    app_id: String,
    template_id: String,
    verification_id: String,
}

async fn prepare(channel: &Channel) -> Fixture {
    let app = AppServiceClient::new(channel.clone())
        .create_app(pb::CreateAppRequest {
            name: "bench-facade".into(),
            code_expiry_minutes: Some(60),
            ..Default::default()
        })
        .await
        .expect("create app")
        .into_inner()
        .app
        .expect("app");
    let template = TemplateServiceClient::new(channel.clone())
        .create_template(pb::CreateTemplateRequest {
            app_id: app.app_id.clone(),
            name: "bench-facade".into(),
            text: "##code## is your code".into(),
            ..Default::default()
        })
        .await
        .expect("create template")
        .into_inner()
        .template
        .expect("template");
    let mut flows = FlowServiceClient::new(channel.clone());
    for n in 0..3 {
        flows
            .create_flow(pb::CreateFlowRequest {
                name: format!("bench-flow-{n}"),
                nodes: vec![pb::FlowNode {
                    waiting_time_seconds: 30,
                    trigger: pb::FlowTrigger::SendFailed as i32,
                    channel: pb::Channel::Call as i32,
                    channel_cut: false,
                }],
            })
            .await
            .expect("create flow");
    }
    let sent = VerificationServiceClient::new(channel.clone())
        .send_verification(pb::SendVerificationRequest {
            app_id: app.app_id.clone(),
            template_id: template.template_id.clone(),
            phone_number: "+999001234567".into(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    Fixture {
        app_id: app.app_id,
        template_id: template.template_id,
        verification_id: sent.verification_id,
    }
}

type CallFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// Makes one call for worker `n`.
type Caller = Arc<dyn Fn(usize) -> CallFuture + Send + Sync>;

/// Numbers handed out so far, over the whole run: every send of every cell goes to a number
/// never used before, so no per-number limit or pending verification ever applies.
static PHONES_USED: AtomicU64 = AtomicU64::new(0);

/// A fresh test number per send (10 million of them; a full run sends about a million).
fn next_phone() -> String {
    format!(
        "+99900{:07}",
        PHONES_USED.fetch_add(1, Ordering::Relaxed) % 10_000_000
    )
}

fn grpc_caller(method: Option<Method>, channels: Vec<Channel>, fixture: &Arc<Fixture>) -> Caller {
    let fixture = fixture.clone();
    Arc::new(move |n| {
        let channel = channels[n % channels.len()].clone();
        let fixture = fixture.clone();
        Box::pin(async move {
            let result = match method {
                None => HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .map(drop),
                Some(Method::ListFlows) => FlowServiceClient::new(channel)
                    .list_flows(pb::ListFlowsRequest {})
                    .await
                    .map(drop),
                Some(Method::GetRecord) => RecordServiceClient::new(channel)
                    .get_record(pb::GetRecordRequest {
                        verification_id: fixture.verification_id.clone(),
                    })
                    .await
                    .map(drop),
                Some(Method::SendVerification) => VerificationServiceClient::new(channel)
                    .send_verification(pb::SendVerificationRequest {
                        app_id: fixture.app_id.clone(),
                        template_id: fixture.template_id.clone(),
                        phone_number: next_phone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
            };
            result.map_err(|status| format!("{:?}: {}", status.code(), status.message()))
        })
    })
}

fn direct_caller(method: Method, sandbox: SocketAddr, fixture: &Arc<Fixture>) -> Caller {
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("reqwest client");
    let base = format!("http://{sandbox}");
    let fixture = fixture.clone();
    Arc::new(move |_| {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = sign(KEY, SECRET, &timestamp);
        let request = match method {
            Method::ListFlows => http.get(format!("{base}/flow/list")),
            Method::GetRecord => http.get(format!(
                "{base}/verification/record/{}",
                fixture.verification_id
            )),
            Method::SendVerification => {
                http.post(format!("{base}/verification/send")).body(format!(
                    r#"{{"appId":"{}","templateId":{},"to":"{}"}}"#,
                    fixture.app_id,
                    fixture.template_id,
                    // ITNIO's `to` is digits only (the facade strips the `+` the same way).
                    next_phone().trim_start_matches('+')
                ))
            }
        }
        .header("Api-Key", KEY)
        .header("Timestamp", timestamp)
        .header("Sign", signature)
        .header("Content-Type", "application/json;charset=UTF-8");
        Box::pin(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            let ok = body.windows(12).any(|w| w == br#""status":"0""#)
                || body.windows(10).any(|w| w == br#""status":0"#);
            if status.is_success() && ok {
                Ok(())
            } else {
                Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))
            }
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Measuring

#[derive(Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    facade_cpu_us: f64,
    /// Times a facade thread was switched onto a CPU, per request.
    facade_switches: f64,
    sandbox_cpu_us: f64,
    /// This process (the load generator: gRPC or REST client side).
    bench_cpu_us: f64,
    rss_mib: f64,
    /// Calls made, the warm-up's included (what the store counters of the cell saw).
    calls: f64,
}

/// Runs `concurrency` closed-loop workers for `window` (after a warm-up) and measures.
async fn measure(
    caller: &Caller,
    concurrency: usize,
    window: Duration,
    facade: u32,
    sandbox: u32,
) -> Figures {
    let self_pid = std::process::id();
    let run = |duration: Duration| {
        let mut workers = tokio::task::JoinSet::new();
        let until = Instant::now() + duration;
        for n in 0..concurrency {
            let caller = caller.clone();
            workers.spawn(async move {
                let mut latencies = Vec::with_capacity(16_384);
                while Instant::now() < until {
                    let started = Instant::now();
                    if let Err(e) = caller(n).await {
                        panic!("call failed during the benchmark: {e}");
                    }
                    latencies.push(started.elapsed().as_nanos() as u64);
                }
                latencies
            });
        }
        workers.join_all()
    };
    let warm_calls: usize = run(WARMUP).await.iter().map(Vec::len).sum();
    let ((facade_cpu, facade_runs), sandbox_cpu, bench_cpu) =
        (schedstat(facade), cpu_ns(sandbox), cpu_ns(self_pid));
    let started = Instant::now();
    let mut latencies: Vec<u64> = run(window).await.into_iter().flatten().collect();
    let elapsed = started.elapsed().as_secs_f64();
    let (facade_cpu_after, facade_runs_after) = schedstat(facade);
    let (facade_cpu, facade_runs) = (
        facade_cpu_after - facade_cpu,
        facade_runs_after - facade_runs,
    );
    let sandbox_cpu = cpu_ns(sandbox) - sandbox_cpu;
    let bench_cpu = cpu_ns(self_pid) - bench_cpu;
    latencies.sort_unstable();
    let count = latencies.len().max(1) as f64;
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(index).copied().unwrap_or_default() as f64 / 1000.0
    };
    Figures {
        rps: latencies.len() as f64 / elapsed,
        p50_us: quantile(0.50),
        p99_us: quantile(0.99),
        p999_us: quantile(0.999),
        facade_cpu_us: facade_cpu as f64 / 1000.0 / count,
        facade_switches: facade_runs as f64 / count,
        sandbox_cpu_us: sandbox_cpu as f64 / 1000.0 / count,
        bench_cpu_us: bench_cpu as f64 / 1000.0 / count,
        rss_mib: rss(facade) as f64 / 1_048_576.0,
        calls: (warm_calls + latencies.len()) as f64,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn median_figures(rounds: &[Figures]) -> Figures {
    let m = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect());
    Figures {
        rps: m(|f| f.rps),
        p50_us: m(|f| f.p50_us),
        p99_us: m(|f| f.p99_us),
        p999_us: m(|f| f.p999_us),
        facade_cpu_us: m(|f| f.facade_cpu_us),
        facade_switches: m(|f| f.facade_switches),
        sandbox_cpu_us: m(|f| f.sandbox_cpu_us),
        bench_cpu_us: m(|f| f.bench_cpu_us),
        rss_mib: m(|f| f.rss_mib),
        calls: m(|f| f.calls),
    }
}

/// One cell of the table: a path, a method (none for the floor) and a concurrency.
struct Cell {
    path: Path,
    method: Option<Method>,
    concurrency: usize,
    rounds: Vec<Figures>,
    /// What the store did for the cell's calls (cells that send), over all rounds.
    store: store::Cost,
}

impl Cell {
    fn new(path: Path, method: Option<Method>, concurrency: usize) -> Self {
        Self {
            path,
            method,
            concurrency,
            rounds: Vec::new(),
            store: store::Cost::default(),
        }
    }

    /// Whether the store's work is counted for this cell: sends through a facade.
    fn counts_store(&self) -> bool {
        self.method == Some(Method::SendVerification)
            && matches!(self.path, Path::Facade | Path::FacadeRedis)
    }

    fn label(&self) -> String {
        format!(
            "{} {} c={}",
            self.method.map_or("Health/Check", Method::name),
            self.path.name(),
            self.concurrency
        )
    }
}

impl Cell {
    fn figures(&self) -> Figures {
        median_figures(&self.rounds)
    }
}

struct Options {
    window: Duration,
    rounds: usize,
    /// `--redis` or `FACADE_BENCH_REDIS=1`: a second facade with its state in a `redis-server` of
    /// the bench's own, measured beside the memory one.
    redis: bool,
}

impl Options {
    fn from_env_and_args() -> Self {
        let quick = std::env::args().any(|a| a == "--quick");
        let (mut secs, mut rounds) = if quick { (0.8, 1) } else { (2.0, 3) };
        if let Some(s) = std::env::var("FACADE_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            secs = s;
        }
        if let Some(r) = std::env::var("FACADE_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            rounds = r;
        }
        let redis = std::env::args().any(|a| a == "--redis")
            || std::env::var("FACADE_BENCH_REDIS").is_ok_and(|v| v == "1");
        Self {
            window: Duration::from_secs_f64(secs),
            rounds: rounds.max(1),
            redis,
        }
    }
}

/// First call on each of `FRESH_CONNECTIONS` new connections: (connect ms, first call ms) lists.
async fn fresh_connections(addr: SocketAddr) -> (Vec<f64>, Vec<f64>) {
    let mut connects = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..FRESH_CONNECTIONS {
        let started = Instant::now();
        let channel = endpoint(addr).connect().await.expect("connect");
        connects.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        FlowServiceClient::new(channel)
            .list_flows(pb::ListFlowsRequest {})
            .await
            .expect("first call");
        firsts.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (connects, firsts)
}

/// Fresh facades: exec → SERVING (ms) each, then idle CPU (ms per s) and RSS (MiB) of the last.
async fn fresh_processes(sandbox: SocketAddr, guard_policy: &FilePath) -> (Vec<f64>, f64, f64) {
    let mut starts = Vec::new();
    let mut last = None;
    for _ in 0..STARTS {
        let started = Instant::now();
        let facade = Server::facade(sandbox, guard_policy, None).await;
        facade.wait_serving().await;
        starts.push(started.elapsed().as_secs_f64() * 1000.0);
        last = Some(facade);
    }
    let facade = last.expect("at least one start");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_before = cpu_ns(facade.pid());
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cpu_ms_per_s =
        (cpu_ns(facade.pid()) - cpu_before) as f64 / 1e6 / IDLE_WINDOW.as_secs_f64();
    let idle_rss_mib = rss(facade.pid()) as f64 / 1_048_576.0;
    (starts, idle_cpu_ms_per_s, idle_rss_mib)
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn print_table(cells: &[Cell]) {
    let find = |path: Path, method: Option<Method>, c: usize| {
        cells
            .iter()
            .find(|cell| cell.path == path && cell.method == method && cell.concurrency == c)
            .map(Cell::figures)
            .expect("every cell measured")
    };
    println!(
        "| method | c | path | req/s | p50 µs | p99 µs | p99.9 µs | facade CPU µs/req | facade switches/req | sandbox CPU µs/req | bench CPU µs/req | facade RSS MiB | req/s ÷ floor | req/s ÷ direct | p50 ÷ floor | p50 ÷ direct |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for cell in cells {
        let f = cell.figures();
        let floor = find(Path::Floor, None, cell.concurrency);
        let ratios = match cell.method {
            Some(method) => {
                let direct = find(Path::Direct, Some(method), cell.concurrency);
                format!(
                    "{:.2} | {:.2} | {:.2} | {:.2}",
                    f.rps / floor.rps,
                    f.rps / direct.rps,
                    f.p50_us / floor.p50_us,
                    f.p50_us / direct.p50_us
                )
            }
            None => "1.00 | — | 1.00 | —".to_owned(),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {ratios} |",
            cell.method.map_or("Health/Check", Method::name),
            cell.concurrency,
            cell.path.name(),
            f.rps,
            f.p50_us,
            f.p99_us,
            f.p999_us,
            f.facade_cpu_us,
            f.facade_switches,
            f.sandbox_cpu_us,
            f.bench_cpu_us,
            f.rss_mib,
        );
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

/// The rate of floor and direct done one after the other: 1/(1/floor + 1/direct).
fn combined_rps(floor: &Figures, direct: &Figures) -> f64 {
    1.0 / (1.0 / floor.rps + 1.0 / direct.rps)
}

/// The median figures of one measured cell.
fn find(cells: &[Cell], path: Path, method: Option<Method>, concurrency: usize) -> Figures {
    cells
        .iter()
        .find(|cell| cell.path == path && cell.method == method && cell.concurrency == concurrency)
        .map(Cell::figures)
        .expect("every cell measured")
}

fn print_targets(cells: &[Cell], firsts: &[f64], starts: &[f64], idle_cpu: f64, idle_rss: f64) {
    let find = |path, method, c| find(cells, path, method, c);
    println!("\n| target (issue 10 item 2) | measured | limit | result |");
    println!("|---|---|---|---|");
    for method in Method::ALL {
        let (floor, direct, facade) = (
            find(Path::Floor, None, 1),
            find(Path::Direct, Some(method), 1),
            find(Path::Facade, Some(method), 1),
        );
        let limit = 1.15 * (floor.p50_us + direct.p50_us);
        println!(
            "| {} c=1 p50 ≤ 1.15 × (floor + direct) | {:.0} µs ({:.2}×) | {:.0} µs | {} |",
            method.name(),
            facade.p50_us,
            facade.p50_us / (floor.p50_us + direct.p50_us),
            limit,
            verdict(facade.p50_us <= limit)
        );
    }
    for method in Method::ALL {
        let (floor, direct, facade) = (
            find(Path::Floor, None, 64),
            find(Path::Direct, Some(method), 64),
            find(Path::Facade, Some(method), 64),
        );
        let combined = combined_rps(&floor, &direct);
        println!(
            "| {} c=64 req/s ≥ 0.85 × 1/(1/floor + 1/direct) | {:.0} ({:.2}×) | {:.0} | {} |",
            method.name(),
            facade.rps,
            facade.rps / combined,
            0.85 * combined,
            verdict(facade.rps >= 0.85 * combined)
        );
    }
    for method in Method::ALL {
        let facade = find(Path::Facade, Some(method), 64);
        println!(
            "| {} c=64 p99 ≤ 3 × p50 | {:.0} µs ({:.2}×) | {:.0} µs | {} |",
            method.name(),
            facade.p99_us,
            facade.p99_us / facade.p50_us,
            3.0 * facade.p50_us,
            verdict(facade.p99_us <= 3.0 * facade.p50_us)
        );
    }
    let slowest_first = firsts.iter().copied().fold(0.0, f64::max);
    println!(
        "| first call on a fresh connection ≤ 5 ms (slowest of {FRESH_CONNECTIONS}) | {slowest_first:.2} ms | 5 ms | {} |",
        verdict(slowest_first <= 5.0)
    );
    let start = median(starts.to_vec());
    println!(
        "| exec → SERVING < 10 ms (median of {STARTS}) | {start:.1} ms | 10 ms | {} |",
        verdict(start < 10.0)
    );
    println!(
        "| idle CPU < 1 ms per s | {idle_cpu:.3} ms/s | 1 ms/s | {} |",
        verdict(idle_cpu < 1.0)
    );
    println!(
        "| idle RSS < 20 MB | {idle_rss:.1} MiB | 20 MB | {} |",
        verdict(idle_rss * 1.048_576 < 20.0)
    );
}

/// Where the CPU of a facade call goes, against the floor and direct cells of the same run (all
/// µs per call). Glue is the facade's CPU beyond a gRPC server (the floor's facade side) and a
/// REST client (the direct cell's load generator). The sandbox answers the same REST request in
/// the direct and facade cells and the load generator makes the same gRPC call in the floor and
/// facade cells, so any rise in their columns is the cost of the three-process chain, not of
/// their work. "With zero glue" scales the c=64 ratio by the chain's CPU without the glue, at the
/// same utilisation of the machine: what a facade doing nothing beyond gRPC in and REST out would
/// reach in this run.
fn print_chain_accounting(cells: &[Cell]) {
    println!(
        "\n| method | c | facade CPU (glue) | sandbox CPU: direct → chain | load generator CPU: floor → chain | chain CPU ÷ (floor + direct) | c=64 ratio | c=64 ratio with zero glue |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for concurrency in CONCURRENCIES {
        for method in Method::ALL {
            let floor = find(cells, Path::Floor, None, concurrency);
            let direct = find(cells, Path::Direct, Some(method), concurrency);
            let facade = find(cells, Path::Facade, Some(method), concurrency);
            let glue = facade.facade_cpu_us - floor.facade_cpu_us - direct.bench_cpu_us;
            let chain = facade.facade_cpu_us + facade.sandbox_cpu_us + facade.bench_cpu_us;
            let separate = floor.facade_cpu_us
                + floor.bench_cpu_us
                + direct.sandbox_cpu_us
                + direct.bench_cpu_us;
            let (ratio, zero_glue) = if concurrency == 64 {
                let ratio = facade.rps / combined_rps(&floor, &direct);
                (
                    format!("{ratio:.2}"),
                    format!("{:.2}", ratio * chain / (chain - glue.max(0.0))),
                )
            } else {
                ("—".to_owned(), "—".to_owned())
            };
            println!(
                "| {} | {concurrency} | {:.1} ({glue:.1}) | {:.1} → {:.1} | {:.1} → {:.1} | {chain:.1} ÷ {separate:.1} = {:.2} | {ratio} | {zero_glue} |",
                method.name(),
                facade.facade_cpu_us,
                direct.sandbox_cpu_us,
                facade.sandbox_cpu_us,
                floor.bench_cpu_us,
                facade.bench_cpu_us,
                chain / separate,
            );
        }
    }
}

/// Every cell of a run, in the order measured: per concurrency the floor, then each method
/// directly and through the facade (and through the Redis facade with `--redis`).
fn all_cells(redis: bool) -> Vec<Cell> {
    let mut paths = vec![Path::Direct, Path::Facade];
    if redis {
        paths.push(Path::FacadeRedis);
    }
    let mut cells = Vec::new();
    for concurrency in CONCURRENCIES {
        cells.push(Cell::new(Path::Floor, None, concurrency));
        for method in Method::ALL {
            for &path in &paths {
                cells.push(Cell::new(path, Some(method), concurrency));
            }
        }
    }
    cells
}

/// `MAX_CONNECTIONS` connections to the facade at `addr`.
async fn connections(addr: SocketAddr) -> Vec<Channel> {
    let mut channels = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        channels.push(endpoint(addr).connect().await.expect("connect"));
    }
    channels
}

/// A facade under measurement: its process, its connections and what counts its store's work.
struct Measured {
    server: Server,
    channels: Vec<Channel>,
    probe: store::Probe,
}

impl Measured {
    async fn new(server: Server, redis: Option<&common::redis::RedisServer>) -> Self {
        server.wait_serving().await;
        let probe = store::Probe::new(server.metrics_addr().await, redis).await;
        Self {
            channels: connections(server.addr).await,
            server,
            probe,
        }
    }
}

/// Measures one round of `cell` (with the store's work around it where it counts).
async fn measure_cell(
    cell: &mut Cell,
    facade: &Measured,
    sandbox: &Server,
    fixture: &Arc<Fixture>,
    window: Duration,
) {
    let connections = facade.channels[..cell.concurrency.min(MAX_CONNECTIONS)].to_vec();
    let caller = match (cell.path, cell.method) {
        (Path::Direct, Some(method)) => direct_caller(method, sandbox.addr, fixture),
        (_, method) => grpc_caller(method, connections, fixture),
    };
    let counts = cell.counts_store();
    let before = if counts {
        Some(facade.probe.snapshot().await)
    } else {
        None
    };
    let pid = facade.server.pid();
    let figures = measure(&caller, cell.concurrency, window, pid, sandbox.pid()).await;
    if let Some(before) = before {
        let after = facade.probe.snapshot().await;
        cell.store.add(&before, &after, figures.calls);
    }
    cell.rounds.push(figures);
}

#[tokio::main]
async fn main() {
    if !common::under_cargo_bench() {
        return;
    }
    let options = Options::from_env_and_args();
    assert!(
        !(options.redis && std::env::var_os("REDIS_URL").is_some()),
        "unset REDIS_URL: --redis compares the memory store with a redis-server of its own"
    );
    let dir = TempDir::new("facade-bench");
    let guard_policy = write_guard_policy(&dir);
    let sandbox = Server::sandbox().await;
    let facade = Server::facade(sandbox.addr, &guard_policy, None).await;
    let fixture = Arc::new(prepare(&facade.wait_serving().await).await);
    let facade = Measured::new(facade, None).await;
    // The Redis facade runs beside the memory one (idle while the other is measured), so both
    // are measured in the same time window, against the same sandbox and fixture.
    let redis = if options.redis {
        Some(common::redis::RedisServer::start().await)
    } else {
        None
    };
    let redis_facade = match &redis {
        Some(redis) => {
            let server = Server::facade(sandbox.addr, &guard_policy, Some(&redis.url())).await;
            Some(Measured::new(server, Some(redis)).await)
        }
        None => None,
    };
    // For attaching a profiler to one cell (`perf record -p PID` once the cell's line appears).
    eprintln!(
        "facade pid {}, sandbox pid {}{}",
        facade.server.pid(),
        sandbox.pid(),
        redis_facade.as_ref().map_or(String::new(), |r| format!(
            ", Redis facade pid {}",
            r.server.pid()
        ))
    );

    let mut cells = all_cells(options.redis);
    for round in 1..=options.rounds {
        eprintln!("round {round}/{}", options.rounds);
        for cell in &mut cells {
            eprintln!("cell {}", cell.label());
            let measured = match (cell.path, &redis_facade) {
                (Path::FacadeRedis, Some(redis_facade)) => redis_facade,
                _ => &facade,
            };
            measure_cell(cell, measured, &sandbox, &fixture, options.window).await;
        }
    }
    drop(redis_facade);
    drop(redis);
    let (connects, firsts) = fresh_connections(facade.server.addr).await;
    drop(facade);
    let (starts, idle_cpu, idle_rss) = fresh_processes(sandbox.addr, &guard_policy).await;

    println!(
        "facade benchmark: {} round(s) of {:.1} s per cell, medians; load generator in-process; facade WORKER_THREADS={}, ITNIO_HTTP_VERSION={}, store: {}\n",
        options.rounds,
        options.window.as_secs_f64(),
        std::env::var("FACADE_BENCH_WORKERS").unwrap_or_else(|_| "default".into()),
        std::env::var("ITNIO_HTTP_VERSION").unwrap_or_else(|_| "default (http1)".into()),
        match (options.redis, std::env::var_os("REDIS_URL").is_some()) {
            (true, _) => "memory, and Redis (facade+redis rows)",
            (false, true) => "Redis at REDIS_URL",
            (false, false) => "memory",
        }
    );
    print_table(&cells);
    println!(
        "\nfresh connections ({FRESH_CONNECTIONS}): connect median {:.2} ms; first ListFlows median {:.2} ms, slowest {:.2} ms",
        median(connects),
        median(firsts.clone()),
        firsts.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "exec → SERVING ({STARTS} starts): median {:.1} ms, slowest {:.1} ms; idle: {idle_cpu:.3} ms CPU per s, RSS {idle_rss:.1} MiB",
        median(starts.clone()),
        starts.iter().copied().fold(0.0, f64::max)
    );
    print_targets(&cells, &firsts, &starts, idle_cpu, idle_rss);
    print_chain_accounting(&cells);
    store::print_store_costs(&cells);
    if options.redis {
        store::print_redis_against_memory(&cells);
    }
}

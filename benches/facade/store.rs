//! What the facade's store does per send, and the `--redis` comparison of the two backends.
//!
//! Around each measured cell that sends, a [`Probe`] reads the facade's
//! `itnio_store_round_trips_total` (summed over its labels; "n/a" while the facade does not export
//! it) and, for the Redis facade, `INFO commandstats` of its `redis-server` (calls per command)
//! and that server's CPU time. The deltas are divided by the calls the cell made, warm-up
//! included, since the counters see those too.

use std::{collections::BTreeMap, net::SocketAddr};

use super::{CONCURRENCIES, Cell, Method, Path, cpu_ns, find};
use crate::common::redis::RedisServer;

/// The facade's counter of store round trips (any labels, e.g. `operation`).
const ROUND_TRIPS: &str = "itnio_store_round_trips_total";

/// Reads a facade's store counters.
pub struct Probe {
    metrics: SocketAddr,
    http: reqwest::Client,
    redis: Option<RedisSide>,
}

/// A connection to the facade's `redis-server` (made once, so its own handshake is not counted
/// in any cell) and that server's pid.
struct RedisSide {
    connection: redis::aio::MultiplexedConnection,
    pid: Option<u32>,
}

/// The store's counters at one moment.
pub struct Snapshot {
    /// Calls per Redis command so far; the probe's own `INFO` left out.
    commands: BTreeMap<String, u64>,
    round_trips: Option<f64>,
    redis_cpu_ns: u64,
}

impl Probe {
    /// A probe of the facade serving `/metrics` at `metrics`, storing in `redis` if given.
    pub async fn new(metrics: SocketAddr, redis: Option<&RedisServer>) -> Self {
        let redis = match redis {
            Some(server) => Some(RedisSide {
                connection: redis::Client::open(server.url())
                    .expect("the harness's Redis URL")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect to the bench's redis-server"),
                pid: server.pid(),
            }),
            None => None,
        };
        Self {
            metrics,
            http: reqwest::Client::new(),
            redis,
        }
    }

    pub async fn snapshot(&self) -> Snapshot {
        let (commands, redis_cpu_ns) = match &self.redis {
            Some(side) => (commandstats(side).await, side.pid.map_or(0, cpu_ns)),
            None => (BTreeMap::new(), 0),
        };
        Snapshot {
            commands,
            round_trips: self.round_trips().await,
            redis_cpu_ns,
        }
    }

    /// The sum of every `itnio_store_round_trips_total` sample; `None` if there is none.
    async fn round_trips(&self) -> Option<f64> {
        let url = format!("http://{}/metrics", self.metrics);
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        let samples: Vec<f64> = text
            .lines()
            .filter(|line| {
                line.strip_prefix(ROUND_TRIPS)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect();
        (!samples.is_empty()).then(|| samples.iter().sum())
    }
}

/// `INFO commandstats` as calls per command, without `info` (the probe's own).
async fn commandstats(side: &RedisSide) -> BTreeMap<String, u64> {
    let mut connection = side.connection.clone();
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO commandstats");
    text.lines()
        .filter_map(|line| {
            // cmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,rejected_calls=0,...
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .filter(|(name, _)| name != "info")
        .collect()
}

/// What the store did for one cell's calls, summed over its rounds.
#[derive(Default)]
pub struct Cost {
    calls: f64,
    commands: BTreeMap<String, u64>,
    /// Per round; the counter is reported only if every round had it.
    round_trips: Vec<Option<f64>>,
    redis_cpu_ns: u64,
}

impl Cost {
    /// Adds the counters' growth from `before` to `after` over `calls` calls.
    pub fn add(&mut self, before: &Snapshot, after: &Snapshot, calls: f64) {
        self.calls += calls;
        for (name, &total) in &after.commands {
            let grew = total.saturating_sub(before.commands.get(name).copied().unwrap_or(0));
            if grew > 0 {
                *self.commands.entry(name.clone()).or_default() += grew;
            }
        }
        self.round_trips
            .push(match (before.round_trips, after.round_trips) {
                (Some(before), Some(after)) => Some(after - before),
                _ => None,
            });
        self.redis_cpu_ns += after.redis_cpu_ns.saturating_sub(before.redis_cpu_ns);
    }

    fn per_call(&self, value: f64) -> f64 {
        value / self.calls.max(1.0)
    }

    /// Redis commands per call, all together and by command (most frequent first).
    fn redis_commands(&self) -> (String, String) {
        let total: u64 = self.commands.values().sum();
        let mut by_command: Vec<(&String, &u64)> = self.commands.iter().collect();
        by_command.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = by_command
            .iter()
            .map(|(name, n)| format!("{name} {:.2}", self.per_call(**n as f64)))
            .collect();
        (
            format!("{:.2}", self.per_call(total as f64)),
            if listed.is_empty() {
                "none".to_owned()
            } else {
                listed.join(", ")
            },
        )
    }

    fn round_trips_per_call(&self) -> String {
        let rounds: Option<Vec<f64>> = self.round_trips.iter().copied().collect();
        match rounds {
            Some(rounds) if !rounds.is_empty() => {
                format!("{:.2}", self.per_call(rounds.iter().sum()))
            }
            _ => "n/a".to_owned(),
        }
    }
}

/// The store's work per send, for each facade cell that sends.
pub fn print_store_costs(cells: &[Cell]) {
    println!(
        "\n| method | c | path | calls counted | Redis commands per send | by command, per send | {ROUND_TRIPS} per send | redis-server CPU µs per send |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for cell in cells.iter().filter(|cell| cell.counts_store()) {
        let cost = &cell.store;
        let (total, by_command, cpu) = match cell.path {
            Path::FacadeRedis => {
                let (total, by_command) = cost.redis_commands();
                let cpu = format!("{:.1}", cost.per_call(cost.redis_cpu_ns as f64) / 1000.0);
                (total, by_command, cpu)
            }
            _ => ("— (memory)".to_owned(), "—".to_owned(), "—".to_owned()),
        };
        println!(
            "| {} | {} | {} | {:.0} | {total} | {by_command} | {} | {cpu} |",
            cell.method.map_or("Health/Check", Method::name),
            cell.concurrency,
            cell.path.name(),
            cost.calls,
            cost.round_trips_per_call(),
        );
    }
}

/// Each method and concurrency through the Redis facade against the memory facade, same run.
pub fn print_redis_against_memory(cells: &[Cell]) {
    println!(
        "\n| method | c | memory req/s | Redis req/s | req/s Redis ÷ memory | memory p50 µs | Redis p50 µs | p50 Redis ÷ memory | memory p99 µs | Redis p99 µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for concurrency in CONCURRENCIES {
        for method in Method::ALL {
            let memory = find(cells, Path::Facade, Some(method), concurrency);
            let redis = find(cells, Path::FacadeRedis, Some(method), concurrency);
            println!(
                "| {} | {concurrency} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} |",
                method.name(),
                memory.rps,
                redis.rps,
                redis.rps / memory.rps,
                memory.p50_us,
                redis.p50_us,
                redis.p50_us / memory.p50_us,
                memory.p99_us,
                redis.p99_us,
            );
        }
    }
    let send = Some(Method::SendVerification);
    let (memory_64, redis_64) = (
        find(cells, Path::Facade, send, 64),
        find(cells, Path::FacadeRedis, send, 64),
    );
    let (memory_1, redis_1) = (
        find(cells, Path::Facade, send, 1),
        find(cells, Path::FacadeRedis, send, 1),
    );
    println!(
        "\nRedis ÷ memory, SendVerification: c=64 req/s {:.2} ({:.0} ÷ {:.0}); c=1 p50 {:.2} ({:.0} µs ÷ {:.0} µs)",
        redis_64.rps / memory_64.rps,
        redis_64.rps,
        memory_64.rps,
        redis_1.p50_us / memory_1.p50_us,
        redis_1.p50_us,
        memory_1.p50_us,
    );
}

//! Benchmark: how long the in-process store holds its lock while it grows and while it sweeps.
//!
//! Every guard send writes records with a 24-hour TTL, so on one busy replica the memory store
//! holds hundreds of thousands of entries. Growing the map (rehashing) and sweeping expired
//! entries happen inside a write, under the store's lock, which every other send, check and
//! quota count then waits for; with one worker thread the whole process waits. This measures the
//! slowest single write while `ENTRIES` keys are written (growth) and the write that sweeps
//! `ENTRIES` expired keys, plus each phase's total. Tokio time is paused, so expiry is exact and
//! the sweep runs on the write chosen for it; durations are real (`std::time::Instant`).
//!
//! Run: `cargo bench --bench memory_store` (`MEMORY_STORE_BENCH_ENTRIES`, default 1,000,000).

#![allow(
    clippy::disallowed_methods,
    reason = "tokio time is paused here; the durations measured are real (std's clock)"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use itnio_otp_grpc::store::{Key, MemoryStore, Put, Store};

const DAY: Duration = Duration::from_secs(86_400);

/// The key a guard verification record would have.
fn key(n: usize) -> Key {
    Key::new("guard", &["verification", &format!("2261124{n:013}")])
}

/// Writes `count` keys with `ttl`; returns (slowest write, total).
async fn fill(store: &MemoryStore, count: usize, ttl: Duration) -> (Duration, Duration) {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for n in 0..count {
        let write = Instant::now();
        store
            .put(&key(n), b"{\"app\":\"x\"}", ttl, Put::Always)
            .await
            .expect("memory store");
        slowest = slowest.max(write.elapsed());
    }
    (slowest, started.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    if !common::under_cargo_bench() {
        return;
    }
    let entries = std::env::var("MEMORY_STORE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);

    let growing = MemoryStore::default();
    let (slowest, total) = fill(&growing, entries, DAY).await;
    println!("memory store, {entries} entries\n");
    println!("| phase | slowest write ms | total ms |");
    println!("|---|---|---|");
    println!(
        "| {entries} writes, 24 h TTL (growth) | {:.2} | {:.0} |",
        ms(slowest),
        ms(total)
    );
    drop(growing);

    let expiring = MemoryStore::default();
    fill(&expiring, entries, Duration::from_secs(1)).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let (sweep, _) = fill(&expiring, 1, DAY).await;
    println!(
        "| the write that sweeps {entries} expired entries | {:.2} | {:.2} |",
        ms(sweep),
        ms(sweep)
    );
}

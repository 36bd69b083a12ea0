//! The global cap on upstream record polls per second, shared by every poller.
//!
//! A token bucket refilled by a small background task, handed out through a FIFO semaphore:
//! when the cap binds, pollers wait in line, so polls are spread fairly over verifications
//! instead of going to whichever poller wakes first.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::{sync::Semaphore, time::MissedTickBehavior};

/// The refill tick: fine enough to pace polls, coarse enough to cost nothing.
const TICK: Duration = Duration::from_millis(10);

/// A shared allowance of upstream polls.
#[derive(Clone, Debug)]
pub struct PollBudget {
    tokens: Arc<Semaphore>,
}

impl PollBudget {
    /// Allows `per_second` polls per second on average, with bursts of a tenth of a second's
    /// worth (at least one). Must be called inside a Tokio runtime.
    pub fn new(per_second: u32) -> Self {
        let burst = (per_second / 10).max(1) as usize;
        let tokens = Arc::new(Semaphore::new(burst));
        tokio::spawn(refill(Arc::downgrade(&tokens), per_second, burst));
        Self { tokens }
    }

    /// Waits for this poller's turn to make one upstream poll.
    pub async fn acquire(&self) {
        // The semaphore is never closed, so acquiring cannot fail.
        if let Ok(permit) = self.tokens.acquire().await {
            permit.forget();
        }
    }
}

/// Adds tokens at the configured rate until every budget handle is gone.
async fn refill(tokens: Weak<Semaphore>, per_second: u32, burst: usize) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let per_tick = f64::from(per_second) * TICK.as_secs_f64();
    let mut owed = 0.0_f64;
    loop {
        ticker.tick().await;
        let Some(tokens) = tokens.upgrade() else {
            return;
        };
        owed += per_tick;
        let whole = owed.floor();
        owed -= whole;
        let room = burst.saturating_sub(tokens.available_permits());
        tokens.add_permits((whole as usize).min(room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_cap_paces_polls() {
        let budget = PollBudget::new(100);
        let started = tokio::time::Instant::now();
        // Paused time: a budget that never refills fails here at once instead of hanging.
        let sixty = async {
            for _ in 0..60 {
                budget.acquire().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), sixty)
            .await
            .expect("60 polls within 10 s");
        // 10 tokens of burst, then 50 more at 100/s: about half a second.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(600), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_cap_binds_pollers_take_turns() {
        let budget = PollBudget::new(30);
        let counts: Vec<_> = (0..3)
            .map(|_| Arc::new(std::sync::atomic::AtomicU32::new(0)))
            .collect();
        for count in &counts {
            let (budget, count) = (budget.clone(), Arc::clone(count));
            tokio::spawn(async move {
                // Bounded: a budget that lets everything through ends the loop (and fails the
                // counts below) instead of spinning forever.
                for _ in 0..1000 {
                    budget.acquire().await;
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let polls: Vec<u32> = counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        // 3 of burst + 60 over 2 s, shared by three greedy pollers: about 21 each.
        let total: u32 = polls.iter().sum();
        assert!((60..=66).contains(&total), "{polls:?}");
        assert!(polls.iter().all(|&p| (19..=23).contains(&p)), "{polls:?}");
    }
}

//! The global cap on upstream record polls per second, shared by every poller.
//!
//! A token bucket refilled by a small background task, handed out through a FIFO semaphore:
//! when the cap binds, pollers wait in line, so polls are spread fairly over verifications
//! instead of going to whichever poller wakes first. Each poll is then also counted in the
//! shared store, in one-second windows, so with Redis every replica together stays within one
//! `WATCH_MAX_POLLS_PER_SECOND`. If the store cannot count, polls go on under the local bucket
//! alone: reads keep working while Redis is down.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::{
    sync::{Notify, Semaphore},
    time::MissedTickBehavior,
};

use crate::store::{Key, SharedStore};

/// The refill tick: fine enough to pace polls, coarse enough to cost nothing.
const TICK: Duration = Duration::from_millis(10);
/// While the bucket is full and nobody polls, how often the refill task checks whether the
/// budget still exists: idle, it sleeps instead of ticking every [`TICK`].
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The window in which the store counts polls of every replica.
const WINDOW: Duration = Duration::from_secs(1);

/// A shared allowance of upstream polls.
#[derive(Clone, Debug)]
pub struct PollBudget {
    tokens: Arc<Semaphore>,
    /// Wakes the refill task when a token is taken from a full bucket.
    taken: Arc<Notify>,
    store: SharedStore,
    per_second: u32,
}

impl PollBudget {
    /// Allows `per_second` polls per second on average, with bursts of a tenth of a second's
    /// worth (at least one), counted across replicas in `store`. Must be called inside a Tokio
    /// runtime.
    pub fn new(per_second: u32, store: SharedStore) -> Self {
        let burst = (per_second / 10).max(1) as usize;
        let tokens = Arc::new(Semaphore::new(burst));
        let taken = Arc::new(Notify::new());
        tokio::spawn(refill(
            Arc::downgrade(&tokens),
            Arc::clone(&taken),
            per_second,
            burst,
        ));
        Self {
            tokens,
            taken,
            store,
            per_second,
        }
    }

    /// Waits for this poller's turn to make one upstream poll.
    pub async fn acquire(&self) {
        // The semaphore is never closed, so acquiring cannot fail.
        if let Ok(permit) = self.tokens.acquire().await {
            permit.forget();
        }
        self.taken.notify_one();
        self.acquire_shared().await;
    }

    /// Waits until the poll fits in the current window of every replica's polls.
    async fn acquire_shared(&self) {
        let key = Key::new("polls", &[]);
        loop {
            match self.store.increment(&key, WINDOW).await {
                Ok(counted) if counted.count <= u64::from(self.per_second) => return,
                Ok(counted) => tokio::time::sleep(counted.resets_in.max(TICK)).await,
                Err(error) => {
                    tracing::debug!(%error, "poll budget: shared count unavailable, local cap only");
                    return;
                }
            }
        }
    }
}

/// Adds tokens at the configured rate until every budget handle is gone. With the bucket full it
/// stops ticking until a token is taken (an idle service costs no timer wake-ups but one per
/// [`IDLE_CHECK`]).
async fn refill(tokens: Weak<Semaphore>, taken: Arc<Notify>, per_second: u32, burst: usize) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let per_tick = f64::from(per_second) * TICK.as_secs_f64();
    let mut owed = 0.0_f64;
    loop {
        let full = match tokens.upgrade() {
            Some(tokens) => tokens.available_permits() >= burst,
            None => return,
        };
        if full {
            tokio::select! {
                () = taken.notified() => {}
                () = tokio::time::sleep(IDLE_CHECK) => continue,
            }
            ticker.reset();
            owed = 0.0;
        }
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

    use crate::store::{MemoryStore, testing::Down};

    fn memory() -> SharedStore {
        Arc::new(MemoryStore::default())
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_paces_polls() {
        let budget = PollBudget::new(100, memory());
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
    async fn an_idle_budget_sleeps_and_paces_again_when_polls_resume() {
        let budget = PollBudget::new(100, memory());
        // Full and unused for a while: the refill task waits instead of ticking.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let started = tokio::time::Instant::now();
        let sixty = async {
            for _ in 0..60 {
                budget.acquire().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), sixty)
            .await
            .expect("the first take wakes the refill task");
        // The same pace as a fresh budget: 10 tokens of burst, then 50 more at 100/s.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(600), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_cap_binds_pollers_take_turns() {
        let budget = PollBudget::new(30, memory());
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

    #[tokio::test(start_paused = true)]
    async fn replicas_sharing_a_store_share_the_cap() {
        // Two replicas, each with its own bucket, one store: 20 polls/s together, not 40.
        let store = memory();
        let replicas = [
            PollBudget::new(20, store.clone()),
            PollBudget::new(20, store),
        ];
        let started = tokio::time::Instant::now();
        let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        for budget in replicas {
            let polls = Arc::clone(&polls);
            tokio::spawn(async move {
                loop {
                    budget.acquire().await;
                    polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let total = polls.load(std::sync::atomic::Ordering::Relaxed);
        // Three windows opened (0 s, 1 s, 2 s): at most 60, and the cap was reached in each.
        assert!(
            (55..=60).contains(&total),
            "{total} polls in {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn polls_go_on_under_the_local_cap_while_the_store_is_down() {
        let budget = PollBudget::new(100, Arc::new(Down));
        let started = tokio::time::Instant::now();
        for _ in 0..60 {
            budget.acquire().await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(600), "{elapsed:?}");
    }
}

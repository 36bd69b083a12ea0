//! The global cap on upstream record polls per second, shared fairly by the callers watching.
//!
//! A token bucket refilled by a small background task. While the cap binds, pollers wait in one
//! queue per lane (a caller, or a connection without authentication) and the refill task hands
//! tokens to the lanes in turn, one each round: a caller with 2,000 watches gets no more polls
//! than one with a single watch while both wait, so a fresh caller's first poll comes after one
//! round, not after everybody else's backlog. Within a lane pollers keep their arrival order.
//! Each poll is then also counted in the shared store, in one-second windows, so with Redis
//! every replica together stays within one `WATCH_MAX_POLLS_PER_SECOND`. If the store cannot
//! count, polls go on under the local bucket alone: reads keep working while Redis is down.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use tokio::{
    sync::{Notify, oneshot},
    time::MissedTickBehavior,
};

use super::Watcher;
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
    bucket: Arc<Mutex<Bucket>>,
    /// Wakes the refill task when a token is taken from a full bucket or a poller starts waiting.
    taken: Arc<Notify>,
    store: SharedStore,
    per_second: u32,
}

/// Tokens in hand and the pollers waiting for one, by lane.
#[derive(Debug, Default)]
struct Bucket {
    tokens: usize,
    /// Lanes with a waiting poller, in the order their next turn comes.
    turns: VecDeque<Watcher>,
    /// Each lane's waiting pollers, oldest first.
    waiting: HashMap<Watcher, VecDeque<oneshot::Sender<()>>>,
}

impl Bucket {
    /// Gives the tokens in hand to waiting pollers, one lane after the other. A poller that
    /// stopped waiting (its watch ended) costs no token.
    fn hand_out(&mut self) {
        while self.tokens > 0 {
            let Some(lane) = self.turns.pop_front() else {
                return;
            };
            let Some(queue) = self.waiting.get_mut(&lane) else {
                continue;
            };
            while let Some(poller) = queue.pop_front() {
                if poller.send(()).is_ok() {
                    self.tokens -= 1;
                    break;
                }
            }
            if queue.is_empty() {
                self.waiting.remove(&lane);
            } else {
                self.turns.push_back(lane);
            }
        }
    }
}

impl PollBudget {
    /// Allows `per_second` polls per second on average, with bursts of a tenth of a second's
    /// worth (at least one), counted across replicas in `store`. Must be called inside a Tokio
    /// runtime.
    pub fn new(per_second: u32, store: SharedStore) -> Self {
        let burst = (per_second / 10).max(1) as usize;
        let bucket = Arc::new(Mutex::new(Bucket {
            tokens: burst,
            ..Bucket::default()
        }));
        let taken = Arc::new(Notify::new());
        crate::task::spawn(refill(
            Arc::downgrade(&bucket),
            Arc::clone(&taken),
            per_second,
            burst,
        ));
        Self {
            bucket,
            taken,
            store,
            per_second,
        }
    }

    /// Waits for this poller's turn in `lane` to make one upstream poll.
    pub async fn acquire(&self, lane: &Watcher) {
        let turn = {
            let mut guard = lock(&self.bucket);
            let bucket = &mut *guard;
            if bucket.turns.is_empty() && bucket.tokens > 0 {
                bucket.tokens -= 1;
                None
            } else {
                let (turn, wait) = oneshot::channel();
                let queue = bucket.waiting.entry(lane.clone()).or_default();
                if queue.is_empty() {
                    bucket.turns.push_back(lane.clone());
                }
                queue.push_back(turn);
                Some(wait)
            }
        };
        self.taken.notify_one();
        if let Some(wait) = turn {
            // The refill task owns no sender: it only fails if the budget itself is gone.
            let _ = wait.await;
        }
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

fn lock(bucket: &Mutex<Bucket>) -> MutexGuard<'_, Bucket> {
    // Every change keeps the bucket consistent step by step: usable after a panic elsewhere.
    bucket.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds tokens at the configured rate and hands them out until every budget handle is gone.
/// With the bucket full and nobody waiting it stops ticking until a token is taken (an idle
/// service costs no timer wake-ups but one per [`IDLE_CHECK`]).
async fn refill(bucket: Weak<Mutex<Bucket>>, taken: Arc<Notify>, per_second: u32, burst: usize) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let per_tick = f64::from(per_second) * TICK.as_secs_f64();
    let mut owed = 0.0_f64;
    loop {
        let idle = match bucket.upgrade() {
            Some(bucket) => {
                let bucket = lock(&bucket);
                bucket.tokens >= burst && bucket.turns.is_empty()
            }
            None => return,
        };
        if idle {
            tokio::select! {
                () = taken.notified() => {}
                () = tokio::time::sleep(IDLE_CHECK) => continue,
            }
            ticker.reset();
            owed = 0.0;
        }
        ticker.tick().await;
        let Some(bucket) = bucket.upgrade() else {
            return;
        };
        owed += per_tick;
        let whole = owed.floor();
        owed -= whole;
        let mut bucket = lock(&bucket);
        bucket.tokens = (bucket.tokens + whole as usize).min(burst);
        bucket.hand_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{MemoryStore, testing::Down};

    fn memory() -> SharedStore {
        Arc::new(MemoryStore::default())
    }

    fn lane() -> Watcher {
        Watcher::Caller("one".into())
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_paces_polls() {
        let budget = PollBudget::new(100, memory());
        let started = tokio::time::Instant::now();
        // Paused time: a budget that never refills fails here at once instead of hanging.
        let sixty = async {
            for _ in 0..60 {
                budget.acquire(&lane()).await;
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
                budget.acquire(&lane()).await;
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
                    budget.acquire(&lane()).await;
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
    async fn a_lane_arriving_behind_a_backlog_gets_the_next_turn() {
        let budget = PollBudget::new(10, memory());
        let greedy = Watcher::Caller("greedy".into());
        let done = Arc::new(std::sync::atomic::AtomicU32::new(0));
        for _ in 0..50 {
            let (budget, greedy, done) = (budget.clone(), greedy.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                budget.acquire(&greedy).await;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
        // Let the backlog form: the burst token went to the first greedy poller.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(1), budget.acquire(&lane()))
            .await
            .expect("the fresh lane's turn comes after one round, not after 49 polls");
        // One token every 100 ms: its turn is the next one (or the one after, if a greedy
        // poller's turn was already due).
        assert!(
            started.elapsed() <= Duration::from_millis(210),
            "{:?}",
            started.elapsed()
        );
        let served = done.load(std::sync::atomic::Ordering::Relaxed);
        assert!(served <= 3, "{served} greedy polls went first");
    }

    #[tokio::test(start_paused = true)]
    async fn a_poller_that_stopped_waiting_costs_no_token() {
        let budget = PollBudget::new(10, memory());
        budget.acquire(&lane()).await; // the burst token
        let gone = Watcher::Caller("gone".into());
        // Twenty pollers that give up at once (their watches ended).
        for _ in 0..20 {
            let waiting = tokio::time::timeout(Duration::from_millis(1), budget.acquire(&gone));
            assert!(waiting.await.is_err());
        }
        let started = tokio::time::Instant::now();
        budget.acquire(&lane()).await;
        // The next token (100 ms) goes to the live poller, not to the twenty gone ones.
        assert!(
            started.elapsed() <= Duration::from_millis(110),
            "{:?}",
            started.elapsed()
        );
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
                    budget.acquire(&lane()).await;
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
            budget.acquire(&lane()).await;
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(600), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_fills_up_while_nobody_waits_and_its_tokens_are_taken_at_once() {
        let budget = PollBudget::new(100, memory());
        // The whole burst, taken at once: no poll waits while there are tokens in hand.
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            budget.acquire(&lane()).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Nobody polls for a second: the bucket refills to its burst meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            budget.acquire(&lane()).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}

//! Sliding-window send counts on the shared store's fixed windows.
//!
//! The store counts in windows that start at a counter's first increment. A sliding window of
//! length `W` is approximated the way many rate limiters do it: time is cut into buckets of `W`
//! aligned on the Unix epoch (so every replica agrees on them), each bucket is one store
//! counter living `2W`, and the count "in the last `W`" is the current bucket's count plus the
//! previous bucket's, weighted by how much of it still lies inside the window (rounded up, so
//! the estimate never undercounts an even spread). A burst at a bucket boundary therefore
//! cannot double the limit, as it could with plain fixed windows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::policy::Limit;
use crate::store::{Key, Op, weighted};

/// Wall-clock milliseconds that advance with Tokio's clock: aligned across replicas in
/// production, and moved by `tokio::time::advance` in tests.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    epoch_at_start: Duration,
    start: Instant,
}

impl WallClock {
    /// A clock reading the system time once, then following Tokio's monotonic clock.
    pub fn new() -> Self {
        Self {
            epoch_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            start: Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let now = self.epoch_at_start + self.start.elapsed();
        u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

/// One send counted against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Sends in the sliding window, this one included.
    pub count: u64,
    /// When the next send would fit again, if this one went past the limit.
    pub retry_after: Option<Duration>,
}

/// One send counted against a limit: the store operation that counts it (in the send's
/// admission batch) and how to read what it found.
#[derive(Debug, Clone)]
pub struct Counter {
    /// The window in milliseconds.
    window: u64,
    /// How much of the current bucket has passed, in milliseconds.
    elapsed: u64,
    /// The limit.
    allowed: u64,
}

impl Counter {
    /// Counts one send under `key` against `limit`: the [`Op::Slide`] to run, and the counter
    /// that reads its reply. `enforce: false` (dry-run) only stops the batch when it is over.
    pub fn new(clock: &WallClock, key: &[&str], limit: Limit, enforce: bool) -> (Op, Self) {
        let window = u64::try_from(limit.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let now = clock.now_ms();
        let (bucket, elapsed) = (now / window, now % window);
        let bucket_key = |bucket: u64| {
            let bucket = format!("{window}:{bucket}");
            let mut parts = key.to_vec();
            parts.push(&bucket);
            Key::new("guard", &parts)
        };
        let allowed = u64::from(limit.sends.get());
        let op = Op::Slide {
            current: bucket_key(bucket),
            // Before the first bucket there is none: a key no counter ever uses.
            previous: bucket_key(bucket.checked_sub(1).unwrap_or(u64::MAX)),
            ttl: limit.window * 2,
            weight: (window - elapsed, window),
            limit: allowed,
            enforce,
        };
        let counter = Self {
            window,
            elapsed,
            allowed,
        };
        (op, counter)
    }

    /// What the batch found: the sends in the sliding window (this one included) and, past the
    /// limit, when one more fits.
    pub fn hit(&self, current: u64, previous: u64) -> Hit {
        let count = current + weighted(previous, (self.window - self.elapsed, self.window));
        Hit {
            count,
            retry_after: (count > self.allowed)
                .then(|| retry_after(self.allowed, self.window, self.elapsed, previous, current)),
        }
    }
}

/// How long until one more send fits under `allowed`, in milliseconds of a `window`-long
/// bucket of which `elapsed` has passed.
fn retry_after(allowed: u64, window: u64, elapsed: u64, previous: u64, current: u64) -> Duration {
    let room = allowed.saturating_sub(1);
    let wait = if current > room {
        // This bucket alone is full: wait for the next one, then for this bucket's weight
        // there to fall to `room`.
        (window - elapsed) + weighted(current - room, (window, current))
    } else {
        // The previous bucket's weight must fall to what this one leaves free.
        let keep = weighted(room - current, (window, previous.max(1)));
        window.saturating_sub(keep).saturating_sub(elapsed)
    };
    Duration::from_millis(wait.max(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{num::NonZeroU32, sync::Arc};

    use super::*;
    use crate::store::{Batch, MemoryStore, Reply, SharedStore};

    /// Counts one send under `key` in one batch, as a send's admission does.
    async fn hit(
        store: &SharedStore,
        clock: &WallClock,
        key: &[&str],
        limit: Limit,
    ) -> Option<Hit> {
        let (op, counter) = Counter::new(clock, key, limit, true);
        let batch = Batch {
            ops: vec![op],
            release: None,
        };
        match store.run(&batch).await.ok()?.replies.as_slice() {
            [Reply::Slid { current, previous }] => Some(counter.hit(*current, *previous)),
            _ => None,
        }
    }

    fn per_minute(sends: u32) -> Limit {
        Limit {
            sends: NonZeroU32::new(sends).unwrap(),
            window: Duration::from_secs(60),
        }
    }

    /// Moves paused time to the start of the next minute-bucket of `clock`.
    async fn to_bucket_start(clock: &WallClock) {
        let into = clock.now_ms() % 60_000;
        tokio::time::advance(Duration::from_millis(60_000 - into)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_slides_instead_of_resetting() {
        let store: SharedStore = Arc::new(MemoryStore::default());
        let clock = WallClock::new();
        to_bucket_start(&clock).await;
        let limit = per_minute(4);
        tokio::time::advance(Duration::from_secs(45)).await;
        for n in 1..=4 {
            let hit = hit(&store, &clock, &["n"], limit).await.unwrap();
            assert_eq!((hit.count, hit.retry_after), (n, None));
        }
        let refused = hit(&store, &clock, &["n"], limit).await.unwrap();
        assert_eq!(refused.count, 5);
        // Five in this bucket, of which three may stay in view: 15 s to the next bucket, then
        // two fifths of it.
        assert_eq!(refused.retry_after, Some(Duration::from_secs(15 + 24)));
        // 15 s later the bucket turned. A fixed window would forget all five sends at once;
        // here they are still all in view.
        tokio::time::advance(Duration::from_secs(15)).await;
        let after_turn = hit(&store, &clock, &["n"], limit).await.unwrap();
        assert_eq!(after_turn.count, 6);
        let wait = after_turn.retry_after.unwrap();
        assert!(
            wait > Duration::ZERO && wait < Duration::from_secs(60),
            "{wait:?}"
        );
        // Once the old bucket has slid out, only this bucket's one send remains.
        tokio::time::advance(Duration::from_secs(60)).await;
        let later = hit(&store, &clock, &["n"], limit).await.unwrap();
        assert_eq!((later.count, later.retry_after), (2, None));
        // Half way through the next bucket, half of the one send before it is in view (rounded
        // up: 1), plus this one.
        tokio::time::advance(Duration::from_secs(90)).await;
        let half = hit(&store, &clock, &["n"], limit).await.unwrap();
        assert_eq!((half.count, half.retry_after), (2, None));
        let other = hit(&store, &clock, &["m"], limit).await.unwrap();
        assert_eq!(other.count, 1, "keys count apart");
    }

    #[test]
    fn retry_after_waits_for_the_previous_bucket_to_fade() {
        // 0 sent in this bucket, 10 in the previous one, limit 4 (room 3): the previous bucket
        // must weigh 3 at most, 30 % of it in view, so 70 % of the window must have passed.
        let wait = retry_after(4, 60_000, 6_000, 10, 0);
        assert_eq!(wait, Duration::from_millis(42_000 - 6_000));
        assert_eq!(
            retry_after(4, 60_000, 59_999, 10, 0),
            Duration::from_millis(1)
        );
        // One send in this bucket leaves room for two of the previous one's: 80 % must pass.
        let wait = retry_after(4, 60_000, 6_000, 10, 1);
        assert_eq!(wait, Duration::from_millis(48_000 - 6_000));
    }
}

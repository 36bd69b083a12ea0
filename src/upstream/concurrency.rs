//! The cap on ITNIO calls in flight (`UPSTREAM_MAX_CONCURRENCY`), shared by every account's
//! client: load is shed instead of queued.
//!
//! A call waits at most `UPSTREAM_QUEUE_WAIT` (and never past its own deadline) for a free slot,
//! in arrival order; after that it fails with [`UpstreamError::Overloaded`] without being sent,
//! which the caller sees as RESOURCE_EXHAUSTED with a RetryInfo. An unbounded queue would only
//! turn an overload into timeouts for everyone and memory for the queue.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{endpoint::Endpoint, error::UpstreamError};

/// Default `UPSTREAM_MAX_CONCURRENCY`: far above what the ITNIO account's rate limits let
/// through in normal use, low enough that a stalled upstream cannot pile up sockets and tasks.
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;
/// Default `UPSTREAM_QUEUE_WAIT`: rides out a burst without making a refused caller wait long.
pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_millis(50);

/// How many ITNIO calls may be in flight, and how long a call may wait for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyConfig {
    /// Calls in flight at once, over every account.
    pub max: usize,
    /// Longest wait for a slot before the call is refused.
    pub queue_wait: Duration,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            max: DEFAULT_MAX_CONCURRENCY,
            queue_wait: DEFAULT_QUEUE_WAIT,
        }
    }
}

/// The shared slots; clones share them.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    slots: Arc<Semaphore>,
    config: ConcurrencyConfig,
}

impl Default for ConcurrencyLimit {
    fn default() -> Self {
        Self::new(ConcurrencyConfig::default())
    }
}

impl ConcurrencyLimit {
    /// Slots for `config.max` calls.
    pub fn new(config: ConcurrencyConfig) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.max)),
            config,
        }
    }

    /// A slot for one call to `endpoint`, held until dropped; waits at most the queue wait or
    /// `budget` (the call's remaining time), whichever is shorter.
    pub async fn enter(
        &self,
        endpoint: Endpoint,
        budget: Duration,
    ) -> Result<OwnedSemaphorePermit, UpstreamError> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(slot);
        }
        let wait = self.config.queue_wait.min(budget);
        match tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            // The semaphore is never closed; a timeout is the only way here.
            _ => Err(UpstreamError::Overloaded {
                endpoint,
                limit: self.config.max,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: Endpoint = Endpoint::VerificationRecord;

    fn limit(max: usize, queue_wait: Duration) -> ConcurrencyLimit {
        ConcurrencyLimit::new(ConcurrencyConfig { max, queue_wait })
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_cap_are_refused_after_the_queue_wait() {
        let limit = limit(2, Duration::from_millis(50));
        let budget = Duration::from_secs(10);
        let first = limit.enter(ENDPOINT, budget).await.expect("a slot");
        let _second = limit.enter(ENDPOINT, budget).await.expect("a slot");
        let started = tokio::time::Instant::now();
        match limit.enter(ENDPOINT, budget).await {
            Err(UpstreamError::Overloaded { endpoint, limit }) => {
                assert_eq!((endpoint, limit), (ENDPOINT, 2));
            }
            other => panic!("expected Overloaded, got {other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        // A slot freed while a call waits goes to it.
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.enter(ENDPOINT, budget).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        waiting.await.expect("task").expect("the freed slot");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_never_outlasts_the_calls_own_budget() {
        let limit = limit(1, Duration::from_secs(5));
        let _held = limit.enter(ENDPOINT, Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        let refused = limit.enter(ENDPOINT, Duration::from_millis(20)).await;
        assert!(matches!(refused, Err(UpstreamError::Overloaded { .. })));
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }
}

//! Per-caller send quotas: `sends_per_minute` from the callers file, counted in the shared store
//! so the limit holds across every replica.
//!
//! Every send is counted, limited or not, in a one-minute window that starts with the caller's
//! first send in it. Counting every send keeps one rule for the store being down (sends fail
//! closed) and gives the later send guard its per-caller velocity for free.

use std::time::Duration;

use crate::{
    caller::Caller,
    error::{SendError, ServiceError},
    store::{Key, SharedStore},
};

/// The window of `sends_per_minute`.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Admits or refuses one send of a caller.
#[derive(Debug, Clone)]
pub struct SendQuota {
    store: SharedStore,
}

impl SendQuota {
    /// Quotas counted in `store`.
    pub fn new(store: SharedStore) -> Self {
        Self { store }
    }

    /// Counts one send of `caller`; refuses it with RESOURCE_EXHAUSTED when that goes past the
    /// caller's limit, and with UNAVAILABLE when the store cannot count.
    pub async fn admit(&self, caller: &Caller) -> Result<(), ServiceError> {
        let key = Key::new("sends", &[caller.name()]);
        let counted = self.store.increment(&key, WINDOW).await?;
        match caller.sends_per_minute() {
            Some(limit) if counted.count > u64::from(limit.get()) => {
                Err(SendError::CallerRateExceeded {
                    caller: caller.name().to_owned(),
                    limit: limit.get(),
                    retry_after: counted.resets_in,
                }
                .into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, sync::Arc};

    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn a_caller_over_its_limit_waits_for_the_window() {
        let quota = SendQuota::new(Arc::new(MemoryStore::default()));
        let limited = Caller::new("checkout", "default")
            .with_sends_per_minute(NonZeroU32::new(2).expect("non-zero"));
        let other = Caller::new("billing", "default");
        quota.admit(&limited).await.expect("first");
        tokio::time::advance(Duration::from_secs(15)).await;
        quota.admit(&limited).await.expect("second");
        match quota.admit(&limited).await {
            Err(ServiceError::Send(SendError::CallerRateExceeded {
                caller,
                limit,
                retry_after,
            })) => {
                assert_eq!((caller.as_str(), limit), ("checkout", 2));
                assert_eq!(retry_after, Duration::from_secs(45));
            }
            other => panic!("expected the limit, got {other:?}"),
        }
        for _ in 0..5 {
            quota.admit(&other).await.expect("unlimited caller");
        }
        tokio::time::advance(Duration::from_secs(45)).await;
        quota.admit(&limited).await.expect("a new window");
    }
}

//! Per-caller send quotas: `sends_per_minute` from the callers file, counted in the shared store
//! so the limit holds across every replica.
//!
//! Every send is counted, limited or not, in a one-minute window that starts with the caller's
//! first send in it. Counting every send keeps one rule for the store being down (sends fail
//! closed) and gives the send guard its per-caller velocity for free. The count is one
//! operation of the send's admission batch: [`count`] makes it, [`read`] reads its reply.

use std::time::Duration;

use super::SendError;
use crate::{
    caller::Caller,
    store::{Key, Op, Reply},
};

/// The window of `sends_per_minute`.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The operation that counts one send of `caller`; past the caller's limit it stops the batch.
pub fn count(caller: &Caller) -> Op {
    Op::Count {
        key: Key::new("sends", &[caller.name()]),
        window: WINDOW,
        limit: caller
            .sends_per_minute()
            .map(|limit| u64::from(limit.get())),
    }
}

/// Reads [`count`]'s reply: RESOURCE_EXHAUSTED when the send went past the caller's limit.
pub fn read(caller: &Caller, reply: Option<&Reply>) -> Result<(), SendError> {
    let (Some(limit), Some(Reply::Counted(counted))) = (caller.sends_per_minute(), reply) else {
        return Ok(());
    };
    if counted.count <= u64::from(limit.get()) {
        return Ok(());
    }
    Err(SendError::CallerRateExceeded {
        caller: caller.name().to_owned(),
        limit: limit.get(),
        retry_after: counted.resets_in,
    })
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, sync::Arc};

    use super::*;
    use crate::store::{Batch, MemoryStore, SharedStore};

    async fn admit(store: &SharedStore, caller: &Caller) -> Result<(), SendError> {
        let batch = Batch {
            ops: vec![count(caller)],
            release: None,
        };
        let replies = store.run(&batch).await?;
        read(caller, replies.replies.first())
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_over_its_limit_waits_for_the_window() {
        let store: SharedStore = Arc::new(MemoryStore::default());
        let limited = Caller::new("checkout", "default")
            .with_sends_per_minute(NonZeroU32::new(2).expect("non-zero"));
        let other = Caller::new("billing", "default");
        admit(&store, &limited).await.expect("first");
        tokio::time::advance(Duration::from_secs(15)).await;
        admit(&store, &limited).await.expect("second");
        match admit(&store, &limited).await {
            Err(SendError::CallerRateExceeded {
                caller,
                limit,
                retry_after,
            }) => {
                assert_eq!((caller.as_str(), limit), ("checkout", 2));
                assert_eq!(retry_after, Duration::from_secs(45));
            }
            other => panic!("expected the limit, got {other:?}"),
        }
        for _ in 0..5 {
            admit(&store, &other).await.expect("unlimited caller");
        }
        tokio::time::advance(Duration::from_secs(45)).await;
        admit(&store, &limited).await.expect("a new window");
    }
}

//! Shared state with two backends: in process memory (the default) or Redis (`REDIS_URL`), so
//! that N replicas behind one Kubernetes Service deduplicate, count and pace as one.
//!
//! The [`Store`] trait is deliberately small — get, put (optionally only if absent) with a TTL,
//! delete, a counter in a fixed window, and two multi-operations: a [`Batch`] that admits a send
//! (claim, counters, reads, stopping at the first refusal) and a list of [`Write`]s that settles
//! it, each in one round trip — so idempotency records, per-caller send quotas, the guard's
//! counters and the WatchRecord poll budget all fit on it, and callers never know which backend
//! runs. Values are opaque bytes; each user owns its key prefix (see [`Key`]). Every round trip
//! is counted in `itnio_store_round_trips_total{backend, operation}`.

mod batch;
mod memory;
mod redis;

use std::{fmt, sync::Arc, time::Duration};

pub use batch::{Batch, Op, Replies, Reply, Write, weighted};
pub use memory::MemoryStore;
pub use redis::{RedisStore, check_url as check_redis_url};

/// The store shared by every part of the process.
pub type SharedStore = Arc<dyn Store>;

/// Why a store operation failed. With Redis this means "not reachable or not answering in
/// time"; the memory backend never fails.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the shared state store is unavailable: {0}")]
pub struct StoreError(pub String);

/// Whether a put replaces an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Always write.
    Always,
    /// Write only if no live value exists (`SET NX`): the basis of claims and leases.
    IfAbsent,
}

/// A counter in a window that starts with the first increment and lasts `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// The count, this increment included.
    pub count: u64,
    /// Time until the window ends and the count starts again from zero.
    pub resets_in: Duration,
}

/// Shared key-value state with expiry.
#[tonic::async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// The live value under `key`, if any.
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `key` for `ttl`; returns whether it was written (always true for
    /// [`Put::Always`]).
    async fn put(
        &self,
        key: &Key,
        value: &[u8],
        ttl: Duration,
        mode: Put,
    ) -> Result<bool, StoreError>;

    /// Removes `key` (no error if it is absent).
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// Adds one to the counter under `key`, whose window of `window` starts at its first
    /// increment.
    async fn increment(&self, key: &Key, window: Duration) -> Result<WindowCount, StoreError>;

    /// Runs `batch` in one round trip; see [`Batch`].
    async fn run(&self, batch: &Batch) -> Result<Replies, StoreError>;

    /// Applies `writes` in order, in one round trip (atomically with Redis).
    async fn write(&self, writes: &[Write]) -> Result<(), StoreError>;
}

/// A namespaced store key: `itnio-otp:<kind>:<parts joined by ':'>`. Building keys in one place
/// keeps the Redis key space readable (`redis-cli --scan --pattern 'itnio-otp:idem:*'`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    /// A key of `kind` (e.g. `idem`, `quota`) made of `parts`.
    pub fn new(kind: &str, parts: &[&str]) -> Self {
        const PREFIX: &str = "itnio-otp:";
        let length = PREFIX.len() + kind.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut key = String::with_capacity(length);
        key.push_str(PREFIX);
        key.push_str(kind);
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        Self(key)
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where shared state lives.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// In this process only (one replica).
    #[default]
    Memory,
    /// In Redis, shared by every replica using the same URL.
    Redis {
        /// `redis://[user:password@]host:port[/db]` or `rediss://…`; never logged whole.
        url: String,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis { .. } => f.write_str("Redis { url: <redacted> }"),
        }
    }
}

/// Opens the configured store. Redis is connected lazily: the service starts (and serves reads)
/// even while Redis is down, and sends fail closed until it is back.
pub fn open(config: &StoreConfig) -> Result<SharedStore, StoreError> {
    Ok(match config {
        StoreConfig::Memory => Arc::new(MemoryStore::default()),
        StoreConfig::Redis { url } => Arc::new(RedisStore::connect(url)?),
    })
}

/// Stores for unit tests of the store's users.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// A store that is down: every operation fails, as with Redis unreachable.
    #[derive(Debug)]
    pub struct Down;

    #[tonic::async_trait]
    impl Store for Down {
        async fn get(&self, _: &Key) -> Result<Option<Vec<u8>>, StoreError> {
            Err(StoreError("down".into()))
        }
        async fn put(&self, _: &Key, _: &[u8], _: Duration, _: Put) -> Result<bool, StoreError> {
            Err(StoreError("down".into()))
        }
        async fn delete(&self, _: &Key) -> Result<(), StoreError> {
            Err(StoreError("down".into()))
        }
        async fn increment(&self, _: &Key, _: Duration) -> Result<WindowCount, StoreError> {
            Err(StoreError("down".into()))
        }
        async fn run(&self, _: &Batch) -> Result<Replies, StoreError> {
            Err(StoreError("down".into()))
        }
        async fn write(&self, _: &[Write]) -> Result<(), StoreError> {
            Err(StoreError("down".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        assert_eq!(
            Key::new("idem", &["checkout", "abc"]).as_str(),
            "itnio-otp:idem:checkout:abc"
        );
        assert_eq!(Key::new("polls", &[]).as_str(), "itnio-otp:polls");
    }

    #[test]
    fn debug_names_the_backend_but_never_the_redis_url() {
        let redis = StoreConfig::Redis {
            url: "redis://user:s3cret@redis.internal:6379/0".into(),
        };
        let shown = format!("{redis:?}");
        assert_eq!(shown, "Redis { url: <redacted> }");
        assert!(!shown.contains("s3cret") && !shown.contains("redis.internal"));
        assert_eq!(format!("{:?}", StoreConfig::Memory), "Memory");
    }
}

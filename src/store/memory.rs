//! The in-process backend: a map with expiry behind `std::sync::Mutex`es that are never held
//! across an `.await` (the mini-redis `db.rs` shape, without its background task).
//!
//! The map is split into [`SHARDS`] shards by a hash of the key, each behind its own lock. A busy
//! replica holds hundreds of thousands of entries (guard records live a day), and growing or
//! sweeping one map of that size holds its lock for hundreds of milliseconds, stalling every
//! send, check and quota count behind it; a shard is a 64th of that. Expired entries are swept
//! during writes, per shard, at most once a minute, so memory stays bounded by what is live plus
//! one minute of writes.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

use super::{
    Key, Put, Store, StoreError, WindowCount,
    batch::{Batch, Op, Replies, Reply, Stop, Write},
};
use crate::telemetry::metrics;

/// The `backend` label of this store's round trips.
const BACKEND: &str = "memory";

/// How often writes sweep out expired entries (per shard).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Shards of the map: the longest a write can hold a lock (growing or sweeping its shard) is a
/// `SHARDS`th of what one map would take (`cargo bench --bench memory_store`).
const SHARDS: usize = 64;

/// Shared state for one replica.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<State>]>,
    /// Picks a key's shard; randomly seeded per process like the maps themselves.
    hasher: RandomState,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_shards(SHARDS)
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    next_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires: Instant,
}

#[derive(Debug)]
enum Value {
    Bytes(Vec<u8>),
    Counter(u64),
}

impl State {
    /// The live entry under `key`; an expired one is removed on the way.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expires <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.entries.retain(|_, entry| entry.expires > now);
        self.next_sweep = Some(now + SWEEP_EVERY);
    }
}

impl MemoryStore {
    fn with_shards(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The index of `key`'s shard.
    fn shard_of(&self, key: &Key) -> usize {
        // The modulo keeps the index below the shard count, which fits in a usize.
        (self.hasher.hash_one(key.as_str()) % self.shards.len() as u64) as usize
    }

    /// The shard of `key`, locked.
    fn lock(&self, key: &Key) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still safe to use.
        self.shards[self.shard_of(key)]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |state| state.entries.len()))
            .sum()
    }
}

impl MemoryStore {
    fn read(&self, key: &Key) -> Option<Vec<u8>> {
        let mut state = self.lock(key);
        state
            .live(key.as_str(), Instant::now())
            .map(|entry| match &entry.value {
                Value::Bytes(bytes) => bytes.clone(),
                Value::Counter(count) => count.to_string().into_bytes(),
            })
    }

    /// The live counter under `key`: 0 if absent or not a number (as Redis's `tonumber`).
    fn counter(&self, key: &Key) -> u64 {
        let mut state = self.lock(key);
        match state.live(key.as_str(), Instant::now()).map(|e| &e.value) {
            Some(Value::Counter(count)) => *count,
            Some(Value::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0),
            None => 0,
        }
    }

    /// Writes `value` unless `mode` is [`Put::IfAbsent`] and a live value exists, which is
    /// then returned instead.
    fn set(&self, key: &Key, value: &[u8], ttl: Duration, mode: Put) -> Option<Vec<u8>> {
        let now = Instant::now();
        let mut state = self.lock(key);
        state.sweep(now);
        if mode == Put::IfAbsent {
            if let Some(live) = state.live(key.as_str(), now) {
                return Some(match &live.value {
                    Value::Bytes(bytes) => bytes.clone(),
                    Value::Counter(count) => count.to_string().into_bytes(),
                });
            }
        }
        let entry = Entry {
            value: Value::Bytes(value.to_vec()),
            expires: now + ttl,
        };
        state.entries.insert(key.as_str().to_owned(), entry);
        None
    }

    fn remove(&self, key: &Key) {
        self.lock(key).entries.remove(key.as_str());
    }

    fn count(&self, key: &Key, window: Duration) -> WindowCount {
        let now = Instant::now();
        let mut state = self.lock(key);
        state.sweep(now);
        let entry = match state.live(key.as_str(), now) {
            Some(entry) => entry,
            None => state
                .entries
                .entry(key.as_str().to_owned())
                .or_insert(Entry {
                    value: Value::Counter(0),
                    expires: now + window,
                }),
        };
        let count = match &mut entry.value {
            Value::Counter(count) => {
                *count += 1;
                *count
            }
            // A key holds either bytes or a counter; restarting the count is the safe reading.
            other => {
                *other = Value::Counter(1);
                1
            }
        };
        WindowCount {
            count,
            resets_in: entry.expires.saturating_duration_since(now),
        }
    }

    /// One operation of a batch.
    fn apply(&self, op: &Op) -> Reply {
        match op {
            Op::Claim { key, value, ttl } => match self.set(key, value, *ttl, Put::IfAbsent) {
                None => Reply::Claimed,
                Some(live) => Reply::Taken(live),
            },
            Op::Count { key, window, .. } => Reply::Counted(self.count(key, *window)),
            Op::Slide {
                current,
                previous,
                ttl,
                ..
            } => Reply::Slid {
                current: self.count(current, *ttl).count,
                previous: self.counter(previous),
            },
            Op::Read { key, .. } => Reply::Read(self.read(key)),
            Op::Delete { key } => {
                self.remove(key);
                Reply::Deleted
            }
            Op::Refuse => Reply::Refused,
        }
    }
}

#[tonic::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        metrics::store_round_trip(BACKEND, "get");
        Ok(self.read(key))
    }

    async fn put(
        &self,
        key: &Key,
        value: &[u8],
        ttl: Duration,
        mode: Put,
    ) -> Result<bool, StoreError> {
        metrics::store_round_trip(BACKEND, "put");
        Ok(self.set(key, value, ttl, mode).is_none())
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        metrics::store_round_trip(BACKEND, "delete");
        self.remove(key);
        Ok(())
    }

    async fn increment(&self, key: &Key, window: Duration) -> Result<WindowCount, StoreError> {
        metrics::store_round_trip(BACKEND, "increment");
        Ok(self.count(key, window))
    }

    async fn run(&self, batch: &Batch) -> Result<Replies, StoreError> {
        metrics::store_round_trip(BACKEND, "batch");
        let mut replies = Replies::default();
        for op in &batch.ops {
            let reply = self.apply(op);
            let stop = op.stops(&reply);
            replies.replies.push(reply);
            if stop == Stop::Go {
                continue;
            }
            if let (Stop::Refused, Some(claim)) = (stop, &batch.release) {
                self.remove(claim);
            }
            replies.stopped = true;
            break;
        }
        Ok(replies)
    }

    async fn write(&self, writes: &[Write]) -> Result<(), StoreError> {
        metrics::store_round_trip(BACKEND, "write");
        for write in writes {
            match write {
                Write::Put { key, value, ttl } => {
                    self.set(key, value, *ttl, Put::Always);
                }
                Write::Delete { key } => self.remove(key),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key::new("test", &[name])
    }

    #[tokio::test(start_paused = true)]
    async fn values_expire_after_their_ttl() {
        let store = MemoryStore::default();
        let ttl = Duration::from_secs(10);
        assert!(store.put(&key("a"), b"1", ttl, Put::Always).await.unwrap());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(store.get(&key("a")).await.unwrap(), Some(b"1".to_vec()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(store.get(&key("a")).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn put_if_absent_claims_once_until_expiry_or_delete() {
        let store = MemoryStore::default();
        let ttl = Duration::from_secs(5);
        assert!(
            store
                .put(&key("c"), b"x", ttl, Put::IfAbsent)
                .await
                .unwrap()
        );
        assert!(
            !store
                .put(&key("c"), b"y", ttl, Put::IfAbsent)
                .await
                .unwrap()
        );
        assert_eq!(store.get(&key("c")).await.unwrap(), Some(b"x".to_vec()));
        assert!(store.put(&key("c"), b"z", ttl, Put::Always).await.unwrap());
        assert_eq!(store.get(&key("c")).await.unwrap(), Some(b"z".to_vec()));
        store.delete(&key("c")).await.unwrap();
        assert!(
            store
                .put(&key("c"), b"w", ttl, Put::IfAbsent)
                .await
                .unwrap()
        );
        tokio::time::advance(ttl).await;
        assert!(
            store
                .put(&key("c"), b"v", ttl, Put::IfAbsent)
                .await
                .unwrap()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn counters_count_within_their_window() {
        let store = MemoryStore::default();
        let window = Duration::from_secs(60);
        let first = store.increment(&key("n"), window).await.unwrap();
        assert_eq!(
            first,
            WindowCount {
                count: 1,
                resets_in: window
            }
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        let second = store.increment(&key("n"), window).await.unwrap();
        assert_eq!(second.count, 2);
        assert_eq!(second.resets_in, Duration::from_secs(40));
        assert_eq!(store.get(&key("n")).await.unwrap(), Some(b"2".to_vec()));
        tokio::time::advance(Duration::from_secs(40)).await;
        let fresh = store.increment(&key("n"), window).await.unwrap();
        assert_eq!(
            fresh,
            WindowCount {
                count: 1,
                resets_in: window
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn writes_sweep_expired_entries() {
        let store = MemoryStore::with_shards(1);
        for name in ["a", "b", "c"] {
            store
                .put(&key(name), b"1", Duration::from_secs(1), Put::Always)
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 3);
        tokio::time::advance(SWEEP_EVERY).await;
        store
            .put(&key("d"), b"1", Duration::from_secs(600), Put::Always)
            .await
            .unwrap();
        assert_eq!(store.len(), 1);
    }

    /// A write sweeps when the minute since the last sweep is over (not before, not only at its
    /// exact end), and an entry expiring at that very instant is swept with the others.
    #[tokio::test(start_paused = true)]
    async fn writes_sweep_at_most_once_a_minute() {
        let store = MemoryStore::with_shards(1);
        let put = |name: &'static str, secs: u64| {
            let store = &store;
            async move {
                let ttl = Duration::from_secs(secs);
                store.put(&key(name), b"1", ttl, Put::Always).await.unwrap()
            }
        };
        put("a", 1).await; // sweeps; the next sweep is due in a minute
        tokio::time::advance(Duration::from_secs(2)).await;
        put("b", 58).await; // too early: the expired `a` stays
        assert_eq!(store.len(), 2);
        tokio::time::advance(Duration::from_secs(58)).await;
        put("c", 600).await; // due: `a` and `b` (expiring now) go
        assert_eq!(store.len(), 1);
        put("d", 1).await;
        tokio::time::advance(Duration::from_secs(61)).await;
        put("e", 600).await; // past due: the expired `d` goes
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let store = MemoryStore::default();
        let mut used = [false; SHARDS];
        for n in 0..4000 {
            used[store.shard_of(&key(&n.to_string()))] = true;
        }
        // 4000 keys over 64 shards leave one empty with odds of about 64 × (63/64)^4000 < 1e-25.
        assert_eq!(used.iter().filter(|used| **used).count(), SHARDS);
        let same = key("same");
        assert_eq!(store.shard_of(&same), store.shard_of(&same));
    }

    /// A write sweeps its own shard only: the expired entries of other shards wait for writes
    /// of their own, so no write pays for sweeping the whole map.
    #[tokio::test(start_paused = true)]
    async fn a_write_sweeps_only_its_own_shard() {
        let store = MemoryStore::default();
        let expired = key("expiring");
        let names: Vec<String> = (0..1000).map(|n| n.to_string()).collect();
        let other = names
            .iter()
            .map(|n| key(n))
            .find(|k| store.shard_of(k) != store.shard_of(&expired))
            .unwrap();
        let neighbour = names
            .iter()
            .map(|n| key(n))
            .find(|k| store.shard_of(k) == store.shard_of(&expired) && *k != expired)
            .unwrap();
        let ttl = Duration::from_secs(1);
        store.put(&expired, b"1", ttl, Put::Always).await.unwrap();
        tokio::time::advance(SWEEP_EVERY).await;
        store.put(&other, b"1", ttl, Put::Always).await.unwrap();
        assert_eq!(store.len(), 2, "another shard's write leaves it");
        store.put(&neighbour, b"1", ttl, Put::Always).await.unwrap();
        assert_eq!(store.len(), 2, "a write to its shard sweeps it");
        assert_eq!(store.get(&expired).await.unwrap(), None);
    }
}

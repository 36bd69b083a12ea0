//! The emulator's shared state: one `std::sync::Mutex` for the data and one for the traffic
//! counters. Neither is ever held across an `.await`: handlers lock, work, and unlock.
//!
//! The state is bounded: every lock first purges verifications and inbox messages older than
//! the retention TTL, and storing beyond a cap evicts the oldest first (see [`Bounds`]).
//! Stored-at instants are `tokio::time` instants, so tests can pause and advance time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::apps::App;
use super::config::SandboxConfig;
use super::flows::Flow;
use super::inbox::Inbox;
use super::limits::SendLog;
use super::templates::Template;
use super::traffic::Traffic;
use super::verifications::Verification;

/// Template ids are `TEMPLATE_ID_BASE + n` and flow ids `FLOW_ID_BASE + n` (n = 1, 2, …).
///
/// The vendor's Java SDK leaves an id out of a URL whose text already contains it, so an id
/// must never occur inside a base URL such as `http://10.0.0.7:8080/v3/`. Nine digits do that
/// for every IP literal and port (their digit runs are at most five long); a leading 9 keeps
/// them clear of today's 10-digit Unix timestamps (`17…`, `18…`) and of dates (`20…`) that
/// hostnames sometimes carry, and every id still fits the SDK's Java `Integer`.
pub const TEMPLATE_ID_BASE: i64 = 900_000_000;
/// See [`TEMPLATE_ID_BASE`]; a separate range, so a flow id passed as a template id is a -24.
pub const FLOW_ID_BASE: i64 = 950_000_000;

/// The longest code expiry an app can have (`codeExpiry` 60 minutes), in emulated seconds.
const LONGEST_CODE_EXPIRY_SECS: f64 = 60.0 * 60.0;

/// How much the sandbox keeps: verifications (with their records) and inbox messages older
/// than `ttl` are purged, and beyond a cap the oldest are evicted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub ttl: Duration,
    pub max_verifications: usize,
    pub max_inbox_messages: usize,
}

impl Bounds {
    /// The configured bounds; the default TTL is twice the longest code expiry in emulated
    /// time (2 × 60 min ÷ speed), so nothing is purged while its code could still be checked.
    pub fn of(config: &SandboxConfig) -> Self {
        let ttl = config.ttl.unwrap_or_else(|| {
            Duration::from_secs_f64(2.0 * LONGEST_CODE_EXPIRY_SECS / config.speed)
        });
        Self {
            ttl,
            max_verifications: config.max_verifications.max(1),
            max_inbox_messages: config.max_inbox_messages.max(1),
        }
    }
}

/// What every handler reaches through `State<Arc<Shared>>`.
#[derive(Debug)]
pub struct Shared {
    pub config: SandboxConfig,
    pub bounds: Bounds,
    state: Mutex<State>,
    traffic: Mutex<Traffic>,
    /// Becomes `true` when the server shuts down: ends live streams and flow followers.
    closed: watch::Sender<bool>,
}

impl Shared {
    pub fn new(mut config: SandboxConfig) -> Self {
        if !(config.speed.is_finite() && config.speed > 0.0) {
            config.speed = 1.0;
        }
        Self {
            bounds: Bounds::of(&config),
            config,
            state: Mutex::default(),
            traffic: Mutex::default(),
            closed: watch::Sender::new(false),
        }
    }

    /// The data, with everything past its TTL already purged. A panic while locked cannot
    /// leave it half-updated in a way worse than a failed request, so a poisoned lock is
    /// simply taken over.
    pub fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.purge(Instant::now(), &self.bounds);
        state
    }

    pub fn traffic(&self) -> MutexGuard<'_, Traffic> {
        self.traffic.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn speed(&self) -> f64 {
        self.config.speed
    }

    /// Clears all data, counters and injections (ids keep counting up, so an id from before
    /// a reset never names something new).
    pub fn reset(&self) {
        self.state().clear();
        *self.traffic() = Traffic::default();
    }

    /// Marks the server as shut down.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once the server shuts down.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.subscribe();
        async move {
            // An error means the sender is gone, which also means shut down.
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }
}

/// Everything the emulated account holds.
#[derive(Debug, Default)]
pub struct State {
    pub apps: HashMap<String, App>,
    pub templates: BTreeMap<i64, Template>,
    pub flows: BTreeMap<i64, Flow>,
    pub verifications: HashMap<String, Verification>,
    /// orderId → verificationId; orderIds are globally unique.
    pub order_ids: HashMap<String, String>,
    /// Accepted sends per appId, for the period limits.
    pub sends: HashMap<String, SendLog>,
    /// Every SMS and call delivered, oldest first.
    pub inbox: Inbox,
    /// verificationIds in the order they were stored, for the TTL and the cap.
    stored: VecDeque<(Instant, String)>,
    last_template_id: i64,
    last_flow_id: i64,
    verification_seq: u64,
}

impl State {
    pub fn next_template_id(&mut self) -> i64 {
        self.last_template_id += 1;
        TEMPLATE_ID_BASE + self.last_template_id
    }

    pub fn next_flow_id(&mut self) -> i64 {
        self.last_flow_id += 1;
        FLOW_ID_BASE + self.last_flow_id
    }

    pub fn next_verification_seq(&mut self) -> u64 {
        self.verification_seq += 1;
        self.verification_seq
    }

    /// Stores a verification with a fresh id, evicting the oldest beyond the cap.
    pub fn insert_verification(&mut self, verification: Verification, bounds: &Bounds) {
        if let Some(order_id) = &verification.order_id {
            self.order_ids
                .insert(order_id.clone(), verification.id.clone());
        }
        self.stored
            .push_back((Instant::now(), verification.id.clone()));
        self.verifications
            .insert(verification.id.clone(), verification);
        while self.verifications.len() > bounds.max_verifications {
            self.evict_oldest();
        }
    }

    /// Purges verifications and inbox messages stored at or before `now - ttl`.
    fn purge(&mut self, now: Instant, bounds: &Bounds) {
        let Some(cutoff) = now.checked_sub(bounds.ttl) else {
            return;
        };
        while self.stored.front().is_some_and(|(at, _)| *at <= cutoff) {
            self.evict_oldest();
        }
        self.inbox.purge(cutoff);
    }

    fn evict_oldest(&mut self) {
        let Some((_, id)) = self.stored.pop_front() else {
            return;
        };
        if let Some(verification) = self.verifications.remove(&id) {
            if let Some(order_id) = &verification.order_id {
                self.order_ids.remove(order_id);
            }
        }
    }

    /// Forgets all data; id sequences and inbox subscribers survive.
    fn clear(&mut self) {
        self.apps.clear();
        self.templates.clear();
        self.flows.clear();
        self.verifications.clear();
        self.order_ids.clear();
        self.sends.clear();
        self.stored.clear();
        self.inbox.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sandbox::channel::Channel;
    use crate::sandbox::deliveries;
    use crate::sandbox::records;
    use std::future::Future;

    fn shared(ttl_secs: u64, max_verifications: usize, max_inbox_messages: usize) -> Shared {
        let mut config = SandboxConfig::new("k", "s");
        config.ttl = Some(Duration::from_secs(ttl_secs));
        config.max_verifications = max_verifications;
        config.max_inbox_messages = max_inbox_messages;
        Shared::new(config)
    }

    /// Stores a sent verification with `id` and `order_id`, and its first inbox message.
    fn send(shared: &Shared, id: &str, order_id: &str) {
        let mut v = Verification::sample("99900123456", Channel::Sms, "1234", chrono::Utc::now());
        v.id = id.into();
        v.order_id = Some(order_id.into());
        let message = deliveries::message(&v, records::first_attempt(&v), 1.0).unwrap();
        let mut state = shared.state();
        state
            .inbox
            .deliver(message, shared.bounds.max_inbox_messages);
        state.insert_verification(v, &shared.bounds);
    }

    fn stored(shared: &Shared) -> (Vec<String>, usize, usize) {
        let state = shared.state();
        let mut ids: Vec<String> = state.verifications.keys().cloned().collect();
        ids.sort();
        (ids, state.order_ids.len(), state.inbox.len())
    }

    #[tokio::test(start_paused = true)]
    async fn everything_is_purged_after_the_ttl() {
        let shared = shared(60, 100, 100);
        send(&shared, "a", "order-a");
        tokio::time::advance(Duration::from_secs(30)).await;
        send(&shared, "b", "order-b");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(stored(&shared), (vec!["a".into(), "b".into()], 2, 2));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(stored(&shared), (vec!["b".into()], 1, 1));
        assert!(shared.state().order_ids.contains_key("order-b"));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(stored(&shared), (vec![], 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_are_evicted_beyond_the_caps() {
        let shared = shared(3600, 2, 3);
        for id in ["a", "b", "c", "d"] {
            send(&shared, id, &format!("order-{id}"));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(stored(&shared), (vec!["c".into(), "d".into()], 2, 3));
        let state = shared.state();
        let inbox: Vec<String> = state
            .inbox
            .list(&Default::default(), 10)
            .iter()
            .map(|m| m.verification_id.clone())
            .collect();
        assert_eq!(inbox, ["d", "c", "b"]);
    }

    #[test]
    fn default_ttl_is_twice_the_longest_code_expiry_in_emulated_time() {
        let mut config = SandboxConfig::new("k", "s");
        assert_eq!(Bounds::of(&config).ttl, Duration::from_secs(2 * 3600));
        config.speed = 100.0;
        assert_eq!(Bounds::of(&config).ttl, Duration::from_secs(72));
    }

    #[test]
    fn reset_keeps_ids_counting() {
        let shared = shared(60, 10, 10);
        let first = shared.state().next_template_id();
        assert_eq!(first, TEMPLATE_ID_BASE + 1);
        assert_eq!(shared.state().next_flow_id(), FLOW_ID_BASE + 1);
        shared.reset();
        assert_eq!(shared.state().next_template_id(), first + 1);
    }

    #[test]
    fn the_speed_is_the_configured_one_or_1_when_unusable() {
        let speed = |speed| {
            let mut config = SandboxConfig::new("k", "s");
            config.speed = speed;
            Shared::new(config).speed()
        };
        assert_eq!(speed(60.0), 60.0);
        for unusable in [0.0, -2.0, f64::NAN, f64::INFINITY] {
            assert_eq!(speed(unusable), 1.0, "{unusable}");
        }
    }

    #[test]
    fn reset_forgets_the_data() {
        let shared = shared(60, 10, 10);
        send(&shared, "a", "order-a");
        assert_eq!(stored(&shared), (vec!["a".into()], 1, 1));
        shared.reset();
        assert_eq!(stored(&shared), (vec![], 0, 0));
    }

    #[test]
    fn closed_resolves_once_the_server_is_closed() {
        let shared = shared(60, 10, 10);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut before = std::pin::pin!(shared.closed());
        assert!(before.as_mut().poll(&mut cx).is_pending());
        shared.close();
        assert!(before.as_mut().poll(&mut cx).is_ready());
        assert!(std::pin::pin!(shared.closed()).poll(&mut cx).is_ready());
    }
}

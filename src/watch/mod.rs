//! Record streaming: one upstream poller per watched verification, fanned out to every stream.
//!
//! ```text
//!  WatchRecord stream ─┐
//!  WatchRecord stream ─┼─ watch::Receiver ◄── poller (one per WatchKey) ── PollBudget ──► ITNIO
//!  WatchRecord stream ─┘
//! ```
//!
//! [`WatchHub::watch`] joins the poller of a key, starting it if needed. The poller publishes the
//! latest [`PollState`] on a `tokio::sync::watch` channel, which keeps only the newest value, so a
//! slow stream skips intermediate states instead of buffering them. It backs off while nothing
//! changes, retries transient errors, stops as soon as its last stream is gone, and is paced by
//! the global [`PollBudget`], which shares the polls out fairly among the [`Watcher`]s: the
//! caller (or, without authentication, the connection) that started each poller. A watcher may
//! follow at most `WATCH_MAX_RECORDS_PER_CALLER` distinct records at once. Each stream turns the changes it sees into messages as its client
//! reads them; it ends with OK on a final record, with the poller's error status if polling
//! failed for good, and with UNAVAILABLE when the server shuts down.

mod budget;
mod changes;
mod poller;

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tokio_stream::Stream;
use tonic::Status;

pub use budget::PollBudget;

use crate::{
    convert::records::WatchKey,
    limits::LimitError,
    proto::v1::{Record, RecordChange, WatchRecordResponse},
    shutdown::stopped,
    store::SharedStore,
    telemetry::metrics::StreamGauge,
    upstream::UpstreamClient,
};

/// How watches poll. Durations are real time; tests shorten them.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Waits between polls while nothing changes, growing step by step (the last repeats).
    pub backoff: Vec<Duration>,
    /// Global cap on upstream record polls per second, over all verifications.
    pub max_polls_per_second: u32,
    /// Consecutive transient upstream failures tolerated before a watch ends with the error.
    pub max_consecutive_errors: u32,
    /// Once every attempt has failed, how long to wait for a task-flow fallback before the
    /// verification counts as final (a flow node fires at most 120 s after the previous attempt).
    pub flow_settle: Duration,
    /// After this long the code has expired whatever the record says (codeExpiry is at most 60 min).
    pub max_lifetime: Duration,
    /// Distinct records one [`Watcher`] may follow at once.
    pub max_records_per_caller: usize,
}

/// Default `WATCH_MAX_RECORDS_PER_CALLER`: a busy caller watches the verifications of the last
/// minutes; thousands of open watches from one caller are a leak or an attack.
pub const DEFAULT_MAX_RECORDS_PER_CALLER: usize = 1000;

/// Who a watch counts against, for the per-caller cap and the fair share of polls.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Watcher {
    /// An authenticated caller, by name (all its connections together).
    Caller(Arc<str>),
    /// Without authentication: the connection, by its peer address (`None` if unknown).
    Connection(Option<SocketAddr>),
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(5),
            ],
            max_polls_per_second: 50,
            max_consecutive_errors: 5,
            flow_settle: Duration::from_secs(125),
            max_lifetime: Duration::from_secs(61 * 60),
            max_records_per_caller: DEFAULT_MAX_RECORDS_PER_CALLER,
        }
    }
}

/// What a poller has published so far.
#[derive(Debug, Clone)]
enum PollState {
    /// No answer yet.
    Pending,
    /// The latest record; `last` when the verification is final and polling has stopped.
    Record { record: Arc<Record>, last: bool },
    /// Polling failed for good.
    Failed(Status),
}

/// The shared registry of pollers.
#[derive(Clone)]
pub struct WatchHub {
    shared: Arc<Shared>,
}

/// A poller follows one record on one ITNIO account: the same id on two accounts is two records.
type PollerKey = (Arc<str>, WatchKey);

struct Shared {
    config: WatchConfig,
    budget: PollBudget,
    pollers: Mutex<HashMap<PollerKey, watch::Sender<PollState>>>,
    /// The records each watcher follows, with how many of its streams follow each.
    watched: Mutex<HashMap<Watcher, HashMap<PollerKey, usize>>>,
    stop: watch::Receiver<bool>,
}

/// One message of a watch, or the status that ends it.
pub type WatchItem = Result<WatchRecordResponse, Status>;

/// A watch: no task and no queue of its own, so an open stream costs little memory.
pub type RecordStream = Pin<Box<dyn Stream<Item = WatchItem> + Send>>;

impl WatchHub {
    /// A hub whose `stop` turning true ends every stream with UNAVAILABLE.
    /// Must be called inside a Tokio runtime.
    /// Polls are counted in `store`, so replicas sharing it share `max_polls_per_second`.
    pub fn new(config: WatchConfig, stop: watch::Receiver<bool>, store: SharedStore) -> Self {
        let budget = PollBudget::new(config.max_polls_per_second.max(1), store);
        Self {
            shared: Arc::new(Shared {
                config,
                budget,
                pollers: Mutex::new(HashMap::new()),
                watched: Mutex::new(HashMap::new()),
                stop,
            }),
        }
    }

    /// Opens a stream of record updates for `key` on the ITNIO `account` for `watcher` (polled
    /// through `upstream`, that account's client, unless a poller of that record already runs),
    /// ending with DEADLINE_EXCEEDED after `deadline` if one is given. Dropping the stream (the
    /// client went away) drops its subscription at once, and the poller stops when no
    /// subscription is left. Refused if it would make `watcher` follow more distinct records
    /// than `max_records_per_caller`.
    pub fn watch(
        &self,
        watcher: Watcher,
        account: &str,
        upstream: UpstreamClient,
        key: WatchKey,
        deadline: Option<Duration>,
    ) -> Result<RecordStream, LimitError> {
        let key: PollerKey = (account.into(), key);
        let slot = self.take_slot(&watcher, &key)?;
        let state = StreamState {
            updates: self.subscribe(key, upstream, watcher),
            stop: self.shared.stop.clone(),
            previous: None,
            deadline: deadline.map(|d| Instant::now() + d),
            fresh: true,
            done: false,
            _open: StreamGauge::open(),
            _slot: slot,
        };
        Ok(Box::pin(futures_util::stream::unfold(state, next_message)))
    }

    /// Counts one more stream of `watcher` on `key`, unless that would be a distinct record
    /// over the cap.
    fn take_slot(&self, watcher: &Watcher, key: &PollerKey) -> Result<WatchSlot, LimitError> {
        let limit = self.shared.config.max_records_per_caller;
        let mut watched = lock(&self.shared.watched);
        let records = watched.entry(watcher.clone()).or_default();
        if !records.contains_key(key) && records.len() >= limit {
            if records.is_empty() {
                watched.remove(watcher);
            }
            return Err(LimitError::TooManyWatchedRecords { limit });
        }
        *records.entry(key.clone()).or_default() += 1;
        Ok(WatchSlot {
            hub: self.clone(),
            watcher: watcher.clone(),
            key: key.clone(),
        })
    }

    /// How many distinct records `watcher` follows now.
    pub fn records_watched_by(&self, watcher: &Watcher) -> usize {
        lock(&self.shared.watched)
            .get(watcher)
            .map_or(0, HashMap::len)
    }

    fn subscribe(
        &self,
        key: PollerKey,
        upstream: UpstreamClient,
        watcher: Watcher,
    ) -> watch::Receiver<PollState> {
        let mut pollers = self.lock_pollers();
        if let Some(sender) = pollers.get(&key) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(PollState::Pending);
        pollers.insert(key.clone(), sender.clone());
        let span = tracing::info_span!("watch", account = &*key.0);
        crate::task::spawn_in(
            span,
            poller::run(self.clone(), upstream, key, sender, watcher),
        );
        receiver
    }

    /// Removes a poller whose streams are all gone; false if a stream joined meanwhile.
    fn retire(&self, key: &PollerKey, sender: &watch::Sender<PollState>) -> bool {
        let mut pollers = self.lock_pollers();
        if sender.receiver_count() > 0 && !sender.borrow().is_last() {
            return false;
        }
        if pollers.get(key).is_some_and(|s| s.same_channel(sender)) {
            pollers.remove(key);
        }
        true
    }

    fn lock_pollers(&self) -> MutexGuard<'_, HashMap<PollerKey, watch::Sender<PollState>>> {
        lock(&self.shared.pollers)
    }
}

/// A panic while holding one of the hub's locks cannot leave its map inconsistent (single
/// inserts, removes and counter steps), so a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts one stream of a watcher on a record until the stream is dropped.
struct WatchSlot {
    hub: WatchHub,
    watcher: Watcher,
    key: PollerKey,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut watched = lock(&self.hub.shared.watched);
        let Some(records) = watched.get_mut(&self.watcher) else {
            return;
        };
        if let Some(streams) = records.get_mut(&self.key) {
            *streams -= 1;
            if *streams == 0 {
                records.remove(&self.key);
            }
        }
        if records.is_empty() {
            watched.remove(&self.watcher);
        }
    }
}

/// Resolves at `deadline`, or never without one.
async fn expires(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl PollState {
    fn is_last(&self) -> bool {
        matches!(self, Self::Record { last: true, .. } | Self::Failed(_))
    }
}

/// One stream's state between messages.
struct StreamState {
    updates: watch::Receiver<PollState>,
    stop: watch::Receiver<bool>,
    previous: Option<Arc<Record>>,
    /// The caller's deadline, if it sent one.
    deadline: Option<Instant>,
    /// The current poll state has not been looked at yet (true only before the first message).
    fresh: bool,
    done: bool,
    /// Counts this stream in the open-streams gauge until it is dropped.
    _open: StreamGauge,
    /// Counts this stream against its watcher's cap until it is dropped.
    _slot: WatchSlot,
}

/// The next message of a stream: the current record first, then each change, until the end.
async fn next_message(mut s: StreamState) -> Option<(WatchItem, StreamState)> {
    if s.done {
        return None;
    }
    loop {
        if !s.fresh {
            tokio::select! {
                changed = s.updates.changed() => if changed.is_err() {
                    s.done = true;
                    return Some((Err(Status::unavailable("record polling stopped; watch again")), s));
                },
                () = stopped(&mut s.stop) => {
                    s.done = true;
                    let status = Status::unavailable("server is shutting down; reconnect and watch again");
                    return Some((Err(status), s));
                }
                () = expires(s.deadline) => {
                    s.done = true;
                    return Some((Err(Status::deadline_exceeded("the watch reached its deadline")), s));
                }
            }
        }
        s.fresh = false;
        let state = s.updates.borrow_and_update().clone();
        if let Some(item) = s.message_for(state) {
            return Some((item, s));
        }
    }
}

impl StreamState {
    /// The message a poll state calls for, if any; records what the client has seen.
    fn message_for(&mut self, state: PollState) -> Option<WatchItem> {
        match state {
            PollState::Pending => None,
            PollState::Failed(status) => {
                self.done = true;
                Some(Err(status))
            }
            PollState::Record { record, last } => {
                let changes = match &self.previous {
                    None => vec![RecordChange::Initial],
                    Some(before) => changes::between(before, &record),
                };
                let message = (!changes.is_empty() || last).then(|| WatchRecordResponse {
                    record: Some(Record::clone(&record)),
                    changes: changes.into_iter().map(|c| c as i32).collect(),
                    r#final: last,
                });
                self.previous = Some(record);
                self.done = last;
                message.map(Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{store::MemoryStore, upstream::UpstreamConfig};

    fn hub(max_records_per_caller: usize) -> (WatchHub, watch::Sender<bool>) {
        let (stop_tx, stop) = watch::channel(false);
        let config = WatchConfig {
            max_records_per_caller,
            ..WatchConfig::default()
        };
        (
            WatchHub::new(config, stop, Arc::new(MemoryStore::default())),
            stop_tx,
        )
    }

    fn upstream() -> UpstreamClient {
        // Nothing listens there: polls fail and retry, the streams stay open.
        UpstreamClient::new(UpstreamConfig {
            base_url: "http://127.0.0.1:9".into(),
            api_key: "k".into(),
            api_secret: "s".into(),
            timeout: Duration::from_secs(1),
        })
        .expect("client")
    }

    fn open(hub: &WatchHub, who: &Watcher, id: &str) -> Result<RecordStream, LimitError> {
        let key = WatchKey::Verification(id.into());
        hub.watch(who.clone(), "default", upstream(), key, None)
    }

    #[tokio::test(start_paused = true)]
    async fn each_watcher_follows_at_most_its_cap_of_distinct_records() {
        let (hub, _stop) = hub(2);
        let alice = Watcher::Caller("alice".into());
        let bob = Watcher::Connection(None);
        let a = open(&hub, &alice, "1").expect("first");
        let a_again = open(&hub, &alice, "1").expect("the same record again");
        let b = open(&hub, &alice, "2").expect("second");
        assert_eq!(hub.records_watched_by(&alice), 2);
        assert!(matches!(
            open(&hub, &alice, "3"),
            Err(LimitError::TooManyWatchedRecords { limit: 2 })
        ));
        let _bobs = open(&hub, &bob, "3").expect("another watcher's own cap");
        // One of two streams on a record ending keeps the record counted.
        drop(a);
        assert_eq!(hub.records_watched_by(&alice), 2);
        assert!(open(&hub, &alice, "3").is_err());
        drop(a_again);
        assert_eq!(hub.records_watched_by(&alice), 1);
        let _c = open(&hub, &alice, "3").expect("a freed slot");
        drop(b);
        assert_eq!(hub.records_watched_by(&alice), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_watcher_leaves_nothing_behind() {
        let (hub, _stop) = hub(1);
        let carol = Watcher::Caller("carol".into());
        let only = open(&hub, &carol, "1").expect("first");
        assert!(open(&hub, &carol, "2").is_err());
        drop(only);
        assert_eq!(hub.records_watched_by(&carol), 0);
        assert!(lock(&hub.shared.watched).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_ends_at_its_deadline_and_not_before() {
        use tokio_stream::StreamExt;
        let (stop_tx, stop) = watch::channel(false);
        let config = WatchConfig {
            // Polls of the dead upstream keep failing without ending the watch.
            max_consecutive_errors: u32::MAX,
            ..WatchConfig::default()
        };
        let hub = WatchHub::new(config, stop, Arc::new(MemoryStore::default()));
        let key = WatchKey::Verification("1".into());
        let who = Watcher::Connection(None);
        let started = Instant::now();
        let mut stream = hub
            .watch(
                who,
                "default",
                upstream(),
                key,
                Some(Duration::from_secs(10)),
            )
            .expect("opened");
        let status = match stream.next().await {
            Some(Err(status)) => status,
            other => panic!("expected the deadline, got {other:?}"),
        };
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(
            stream.next().await.is_none(),
            "the deadline ends the stream"
        );
        drop(stop_tx);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_watch_with_unavailable() {
        use tokio_stream::StreamExt;
        let (stop_tx, stop) = watch::channel(false);
        let config = WatchConfig {
            max_consecutive_errors: u32::MAX,
            ..WatchConfig::default()
        };
        let hub = WatchHub::new(config, stop, Arc::new(MemoryStore::default()));
        let mut stream = open(&hub, &Watcher::Connection(None), "1").expect("opened");
        let next = tokio::spawn(async move { stream.next().await });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !next.is_finished(),
            "no deadline, no record: the watch waits"
        );
        stop_tx.send_replace(true);
        match next.await.expect("joined") {
            Some(Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                assert!(status.message().contains("shutting down"), "{status:?}");
            }
            other => panic!("expected UNAVAILABLE, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_poller_retires_only_when_no_stream_needs_it() {
        let (hub, _stop) = hub(10);
        let key: PollerKey = ("default".into(), WatchKey::Verification("1".into()));
        let registered = |hub: &WatchHub| hub.lock_pollers().contains_key(&key);
        let (sender, receiver) = watch::channel(PollState::Pending);
        hub.lock_pollers().insert(key.clone(), sender.clone());
        assert!(!hub.retire(&key, &sender), "a stream still listens");
        assert!(registered(&hub));
        let record = Arc::new(Record::default());
        sender.send_replace(PollState::Record {
            record: Arc::clone(&record),
            last: true,
        });
        assert!(hub.retire(&key, &sender), "the record is final");
        assert!(!registered(&hub));
        // A newer poller of the same key is not removed by an old one retiring.
        let (newer, _newer_receiver) = watch::channel(PollState::Pending);
        hub.lock_pollers().insert(key.clone(), newer);
        sender.send_replace(PollState::Pending);
        drop(receiver);
        assert!(hub.retire(&key, &sender), "nobody listens any more");
        assert!(registered(&hub));
    }

    #[tokio::test]
    async fn a_stream_sends_the_first_record_its_changes_and_the_end() {
        let (hub, stop_tx) = hub(10);
        let key: PollerKey = ("default".into(), WatchKey::Verification("1".into()));
        let (_sender, updates) = watch::channel(PollState::Pending);
        let mut state = StreamState {
            updates,
            stop: stop_tx.subscribe(),
            previous: None,
            deadline: None,
            fresh: true,
            done: false,
            _open: StreamGauge::open(),
            _slot: hub
                .take_slot(&Watcher::Connection(None), &key)
                .expect("slot"),
        };
        assert!(state.message_for(PollState::Pending).is_none());
        let record = Arc::new(Record {
            verification_id: "1".into(),
            ..Default::default()
        });
        let record_state = |last| PollState::Record {
            record: Arc::clone(&record),
            last,
        };
        let first = state
            .message_for(record_state(false))
            .expect("the first record")
            .expect("ok");
        assert_eq!(first.changes, [RecordChange::Initial as i32]);
        assert!(!first.r#final);
        assert!(
            state.message_for(record_state(false)).is_none(),
            "no change"
        );
        let last = state
            .message_for(record_state(true))
            .expect("the final record")
            .expect("ok");
        assert!(last.r#final && last.changes.is_empty());
        assert!(state.done);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_joining_a_running_poller_gets_the_current_record_at_once() {
        use tokio_stream::StreamExt;
        let (_stop_tx, stop) = watch::channel(false);
        let config = WatchConfig {
            max_consecutive_errors: u32::MAX,
            ..WatchConfig::default()
        };
        let hub = WatchHub::new(config, stop, Arc::new(MemoryStore::default()));
        let who = Watcher::Connection(None);
        let _first = open(&hub, &who, "1").expect("first stream");
        let key: PollerKey = ("default".into(), WatchKey::Verification("1".into()));
        let poller = hub.lock_pollers().get(&key).cloned().expect("its channel");
        poller.send_replace(PollState::Record {
            record: Arc::new(Record {
                verification_id: "1".into(),
                ..Default::default()
            }),
            last: false,
        });
        // The dead upstream never publishes again: only the current record can come.
        let mut second = open(&hub, &who, "1").expect("second stream");
        let message = tokio::time::timeout(Duration::from_secs(1), second.next())
            .await
            .expect("at once, not at the next change")
            .expect("a message")
            .expect("ok");
        assert_eq!(message.changes, [RecordChange::Initial as i32]);
    }
}

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
//! the global [`PollBudget`]. Each stream turns the changes it sees into messages as its client
//! reads them; it ends with OK on a final record, with the poller's error status if polling
//! failed for good, and with UNAVAILABLE when the server shuts down.

mod budget;
mod changes;
mod poller;

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tokio_stream::Stream;
use tonic::Status;
use tracing::Instrument;

pub use budget::PollBudget;

use crate::{
    proto::v1::{Record, RecordChange, WatchRecordResponse},
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
        }
    }
}

/// Which record a watch follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchKey {
    /// One verification, by id.
    Verification(String),
    /// A caller reference within an app: every attempt of a task flow.
    Order {
        /// The application.
        app_id: String,
        /// The caller's reference.
        order_id: String,
    },
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
                stop,
            }),
        }
    }

    /// Opens a stream of record updates for `key` on the ITNIO `account` (polled through
    /// `upstream`, that account's client, unless a poller of that record already runs), ending
    /// with DEADLINE_EXCEEDED after `deadline` if one is given. Dropping the stream (the client
    /// went away) drops its subscription at once, and the poller stops when no subscription is left.
    pub fn watch(
        &self,
        account: &str,
        upstream: UpstreamClient,
        key: WatchKey,
        deadline: Option<Duration>,
    ) -> RecordStream {
        let state = StreamState {
            updates: self.subscribe((account.into(), key), upstream),
            stop: self.shared.stop.clone(),
            previous: None,
            deadline: deadline.map(|d| Instant::now() + d),
            fresh: true,
            done: false,
            _open: StreamGauge::open(),
        };
        Box::pin(futures_util::stream::unfold(state, next_message))
    }

    fn subscribe(&self, key: PollerKey, upstream: UpstreamClient) -> watch::Receiver<PollState> {
        let mut pollers = self.lock_pollers();
        if let Some(sender) = pollers.get(&key) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(PollState::Pending);
        pollers.insert(key.clone(), sender.clone());
        let span = tracing::info_span!("watch", account = &*key.0);
        tokio::spawn(poller::run(self.clone(), upstream, key, sender).instrument(span));
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

    fn lock_pollers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<PollerKey, watch::Sender<PollState>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still safe to use.
        self.shared
            .pollers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Resolves once the server's shutdown signal (a `watch` turned true) has fired.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after shutdown began.
    let _ = stop.wait_for(|stopped| *stopped).await;
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

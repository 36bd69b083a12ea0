//! The inbox: every SMS and call the sandbox delivers, as a phone would receive it, so tests
//! (and people) can read the code that was "sent". Bounded by the sandbox's TTL and a cap,
//! oldest evicted first; each new message is also broadcast to live subscribers (the SSE
//! stream), which never block a send: a subscriber that falls behind is told how many it missed.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::channel::Channel;

/// How many messages a live subscriber may fall behind before it is told it lagged.
const LIVE_BUFFER: usize = 256;

/// How an attempt ends, once its final report is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Delivered,
    Failed,
}

/// One delivered (or attempted) SMS or call.
#[derive(Debug, Clone)]
pub struct Message {
    /// Increasing across the sandbox's life, also across resets.
    pub id: u64,
    pub to: String,
    pub channel: Channel,
    /// The template text with `##code##` replaced (what the phone shows or the call speaks).
    pub text: String,
    pub code: String,
    pub verification_id: String,
    pub order_id: Option<String>,
    pub app_id: String,
    pub template_id: Option<i64>,
    /// When the attempt started (submitted).
    pub time: DateTime<Utc>,
    /// When its final report is known (SMS done, call answered or hung up unanswered).
    pub settles_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// When the sandbox stored it, for the TTL.
    pub stored_at: Instant,
}

/// A message as `/_sandbox/inbox.json` and the stream show it at one instant.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut<'m> {
    id: u64,
    to: &'m str,
    channel: Channel,
    text: &'m str,
    code: &'m str,
    verification_id: &'m str,
    order_id: Option<&'m str>,
    app_id: &'m str,
    template_id: Option<i64>,
    time: String,
    /// `sending` until `settlesAt`, then `finalStatus`.
    status: &'static str,
    settles_at: String,
    final_status: Outcome,
}

impl Message {
    /// The message as seen at `now`.
    pub fn at(&self, now: DateTime<Utc>) -> MessageOut<'_> {
        let status = match self.outcome {
            _ if now < self.settles_at => "sending",
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
        };
        MessageOut {
            id: self.id,
            to: &self.to,
            channel: self.channel,
            text: &self.text,
            code: &self.code,
            verification_id: &self.verification_id,
            order_id: self.order_id.as_deref(),
            app_id: &self.app_id,
            template_id: self.template_id,
            time: rfc3339(self.time),
            status,
            settles_at: rfc3339(self.settles_at),
            final_status: self.outcome,
        }
    }
}

/// UTC with milliseconds, so `after=` filters can be exact.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Which messages a reader wants.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only this number (digits).
    pub to: Option<String>,
    /// Only messages whose `time` is strictly later.
    pub after: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn matches(&self, message: &Message) -> bool {
        self.to.as_ref().is_none_or(|to| *to == message.to)
            && self.after.is_none_or(|after| message.time > after)
    }
}

/// The stored messages, oldest first, and the live feed.
#[derive(Debug)]
pub struct Inbox {
    messages: VecDeque<Arc<Message>>,
    last_id: u64,
    live: broadcast::Sender<Arc<Message>>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            messages: VecDeque::new(),
            last_id: 0,
            live: broadcast::Sender::new(LIVE_BUFFER),
        }
    }
}

impl Inbox {
    /// Stores a message under a fresh id, evicts the oldest beyond `max`, and broadcasts it.
    pub fn deliver(&mut self, mut message: Message, max: usize) {
        self.last_id += 1;
        message.id = self.last_id;
        let message = Arc::new(message);
        self.messages.push_back(message.clone());
        while self.messages.len() > max {
            self.messages.pop_front();
        }
        // No subscriber is not an error: the message is stored either way.
        let _ = self.live.send(message);
    }

    /// The matching messages, newest first, at most `limit`.
    pub fn list(&self, filter: &Filter, limit: usize) -> Vec<Arc<Message>> {
        self.messages
            .iter()
            .rev()
            .filter(|m| filter.matches(m))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The matching messages with an id above `last`, oldest first.
    pub fn since(&self, last: u64, filter: &Filter) -> Vec<Arc<Message>> {
        self.messages
            .iter()
            .filter(|m| m.id > last && filter.matches(m))
            .cloned()
            .collect()
    }

    /// A feed of messages delivered from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.live.subscribe()
    }

    /// How many live subscribers (open streams) there are.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Drops messages stored at or before `cutoff`.
    pub fn purge(&mut self, cutoff: Instant) {
        while self.messages.front().is_some_and(|m| m.stored_at <= cutoff) {
            self.messages.pop_front();
        }
    }

    /// Drops every message; ids keep counting and subscribers stay subscribed.
    pub fn clear(&mut self) {
        self.messages.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn message(to: &str, time: DateTime<Utc>) -> Message {
        Message {
            id: 0,
            to: to.into(),
            channel: Channel::Sms,
            text: "1234 is your code".into(),
            code: "1234".into(),
            verification_id: "22206051443051000003".into(),
            order_id: None,
            app_id: "mRELxtHc".into(),
            template_id: Some(900_000_001),
            time,
            settles_at: time + chrono::Duration::seconds(4),
            outcome: Outcome::Failed,
            stored_at: Instant::now(),
        }
    }

    #[test]
    fn newest_first_filtered_and_capped() {
        let mut inbox = Inbox::default();
        let t0 = Utc::now();
        let mut live = inbox.subscribe();
        for (i, to) in ["111", "222", "111", "111"].into_iter().enumerate() {
            inbox.deliver(message(to, t0 + chrono::Duration::seconds(i as i64)), 3);
        }
        assert_eq!(inbox.len(), 3);
        let ids = |inbox: &Inbox, filter: &Filter, limit| {
            inbox
                .list(filter, limit)
                .iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&inbox, &Filter::default(), 10), [4, 3, 2]);
        assert_eq!(ids(&inbox, &Filter::default(), 2), [4, 3]);
        let only_111 = Filter {
            to: Some("111".into()),
            after: Some(t0 + chrono::Duration::seconds(2)),
        };
        assert_eq!(ids(&inbox, &only_111, 10), [4]);
        assert_eq!(live.try_recv().unwrap().id, 1);
        inbox.clear();
        inbox.deliver(message("111", t0), 3);
        assert_eq!(ids(&inbox, &Filter::default(), 10), [5]);
    }

    #[test]
    fn status_follows_the_clock() {
        let t0 = Utc::now();
        let m = message("111", t0);
        let status = |secs| m.at(t0 + chrono::Duration::seconds(secs)).status;
        assert_eq!(
            (status(3), status(4), status(5)),
            ("sending", "failed", "failed")
        );
        let mut delivered = message("111", t0);
        delivered.outcome = Outcome::Delivered;
        assert_eq!(
            delivered.at(t0 + chrono::Duration::seconds(4)).status,
            "delivered"
        );
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        let t = DateTime::parse_from_rfc3339("2022-07-12T13:39:45.1234+08:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(t), "2022-07-12T05:39:45.123Z");
        let out = serde_json::to_value(message("111", t).at(t)).unwrap();
        assert_eq!(
            (&out["time"], &out["settlesAt"]),
            (
                &serde_json::json!("2022-07-12T05:39:45.123Z"),
                &serde_json::json!("2022-07-12T05:39:49.123Z")
            )
        );
    }

    #[test]
    fn since_replays_later_ids_oldest_first_and_filtered() {
        let mut inbox = Inbox::default();
        let t0 = Utc::now();
        for to in ["111", "222", "111", "111"] {
            inbox.deliver(message(to, t0), 10);
        }
        let ids = |last, filter: &Filter| {
            inbox
                .since(last, filter)
                .iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(0, &Filter::default()), [1, 2, 3, 4]);
        assert_eq!(ids(2, &Filter::default()), [3, 4]);
        let only_222 = Filter {
            to: Some("222".into()),
            after: None,
        };
        assert_eq!(ids(0, &only_222), [2]);
        assert_eq!(ids(2, &only_222), Vec::<u64>::new());
    }

    #[test]
    fn subscribers_are_counted_while_subscribed() {
        let inbox = Inbox::default();
        assert_eq!(inbox.subscribers(), 0);
        let first = inbox.subscribe();
        let second = inbox.subscribe();
        assert_eq!(inbox.subscribers(), 2);
        drop((first, second));
        assert_eq!(inbox.subscribers(), 0);
    }

    #[test]
    fn purge_drops_what_was_stored_up_to_the_cutoff() {
        let mut inbox = Inbox::default();
        let base = Instant::now();
        let t0 = Utc::now();
        for offset in [0, 1, 2] {
            let mut m = message("111", t0);
            m.stored_at = base + std::time::Duration::from_secs(offset);
            inbox.deliver(m, 10);
        }
        inbox.purge(base + std::time::Duration::from_secs(1));
        let ids: Vec<u64> = inbox
            .list(&Filter::default(), 10)
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, [3]);
    }
}

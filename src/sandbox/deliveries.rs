//! From delivery attempts to inbox messages: a send delivers its first attempt at once (see
//! `verifications::store`); a send with a task flow gets a follower task that delivers each
//! fallback when it fires, so the inbox and its live stream show it without anyone reading
//! the record.
//!
//! A follower holds only a weak reference to the sandbox, sleeps until the next node is due,
//! and ends when the flow ends (checked, expired, trigger not met), when the verification is
//! gone (purged, evicted, reset) or when the server shuts down.

use std::sync::{Arc, Weak};

use chrono::SubsecRound;
use tokio::time::Instant;

use super::channel::Channel;
use super::clock;
use super::codes;
use super::inbox::{Message, Outcome};
use super::records::{self, Attempt};
use super::state::Shared;
use super::verifications::Verification;

/// The inbox message of one attempt; `sna` attempts carry no message.
pub fn message(v: &Verification, attempt: Attempt, speed: f64) -> Option<Message> {
    if attempt.channel == Channel::Sna {
        return None;
    }
    let script = codes::script_for(&v.to);
    Some(Message {
        id: 0,
        to: v.to.clone(),
        channel: attempt.channel,
        text: v.text.clone(),
        code: v.code().to_owned(),
        verification_id: v.id.clone(),
        order_id: v.order_id.clone(),
        app_id: v.app_id.clone(),
        template_id: v.template_id,
        // Milliseconds, as reported, so `after=<a reported time>` excludes that message.
        time: attempt.start.trunc_subsecs(3),
        settles_at: attempt.settled_at(script, speed).trunc_subsecs(3),
        outcome: if attempt.fails(script) {
            Outcome::Failed
        } else {
            Outcome::Delivered
        },
        stored_at: Instant::now(),
    })
}

/// Delivers the flow fallbacks of verification `id` as they fire, until the flow ends.
pub fn follow_flow(shared: &Arc<Shared>, id: String) {
    let closed = shared.closed();
    let follower = follow(Arc::downgrade(shared), id);
    crate::task::spawn(async move {
        tokio::select! {
            () = follower => {}
            () = closed => {}
        }
    });
}

async fn follow(sandbox: Weak<Shared>, id: String) {
    let mut delivered = 1;
    while let Some(due) = next_due(&sandbox, &id, delivered) {
        let wait = (due - clock::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        match deliver_fired(&sandbox, &id, delivered) {
            Some(made) => delivered = made,
            None => return,
        }
    }
}

/// When the next undelivered attempt will fire if nothing changes; `None` once there is none.
fn next_due(
    sandbox: &Weak<Shared>,
    id: &str,
    delivered: usize,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let shared = sandbox.upgrade()?;
    let state = shared.state();
    let v = state.verifications.get(id)?;
    let planned = records::attempts(v, v.expires_at, shared.speed());
    planned.get(delivered).map(|attempt| attempt.start)
}

/// Delivers the attempts made by now beyond the first `delivered`; returns how many are made.
fn deliver_fired(sandbox: &Weak<Shared>, id: &str, delivered: usize) -> Option<usize> {
    let shared = sandbox.upgrade()?;
    let mut state = shared.state();
    let v = state.verifications.get(id)?;
    let made = records::attempts(v, clock::now(), shared.speed());
    let fresh: Vec<Message> = made
        .iter()
        .skip(delivered)
        .filter_map(|attempt| message(v, *attempt, shared.speed()))
        .collect();
    for message in fresh {
        state
            .inbox
            .deliver(message, shared.bounds.max_inbox_messages);
    }
    Some(made.len().max(delivered))
}

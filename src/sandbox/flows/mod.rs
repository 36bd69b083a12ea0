//! Task flows: ordered fallback nodes "if the previous attempt ended in `status`, wait
//! `waitingTime` s, then send on `channel`". This file is the flow as the sandbox stores it (what
//! `state` holds, and what each verification copies at send time); [`routes`] is the endpoints
//! (`/flow/add`, `/flow/update/{flowId}`, `/flow/details/{flowId}`, `/flow/list`). Names are
//! unique; flowIds count up from a high base (see `state`). How a flow unfolds for one
//! verification is in `records`.

pub mod routes;

use serde::Serialize;

use super::channel::Channel;

/// What must hold for a node to fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The previous attempt failed to send or deliver (wire 1).
    SendFailed,
    /// The code is not verified yet, failed checks included (wire 2).
    NotVerified,
}

/// One validated node, in its wire shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowNode {
    /// Emulated seconds after the previous attempt started.
    pub waiting_time: i64,
    status: i64,
    pub channel: Channel,
    channel_cut: i64,
}

impl FlowNode {
    pub fn trigger(&self) -> Trigger {
        if self.status == 1 {
            Trigger::SendFailed
        } else {
            Trigger::NotVerified
        }
    }

    /// `channelCut` 1: stay on the previous attempt's channel instead of switching.
    pub fn keeps_channel(&self) -> bool {
        self.channel_cut == 1
    }

    /// A node as validation would make it, for other modules' tests.
    #[cfg(test)]
    pub fn new(waiting_time: i64, status: i64, channel: Channel, channel_cut: i64) -> Self {
        Self {
            waiting_time,
            status,
            channel,
            channel_cut,
        }
    }
}

/// A stored flow, in its wire shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    pub flow_id: i64,
    name: String,
    pub flow: Vec<FlowNode>,
}

//! The emulator's shared state: one `std::sync::Mutex` for the data and one for the traffic
//! counters. Neither is ever held across an `.await`: handlers lock, work, and unlock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::SandboxConfig;
use super::apps::App;
use super::flows::Flow;
use super::limits::SendLog;
use super::templates::Template;
use super::traffic::Traffic;
use super::verifications::Verification;

/// What every handler reaches through `State<Arc<Shared>>`.
#[derive(Debug)]
pub struct Shared {
    pub config: SandboxConfig,
    state: Mutex<State>,
    traffic: Mutex<Traffic>,
}

impl Shared {
    pub fn new(mut config: SandboxConfig) -> Self {
        if !(config.speed.is_finite() && config.speed > 0.0) {
            config.speed = 1.0;
        }
        Self {
            config,
            state: Mutex::default(),
            traffic: Mutex::default(),
        }
    }

    /// The data. A panic while locked cannot leave it half-updated in a way worse than a
    /// failed request, so a poisoned lock is simply taken over.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn traffic(&self) -> MutexGuard<'_, Traffic> {
        self.traffic.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn speed(&self) -> f64 {
        self.config.speed
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
    last_template_id: i64,
    last_flow_id: i64,
    verification_seq: u64,
}

impl State {
    pub fn next_template_id(&mut self) -> i64 {
        self.last_template_id += 1;
        self.last_template_id
    }

    pub fn next_flow_id(&mut self) -> i64 {
        self.last_flow_id += 1;
        self.last_flow_id
    }

    pub fn next_verification_seq(&mut self) -> u64 {
        self.verification_seq += 1;
        self.verification_seq
    }
}

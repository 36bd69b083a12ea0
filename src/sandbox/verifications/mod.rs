//! Verifications: one sent code each. This file is the verification as the sandbox stores it
//! (what `state` holds, and what `records` and `deliveries` replay its attempts from);
//! [`routes`] is the endpoints that send codes (`/verification/send`,
//! `/verification/sendRule`, `/verification/resend`) and check them (`/verification/verify`).

pub mod routes;

use chrono::{DateTime, Utc};

use super::channel::Channel;
use super::flows::FlowNode;

/// One sent code and everything needed to replay its deliveries and checks.
#[derive(Debug, Clone)]
pub struct Verification {
    pub id: String,
    pub app_id: String,
    pub flow_id: Option<i64>,
    /// The flow's nodes as they were at send time.
    pub flow: Vec<FlowNode>,
    pub to: String,
    pub channel: Channel,
    pub order_id: Option<String>,
    pub template_id: Option<i64>,
    code: String,
    /// The template text with `##code##` replaced: what the phone shows.
    pub text: String,
    pub sender: String,
    pub sent_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub checks: Checks,
}

impl Verification {
    /// The code the phone receives.
    pub fn code(&self) -> &str {
        &self.code
    }
}

/// What checking the code has produced so far.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// When the code was first checked correctly.
    pub verified_at: Option<DateTime<Utc>>,
    /// When the code was last checked, whatever the result.
    pub last_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
impl Verification {
    /// A verification sent at `sent_at`, expiring 5 minutes later, without a flow.
    pub fn sample(to: &str, channel: Channel, code: &str, sent_at: DateTime<Utc>) -> Self {
        let text = format!("{code} is your code");
        Self {
            id: "22206051443051000003".into(),
            app_id: "mRELxtHc".into(),
            flow_id: None,
            flow: Vec::new(),
            to: to.into(),
            channel,
            order_id: None,
            template_id: None,
            code: code.into(),
            text,
            sender: String::new(),
            sent_at,
            expires_at: sent_at + chrono::Duration::minutes(5),
            checks: Checks::default(),
        }
    }
}

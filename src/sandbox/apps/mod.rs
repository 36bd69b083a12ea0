//! Apps: containers for code expiry and period send limits. This file is the app as the sandbox
//! stores it (what `state` holds); [`routes`] is the endpoints (`/app/add`,
//! `/app/update/{appId}`, `/app/details/{appId}`). Names are unique; appIds are 8 random
//! alphanumerics.

pub mod routes;

use serde::Serialize;

use super::limits::Limit;

/// A stored app, in its wire shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub name: String,
    pub app_id: String,
    pub period_total_send_limit: Limit,
    pub period_phone_send_limit: Limit,
    /// Minutes a code stays valid (emulated time).
    pub code_expiry: i64,
    create_time: String,
}

//! Request counters and pending status injections, keyed by endpoint name
//! (`"<METHOD> <route template>"`, e.g. `"GET /verification/record/{verificationId}"`).

use std::collections::{BTreeMap, HashMap};

/// The 19 emulated endpoints, named as counters and injections name them.
pub const ENDPOINTS: [&str; 19] = [
    "POST /app/add",
    "PUT /app/update/{appId}",
    "GET /app/details/{appId}",
    "POST /template/add",
    "PUT /template/update/{templateId}",
    "GET /template/details/{templateId}",
    "GET /template/list",
    "POST /verification/send",
    "POST /verification/sendRule",
    "POST /verification/resend",
    "POST /verification/verify",
    "GET /verification/record/{verificationId}",
    "POST /verification/orderId/record",
    "POST /flow/add",
    "PUT /flow/update/{flowId}",
    "GET /flow/details/{flowId}",
    "GET /flow/list",
    "POST /backfillRate",
    "POST /postback/backfill",
];

/// One injected status and how many more requests it answers.
#[derive(Debug, Clone)]
struct Injection {
    status: String,
    remaining: u32,
}

/// What the sandbox has seen and what it has been told to answer next.
#[derive(Debug, Default)]
pub struct Traffic {
    total: u64,
    by_endpoint: BTreeMap<String, u64>,
    injections: HashMap<String, Injection>,
}

impl Traffic {
    /// Counts one request to `endpoint`.
    pub fn record(&mut self, endpoint: &str) {
        self.total += 1;
        *self.by_endpoint.entry(endpoint.to_owned()).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn count_for(&self, endpoint: &str) -> u64 {
        self.by_endpoint.get(endpoint).copied().unwrap_or(0)
    }

    pub fn by_endpoint(&self) -> &BTreeMap<String, u64> {
        &self.by_endpoint
    }

    /// Answers the next `times` requests to `endpoint` with `status`; 0 cancels.
    pub fn inject(&mut self, endpoint: &str, status: &str, times: u32) {
        if times == 0 {
            self.injections.remove(endpoint);
            return;
        }
        let injection = Injection {
            status: status.to_owned(),
            remaining: times,
        };
        self.injections.insert(endpoint.to_owned(), injection);
    }

    /// The status to answer this request to `endpoint` with, if one is pending.
    pub fn take_injection(&mut self, endpoint: &str) -> Option<String> {
        let injection = self.injections.get_mut(endpoint)?;
        injection.remaining -= 1;
        let status = injection.status.clone();
        if injection.remaining == 0 {
            self.injections.remove(endpoint);
        }
        Some(status)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn injections_run_out() {
        let mut traffic = Traffic::default();
        traffic.inject("POST /app/add", "-27", 2);
        assert_eq!(
            traffic.take_injection("POST /app/add").as_deref(),
            Some("-27")
        );
        assert_eq!(traffic.take_injection("GET /flow/list"), None);
        assert_eq!(
            traffic.take_injection("POST /app/add").as_deref(),
            Some("-27")
        );
        assert_eq!(traffic.take_injection("POST /app/add"), None);
    }

    #[test]
    fn counts_per_endpoint() {
        let mut traffic = Traffic::default();
        traffic.record("POST /app/add");
        traffic.record("POST /app/add");
        traffic.record("GET /flow/list");
        assert_eq!(
            (
                traffic.total(),
                traffic.count_for("POST /app/add"),
                traffic.count_for("x")
            ),
            (3, 2, 0)
        );
    }
}

//! Request counters and pending injections (business statuses and transport faults), keyed by
//! endpoint name (`"<METHOD> <route template>"`, e.g. `"GET /verification/record/{verificationId}"`).

use std::collections::{BTreeMap, HashMap};

use super::faults::Fault;

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

/// What an injection answers a request with instead of the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// HTTP 200 with this envelope status and no data.
    Status(String),
    /// A transport fault.
    Fault(Fault),
}

/// One injection and how many more requests it answers.
#[derive(Debug, Clone)]
struct Injection {
    injected: Injected,
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

    /// Answers the next `times` requests to `endpoint` with `injected`, replacing what was
    /// pending there; 0 cancels.
    pub fn inject(&mut self, endpoint: &str, injected: Injected, times: u32) {
        if times == 0 {
            self.injections.remove(endpoint);
            return;
        }
        let injection = Injection {
            injected,
            remaining: times,
        };
        self.injections.insert(endpoint.to_owned(), injection);
    }

    /// What to answer this request to `endpoint` with, if an injection is pending.
    pub fn take_injection(&mut self, endpoint: &str) -> Option<Injected> {
        let injection = self.injections.get_mut(endpoint)?;
        injection.remaining -= 1;
        let injected = injection.injected.clone();
        if injection.remaining == 0 {
            self.injections.remove(endpoint);
        }
        Some(injected)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn injections_run_out() {
        let mut traffic = Traffic::default();
        let limit = || Injected::Status("-27".into());
        traffic.inject("POST /app/add", limit(), 2);
        assert_eq!(traffic.take_injection("POST /app/add"), Some(limit()));
        assert_eq!(traffic.take_injection("GET /flow/list"), None);
        assert_eq!(traffic.take_injection("POST /app/add"), Some(limit()));
        assert_eq!(traffic.take_injection("POST /app/add"), None);
    }

    #[test]
    fn a_new_injection_replaces_the_pending_one_and_zero_cancels() {
        let mut traffic = Traffic::default();
        let reset = Injected::Fault(Fault::ResetMidBody);
        traffic.inject("GET /flow/list", Injected::Status("-18".into()), 5);
        traffic.inject("GET /flow/list", reset.clone(), 1);
        assert_eq!(
            traffic.take_injection("GET /flow/list"),
            Some(reset.clone())
        );
        assert_eq!(traffic.take_injection("GET /flow/list"), None);
        traffic.inject("GET /flow/list", reset, 3);
        traffic.inject("GET /flow/list", Injected::Status("-18".into()), 0);
        assert_eq!(traffic.take_injection("GET /flow/list"), None);
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

    #[test]
    fn counts_are_listed_by_endpoint() {
        let mut traffic = Traffic::default();
        traffic.record("POST /app/add");
        traffic.record("GET /flow/list");
        traffic.record("POST /app/add");
        let listed: Vec<(&str, u64)> = traffic
            .by_endpoint()
            .iter()
            .map(|(endpoint, count)| (endpoint.as_str(), *count))
            .collect();
        assert_eq!(listed, [("GET /flow/list", 1), ("POST /app/add", 2)]);
    }
}

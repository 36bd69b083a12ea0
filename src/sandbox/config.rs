//! [`SandboxConfig`]: how the emulator authenticates callers, how fast emulated time runs and how
//! much it keeps. Every other file of the sandbox may read it; it imports none of them.

use std::net::IpAddr;
use std::time::Duration;

/// How the emulator authenticates callers and how fast emulated time runs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub api_key: String,
    pub api_secret: String,
    /// Accepted |now - Timestamp| in seconds; default 300.
    pub clock_skew: Duration,
    /// Durations in the emulator (delivery progress, flow waitingTime, code expiry) are divided by
    /// this factor. 1.0 = real time; tests use e.g. 100.0 so a 30 s flow wait takes 0.3 s.
    /// Reported timestamps stay real wall-clock times (submit time + scaled duration).
    pub speed: f64,
    /// If non-empty, only these client IPs are allowed; others get status "-2".
    pub allowed_ips: Vec<IpAddr>,
    /// How long verifications (with their records) and inbox messages are kept; `None` is
    /// twice the longest code expiry in emulated time (2 × 60 min ÷ speed).
    pub ttl: Option<Duration>,
    /// At most this many verifications are kept; beyond it the oldest is evicted.
    pub max_verifications: usize,
    /// At most this many inbox messages are kept; beyond it the oldest is evicted.
    pub max_inbox_messages: usize,
}

/// Default cap on stored verifications (about 60 MB at the measured ~0.6 kB each).
pub const DEFAULT_MAX_VERIFICATIONS: usize = 100_000;
/// Default cap on stored inbox messages.
pub const DEFAULT_MAX_INBOX_MESSAGES: usize = 10_000;

impl SandboxConfig {
    /// A configuration with a 300 s clock skew, real-time speed and no IP allow-list.
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            clock_skew: Duration::from_secs(300),
            speed: 1.0,
            allowed_ips: Vec::new(),
            ttl: None,
            max_verifications: DEFAULT_MAX_VERIFICATIONS,
            max_inbox_messages: DEFAULT_MAX_INBOX_MESSAGES,
        }
    }
}

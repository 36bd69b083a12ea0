//! The sandbox's one wall clock and its time arithmetic.
//!
//! Every timestamp the emulator stores or reports comes from [`now`], so the times in one
//! reply are consistent with each other. Emulated durations are divided by the configured
//! `speed` through [`scaled`]; the reported times stay real wall-clock instants.

use chrono::{DateTime, Duration, FixedOffset, Utc};

/// China Standard Time (+08:00), the offset the vendor's own examples are printed in.
const VENDOR_OFFSET: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("+08:00 is within the ±24 h FixedOffset accepts"),
};

/// The current instant.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Formats an instant like the vendor does: `2022-07-12T13:39:45+08:00`.
pub fn iso(t: DateTime<Utc>) -> String {
    t.with_timezone(&VENDOR_OFFSET)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// An emulated duration of `secs` seconds, compressed by `speed`.
pub fn scaled(secs: f64, speed: f64) -> Duration {
    let millis = (secs * 1000.0 / speed).round();
    // Durations here are at most hours of emulated time, far inside i64 milliseconds.
    Duration::milliseconds(millis as i64)
}

/// `start` plus an emulated offset of `secs` seconds.
pub fn after(start: DateTime<Utc>, secs: f64, speed: f64) -> DateTime<Utc> {
    start + scaled(secs, speed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iso_uses_the_vendor_offset() {
        let t = DateTime::parse_from_rfc3339("2022-07-12T05:39:45Z").map(|t| t.to_utc());
        assert_eq!(iso(t.unwrap()), "2022-07-12T13:39:45+08:00");
    }

    #[test]
    fn scaled_divides_by_speed() {
        assert_eq!(scaled(30.0, 100.0), Duration::milliseconds(300));
        assert_eq!(scaled(2.0, 1.0), Duration::seconds(2));
    }
}

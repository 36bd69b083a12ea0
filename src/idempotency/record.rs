//! What the store keeps per `(caller, request_id)`: the request's fingerprint and where the
//! first attempt stands. Encoded with prost (tagged fields), so a newer replica can read an
//! older replica's records during a rolling update.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the first attempt of a request id stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Stage {
    /// A replica is calling ITNIO now, until `lease_until_ms`.
    InFlight = 0,
    /// ITNIO answered; `response` holds the encoded gRPC response to replay.
    Done = 1,
    /// The call may or may not have been processed (timeout, lost connection, unreadable
    /// reply): it is never sent again under this id.
    OutcomeUnknown = 2,
}

/// One idempotency record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// SHA-256 of the canonical request.
    #[prost(bytes = "vec", tag = "1")]
    pub fingerprint: Vec<u8>,
    #[prost(enumeration = "Stage", tag = "2")]
    pub stage: i32,
    /// Wall-clock end of an in-flight lease (Unix ms; replicas share it, so not a monotonic
    /// instant). A lease that ended without a result means the replica died mid-call.
    #[prost(uint64, tag = "3")]
    pub lease_until_ms: u64,
    /// How the caller can look the send up (`order_id` or `verification_id`).
    #[prost(string, tag = "4")]
    pub lookup_field: String,
    #[prost(string, tag = "5")]
    pub lookup_value: String,
    /// The encoded gRPC response, for [`Stage::Done`].
    #[prost(bytes = "vec", tag = "6")]
    pub response: Vec<u8>,
}

impl Record {
    /// The stage, reading an unknown value (a newer replica's) as the cautious one.
    pub fn current_stage(&self) -> Stage {
        Stage::try_from(self.stage).unwrap_or(Stage::OutcomeUnknown)
    }

    /// Whether an in-flight lease has run out at `now_ms`.
    pub fn lease_ended(&self, now_ms: u64) -> bool {
        self.lease_until_ms <= now_ms
    }

    /// The same record at a later stage.
    pub fn at(&self, stage: Stage, response: Vec<u8>) -> Self {
        Self {
            stage: stage as i32,
            response,
            ..self.clone()
        }
    }
}

/// Wall-clock now in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `now_ms() + lease`.
pub fn lease_until(lease: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn records_round_trip_and_unknown_stages_read_as_unknown_outcome() {
        let record = Record {
            fingerprint: vec![1, 2, 3],
            stage: Stage::InFlight as i32,
            lease_until_ms: 1_000,
            lookup_field: "order_id".into(),
            lookup_value: "o-1".into(),
            response: Vec::new(),
        };
        let done = record.at(Stage::Done, vec![9]);
        let decoded = Record::decode(done.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, done);
        assert_eq!(decoded.current_stage(), Stage::Done);
        assert_eq!(decoded.lookup_value, "o-1");
        let future = Record {
            stage: 7,
            ..record.clone()
        };
        assert_eq!(future.current_stage(), Stage::OutcomeUnknown);
        assert!(!record.lease_ended(999));
        assert!(record.lease_ended(1_000));
    }

    #[test]
    fn now_is_the_unix_time_in_milliseconds() {
        let unix_ms = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis()
        };
        let before = unix_ms(SystemTime::now());
        let now = u128::from(now_ms());
        let after = unix_ms(SystemTime::now());
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn leases_end_after_now() {
        let until = lease_until(Duration::from_secs(5));
        let now = now_ms();
        assert!(until > now && until <= now + 5_000, "{until} vs {now}");
    }
}

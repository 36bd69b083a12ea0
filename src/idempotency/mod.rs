//! Idempotent sends (AIP-155): a send repeated with the same `request_id` by the same caller
//! within [`RECORD_TTL`] reaches ITNIO at most once.
//!
//! ```text
//!  send(request_id) ─► claim (put-if-absent: in flight, lease) ─┬─ claimed ─► quota ─► guard ─► ITNIO ─► settle
//!                                                              └─ taken ───► read the record:
//!     different fingerprint ─► REQUEST_ID_REUSED     done ─► the first response, replayed
//!     outcome unknown / lease ended ─► OUTCOME_UNKNOWN (look it up by order id; never resent)
//!     in flight ─► wait for it, within the repeat's own deadline (then REQUEST_IN_PROGRESS)
//! ```
//!
//! How the first attempt settles its record ([`Claim::settle`]):
//! - ITNIO answered: the response is kept and replayed to every repeat;
//! - the call may have been processed (timeout, connection lost after the request was written,
//!   HTTP 5xx, unreadable reply): the record says so, and repeats get `OUTCOME_UNKNOWN`;
//! - nothing was processed (connection refused, an HTTP 4xx refusal, a business "no" from ITNIO,
//!   the caller's own rate limit, the guard): the record is removed, so a retry with the same id
//!   is a fresh attempt — there is nothing to protect, and a cached refusal would outlive its
//!   cause.
//!
//! This module owns the record and what it means; the send pipeline ([`crate::send`]) puts the
//! claim into the send's one admission round trip and the settlement into its one settling round
//! trip, runs the attempt in a task of its own (so a caller that cancels or disconnects cannot
//! leave the record in flight), and waits for an attempt in flight. If the replica dies mid-call
//! the lease runs out and repeats read it as an unknown outcome. Records live in the shared
//! [`Store`](crate::store::Store), so a retry landing on another replica is deduplicated too.

mod record;
mod request_id;

use std::time::Duration;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::{
    caller::Caller,
    store::{Key, Op, Write},
};
use record::{Record, Stage, lease_until, now_ms};
pub use request_id::RequestId;

/// How long a request id is remembered (AIP-155 suggests at least a day).
pub const RECORD_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How much longer than the upstream timeout an in-flight lease lasts: the store writes that
/// settle the record, with room to spare.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How a caller can find a send whose outcome is unknown: the metadata key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// `order_id` for sends, `verification_id` (the original) for resends.
    pub field: &'static str,
    /// The id to look up.
    pub value: String,
}

impl Lookup {
    /// Look the send up by its order id.
    pub fn order_id(value: String) -> Self {
        Self {
            field: "order_id",
            value,
        }
    }

    /// Look the send up through the verification it resent.
    pub fn verification_id(value: String) -> Self {
        Self {
            field: "verification_id",
            value,
        }
    }
}

/// SHA-256 of `method` and the request as sent, without its request id (the caller clears it):
/// what "the same request" means for `REQUEST_ID_REUSED`.
pub fn fingerprint(method: &str, request_without_id: &impl Message) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update([0]);
    hash.update(request_without_id.encode_to_vec());
    hash.finalize().into()
}

/// The order id for a send whose caller gave none. With a request id it is derived from the
/// caller and the id, so every attempt of one logical send carries the same order id (and ITNIO
/// itself refuses a second send with it); without one it is random.
pub fn generated_order_id(caller: &Caller, request_id: Option<&RequestId>) -> String {
    let id = match request_id {
        Some(request_id) => {
            let mut hash = Sha256::new();
            for part in ["order_id", caller.name(), request_id.as_str()] {
                hash.update(part.as_bytes());
                hash.update([0]);
            }
            let digest: [u8; 32] = hash.finalize().into();
            let mut bytes = [0; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_custom_bytes(bytes).into_uuid()
        }
        None => uuid::Uuid::new_v4(),
    };
    id.hyphenated().to_string()
}

/// A first attempt's claim on `(caller, request id)`: the in-flight record it writes, and how
/// it settles.
#[derive(Debug, Clone)]
pub struct Claim {
    key: Key,
    record: Record,
}

/// How a claimed first attempt ended, for its record.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// ITNIO answered (or the guard answered with the pending verification): this encoded
    /// response is replayed to every repeat.
    Answered(&'a [u8]),
    /// ITNIO may have processed the send: repeats get `OUTCOME_UNKNOWN`, never a second send.
    Unknown,
    /// Nothing was sent: the id is released for a fresh attempt.
    NotSent,
}

impl Claim {
    /// The claim of a send of `fingerprint` by `caller` under `request_id`, found later by
    /// `lookup`; its lease ends `lease` from now.
    pub fn new(
        caller: &Caller,
        request_id: &RequestId,
        fingerprint: [u8; 32],
        lookup: &Lookup,
        lease: Duration,
    ) -> Self {
        Self {
            key: Key::new("idem", &[caller.name(), request_id.as_str()]),
            record: Record {
                fingerprint: fingerprint.to_vec(),
                stage: Stage::InFlight as i32,
                lease_until_ms: lease_until(lease),
                lookup_field: lookup.field.to_owned(),
                lookup_value: lookup.value.clone(),
                response: Vec::new(),
            },
        }
    }

    /// The store key of the claim (the batch releases it when a limit refuses the send).
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The put-if-absent that makes the claim.
    pub fn op(&self) -> Op {
        Op::Claim {
            key: self.key.clone(),
            value: self.record.encode_to_vec(),
            ttl: RECORD_TTL,
        }
    }

    /// The write that settles the claim; see the module docs.
    pub fn settle(&self, outcome: Outcome<'_>) -> Write {
        let stage = match outcome {
            Outcome::Answered(response) => (Stage::Done, response.to_vec()),
            Outcome::Unknown => (Stage::OutcomeUnknown, Vec::new()),
            Outcome::NotSent => {
                return Write::Delete {
                    key: self.key.clone(),
                };
            }
        };
        Write::Put {
            key: self.key.clone(),
            value: self.record.at(stage.0, stage.1).encode_to_vec(),
            ttl: RECORD_TTL,
        }
    }
}

/// What a repeat finds in a record another attempt holds.
#[derive(Debug, PartialEq)]
pub enum Repeat<M> {
    /// The first attempt's response, to answer again.
    Replay(M),
    /// The id was used for a different request.
    Reused,
    /// The first attempt may have been processed: look it up by this (the record's own).
    Unknown(Lookup),
    /// The first attempt is still running, within its lease.
    InFlight,
}

/// Reads the record `bytes` for a repeat of `fingerprint`, whose own lookup is `lookup`.
pub fn read_repeat<M: Message + Default>(
    bytes: &[u8],
    fingerprint: &[u8; 32],
    lookup: &Lookup,
) -> Repeat<M> {
    // The record's own lookup is the first attempt's (a generated order id is the same for
    // every attempt, but a record is the authority).
    let unknown = |record: Option<&Record>| {
        let mut lookup = lookup.clone();
        if let Some(record) = record.filter(|r| r.lookup_field == lookup.field) {
            lookup.value.clone_from(&record.lookup_value);
        }
        Repeat::Unknown(lookup)
    };
    // A record this replica cannot read is treated with the same caution as a lost reply.
    let Ok(record) = Record::decode(bytes) else {
        return unknown(None);
    };
    if record.fingerprint != fingerprint {
        return Repeat::Reused;
    }
    match record.current_stage() {
        Stage::Done => match M::decode(record.response.as_slice()) {
            Ok(response) => Repeat::Replay(response),
            Err(_) => unknown(Some(&record)),
        },
        Stage::OutcomeUnknown => unknown(Some(&record)),
        Stage::InFlight if record.lease_ended(now_ms()) => unknown(Some(&record)),
        Stage::InFlight => Repeat::InFlight,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::v1::SendVerificationResponse;

    const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

    fn claim(fingerprint: u8, lease: Duration) -> Claim {
        Claim::new(
            &Caller::anonymous(),
            &RequestId::parse(ID).unwrap().unwrap(),
            [fingerprint; 32],
            &Lookup::order_id("order-1".into()),
            lease,
        )
    }

    fn claimed(claim: &Claim) -> Vec<u8> {
        match claim.op() {
            Op::Claim { key, value, ttl } => {
                assert_eq!(key.as_str(), format!("itnio-otp:idem:anonymous:{ID}"));
                assert_eq!(ttl, RECORD_TTL);
                value
            }
            other => panic!("{other:?}"),
        }
    }

    /// The record a settling put writes.
    fn settled(write: Write) -> Vec<u8> {
        match write {
            Write::Put { value, ttl, .. } => {
                assert_eq!(ttl, RECORD_TTL);
                value
            }
            other => panic!("expected a put, got {other:?}"),
        }
    }

    fn repeat(bytes: &[u8], fingerprint: u8, lookup: &str) -> Repeat<SendVerificationResponse> {
        read_repeat(bytes, &[fingerprint; 32], &Lookup::order_id(lookup.into()))
    }

    #[test]
    fn an_answer_is_replayed_and_a_different_request_is_refused() {
        let claim = claim(1, Duration::from_secs(5));
        let response = SendVerificationResponse {
            verification_id: "v1".into(),
            ..Default::default()
        };
        let record = settled(claim.settle(Outcome::Answered(&response.encode_to_vec())));
        assert_eq!(repeat(&record, 1, "order-2"), Repeat::Replay(response));
        assert_eq!(repeat(&record, 2, "order-1"), Repeat::Reused);
    }

    #[test]
    fn in_flight_until_the_lease_ends_then_unknown_with_the_records_lookup() {
        let live = claimed(&claim(1, Duration::from_secs(5)));
        assert_eq!(repeat(&live, 1, "order-2"), Repeat::InFlight);
        // A replica that died mid-call leaves an in-flight record whose lease has ended.
        let ended = claimed(&claim(1, Duration::ZERO));
        assert_eq!(
            repeat(&ended, 1, "order-2"),
            Repeat::Unknown(Lookup::order_id("order-1".into()))
        );
    }

    #[test]
    fn a_maybe_processed_send_is_unknown_and_a_refusal_releases_the_id() {
        let claim = claim(1, Duration::from_secs(5));
        let unknown = settled(claim.settle(Outcome::Unknown));
        // The record, not the retry, says which order id to look up.
        assert_eq!(
            repeat(&unknown, 1, "order-2"),
            Repeat::Unknown(Lookup::order_id("order-1".into()))
        );
        // Only a lookup of the same kind is taken from the record.
        assert_eq!(
            read_repeat::<SendVerificationResponse>(
                &unknown,
                &[1; 32],
                &Lookup::verification_id("v9".into())
            ),
            Repeat::Unknown(Lookup::verification_id("v9".into()))
        );
        assert_eq!(
            claim.settle(Outcome::NotSent),
            Write::Delete {
                key: claim.key().clone()
            }
        );
    }

    #[test]
    fn unreadable_records_and_responses_read_as_unknown() {
        assert_eq!(
            repeat(b"\xff\xff", 1, "order-2"),
            Repeat::Unknown(Lookup::order_id("order-2".into()))
        );
        let claim = claim(1, Duration::from_secs(5));
        let garbled = settled(claim.settle(Outcome::Answered(b"\xff\xff")));
        assert_eq!(
            repeat(&garbled, 1, "order-2"),
            Repeat::Unknown(Lookup::order_id("order-1".into()))
        );
    }

    #[test]
    fn fingerprints_and_order_ids() {
        let a = SendVerificationResponse::default();
        let b = SendVerificationResponse {
            verification_id: "x".into(),
            ..Default::default()
        };
        assert_eq!(fingerprint("M", &a), fingerprint("M", &a));
        assert_ne!(fingerprint("M", &a), fingerprint("M", &b));
        assert_ne!(fingerprint("M", &a), fingerprint("N", &a));
        let id = RequestId::parse(ID).unwrap().unwrap();
        let caller = Caller::anonymous();
        let derived = generated_order_id(&caller, Some(&id));
        assert_eq!(derived, generated_order_id(&caller, Some(&id)));
        assert_ne!(
            derived,
            generated_order_id(&Caller::new("other", "default"), Some(&id))
        );
        assert_eq!(derived.len(), 36);
        assert_ne!(
            generated_order_id(&caller, None),
            generated_order_id(&caller, None)
        );
    }
}

//! Several store operations in one round trip: what a send needs to be admitted ([`Batch`]: a
//! claim, counters and reads, stopping at the first that refuses) and to be settled ([`Write`]s).
//!
//! A batch is a short program the backend runs in one go, Redis as one Lua script and the memory
//! backend in one pass, so a send costs two store round trips whatever its rules count. The
//! operations are the store's own (put-if-absent, counters, reads, deletes); what they mean for
//! idempotency, quotas and the guard stays with those modules.

use std::time::Duration;

use super::{Key, WindowCount};

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes `value` for `ttl` unless a live value exists (`SET NX`). A live value stops the
    /// batch: [`Reply::Taken`] carries it.
    Claim {
        /// Where.
        key: Key,
        /// What.
        value: Vec<u8>,
        /// For how long.
        ttl: Duration,
    },
    /// Adds one to a counter whose window of `window` starts at its first increment (as
    /// [`Store::increment`](super::Store::increment)). A count past `limit` stops the batch.
    Count {
        /// The counter.
        key: Key,
        /// Its window.
        window: Duration,
        /// The most it may reach; `None` counts without a limit.
        limit: Option<u64>,
    },
    /// A sliding-window count: adds one to the counter `current` (a fixed window of `ttl` from
    /// its first increment) and adds the count of `previous` weighted by `weight.0 / weight.1`,
    /// rounded up. A sum past `limit` stops the batch.
    Slide {
        /// This bucket's counter.
        current: Key,
        /// The bucket before it.
        previous: Key,
        /// How long a bucket's counter lives.
        ttl: Duration,
        /// The share of the previous bucket still in view: (part, whole), whole > 0.
        weight: (u64, u64),
        /// The most the sum may reach.
        limit: u64,
        /// Whether going past the limit refuses the send (it releases the batch's claim); a
        /// dry-run limit only stops the batch.
        enforce: bool,
    },
    /// Reads a value; a live value stops the batch when `stop_if_found`.
    Read {
        /// Where.
        key: Key,
        /// Stop at a value.
        stop_if_found: bool,
    },
    /// Removes a value.
    Delete {
        /// Where.
        key: Key,
    },
    /// Stops the batch as a refusal (releasing its claim): a rule that needed no store refused.
    Refuse,
}

/// Operations run in order in one round trip, stopping at the first that says so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// What to run.
    pub ops: Vec<Op>,
    /// Deleted when a limit refuses (a [`Op::Count`], or an enforced [`Op::Slide`], stops the
    /// batch): the claim this batch made, so a refused send leaves no record behind.
    pub release: Option<Key>,
}

/// What one operation of a batch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// [`Op::Claim`] wrote its value.
    Claimed,
    /// [`Op::Claim`] found this live value (and the batch stopped).
    Taken(Vec<u8>),
    /// [`Op::Count`]'s counter, this increment included.
    Counted(WindowCount),
    /// [`Op::Slide`]'s counters: this bucket's (this increment included) and the previous one's,
    /// unweighted.
    Slid {
        /// This bucket.
        current: u64,
        /// The previous bucket.
        previous: u64,
    },
    /// [`Op::Read`]'s value, if any.
    Read(Option<Vec<u8>>),
    /// [`Op::Delete`] ran.
    Deleted,
    /// [`Op::Refuse`] stopped the batch.
    Refused,
}

/// The replies of the operations that ran: one per operation, in order, up to and including
/// the one that stopped the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replies {
    /// One per operation that ran.
    pub replies: Vec<Reply>,
    /// Whether an operation stopped the batch (it is the last reply).
    pub stopped: bool,
}

/// One write of a settlement: all of a send's writes go in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Stores `value` under `key` for `ttl`, replacing what was there.
    Put {
        /// Where.
        key: Key,
        /// What.
        value: Vec<u8>,
        /// For how long.
        ttl: Duration,
    },
    /// Removes `key`.
    Delete {
        /// Where.
        key: Key,
    },
}

/// `count × part ÷ whole`, rounded up: how much of a previous bucket is still in view.
pub fn weighted(count: u64, (part, whole): (u64, u64)) -> u64 {
    let product = u128::from(count) * u128::from(part);
    u64::try_from(product.div_ceil(u128::from(whole.max(1)))).unwrap_or(u64::MAX)
}

impl Op {
    /// Whether `reply`, this operation's, stops the batch, and whether as a refusal.
    pub(super) fn stops(&self, reply: &Reply) -> Stop {
        match (self, reply) {
            (Self::Claim { .. }, Reply::Taken(_)) => Stop::Here,
            (Self::Count { limit, .. }, Reply::Counted(counted))
                if limit.is_some_and(|limit| counted.count > limit) =>
            {
                Stop::Refused
            }
            (
                Self::Slide {
                    weight,
                    limit,
                    enforce,
                    ..
                },
                Reply::Slid { current, previous },
            ) if current.saturating_add(weighted(*previous, *weight)) > *limit => {
                if *enforce {
                    Stop::Refused
                } else {
                    Stop::Here
                }
            }
            (
                Self::Read {
                    stop_if_found: true,
                    ..
                },
                Reply::Read(Some(_)),
            ) => Stop::Here,
            (Self::Refuse, _) => Stop::Refused,
            _ => Stop::Go,
        }
    }
}

/// What a reply means for the rest of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Run the next operation.
    Go,
    /// Stop here.
    Here,
    /// Stop here and release the batch's claim.
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key::new("test", &[name])
    }

    fn counted(count: u64) -> Reply {
        Reply::Counted(WindowCount {
            count,
            resets_in: Duration::from_secs(1),
        })
    }

    #[test]
    fn weights_round_up() {
        assert_eq!(weighted(30, (3599, 3600)), 30);
        assert_eq!(weighted(5, (45, 60)), 4);
        assert_eq!(weighted(6, (30, 60)), 3);
        assert_eq!(weighted(0, (10, 60)), 0);
        assert_eq!(weighted(4, (0, 60)), 0);
        assert_eq!(weighted(u64::MAX, (2, 1)), u64::MAX);
    }

    #[test]
    fn each_operation_says_when_it_stops() {
        let claim = Op::Claim {
            key: key("c"),
            value: vec![1],
            ttl: Duration::from_secs(1),
        };
        assert_eq!(claim.stops(&Reply::Claimed), Stop::Go);
        assert_eq!(claim.stops(&Reply::Taken(vec![2])), Stop::Here);

        let count = |limit| Op::Count {
            key: key("n"),
            window: Duration::from_secs(60),
            limit,
        };
        assert_eq!(count(Some(2)).stops(&counted(2)), Stop::Go);
        assert_eq!(count(Some(2)).stops(&counted(3)), Stop::Refused);
        assert_eq!(count(None).stops(&counted(u64::MAX)), Stop::Go);

        let slide = |enforce| Op::Slide {
            current: key("a"),
            previous: key("b"),
            ttl: Duration::from_secs(120),
            weight: (1, 2),
            limit: 4,
            enforce,
        };
        // 2 + ⌈3 / 2⌉ = 4 fits; 2 + ⌈4 / 2⌉ = 4 fits; 3 + ⌈3 / 2⌉ = 5 does not.
        let slid = |current, previous| Reply::Slid { current, previous };
        assert_eq!(slide(true).stops(&slid(2, 3)), Stop::Go);
        assert_eq!(slide(true).stops(&slid(2, 4)), Stop::Go);
        assert_eq!(slide(true).stops(&slid(3, 3)), Stop::Refused);
        assert_eq!(slide(false).stops(&slid(3, 3)), Stop::Here);

        let read = |stop_if_found| Op::Read {
            key: key("r"),
            stop_if_found,
        };
        assert_eq!(read(true).stops(&Reply::Read(None)), Stop::Go);
        assert_eq!(read(true).stops(&Reply::Read(Some(vec![]))), Stop::Here);
        assert_eq!(read(false).stops(&Reply::Read(Some(vec![]))), Stop::Go);
        let delete = Op::Delete { key: key("d") };
        assert_eq!(delete.stops(&Reply::Deleted), Stop::Go);
        assert_eq!(Op::Refuse.stops(&Reply::Refused), Stop::Refused);
    }
}

//! The send guard: stops SMS pumping before it reaches ITNIO and the bill.
//!
//! ```text
//!  SendVerification / SendCustomCode ─► destination allowed? ─► pending for number+app? ─► velocity ─► ITNIO
//!        (country, number type)     DESTINATION_NOT_ALLOWED   the pending one, no SMS    SEND_RATE_EXCEEDED
//!  ResendVerification ─► velocity of the original's number ─► ITNIO
//!  CheckVerification ─► attempts ≤ max_check_attempts? ─► ITNIO    (else TOO_MANY_CHECK_ATTEMPTS)
//! ```
//!
//! Rules come from the [`policy`] (per ITNIO app, overridable per caller). Counters and records
//! live in the shared [`Store`](crate::store::Store), so replicas on one Redis enforce one limit
//! together; velocity counts slide ([`window`]). A refusal calls nothing upstream, is counted in
//! `itnio_guard_refusals_total{reason, country}` and logged with the country and number type,
//! never the number; in dry-run it is only logged and counted, and the send goes ahead.
//!
//! Sends are decided inside the send pipeline's one admission round trip: the guard says which
//! store operations a send needs ([`Guard::check_send`], [`Guard::check_resend`]), the pipeline
//! runs them in one [`Batch`](crate::store::Batch) with its own, and the guard reads the replies
//! ([`Guard::decide_send`], [`Guard::decide_resend`]); what it keeps of a sent verification
//! comes back as [`Write`]s for the pipeline's one settling round trip. Checks use the store
//! directly ([`Guard::admit_check`], [`Guard::checked`]).
//!
//! Store keys (`itnio-otp:guard:…`) hold a hash of the number, never the number itself.

pub mod policy;
mod records;
pub mod window;

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::{
    caller::Caller,
    hex::lower_hex,
    phone::{Country, Destination, NON_GEOGRAPHIC, NumberType},
    store::{Key, Op, Reply, SharedStore, StoreError, Write},
    telemetry::metrics,
};
pub use policy::{Policy, PolicyError, Rules};
use records::PendingRecord;
pub use records::{PendingSend, VerificationRecord};
use window::{Counter, WallClock};

/// How long a verification's record (for resends and checks) is kept.
const VERIFICATION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Why the guard refused a call. Maps to gRPC in [`crate::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardRefusal {
    /// The country or number type is not allowed for this app.
    #[error("destination not allowed")]
    DestinationNotAllowed {
        /// Where the number is.
        country: Country,
        /// What kind of line.
        number_type: NumberType,
        /// Which rule: `allowed_countries`, `denied_countries` or `denied_number_types`.
        rule: &'static str,
    },
    /// A velocity limit is exhausted.
    #[error("send rate exceeded")]
    SendRateExceeded {
        /// `per_number`, `per_prefix` or `per_country`.
        scope: &'static str,
        /// Where the number is.
        country: Country,
        /// The limit.
        sends: u32,
        /// Its window.
        window: Duration,
        /// When a send fits again.
        retry_after: Duration,
    },
    /// The verification was checked too often.
    #[error("too many check attempts")]
    TooManyCheckAttempts {
        /// The cap.
        max: u32,
    },
}

impl GuardRefusal {
    /// The `ErrorInfo.reason`, also the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DestinationNotAllowed { .. } => "DESTINATION_NOT_ALLOWED",
            Self::SendRateExceeded { .. } => "SEND_RATE_EXCEEDED",
            Self::TooManyCheckAttempts { .. } => "TOO_MANY_CHECK_ATTEMPTS",
        }
    }
}

/// Why the guard did not admit a check.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuardError {
    /// A rule refused it.
    #[error(transparent)]
    Refused(#[from] GuardRefusal),
    /// The store could not count it: checks fail closed like sends.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One send as the guard sees it.
#[derive(Debug, Clone)]
pub struct SendTarget {
    /// The ITNIO app.
    pub app_id: String,
    /// Who sends.
    pub caller: Caller,
    /// Where to.
    pub destination: Destination,
    /// For SendCustomCode: the code, so a pending send is only reused for the same code.
    pub custom_code: Option<String>,
    /// The caller asked for a new code although one is pending.
    pub replace_pending: bool,
}

/// A SendVerification or SendCustomCode as the guard will decide it: the store operations of
/// its admission ([`SendCheck::ops`]) and what [`Guard::decide_send`] needs to read them.
#[derive(Debug)]
pub struct SendCheck {
    target: SendTarget,
    rules: Rules,
    /// [`number_hash`] of the destination, computed once per send.
    number: String,
    /// A destination rule broke; decided without the store, reported after the caller's quota.
    destination: Option<GuardRefusal>,
    /// The pending verification to look for, if the rules keep one.
    pending: Option<Key>,
    /// The velocity limits, narrowest first.
    limits: Vec<Velocity>,
    /// The policy is in dry-run: nothing refuses, the batch only stops where a limit is over.
    dry_run: bool,
}

/// One velocity limit of a send: its counter and how to describe a refusal.
#[derive(Debug)]
struct Velocity {
    scope: &'static str,
    sends: u32,
    window: Duration,
    counter: Counter,
    op: Op,
}

impl SendCheck {
    /// The operations to run, in order, after the caller's quota in the send's admission batch.
    pub fn ops(&self) -> Vec<Op> {
        if self.destination.is_some() && self.enforced() {
            return vec![Op::Refuse];
        }
        let pending = self.pending.iter().map(|key| Op::Read {
            key: key.clone(),
            stop_if_found: self.enforced(),
        });
        let limits = self.limits.iter().map(|limit| limit.op.clone());
        pending.chain(limits).collect()
    }

    fn enforced(&self) -> bool {
        !self.dry_run
    }
}

/// What the guard decided for a send.
// Built once per send and matched at once: boxing the permit would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SendDecision {
    /// Send, then record it with [`Guard::sent`].
    Send(Permit),
    /// Do not send: this verification is pending for the same number and app.
    Pending(PendingSend),
    /// A verification is pending for another code: count the velocity limits in one more batch
    /// ([`SendCheck::ops`] of this check), then decide again.
    Count(SendCheck),
}

/// A send the guard let through, to be recorded once ITNIO answered.
#[derive(Debug)]
pub struct Permit {
    target: SendTarget,
    rules: Rules,
    number: String,
}

/// A ResendVerification of a verification the guard knows: its velocity limits to count.
#[derive(Debug)]
pub struct ResendCheck {
    record: VerificationRecord,
    rules: Rules,
    limits: Vec<Velocity>,
}

impl ResendCheck {
    /// The operations that count the resend against the original's limits.
    pub fn ops(&self) -> Vec<Op> {
        self.limits.iter().map(|limit| limit.op.clone()).collect()
    }
}

/// A check the guard let through.
#[derive(Debug)]
pub struct CheckTicket {
    verification_id: String,
    record: Option<VerificationRecord>,
    last_attempt: bool,
}

/// The guard of one process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    policy: Arc<Policy>,
    store: SharedStore,
    clock: WallClock,
}

impl Guard {
    /// A guard applying `policy` with its counters in `store`.
    pub fn new(policy: Policy, store: SharedStore) -> Self {
        if policy.dry_run {
            warn!("send guard in DRY-RUN: refusals are only logged and counted");
        }
        Self {
            policy: Arc::new(policy),
            store,
            clock: WallClock::new(),
        }
    }

    /// Plans a SendVerification or SendCustomCode: the destination rules are decided here (they
    /// need no store), the pending lookup and the velocity counters go into the admission batch.
    pub fn check_send(&self, target: SendTarget) -> SendCheck {
        let rules = self.policy.rules(&target.app_id, target.caller.name());
        let destination = destination_refusal(&rules, &target.destination);
        let number = number_hash(&target.destination.digits);
        let pending = (rules.one_pending && !target.replace_pending)
            .then(|| pending_key(&target.app_id, &number));
        let counted = Counted {
            app_id: &target.app_id,
            number: &number,
            prefix: &prefix(&target.destination.digits, rules.prefix_digits),
            country: target.destination.country,
        };
        let limits = self.velocity(&rules, &counted);
        SendCheck {
            target,
            rules,
            number,
            destination,
            pending,
            limits,
            dry_run: self.dry_run(),
        }
    }

    /// Reads the replies of a [`SendCheck`]'s operations (those that ran: the batch stops at a
    /// refusal or at the pending verification).
    pub fn decide_send(
        &self,
        mut check: SendCheck,
        replies: &[Reply],
    ) -> Result<SendDecision, GuardRefusal> {
        let (country, number_type) = (
            check.target.destination.country,
            check.target.destination.number_type,
        );
        if let Some(refusal) = check.destination.take() {
            self.refuse(refusal, country, number_type)?;
        }
        let mut replies = replies.iter();
        if check.pending.take().is_some() {
            let found = match replies.next() {
                Some(Reply::Read(Some(bytes))) => PendingRecord::decode(bytes),
                _ => None,
            };
            match found {
                Some(pending) if pending.same_code(check.target.custom_code.as_deref()) => {
                    metrics::guard_pending_returned(country.as_str(), self.dry_run());
                    info!(
                        country = %country,
                        number_type = number_type.as_str(),
                        dry_run = self.dry_run(),
                        "send guard: a verification is pending for this number and app"
                    );
                    if !self.dry_run() {
                        return Ok(SendDecision::Pending(pending.send));
                    }
                }
                // Another code's (or an unreadable) record stopped the batch before the limits.
                _ if replies.len() == 0 && !check.limits.is_empty() => {
                    return Ok(SendDecision::Count(check));
                }
                _ => {}
            }
        }
        self.read_velocity(&check.limits, replies, country, number_type)?;
        Ok(SendDecision::Send(Permit {
            target: check.target,
            rules: check.rules,
            number: check.number,
        }))
    }

    /// What to keep of a send ITNIO accepted: the pending verification and what resends and
    /// checks need. Written in the send's settling round trip.
    pub fn sent(&self, permit: Permit, send: PendingSend) -> Vec<Write> {
        let Permit {
            target,
            rules,
            number,
        } = permit;
        let destination = &target.destination;
        let record = VerificationRecord {
            app_id: target.app_id.clone(),
            number,
            prefix: prefix(&destination.digits, rules.prefix_digits),
            country: destination.country.to_string(),
            number_type: destination.number_type,
            pending: rules.one_pending,
        };
        let verification_id = send.verification_id.clone();
        let pending = PendingRecord::new(send, target.custom_code.as_deref());
        remember(&verification_id, &record, &pending, rules.pending_ttl)
    }

    /// The read that finds a resent verification's record, for the resend's admission batch.
    pub fn resend_lookup(&self, verification_id: &str) -> Op {
        Op::Read {
            key: verification_key(verification_id),
            stop_if_found: false,
        }
    }

    /// Plans a ResendVerification from what [`Guard::resend_lookup`] found: counted against the
    /// original's number, prefix and country. A verification the guard never saw (sent before
    /// it ran, or a day ago) is let through uncounted (`None`): ITNIO refuses resends of
    /// expired verifications.
    pub fn check_resend(&self, found: &Reply, caller: &Caller) -> Option<ResendCheck> {
        let Reply::Read(Some(bytes)) = found else {
            return None;
        };
        let record = VerificationRecord::decode(bytes)?;
        let rules = self.policy.rules(&record.app_id, caller.name());
        let counted = Counted {
            app_id: &record.app_id,
            number: &record.number,
            prefix: &record.prefix,
            country: record.country(),
        };
        let limits = self.velocity(&rules, &counted);
        Some(ResendCheck {
            record,
            rules,
            limits,
        })
    }

    /// Reads the replies of a [`ResendCheck`]'s operations.
    pub fn decide_resend(
        &self,
        check: ResendCheck,
        replies: &[Reply],
    ) -> Result<ResentFrom, GuardRefusal> {
        let (country, number_type) = (check.record.country(), check.record.number_type);
        self.read_velocity(&check.limits, replies.iter(), country, number_type)?;
        Ok(ResentFrom {
            record: check.record,
            rules: check.rules,
        })
    }

    /// What to keep of a resend: the new verification id inherits the original's record and,
    /// when the original was pending, becomes the pending one.
    pub fn resent(&self, original: ResentFrom, send: PendingSend) -> Vec<Write> {
        let verification_id = send.verification_id.clone();
        let pending = PendingRecord::new(send, None);
        remember(
            &verification_id,
            &original.record,
            &pending,
            original.rules.pending_ttl,
        )
    }

    /// Counts one check of `verification_id`; refuses past the cap without calling ITNIO.
    pub async fn admit_check(
        &self,
        verification_id: &str,
        caller: &Caller,
    ) -> Result<CheckTicket, GuardError> {
        let record = self.record(verification_id).await?;
        let app_id = record.as_ref().map_or("", |r| r.app_id.as_str());
        let rules = self.policy.rules(app_id, caller.name());
        let Some(max) = rules.max_check_attempts else {
            return Ok(CheckTicket {
                verification_id: verification_id.to_owned(),
                record,
                last_attempt: false,
            });
        };
        let key = Key::new("guard", &["checks", verification_id]);
        let attempts = self.store.increment(&key, VERIFICATION_TTL).await?.count;
        if attempts > u64::from(max.get()) {
            let (country, number_type) = record
                .as_ref()
                .map_or((NON_GEOGRAPHIC, NumberType::Other), |r| {
                    (r.country(), r.number_type)
                });
            self.refuse(
                GuardRefusal::TooManyCheckAttempts { max: max.get() },
                country,
                number_type,
            )?;
        }
        Ok(CheckTicket {
            verification_id: verification_id.to_owned(),
            record,
            last_attempt: attempts >= u64::from(max.get()),
        })
    }

    /// After ITNIO answered a check: a verification that matched, or can no longer match, is
    /// no longer pending, so the next send to its number sends a new code.
    pub async fn checked(&self, ticket: CheckTicket, settled: bool) {
        let Some(record) = ticket.record.filter(|r| r.pending) else {
            return;
        };
        if !(settled || ticket.last_attempt) {
            return;
        }
        let key = pending_key(&record.app_id, &record.number);
        let result = async {
            let current = self.store.get(&key).await?;
            let still_this = current
                .and_then(|bytes| PendingRecord::decode(&bytes))
                .is_some_and(|p| p.send.verification_id == ticket.verification_id);
            if still_this {
                self.store.delete(&key).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(error) = result.await {
            warn!(%error, "send guard: could not clear a pending verification");
        }
    }

    fn dry_run(&self) -> bool {
        self.policy.dry_run
    }

    /// The velocity limits a send counts against, narrowest first; the first one exceeded
    /// stops the batch (wider counters are then left alone, so refused floods do not eat a
    /// whole country's budget).
    fn velocity(&self, rules: &Rules, counted: &Counted<'_>) -> Vec<Velocity> {
        let country = counted.country.as_str();
        let limits = [
            ("per_number", rules.per_number, ["number", counted.number]),
            ("per_prefix", rules.per_prefix, ["prefix", counted.prefix]),
            ("per_country", rules.per_country, ["country", country]),
        ];
        limits
            .into_iter()
            .filter_map(|(scope, limit, [kind, value])| {
                let limit = limit?;
                let key = [kind, counted.app_id, value];
                let (op, counter) = Counter::new(&self.clock, &key, limit, !self.dry_run());
                Some(Velocity {
                    scope,
                    sends: limit.sends.get(),
                    window: limit.window,
                    counter,
                    op,
                })
            })
            .collect()
    }

    /// Reads the velocity counters' replies; the first one over its limit refuses.
    fn read_velocity<'a>(
        &self,
        limits: &[Velocity],
        replies: impl Iterator<Item = &'a Reply>,
        country: Country,
        number_type: NumberType,
    ) -> Result<(), GuardRefusal> {
        for (limit, reply) in limits.iter().zip(replies) {
            let Reply::Slid { current, previous } = reply else {
                continue;
            };
            if let Some(retry_after) = limit.counter.hit(*current, *previous).retry_after {
                let refusal = GuardRefusal::SendRateExceeded {
                    scope: limit.scope,
                    country,
                    sends: limit.sends,
                    window: limit.window,
                    retry_after,
                };
                return self.refuse(refusal, country, number_type);
            }
        }
        Ok(())
    }

    /// Counts and logs a refusal; in dry-run that is all, else it is the call's error.
    fn refuse(
        &self,
        refusal: GuardRefusal,
        country: Country,
        number_type: NumberType,
    ) -> Result<(), GuardRefusal> {
        let dry_run = self.dry_run();
        metrics::guard_refusal(refusal.reason(), country.as_str(), dry_run);
        warn!(
            reason = refusal.reason(),
            country = %country,
            number_type = number_type.as_str(),
            dry_run,
            "send guard refusal"
        );
        if dry_run { Ok(()) } else { Err(refusal) }
    }

    async fn record(
        &self,
        verification_id: &str,
    ) -> Result<Option<VerificationRecord>, StoreError> {
        let bytes = self.store.get(&verification_key(verification_id)).await?;
        Ok(bytes.and_then(|bytes| VerificationRecord::decode(&bytes)))
    }
}

/// The verification a resend was let through for, to be recorded with [`Guard::resent`].
#[derive(Debug)]
pub struct ResentFrom {
    record: VerificationRecord,
    rules: Rules,
}

/// The writes that keep the record of `verification_id` and, when it is pending, the pending
/// send.
fn remember(
    verification_id: &str,
    record: &VerificationRecord,
    pending: &PendingRecord,
    pending_ttl: Duration,
) -> Vec<Write> {
    let mut writes = vec![Write::Put {
        key: verification_key(verification_id),
        value: record.encode(),
        ttl: VERIFICATION_TTL,
    }];
    if record.pending {
        writes.push(Write::Put {
            key: pending_key(&record.app_id, &record.number),
            value: pending.encode(),
            ttl: pending_ttl,
        });
    }
    writes
}

/// The counters one send touches.
struct Counted<'a> {
    app_id: &'a str,
    number: &'a str,
    prefix: &'a str,
    country: Country,
}

/// The first destination rule `destination` breaks, if any.
fn destination_refusal(rules: &Rules, destination: &Destination) -> Option<GuardRefusal> {
    let refusal = |rule| GuardRefusal::DestinationNotAllowed {
        country: destination.country,
        number_type: destination.number_type,
        rule,
    };
    if !rules.allowed_countries.is_empty()
        && !rules.allowed_countries.contains(&destination.country)
    {
        return Some(refusal("allowed_countries"));
    }
    if rules.denied_countries.contains(&destination.country) {
        return Some(refusal("denied_countries"));
    }
    if rules.denied_number_types.contains(&destination.number_type) {
        return Some(refusal("denied_number_types"));
    }
    None
}

/// A hash of the number for store keys: equal numbers meet, the number itself is not stored.
/// The same number always gives the same 32 hex digits (keys outlive a release: replicas of
/// two versions share one Redis during a rolling update).
fn number_hash(digits: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"itnio-otp-guard:")
        .chain_update(digits.as_bytes())
        .finalize();
    lower_hex(&digest[..16])
}

/// The first `digits` digits of the E.164 number (all of it when shorter).
fn prefix(number: &str, digits: usize) -> String {
    number.chars().take(digits).collect()
}

/// The pending verification of a number (by its hash) and app.
fn pending_key(app_id: &str, number: &str) -> Key {
    Key::new("guard", &["pending", app_id, number])
}

fn verification_key(verification_id: &str) -> Key {
    Key::new("guard", &["verification", verification_id])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{
        phone::PhoneRules,
        store::{Batch, MemoryStore, testing::Down},
    };

    fn guard(policy: &str) -> Guard {
        Guard::new(
            Policy::parse(policy).unwrap(),
            Arc::new(MemoryStore::default()),
        )
    }

    fn target(app_id: &str, number: &str) -> SendTarget {
        SendTarget {
            app_id: app_id.into(),
            caller: Caller::anonymous(),
            destination: PhoneRules::default().parse(number).unwrap(),
            custom_code: None,
            replace_pending: false,
        }
    }

    fn send(verification_id: &str) -> PendingSend {
        PendingSend {
            verification_id: verification_id.into(),
            phone_number: "447400123456".into(),
            channel: 1,
            sna_url: String::new(),
            order_id: format!("order-{verification_id}"),
        }
    }

    /// Runs `ops` in one batch, as the send pipeline does.
    async fn run(guard: &Guard, ops: Vec<Op>) -> Result<Vec<Reply>, GuardError> {
        let batch = Batch { ops, release: None };
        Ok(guard.store.run(&batch).await?.replies)
    }

    /// Admits a send the way the send pipeline does: the guard's operations in one batch (one
    /// more when another code is pending), then its decision.
    async fn admit_send(guard: &Guard, target: SendTarget) -> Result<SendDecision, GuardError> {
        let check = guard.check_send(target);
        let replies = run(guard, check.ops()).await?;
        match guard.decide_send(check, &replies)? {
            SendDecision::Count(check) => {
                let replies = run(guard, check.ops()).await?;
                match guard.decide_send(check, &replies)? {
                    SendDecision::Count(_) => panic!("the second batch decides"),
                    decided => Ok(decided),
                }
            }
            decided => Ok(decided),
        }
    }

    /// Admits a resend the way the send pipeline does.
    async fn admit_resend(
        guard: &Guard,
        verification_id: &str,
        caller: &Caller,
    ) -> Result<Option<ResentFrom>, GuardError> {
        let found = run(guard, vec![guard.resend_lookup(verification_id)]).await?;
        let Some(check) = guard.check_resend(&found[0], caller) else {
            return Ok(None);
        };
        let replies = run(guard, check.ops()).await?;
        Ok(Some(guard.decide_resend(check, &replies)?))
    }

    async fn write(guard: &Guard, writes: Vec<Write>) {
        guard.store.write(&writes).await.unwrap();
    }

    /// Admits a send of `target` and records it as `verification_id`; panics if refused.
    async fn sent(guard: &Guard, target: SendTarget, verification_id: &str) {
        match admit_send(guard, target).await.unwrap() {
            SendDecision::Send(permit) => {
                write(guard, guard.sent(permit, send(verification_id))).await
            }
            other => panic!("expected a send, got {other:?}"),
        }
    }

    async fn pending_of(guard: &Guard, target: SendTarget) -> Option<String> {
        match admit_send(guard, target).await.unwrap() {
            SendDecision::Send(_) => None,
            SendDecision::Pending(p) => Some(p.verification_id),
            SendDecision::Count(_) => panic!("decided after one more batch"),
        }
    }

    fn refusal(result: Result<impl std::fmt::Debug, GuardError>) -> GuardRefusal {
        match result {
            Err(GuardError::Refused(refusal)) => refusal,
            other => panic!("expected a guard refusal, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_send_is_returned_until_its_ttl_or_a_replacement() {
        let guard = guard("[defaults]\npending_ttl = \"30s\"\n");
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            Some("v1".into())
        );
        assert_eq!(
            pending_of(&guard, target("app2", "+44 7400 123456")).await,
            None
        );
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123457")).await,
            None
        );
        let replace = SendTarget {
            replace_pending: true,
            ..target("app1", "+44 7400 123456")
        };
        sent(&guard, replace, "v2").await;
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            Some("v2".into())
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_one_pending_every_send_is_sent() {
        let guard = guard("[defaults]\none_pending = false\n");
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        sent(&guard, target("app1", "+44 7400 123456"), "v2").await;
    }

    #[tokio::test(start_paused = true)]
    async fn checks_clear_the_pending_send_when_settled_or_exhausted() {
        let guard = guard(
            "[defaults]\nmax_check_attempts = 2\nper_number = { sends = 0, window = \"1h\" }\n",
        );
        let caller = Caller::anonymous();
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        let ticket = guard.admit_check("v1", &caller).await.unwrap();
        guard.checked(ticket, false).await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            Some("v1".into()),
            "a wrong code keeps it pending"
        );
        let ticket = guard.admit_check("v1", &caller).await.unwrap();
        guard.checked(ticket, false).await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            None,
            "the last attempt ends it"
        );
        assert_eq!(
            refusal(guard.admit_check("v1", &caller).await),
            GuardRefusal::TooManyCheckAttempts { max: 2 }
        );

        sent(&guard, target("app1", "+44 7400 123456"), "v2").await;
        let ticket = guard.admit_check("v2", &caller).await.unwrap();
        guard.checked(ticket, true).await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            None
        );

        // A check of an older verification leaves the newer pending one alone.
        sent(&guard, target("app1", "+44 7400 123456"), "v3").await;
        let replace = SendTarget {
            replace_pending: true,
            ..target("app1", "+44 7400 123456")
        };
        sent(&guard, replace, "v4").await;
        let ticket = guard.admit_check("v3", &caller).await.unwrap();
        guard.checked(ticket, true).await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            Some("v4".into())
        );
        // Unknown verifications are capped too.
        let ticket = guard.admit_check("unknown", &caller).await.unwrap();
        guard.checked(ticket, true).await;
    }

    #[tokio::test(start_paused = true)]
    async fn no_cap_means_every_check_passes() {
        let guard = guard("[defaults]\nmax_check_attempts = 0\n");
        for _ in 0..20 {
            let ticket = guard.admit_check("v1", &Caller::anonymous()).await.unwrap();
            assert!(!ticket.last_attempt);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resends_count_against_the_original_number() {
        let guard =
            guard("[defaults]\none_pending = false\nper_number = { sends = 2, window = \"1h\" }\n");
        let caller = Caller::anonymous();
        assert!(
            admit_resend(&guard, "never-seen", &caller)
                .await
                .unwrap()
                .is_none()
        );
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        let original = admit_resend(&guard, "v1", &caller).await.unwrap().unwrap();
        let record = &original.record;
        assert_eq!(
            (record.app_id.as_str(), record.prefix.as_str()),
            ("app1", "4474001")
        );
        assert!(!record.number.contains("7400"), "the number is hashed");
        write(&guard, guard.resent(original, send("v2"))).await;
        match refusal(admit_resend(&guard, "v2", &caller).await) {
            GuardRefusal::SendRateExceeded { scope, country, .. } => {
                assert_eq!((scope, country.as_str()), ("per_number", "GB"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_resend_of_a_pending_verification_becomes_the_pending_one() {
        let guard = guard("");
        let caller = Caller::anonymous();
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        let original = admit_resend(&guard, "v1", &caller).await.unwrap().unwrap();
        write(&guard, guard.resent(original, send("v2"))).await;
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            Some("v2".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn custom_codes_are_pending_only_for_the_same_code() {
        let guard = guard("");
        let custom = |code: &str| SendTarget {
            custom_code: Some(code.into()),
            ..target("app1", "+44 7400 123456")
        };
        sent(&guard, custom("1234"), "v1").await;
        assert_eq!(pending_of(&guard, custom("1234")).await, Some("v1".into()));
        assert_eq!(pending_of(&guard, custom("9999")).await, None);
        assert_eq!(
            pending_of(&guard, target("app1", "+44 7400 123456")).await,
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dry_run_admits_what_it_would_refuse() {
        let dry =
            guard("dry_run = true\n[defaults]\nper_number = { sends = 1, window = \"1h\" }\n");
        sent(&dry, target("app1", "+44 909 879 0000"), "v1").await;
        sent(&dry, target("app1", "+44 909 879 0000"), "v2").await;
        let enforcing = guard("");
        match refusal(admit_send(&enforcing, target("app1", "+44 909 879 0000")).await) {
            GuardRefusal::DestinationNotAllowed {
                country,
                number_type,
                rule,
            } => assert_eq!(
                (country.as_str(), number_type, rule),
                ("GB", NumberType::PremiumRate, "denied_number_types")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dry_run_counts_past_a_pending_send_and_a_refused_destination() {
        let dry = guard("dry_run = true\n");
        sent(&dry, target("app1", "+44 7400 123456"), "v1").await;
        let check = dry.check_send(target("app1", "+44 7400 123456"));
        let replies = run(&dry, check.ops()).await.unwrap();
        // The pending read does not stop the batch: the three velocity counters still run.
        assert!(
            matches!(
                replies.as_slice(),
                [
                    Reply::Read(Some(_)),
                    Reply::Slid { .. },
                    Reply::Slid { .. },
                    Reply::Slid { .. }
                ]
            ),
            "{replies:?}"
        );
        let premium = dry.check_send(target("app1", "+44 909 879 0000"));
        assert!(!premium.ops().contains(&Op::Refuse), "{:?}", premium.ops());
        let enforcing = guard("");
        let premium = enforcing.check_send(target("app1", "+44 909 879 0000"));
        assert_eq!(premium.ops(), [Op::Refuse]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_send_leaves_wider_counters_alone() {
        let guard = guard(
            "[defaults]\none_pending = false\nper_number = { sends = 1, window = \"1h\" }\n\
             per_prefix = { sends = 2, window = \"1h\" }\n",
        );
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        for _ in 0..5 {
            refusal(admit_send(&guard, target("app1", "+44 7400 123456")).await);
        }
        sent(&guard, target("app1", "+44 7400 123457"), "v2").await;
        match refusal(admit_send(&guard, target("app1", "+44 7400 123458")).await) {
            GuardRefusal::SendRateExceeded {
                scope,
                sends,
                window,
                retry_after,
                ..
            } => {
                assert_eq!(
                    (scope, sends, window),
                    ("per_prefix", 2, Duration::from_secs(3600))
                );
                assert!(retry_after > Duration::ZERO);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_down_fails_closed() {
        let guard = Guard::new(Policy::default(), Arc::new(Down));
        let sends = admit_send(&guard, target("app1", "+44 7400 123456")).await;
        assert!(matches!(sends, Err(GuardError::Store(_))), "{sends:?}");
        let checks = guard.admit_check("v1", &Caller::anonymous()).await;
        assert!(matches!(checks, Err(GuardError::Store(_))), "{checks:?}");
    }

    #[test]
    fn destination_rules_apply_in_order() {
        let rules = |text: &str| Policy::parse(text).unwrap().rules("a", "c");
        let gb_mobile = PhoneRules::default().parse("+44 7400 123456").unwrap();
        let only_us =
            rules("[defaults]\nallowed_countries = [\"US\"]\ndenied_countries = [\"GB\"]\n");
        assert!(matches!(
            destination_refusal(&only_us, &gb_mobile),
            Some(GuardRefusal::DestinationNotAllowed {
                rule: "allowed_countries",
                ..
            })
        ));
        let deny_gb =
            rules("[defaults]\ndenied_countries = [\"GB\"]\ndenied_number_types = [\"mobile\"]\n");
        assert!(matches!(
            destination_refusal(&deny_gb, &gb_mobile),
            Some(GuardRefusal::DestinationNotAllowed {
                rule: "denied_countries",
                ..
            })
        ));
        let deny_mobiles =
            rules("[defaults]\nallowed_countries = [\"GB\"]\ndenied_number_types = [\"mobile\"]\n");
        assert!(matches!(
            destination_refusal(&deny_mobiles, &gb_mobile),
            Some(GuardRefusal::DestinationNotAllowed {
                rule: "denied_number_types",
                ..
            })
        ));
        assert_eq!(destination_refusal(&Rules::default(), &gb_mobile), None);
    }

    #[test]
    fn reasons_are_the_documented_names() {
        let destination = GuardRefusal::DestinationNotAllowed {
            country: NON_GEOGRAPHIC,
            number_type: NumberType::Other,
            rule: "denied_countries",
        };
        let rate = GuardRefusal::SendRateExceeded {
            scope: "per_number",
            country: NON_GEOGRAPHIC,
            sends: 1,
            window: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
        };
        let checks = GuardRefusal::TooManyCheckAttempts { max: 5 };
        assert_eq!(destination.reason(), "DESTINATION_NOT_ALLOWED");
        assert_eq!(rate.reason(), "SEND_RATE_EXCEEDED");
        assert_eq!(checks.reason(), "TOO_MANY_CHECK_ATTEMPTS");
    }

    #[tokio::test(start_paused = true)]
    async fn verification_records_last_a_day() {
        let guard = guard("");
        let caller = Caller::anonymous();
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        tokio::time::advance(VERIFICATION_TTL - Duration::from_secs(1)).await;
        assert!(admit_resend(&guard, "v1", &caller).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(admit_resend(&guard, "v1", &caller).await.unwrap().is_none());
        assert_eq!(VERIFICATION_TTL, Duration::from_secs(86_400));
    }

    #[test]
    fn keys_hold_a_hash_and_a_prefix_never_the_number() {
        let hash = number_hash("447400123456");
        // sha256("itnio-otp-guard:447400123456"), first 16 bytes in lower-case hex: keys
        // written by earlier releases must still be found.
        assert_eq!(hash, "f2b86d3e32dd159c572148fc8c40f225");
        assert_ne!(hash, number_hash("447400123457"));
        assert!(!hash.contains("7400123456"));
        assert_eq!(prefix("447400123456", 7), "4474001");
        assert_eq!(prefix("4474", 7), "4474");
        assert_eq!(
            pending_key("app1", &hash).as_str(),
            format!("itnio-otp:guard:pending:app1:{hash}")
        );
        assert_eq!(
            verification_key("v1").as_str(),
            "itnio-otp:guard:verification:v1"
        );
    }
}

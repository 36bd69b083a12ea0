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
//! Store keys (`itnio-otp:guard:…`) hold a hash of the number, never the number itself.

pub mod policy;
mod records;
pub mod window;

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::{
    caller::Caller,
    error::ServiceError,
    hex::lower_hex,
    phone::{Country, Destination, NON_GEOGRAPHIC, NumberType},
    store::{Key, Put, SharedStore},
    telemetry::metrics,
};
pub use policy::{Policy, PolicyError, Rules};
pub use records::PendingSend;
use records::{PendingRecord, VerificationRecord};
use window::WallClock;

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

/// What the guard decided for a send.
// Built once per send and matched at once: boxing the permit would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Admission {
    /// Send, then report with [`Guard::sent`].
    Send(Permit),
    /// Do not send: this verification is pending for the same number and app.
    Pending(PendingSend),
}

/// A send the guard let through, to be recorded once ITNIO answered.
#[derive(Debug)]
pub struct Permit {
    target: SendTarget,
    rules: Rules,
    /// [`number_hash`] of the destination, computed once per send.
    number: String,
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

    /// Decides a SendVerification or SendCustomCode; refuses with [`GuardRefusal`] (or
    /// UNAVAILABLE when the store cannot count: sends fail closed).
    pub async fn admit_send(&self, target: SendTarget) -> Result<Admission, ServiceError> {
        let rules = self.policy.rules(&target.app_id, target.caller.name());
        let destination = &target.destination;
        if let Some(refusal) = destination_refusal(&rules, destination) {
            self.refuse(refusal, destination.country, destination.number_type)?;
        }
        let number = number_hash(&destination.digits);
        if rules.one_pending && !target.replace_pending {
            let key = pending_key(&target.app_id, &number);
            let pending = self.store.get(&key).await?;
            if let Some(pending) = pending.and_then(|bytes| PendingRecord::decode(&bytes)) {
                if pending.same_code(target.custom_code.as_deref()) {
                    metrics::guard_pending_returned(destination.country.as_str(), self.dry_run());
                    info!(
                        country = %destination.country,
                        number_type = destination.number_type.as_str(),
                        dry_run = self.dry_run(),
                        "send guard: a verification is pending for this number and app"
                    );
                    if !self.dry_run() {
                        return Ok(Admission::Pending(pending.send));
                    }
                }
            }
        }
        let counts = Counted {
            app_id: &target.app_id,
            number,
            prefix: prefix(&destination.digits, rules.prefix_digits),
            country: destination.country,
        };
        self.count(&rules, &counts, destination.number_type).await?;
        let number = counts.number;
        Ok(Admission::Send(Permit {
            target,
            rules,
            number,
        }))
    }

    /// Records a send ITNIO accepted: the pending verification and what resends and checks need.
    /// A store failure here is logged, not returned: the code is already on its way.
    pub async fn sent(&self, permit: Permit, send: PendingSend) {
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
        self.remember(&verification_id, &record, pending, rules.pending_ttl)
            .await;
    }

    /// Decides a ResendVerification of `verification_id`: counted against the original's
    /// number, prefix and country. A verification the guard never saw (sent before it ran, or
    /// a day ago) is let through uncounted: ITNIO refuses resends of expired verifications.
    pub async fn admit_resend(
        &self,
        verification_id: &str,
        caller: &Caller,
    ) -> Result<Option<VerificationRecord>, ServiceError> {
        let Some(record) = self.record(verification_id).await? else {
            return Ok(None);
        };
        let rules = self.policy.rules(&record.app_id, caller.name());
        let counts = Counted {
            app_id: &record.app_id,
            number: record.number.clone(),
            prefix: record.prefix.clone(),
            country: record.country(),
        };
        self.count(&rules, &counts, record.number_type).await?;
        Ok(Some(record))
    }

    /// Records a resend: the new verification id inherits the original's record and, when the
    /// original was pending, becomes the pending one.
    pub async fn resent(&self, record: VerificationRecord, caller: &Caller, send: PendingSend) {
        let rules = self.policy.rules(&record.app_id, caller.name());
        let verification_id = send.verification_id.clone();
        let pending = PendingRecord::new(send, None);
        self.remember(&verification_id, &record, pending, rules.pending_ttl)
            .await;
    }

    /// Counts one check of `verification_id`; refuses past the cap without calling ITNIO.
    pub async fn admit_check(
        &self,
        verification_id: &str,
        caller: &Caller,
    ) -> Result<CheckTicket, ServiceError> {
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
            Ok::<_, crate::store::StoreError>(())
        };
        if let Err(error) = result.await {
            warn!(%error, "send guard: could not clear a pending verification");
        }
    }

    fn dry_run(&self) -> bool {
        self.policy.dry_run
    }

    /// Counts the send against every velocity limit, narrowest first; the first one exceeded
    /// refuses it (wider counters are then left alone, so refused floods do not eat a whole
    /// country's budget).
    async fn count(
        &self,
        rules: &Rules,
        counts: &Counted<'_>,
        number_type: NumberType,
    ) -> Result<(), ServiceError> {
        let country = counts.country.as_str();
        let limits = [
            (
                "per_number",
                rules.per_number,
                ["number", counts.number.as_str()],
            ),
            (
                "per_prefix",
                rules.per_prefix,
                ["prefix", counts.prefix.as_str()],
            ),
            ("per_country", rules.per_country, ["country", country]),
        ];
        for (scope, limit, [kind, value]) in limits {
            let Some(limit) = limit else { continue };
            let key = [kind, counts.app_id, value];
            let hit = window::hit(&self.store, &self.clock, &key, limit).await?;
            if let Some(retry_after) = hit.retry_after {
                let refusal = GuardRefusal::SendRateExceeded {
                    scope,
                    country: counts.country,
                    sends: limit.sends.get(),
                    window: limit.window,
                    retry_after,
                };
                return self.refuse(refusal, counts.country, number_type);
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
    ) -> Result<(), ServiceError> {
        let dry_run = self.dry_run();
        metrics::guard_refusal(refusal.reason(), country.as_str(), dry_run);
        warn!(
            reason = refusal.reason(),
            country = %country,
            number_type = number_type.as_str(),
            dry_run,
            "send guard refusal"
        );
        if dry_run { Ok(()) } else { Err(refusal.into()) }
    }

    async fn record(
        &self,
        verification_id: &str,
    ) -> Result<Option<VerificationRecord>, ServiceError> {
        let bytes = self.store.get(&verification_key(verification_id)).await?;
        Ok(bytes.and_then(|bytes| VerificationRecord::decode(&bytes)))
    }

    /// Stores the record of `verification_id` and, when it is pending, the pending send.
    async fn remember(
        &self,
        verification_id: &str,
        record: &VerificationRecord,
        pending: PendingRecord,
        pending_ttl: Duration,
    ) {
        let result = async {
            let key = verification_key(verification_id);
            self.store
                .put(&key, &record.encode(), VERIFICATION_TTL, Put::Always)
                .await?;
            if record.pending {
                let key = pending_key(&record.app_id, &record.number);
                self.store
                    .put(&key, &pending.encode(), pending_ttl, Put::Always)
                    .await?;
            }
            Ok::<_, crate::store::StoreError>(())
        };
        if let Err(error) = result.await {
            warn!(%error, "send guard: could not record a sent verification");
        }
    }
}

/// The counters one send touches.
struct Counted<'a> {
    app_id: &'a str,
    number: String,
    prefix: String,
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
        store::{MemoryStore, testing::Down},
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

    /// Admits a send of `target` and records it as `verification_id`; panics if refused.
    async fn sent(guard: &Guard, target: SendTarget, verification_id: &str) {
        match guard.admit_send(target).await.unwrap() {
            Admission::Send(permit) => guard.sent(permit, send(verification_id)).await,
            Admission::Pending(p) => panic!("expected a send, got pending {}", p.verification_id),
        }
    }

    async fn pending_of(guard: &Guard, target: SendTarget) -> Option<String> {
        match guard.admit_send(target).await.unwrap() {
            Admission::Send(_) => None,
            Admission::Pending(p) => Some(p.verification_id),
        }
    }

    fn refusal(result: Result<impl std::fmt::Debug, ServiceError>) -> GuardRefusal {
        match result {
            Err(ServiceError::Guard(refusal)) => refusal,
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
        assert_eq!(
            guard.admit_resend("never-seen", &caller).await.unwrap(),
            None
        );
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        let record = guard.admit_resend("v1", &caller).await.unwrap().unwrap();
        assert_eq!(
            (record.app_id.as_str(), record.prefix.as_str()),
            ("app1", "4474001")
        );
        assert!(!record.number.contains("7400"), "the number is hashed");
        guard.resent(record, &caller, send("v2")).await;
        match refusal(guard.admit_resend("v2", &caller).await) {
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
        let record = guard.admit_resend("v1", &caller).await.unwrap().unwrap();
        guard.resent(record, &caller, send("v2")).await;
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
        match refusal(
            enforcing
                .admit_send(target("app1", "+44 909 879 0000"))
                .await,
        ) {
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
    async fn a_refused_send_leaves_wider_counters_alone() {
        let guard = guard(
            "[defaults]\none_pending = false\nper_number = { sends = 1, window = \"1h\" }\n\
             per_prefix = { sends = 2, window = \"1h\" }\n",
        );
        sent(&guard, target("app1", "+44 7400 123456"), "v1").await;
        for _ in 0..5 {
            refusal(guard.admit_send(target("app1", "+44 7400 123456")).await);
        }
        sent(&guard, target("app1", "+44 7400 123457"), "v2").await;
        match refusal(guard.admit_send(target("app1", "+44 7400 123458")).await) {
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
        let sends = guard.admit_send(target("app1", "+44 7400 123456")).await;
        assert!(matches!(sends, Err(ServiceError::Send(_))), "{sends:?}");
        let checks = guard.admit_check("v1", &Caller::anonymous()).await;
        assert!(matches!(checks, Err(ServiceError::Send(_))), "{checks:?}");
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
        assert!(guard.admit_resend("v1", &caller).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(guard.admit_resend("v1", &caller).await.unwrap(), None);
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

//! Idempotent sends (AIP-155): a send repeated with the same `request_id` by the same caller
//! within [`RECORD_TTL`] reaches ITNIO at most once.
//!
//! ```text
//!  send(request_id) ─► claim (put-if-absent: in flight, lease) ─┬─ claimed ─► quota ─► ITNIO ─► settle
//!                                                              └─ taken ───► read the record:
//!     different fingerprint ─► REQUEST_ID_REUSED     done ─► the first response, replayed
//!     outcome unknown / lease ended ─► OUTCOME_UNKNOWN (look it up by order id; never resent)
//!     in flight ─► wait for it, within the repeat's own deadline (then REQUEST_IN_PROGRESS)
//! ```
//!
//! How the first attempt settles its record:
//! - ITNIO answered: the response is kept and replayed to every repeat;
//! - the call may have been processed (timeout, connection lost after the request was written,
//!   HTTP 5xx, unreadable reply): the record says so, and repeats get `OUTCOME_UNKNOWN`;
//! - nothing was processed (connection refused, an HTTP 4xx refusal, a business "no" from ITNIO,
//!   the caller's own rate limit): the record is removed, so a retry with the same id is a
//!   fresh attempt — there is nothing to protect, and a cached refusal would outlive its cause.
//!
//! The first attempt runs in its own task, so a caller that cancels or disconnects cannot leave
//! the record in flight; if the replica dies mid-call the lease runs out and repeats read it as
//! an unknown outcome. Records live in the shared [`Store`](crate::store::Store), so a retry
//! landing on another replica is deduplicated too, and if the store cannot be reached the send
//! fails closed (UNAVAILABLE) before ITNIO is called.

mod record;
mod request_id;

use std::{future::Future, time::Duration};

use prost::Message;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::warn;

use crate::{
    caller::Caller,
    error::{SendError, ServiceError},
    quota::SendQuota,
    store::{Key, Put, SharedStore},
};
use record::{Record, Stage, lease_until, now_ms};
pub use request_id::RequestId;

/// How long a request id is remembered (AIP-155 suggests at least a day).
pub const RECORD_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How much longer than the upstream timeout an in-flight lease lasts: the store writes that
/// settle the record, with room to spare.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The first and the longest pause of a repeat waiting for the first attempt.
const WAIT_FIRST: Duration = Duration::from_millis(20);
const WAIT_MAX: Duration = Duration::from_millis(250);

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

/// One send as the deduplication sees it.
#[derive(Debug, Clone)]
pub struct SendAttempt {
    /// Who sends; request ids are scoped per caller.
    pub caller: Caller,
    /// The caller's request id; `None` means no deduplication.
    pub request_id: Option<RequestId>,
    /// [`fingerprint`] of the request.
    pub fingerprint: [u8; 32],
    /// How to look this send up if its outcome is unknown.
    pub lookup: Lookup,
    /// The caller's remaining time, if it set a deadline.
    pub deadline: Option<Duration>,
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

/// Runs the three send RPCs through deduplication and the caller's quota.
#[derive(Debug, Clone)]
pub struct Sends {
    store: SharedStore,
    quota: SendQuota,
    lease: Duration,
}

impl Sends {
    /// Sends deduplicated in `store`; `upstream_timeout` bounds one ITNIO call, and so the lease.
    pub fn new(store: SharedStore, upstream_timeout: Duration) -> Self {
        Self {
            quota: SendQuota::new(store.clone()),
            store,
            lease: upstream_timeout + LEASE_MARGIN,
        }
    }

    /// Makes the send `send` at most once per `(caller, request id)`; see the module docs.
    pub async fn run<M, F>(&self, attempt: SendAttempt, send: F) -> Result<M, ServiceError>
    where
        M: Message + Default + 'static,
        F: Future<Output = Result<M, ServiceError>> + Send + 'static,
    {
        let Some(request_id) = &attempt.request_id else {
            self.quota.admit(&attempt.caller).await?;
            return send.await.map_err(|error| failed(error, &attempt.lookup));
        };
        let key = Key::new("idem", &[attempt.caller.name(), request_id.as_str()]);
        let wait_until = Instant::now() + attempt.deadline.unwrap_or(self.lease);
        let mut pause = WAIT_FIRST;
        loop {
            let claim = Record {
                fingerprint: attempt.fingerprint.to_vec(),
                stage: Stage::InFlight as i32,
                lease_until_ms: lease_until(self.lease),
                lookup_field: attempt.lookup.field.to_owned(),
                lookup_value: attempt.lookup.value.clone(),
                response: Vec::new(),
            };
            let bytes = claim.encode_to_vec();
            if self
                .store
                .put(&key, &bytes, RECORD_TTL, Put::IfAbsent)
                .await?
            {
                return self.first_attempt(key, claim, &attempt, send).await;
            }
            // Absent again: the first attempt was not sent and released the id; claim it anew.
            if let Some(bytes) = self.store.get(&key).await? {
                if let Some(settled) = settled::<M>(&bytes, &attempt, request_id) {
                    return settled;
                }
            }
            if Instant::now() + pause >= wait_until {
                return Err(SendError::RequestInProgress {
                    request_id: request_id.to_string(),
                }
                .into());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(WAIT_MAX);
        }
    }

    /// The claimed first attempt: quota, then ITNIO in a task of its own, then the record.
    async fn first_attempt<M, F>(
        &self,
        key: Key,
        claim: Record,
        attempt: &SendAttempt,
        send: F,
    ) -> Result<M, ServiceError>
    where
        M: Message + Default + 'static,
        F: Future<Output = Result<M, ServiceError>> + Send + 'static,
    {
        if let Err(refused) = self.quota.admit(&attempt.caller).await {
            self.release(&key).await;
            return Err(refused);
        }
        let store = self.store.clone();
        let lookup = attempt.lookup.clone();
        // TODO(pipeline): start it with crate::task::spawn (keeps the rpc span) in the rewrite.
        #[allow(
            clippy::disallowed_methods,
            reason = "file under rewrite; see the TODO above"
        )]
        let task = tokio::spawn(async move {
            let result = send.await;
            let (stage, response) = match &result {
                Ok(response) => (Some(Stage::Done), response.encode_to_vec()),
                Err(ServiceError::Upstream(error)) if error.may_have_been_processed() => {
                    (Some(Stage::OutcomeUnknown), Vec::new())
                }
                Err(_) => (None, Vec::new()),
            };
            let settled = match stage {
                Some(stage) => {
                    let record = claim.at(stage, response).encode_to_vec();
                    store
                        .put(&key, &record, RECORD_TTL, Put::Always)
                        .await
                        .map(drop)
                }
                None => store.delete(&key).await,
            };
            if let Err(error) = settled {
                // The lease still protects the id: once it ends, repeats read "outcome unknown".
                warn!(%error, key = key.as_str(), "could not settle an idempotency record");
            }
            result.map_err(|error| failed(error, &lookup))
        });
        task.await.unwrap_or_else(|_| {
            // The send panicked: whether it reached ITNIO is unknown, and the lease says so.
            Err(SendError::OutcomeUnknown {
                request_id: attempt
                    .request_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                lookup: attempt.lookup.clone(),
            }
            .into())
        })
    }

    async fn release(&self, key: &Key) {
        if let Err(error) = self.store.delete(key).await {
            warn!(%error, key = key.as_str(), "could not release an idempotency record");
        }
    }
}

/// What a repeat answers from a record someone else holds; `None` while it is still in flight.
fn settled<M: Message + Default>(
    bytes: &[u8],
    attempt: &SendAttempt,
    request_id: &RequestId,
) -> Option<Result<M, ServiceError>> {
    // The record's own lookup is the first attempt's (a generated order id is the same for
    // every attempt, but a record is the authority).
    let unknown = |record: Option<&Record>| {
        let mut lookup = attempt.lookup.clone();
        if let Some(record) = record.filter(|r| r.lookup_field == lookup.field) {
            lookup.value.clone_from(&record.lookup_value);
        }
        ServiceError::from(SendError::OutcomeUnknown {
            request_id: request_id.to_string(),
            lookup,
        })
    };
    // A record this replica cannot read is treated with the same caution as a lost reply.
    let Ok(record) = Record::decode(bytes) else {
        return Some(Err(unknown(None)));
    };
    if record.fingerprint != attempt.fingerprint {
        return Some(Err(SendError::RequestIdReused {
            request_id: request_id.to_string(),
        }
        .into()));
    }
    match record.current_stage() {
        Stage::Done => {
            Some(M::decode(record.response.as_slice()).map_err(|_| unknown(Some(&record))))
        }
        Stage::OutcomeUnknown => Some(Err(unknown(Some(&record)))),
        Stage::InFlight if record.lease_ended(now_ms()) => Some(Err(unknown(Some(&record)))),
        Stage::InFlight => None,
    }
}

/// A failed send, with the lookup attached when ITNIO may have processed it.
fn failed(error: ServiceError, lookup: &Lookup) -> ServiceError {
    match error {
        ServiceError::Upstream(error) if error.may_have_been_processed() => {
            ServiceError::UncertainSend {
                error,
                lookup: lookup.clone(),
            }
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;
    use crate::{
        proto::v1::SendVerificationResponse,
        store::{MemoryStore, testing::Down},
        upstream::{Endpoint, UpstreamError},
    };

    const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

    fn attempt(fingerprint: u8, deadline: Option<Duration>) -> SendAttempt {
        SendAttempt {
            caller: Caller::anonymous(),
            request_id: RequestId::parse(ID).unwrap(),
            fingerprint: [fingerprint; 32],
            lookup: Lookup::order_id("order-1".into()),
            deadline,
        }
    }

    fn response(id: &str) -> SendVerificationResponse {
        SendVerificationResponse {
            verification_id: id.into(),
            ..Default::default()
        }
    }

    /// A send that counts its calls and answers `result`.
    fn counted(
        calls: &Arc<AtomicU32>,
        result: Result<SendVerificationResponse, UpstreamError>,
    ) -> impl Future<Output = Result<SendVerificationResponse, ServiceError>> + Send + 'static {
        let calls = Arc::clone(calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            result.map_err(ServiceError::from)
        }
    }

    fn timeout() -> UpstreamError {
        UpstreamError::Timeout {
            endpoint: Endpoint::VerificationSend,
        }
    }

    fn refused() -> UpstreamError {
        UpstreamError::Rejected {
            endpoint: Endpoint::VerificationSend,
            status: -27,
            reason: "limit".into(),
        }
    }

    fn sends(store: SharedStore) -> Sends {
        Sends::new(store, Duration::from_secs(5))
    }

    fn send_error(result: Result<SendVerificationResponse, ServiceError>) -> SendError {
        match result {
            Err(ServiceError::Send(error)) => error,
            other => panic!("expected a send error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_success_is_replayed_and_a_different_request_is_refused() {
        let sends = sends(Arc::new(MemoryStore::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let first = sends
            .run(attempt(1, None), counted(&calls, Ok(response("v1"))))
            .await
            .unwrap();
        let again = sends
            .run(attempt(1, None), counted(&calls, Ok(response("v2"))))
            .await
            .unwrap();
        assert_eq!(again, first);
        let other = sends
            .run(attempt(2, None), counted(&calls, Ok(response("v3"))))
            .await;
        assert!(matches!(
            send_error(other),
            SendError::RequestIdReused { .. }
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_maybe_processed_failure_is_never_sent_again() {
        let sends = sends(Arc::new(MemoryStore::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let first = sends
            .run(attempt(1, None), counted(&calls, Err(timeout())))
            .await;
        match first {
            Err(ServiceError::UncertainSend { lookup, .. }) => {
                assert_eq!(
                    (lookup.field, lookup.value.as_str()),
                    ("order_id", "order-1")
                );
            }
            other => panic!("expected an uncertain send, got {other:?}"),
        }
        // The record, not the retry, says which order id to look up.
        let retry = SendAttempt {
            lookup: Lookup::order_id("order-2".into()),
            ..attempt(1, None)
        };
        let retry = sends.run(retry, counted(&calls, Ok(response("v")))).await;
        match send_error(retry) {
            SendError::OutcomeUnknown { request_id, lookup } => {
                assert_eq!(request_id, ID);
                assert_eq!(
                    (lookup.field, lookup.value.as_str()),
                    ("order_id", "order-1")
                );
            }
            other => panic!("expected outcome unknown, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refusal_releases_the_id() {
        let sends = sends(Arc::new(MemoryStore::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let first = sends
            .run(attempt(1, None), counted(&calls, Err(refused())))
            .await;
        assert!(matches!(first, Err(ServiceError::Upstream(_))));
        sends
            .run(attempt(1, None), counted(&calls, Ok(response("v"))))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_waits_for_the_first_attempt_within_its_deadline() {
        let sends = sends(Arc::new(MemoryStore::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let slow = {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(response("v1"))
            }
        };
        let first = tokio::spawn({
            let sends = sends.clone();
            async move { sends.run(attempt(1, None), slow).await }
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        let impatient = sends
            .run(
                attempt(1, Some(Duration::from_secs(1))),
                counted(&calls, Ok(response("v2"))),
            )
            .await;
        assert!(matches!(
            send_error(impatient),
            SendError::RequestInProgress { .. }
        ));
        assert!(started.elapsed() <= Duration::from_secs(1));
        let patient = sends
            .run(
                attempt(1, Some(Duration::from_secs(5))),
                counted(&calls, Ok(response("v3"))),
            )
            .await
            .unwrap();
        assert_eq!(patient, first.await.unwrap().unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_ended_lease_reads_as_an_unknown_outcome() {
        // A replica that died mid-call leaves an in-flight record whose lease has ended.
        let store: SharedStore = Arc::new(MemoryStore::default());
        let key = Key::new("idem", &[Caller::anonymous().name(), ID]);
        let stale = Record {
            fingerprint: vec![1; 32],
            stage: Stage::InFlight as i32,
            lease_until_ms: now_ms() - 1,
            lookup_field: "order_id".into(),
            lookup_value: "order-1".into(),
            response: Vec::new(),
        };
        store
            .put(&key, &stale.encode_to_vec(), RECORD_TTL, Put::Always)
            .await
            .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let retry = sends(store.clone())
            .run(attempt(1, None), counted(&calls, Ok(response("v"))))
            .await;
        assert!(matches!(
            send_error(retry),
            SendError::OutcomeUnknown { .. }
        ));
        // So does a record this replica cannot read.
        store
            .put(&key, b"\xff\xff", RECORD_TTL, Put::Always)
            .await
            .unwrap();
        let retry = sends(store)
            .run(attempt(1, None), counted(&calls, Ok(response("v"))))
            .await;
        assert!(matches!(
            send_error(retry),
            SendError::OutcomeUnknown { .. }
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_cancelled_caller_still_settles_the_record() {
        let sends = sends(Arc::new(MemoryStore::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (started, first_called) = tokio::sync::oneshot::channel::<()>();
        let gated = {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = started.send(());
                let _ = released.await;
                Ok(response("v1"))
            }
        };
        let first = tokio::spawn({
            let sends = sends.clone();
            async move { sends.run(attempt(1, None), gated).await }
        });
        // Dropped unsent if `run` returns without calling the upstream: then this fails at once.
        tokio::time::timeout(Duration::from_secs(10), first_called)
            .await
            .expect("the first attempt calls the upstream within 10 s")
            .expect("the first attempt calls the upstream");
        first.abort();
        let _ = first.await;
        release.send(()).unwrap();
        let replay = sends
            .run(
                attempt(1, Some(Duration::from_secs(5))),
                counted(&calls, Ok(response("v2"))),
            )
            .await
            .unwrap();
        assert_eq!(replay, response("v1"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_the_store_sends_fail_closed() {
        let sends = sends(Arc::new(Down));
        let calls = Arc::new(AtomicU32::new(0));
        for request in [
            attempt(1, None),
            SendAttempt {
                request_id: None,
                ..attempt(1, None)
            },
        ] {
            let result = sends.run(request, counted(&calls, Ok(response("v")))).await;
            assert!(matches!(send_error(result), SendError::StateUnavailable(_)));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_id_is_remembered_for_a_day() {
        let sends = sends(Arc::new(MemoryStore::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let first = sends
            .run(attempt(1, None), counted(&calls, Ok(response("v1"))))
            .await
            .unwrap();
        tokio::time::advance(RECORD_TTL - Duration::from_secs(1)).await;
        let replay = sends
            .run(attempt(1, None), counted(&calls, Ok(response("v2"))))
            .await
            .unwrap();
        assert_eq!(replay, first);
        assert_eq!(RECORD_TTL, Duration::from_secs(24 * 3600));
        tokio::time::advance(Duration::from_secs(1)).await;
        let later = sends
            .run(attempt(1, None), counted(&calls, Ok(response("v3"))))
            .await
            .unwrap();
        assert_eq!(later, response("v3"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quota_refusal_releases_the_id() {
        let sends = sends(Arc::new(MemoryStore::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let limited = Caller::anonymous().with_sends_per_minute(std::num::NonZeroU32::MIN);
        let as_limited = |fingerprint| SendAttempt {
            caller: limited.clone(),
            ..attempt(fingerprint, Some(Duration::from_secs(1)))
        };
        let other_id = SendAttempt {
            request_id: RequestId::parse("223e4567-e89b-12d3-a456-426614174000").unwrap(),
            ..as_limited(1)
        };
        sends
            .run(other_id, counted(&calls, Ok(response("v1"))))
            .await
            .unwrap();
        let refused = sends
            .run(as_limited(1), counted(&calls, Ok(response("v2"))))
            .await;
        assert!(matches!(
            send_error(refused),
            SendError::CallerRateExceeded { .. }
        ));
        tokio::time::advance(crate::quota::WINDOW).await;
        let sent = sends
            .run(as_limited(1), counted(&calls, Ok(response("v3"))))
            .await
            .unwrap();
        assert_eq!(sent, response("v3"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn fingerprints_and_order_ids() {
        let a = SendVerificationResponse::default();
        let b = response("x");
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

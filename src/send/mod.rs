//! The send pipeline: SendVerification, SendCustomCode and ResendVerification from a checked
//! request to the response, in one place.
//!
//! ```text
//!  SendRequest ─► admit: ONE store round trip (a Batch)       ─► ITNIO ─► settle: ONE round trip (Writes)
//!                  claim request_id ─ taken ─► replay / REQUEST_ID_REUSED / OUTCOME_UNKNOWN / wait
//!                  caller quota ─ over ─► CALLER_SEND_RATE_EXCEEDED (claim released)
//!                  guard: destination ─ pending? ─ velocity ─► refusal (claim released) / the pending one
//!                                                              settle: guard records + idempotency record
//! ```
//!
//! [`SendPipeline::run`] owns a send from start to finish. The admission batch holds every store
//! operation that decides the send — the idempotency claim ([`crate::idempotency`]), the caller's
//! quota ([`quota`]), the guard's pending lookup and velocity counters ([`crate::guard`]) — and
//! the settlement writes the guard's records and the idempotency record together. Two cases
//! need one more admission round trip: a verification pending for another custom code (the
//! velocity counters run after it), and a resend of a verification the guard knows (its
//! counters are keyed on the original's record, read in the first batch).
//!
//! Each attempt (admission, ITNIO call, settlement) runs in a task of its own, inside the
//! call's tracing span and telemetry context ([`spawn_in_call`]): a caller that cancels cannot
//! leave a claim in flight, and the attempt's log lines and upstream status still belong to its
//! call. A repeat that finds the first attempt in flight waits for it in the caller's own task,
//! within its deadline.

pub mod error;
pub mod quota;

use std::{sync::Arc, time::Duration};

use prost::Message;
use tokio::time::Instant;
use tracing::warn;

pub use error::SendError;

use crate::{
    caller::Caller,
    convert::verifications::{Sent, sent_from_wire},
    guard::{Guard, PendingSend, ResentFrom, SendCheck, SendDecision, SendTarget},
    idempotency::{self, Claim, LEASE_MARGIN, Lookup, Outcome, Repeat, RequestId},
    phone::Destination,
    proto::v1 as pb,
    store::{Batch, Key, Op, Replies, Reply, SharedStore, StoreError, Write},
    telemetry::rpc::spawn_in_call,
    upstream::{self as wire, UpstreamClient, UpstreamError},
};

/// The first and the longest pause of a repeat waiting for the first attempt.
const WAIT_FIRST: Duration = Duration::from_millis(20);
const WAIT_MAX: Duration = Duration::from_millis(250);

/// What every send answers, as recorded and replayed: the three send responses share its
/// fields 1–4 (SendVerification's and SendCustomCode's also 5 and 6), so one encoding serves
/// all three, and records written by earlier releases (each RPC's own response) read the same.
pub type SendResponse = pb::SendVerificationResponse;

/// A checked send, ready for the pipeline.
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Who sends (request ids and quotas are per caller).
    pub caller: Caller,
    /// The caller's remaining time, if it set a deadline.
    pub deadline: Option<Duration>,
    /// The caller's request id, parsed once by `convert`; `None`: no deduplication.
    pub request_id: Option<RequestId>,
    /// [`idempotency::fingerprint`] of the gRPC request without its request id.
    pub fingerprint: [u8; 32],
    /// Which send, with its ITNIO body.
    pub send: Send,
}

/// The three sends.
#[derive(Debug, Clone)]
pub enum Send {
    /// SendVerification: `/verification/send`, ITNIO makes the code.
    Generated(NewSend),
    /// SendCustomCode: `/verification/sendRule` with the caller's code (in the body).
    Custom(NewSend),
    /// ResendVerification: `/verification/resend` of an earlier verification.
    Resend(wire::ResendRequest),
}

/// A new code to a number.
#[derive(Debug, Clone)]
pub struct NewSend {
    /// The ITNIO body; a send without an order id gets one in [`SendPipeline::run`].
    pub body: wire::SendRequest,
    /// Where it goes, for the guard.
    pub destination: Destination,
    /// The caller asked for a new code although one is pending.
    pub replace_pending: bool,
}

/// The ITNIO calls of a send: [`UpstreamClient`] in production, a stand-in in unit tests.
#[tonic::async_trait]
pub trait SendUpstream: Clone + std::marker::Send + Sync + 'static {
    /// Makes the one ITNIO call `send` stands for.
    async fn call(
        &self,
        send: &Send,
        deadline: Option<Duration>,
    ) -> Result<wire::Sent, UpstreamError>;
}

#[tonic::async_trait]
impl SendUpstream for UpstreamClient {
    async fn call(
        &self,
        send: &Send,
        deadline: Option<Duration>,
    ) -> Result<wire::Sent, UpstreamError> {
        match send {
            Send::Generated(new) => self.send_verification(&new.body, deadline).await,
            Send::Custom(new) => self.send_custom_code(&new.body, deadline).await,
            Send::Resend(body) => self.resend_verification(body, deadline).await,
        }
    }
}

/// Runs sends; cheap to clone.
#[derive(Debug, Clone)]
pub struct SendPipeline {
    store: SharedStore,
    guard: Guard,
    lease: Duration,
}

/// Where one attempt ended.
enum Attempt {
    /// The send's answer.
    Done(Result<SendResponse, SendError>),
    /// Another attempt with this request id is in flight.
    InFlight,
}

/// What the guard said, as the pipeline acts on it.
// Built once per send and matched at once: boxing the permit would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Admitted {
    /// Send, then record with the guard's permit.
    Send(Record),
    /// Answer with the verification already pending.
    Pending(PendingSend),
}

/// What the guard keeps once ITNIO answered.
enum Record {
    Sent(crate::guard::Permit),
    Resent(ResentFrom),
    /// A resend of a verification the guard never saw: nothing to keep.
    Nothing,
}

impl SendPipeline {
    /// Sends with their state in `store`, decided by `guard`; `upstream_timeout` bounds one
    /// ITNIO call, and so the lease of a claimed request id.
    pub fn new(store: SharedStore, guard: Guard, upstream_timeout: Duration) -> Self {
        Self {
            store,
            guard,
            lease: upstream_timeout + LEASE_MARGIN,
        }
    }

    /// Makes `request` through `upstream`, at most once per `(caller, request id)`.
    pub async fn run<U: SendUpstream>(
        &self,
        mut request: SendRequest,
        upstream: U,
    ) -> Result<SendResponse, SendError> {
        if let Send::Generated(new) | Send::Custom(new) = &mut request.send {
            new.body.order_id.get_or_insert_with(|| {
                idempotency::generated_order_id(&request.caller, request.request_id.as_ref())
            });
        }
        let request = Arc::new(request);
        let wait_until = Instant::now() + request.deadline.unwrap_or(self.lease);
        let mut pause = WAIT_FIRST;
        loop {
            let attempt = self.clone().attempt(Arc::clone(&request), upstream.clone());
            match spawn_in_call(attempt).await {
                Ok(Attempt::Done(result)) => return result,
                Ok(Attempt::InFlight) => {}
                // The attempt panicked: whether it reached ITNIO is unknown, and the lease says so.
                Err(_) => return Err(request.outcome_unknown(request.lookup())),
            }
            if Instant::now() + pause >= wait_until {
                return Err(SendError::RequestInProgress {
                    request_id: request.request_id_text(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(WAIT_MAX);
        }
    }

    /// One attempt: admit, call ITNIO, settle.
    async fn attempt<U: SendUpstream>(self, request: Arc<SendRequest>, upstream: U) -> Attempt {
        let lookup = request.lookup();
        let claim = request.request_id.as_ref().map(|request_id| {
            Claim::new(
                &request.caller,
                request_id,
                request.fingerprint,
                &lookup,
                self.lease,
            )
        });
        let admitted = match self.admit(&request, claim.as_ref()).await {
            Ok(Ok(admitted)) => admitted,
            Ok(Err(repeat)) => return repeat,
            Err(error) => return Attempt::Done(Err(error)),
        };
        let record = match admitted {
            Admitted::Pending(pending) => {
                let response = response(pending, true);
                let settled = claim
                    .as_ref()
                    .map(|c| c.settle(Outcome::Answered(&response.encode_to_vec())));
                self.settle(settled, Vec::new()).await;
                return Attempt::Done(Ok(response));
            }
            Admitted::Send(record) => record,
        };
        let result = upstream.call(&request.send, request.deadline).await;
        let (outcome, guard_writes, answer) = match result {
            Ok(sent) => {
                let sent = pending_send(sent_from_wire(sent), request.order_id());
                let response = response(sent.clone(), false);
                let writes = self.guard_writes(record, sent);
                (Some(response.encode_to_vec()), writes, Ok(response))
            }
            Err(error) => (
                None,
                Vec::new(),
                Err(SendError::from_upstream(error, &lookup)),
            ),
        };
        let settled = claim.as_ref().map(|claim| {
            claim.settle(match (&outcome, &answer) {
                (Some(bytes), _) => Outcome::Answered(bytes),
                (None, Err(SendError::Uncertain { .. })) => Outcome::Unknown,
                (None, _) => Outcome::NotSent,
            })
        });
        self.settle(settled, guard_writes).await;
        Attempt::Done(answer)
    }

    /// The admission: one batch (two in the cases named in the module docs). `Ok(Err(_))` is a
    /// repeat of a request id another attempt holds.
    async fn admit(
        &self,
        request: &SendRequest,
        claim: Option<&Claim>,
    ) -> Result<Result<Admitted, Attempt>, SendError> {
        let caller = &request.caller;
        let mut ops = Vec::with_capacity(8);
        ops.extend(claim.map(Claim::op));
        ops.push(quota::count(caller));
        let check = match &request.send {
            Send::Generated(new) | Send::Custom(new) => {
                let check = self.guard.check_send(target(request, new));
                ops.extend(check.ops());
                Some(check)
            }
            Send::Resend(body) => {
                ops.push(self.guard.resend_lookup(&body.verification_id));
                None
            }
        };
        let release = claim.map(|c| c.key().clone());
        let replies = self.store.run(&batch(ops, &release)).await?;
        let mut replies = replies.replies.iter();
        if claim.is_some() {
            if let Some(Reply::Taken(bytes)) = replies.next() {
                return Ok(Err(request.repeat(bytes)));
            }
        }
        quota::read(caller, replies.next())?;
        let rest = replies.as_slice();
        let admitted = match check {
            Some(check) => self.decide_send(check, rest, &release).await,
            None => self.decide_resend(caller, rest, &release).await,
        };
        if let (Err(SendError::StateUnavailable(_)), Some(claim)) = (&admitted, claim) {
            // A second batch failed after this attempt claimed the id: nothing was sent.
            self.settle(Some(claim.settle(Outcome::NotSent)), Vec::new())
                .await;
        }
        admitted.map(Ok)
    }

    async fn decide_send(
        &self,
        check: SendCheck,
        replies: &[Reply],
        release: &Option<Key>,
    ) -> Result<Admitted, SendError> {
        match self.guard.decide_send(check, replies)? {
            SendDecision::Send(permit) => Ok(Admitted::Send(Record::Sent(permit))),
            SendDecision::Pending(pending) => Ok(Admitted::Pending(pending)),
            SendDecision::Count(check) => {
                let replies = self.store.run(&batch(check.ops(), release)).await?;
                match self.guard.decide_send(check, &replies.replies)? {
                    SendDecision::Send(permit) => Ok(Admitted::Send(Record::Sent(permit))),
                    SendDecision::Pending(pending) => Ok(Admitted::Pending(pending)),
                    // The second batch holds no pending lookup, so the guard cannot ask again.
                    SendDecision::Count(_) => Err(unreadable()),
                }
            }
        }
    }

    async fn decide_resend(
        &self,
        caller: &Caller,
        replies: &[Reply],
        release: &Option<Key>,
    ) -> Result<Admitted, SendError> {
        let Some(check) = replies
            .first()
            .and_then(|found| self.guard.check_resend(found, caller))
        else {
            return Ok(Admitted::Send(Record::Nothing));
        };
        let ops = check.ops();
        let replies = if ops.is_empty() {
            Replies::default()
        } else {
            self.store.run(&batch(ops, release)).await?
        };
        let original = self.guard.decide_resend(check, &replies.replies)?;
        Ok(Admitted::Send(Record::Resent(original)))
    }

    fn guard_writes(&self, record: Record, sent: PendingSend) -> Vec<Write> {
        match record {
            Record::Sent(permit) => self.guard.sent(permit, sent),
            Record::Resent(original) => self.guard.resent(original, sent),
            Record::Nothing => Vec::new(),
        }
    }

    /// The settling round trip. A failure is logged, not returned: the code is on its way, and
    /// an unsettled claim's lease makes repeats read "outcome unknown".
    async fn settle(&self, claim: Option<Write>, mut writes: Vec<Write>) {
        writes.extend(claim);
        if writes.is_empty() {
            return;
        }
        if let Err(error) = self.store.write(&writes).await {
            warn!(%error, "could not settle a send's records");
        }
    }
}

impl SendRequest {
    /// How to look this send up if its outcome is unknown.
    fn lookup(&self) -> Lookup {
        match &self.send {
            Send::Generated(new) | Send::Custom(new) => {
                Lookup::order_id(new.body.order_id.clone().unwrap_or_default())
            }
            // ITNIO's resend takes no order id: the original verification is how to find it.
            Send::Resend(body) => Lookup::verification_id(body.verification_id.clone()),
        }
    }

    /// The order id ITNIO gets (none for a resend).
    fn order_id(&self) -> &str {
        match &self.send {
            Send::Generated(new) | Send::Custom(new) => new.body.order_id.as_deref().unwrap_or(""),
            Send::Resend(_) => "",
        }
    }

    fn request_id_text(&self) -> String {
        self.request_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    fn outcome_unknown(&self, lookup: Lookup) -> SendError {
        SendError::OutcomeUnknown {
            request_id: self.request_id_text(),
            lookup,
        }
    }

    /// What a repeat answers from the record another attempt holds.
    fn repeat(&self, record: &[u8]) -> Attempt {
        let request_id = self.request_id_text();
        match idempotency::read_repeat(record, &self.fingerprint, &self.lookup()) {
            Repeat::Replay(response) => Attempt::Done(Ok(response)),
            Repeat::Reused => Attempt::Done(Err(SendError::RequestIdReused { request_id })),
            Repeat::Unknown(lookup) => Attempt::Done(Err(self.outcome_unknown(lookup))),
            Repeat::InFlight => Attempt::InFlight,
        }
    }
}

fn batch(ops: Vec<Op>, release: &Option<Key>) -> Batch {
    Batch {
        ops,
        release: release.clone(),
    }
}

/// The store answered a batch in a way this release cannot read (a newer replica's script?):
/// treated like the store being unavailable, so the send fails closed.
fn unreadable() -> SendError {
    SendError::StateUnavailable(StoreError("unexpected batch reply".into()))
}

/// The send as the guard sees it.
fn target(request: &SendRequest, new: &NewSend) -> SendTarget {
    SendTarget {
        app_id: new.body.app_id.clone(),
        caller: request.caller.clone(),
        destination: new.destination.clone(),
        custom_code: match &request.send {
            Send::Custom(new) => new.body.code.clone(),
            _ => None,
        },
        replace_pending: new.replace_pending,
    }
}

/// What the guard keeps of a send, to answer later sends while it is pending.
fn pending_send(sent: Sent, order_id: &str) -> PendingSend {
    PendingSend {
        verification_id: sent.verification_id,
        phone_number: sent.phone_number,
        channel: sent.channel,
        sna_url: sent.sna_url,
        order_id: order_id.to_owned(),
    }
}

/// The response of a send; `pending` says whether it is the verification already pending.
fn response(send: PendingSend, pending: bool) -> SendResponse {
    SendResponse {
        verification_id: send.verification_id,
        phone_number: send.phone_number,
        channel: send.channel,
        sna_url: send.sna_url,
        order_id: send.order_id,
        pending,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    };

    use tokio::sync::Notify;

    use super::*;
    use crate::{
        guard::Policy,
        phone::PhoneRules,
        store::{Key, MemoryStore, Put, Replies, Store, StoreError, WindowCount, testing::Down},
        upstream::Endpoint,
    };

    const ID: &str = "123e4567-e89b-12d3-a456-426614174000";
    const NUMBER: &str = "+44 7400 123456";

    /// An ITNIO stand-in: counts its calls and fails with `fail` or answers verification
    /// `v<n>` for the n-th call, optionally after `started` and `release`.
    #[derive(Clone)]
    struct Upstream {
        calls: Arc<AtomicU32>,
        fail: Option<fn() -> UpstreamError>,
        gate: Option<(Arc<Notify>, Arc<Notify>)>,
        delay: Duration,
    }

    impl Upstream {
        fn failing(fail: fn() -> UpstreamError) -> Self {
            Self {
                fail: Some(fail),
                ..Self::ok()
            }
        }

        fn ok() -> Self {
            Self {
                calls: Arc::new(AtomicU32::new(0)),
                fail: None,
                gate: None,
                delay: Duration::ZERO,
            }
        }

        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[tonic::async_trait]
    impl SendUpstream for Upstream {
        async fn call(&self, _: &Send, _: Option<Duration>) -> Result<wire::Sent, UpstreamError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some((started, release)) = &self.gate {
                started.notify_one();
                release.notified().await;
            }
            tokio::time::sleep(self.delay).await;
            if let Some(fail) = self.fail {
                return Err(fail());
            }
            Ok(wire::Sent {
                verification_id: format!("v{n}"),
                to: Some("447400123456".into()),
                channel: Some("sms".into()),
                sna_url: None,
            })
        }
    }

    /// A store that counts round trips by kind, over the memory backend.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryStore,
        trips: Mutex<Vec<&'static str>>,
    }

    impl Counting {
        fn trips(&self) -> Vec<&'static str> {
            std::mem::take(&mut self.trips.lock().unwrap())
        }
        fn note(&self, trip: &'static str) {
            self.trips.lock().unwrap().push(trip);
        }
    }

    #[tonic::async_trait]
    impl Store for Counting {
        async fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
            self.note("get");
            self.inner.get(key).await
        }
        async fn put(
            &self,
            key: &Key,
            v: &[u8],
            ttl: Duration,
            m: Put,
        ) -> Result<bool, StoreError> {
            self.note("put");
            self.inner.put(key, v, ttl, m).await
        }
        async fn delete(&self, key: &Key) -> Result<(), StoreError> {
            self.note("delete");
            self.inner.delete(key).await
        }
        async fn increment(&self, key: &Key, w: Duration) -> Result<WindowCount, StoreError> {
            self.note("increment");
            self.inner.increment(key, w).await
        }
        async fn run(&self, batch: &Batch) -> Result<Replies, StoreError> {
            self.note("batch");
            self.inner.run(batch).await
        }
        async fn write(&self, writes: &[Write]) -> Result<(), StoreError> {
            self.note("write");
            self.inner.write(writes).await
        }
    }

    fn pipeline_with(store: SharedStore, policy: &str) -> SendPipeline {
        let guard = Guard::new(Policy::parse(policy).unwrap(), store.clone());
        SendPipeline::new(store, guard, Duration::ZERO)
    }

    /// A pipeline whose guard keeps no pending send (so repeats are idempotency's alone).
    fn pipeline(store: SharedStore) -> SendPipeline {
        pipeline_with(store, "[defaults]\none_pending = false\n")
    }

    fn memory() -> SharedStore {
        Arc::new(MemoryStore::default())
    }

    fn new_send(number: &str) -> NewSend {
        let destination = PhoneRules::default().parse(number).unwrap();
        NewSend {
            body: wire::SendRequest {
                app_id: "app1".into(),
                template_id: Some(1),
                to: destination.digits.clone(),
                order_id: Some("order-1".into()),
                ..Default::default()
            },
            destination,
            replace_pending: false,
        }
    }

    /// A SendVerification to [`NUMBER`] with request id [`ID`] and `fingerprint`.
    fn request(fingerprint: u8, deadline: Option<Duration>) -> SendRequest {
        SendRequest {
            caller: Caller::anonymous(),
            deadline,
            request_id: RequestId::parse(ID).unwrap(),
            fingerprint: [fingerprint; 32],
            send: Send::Generated(new_send(NUMBER)),
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

    #[tokio::test]
    async fn a_success_is_replayed_and_a_different_request_is_refused() {
        let sends = pipeline(memory());
        let upstream = Upstream::ok();
        let first = sends.run(request(1, None), upstream.clone()).await.unwrap();
        assert_eq!(
            (first.verification_id.as_str(), first.order_id.as_str()),
            ("v1", "order-1")
        );
        let again = sends.run(request(1, None), upstream.clone()).await.unwrap();
        assert_eq!(again, first);
        let other = sends.run(request(2, None), upstream.clone()).await;
        assert!(matches!(other, Err(SendError::RequestIdReused { .. })));
        assert_eq!(upstream.calls(), 1);
    }

    #[tokio::test]
    async fn a_maybe_processed_failure_is_never_sent_again() {
        let sends = pipeline(memory());
        let lost = Upstream::failing(timeout);
        match sends.run(request(1, None), lost.clone()).await {
            Err(SendError::Uncertain { lookup, .. }) => {
                assert_eq!(lookup, Lookup::order_id("order-1".into()));
            }
            other => panic!("expected an uncertain send, got {other:?}"),
        }
        // The record, not the retry, says which order id to look up.
        let mut retry = request(1, None);
        if let Send::Generated(new) = &mut retry.send {
            new.body.order_id = Some("order-2".into());
        }
        let upstream = Upstream::ok();
        match sends.run(retry, upstream.clone()).await {
            Err(SendError::OutcomeUnknown { request_id, lookup }) => {
                assert_eq!(request_id, ID);
                assert_eq!(lookup, Lookup::order_id("order-1".into()));
            }
            other => panic!("expected outcome unknown, got {other:?}"),
        }
        assert_eq!((lost.calls(), upstream.calls()), (1, 0));
    }

    #[tokio::test]
    async fn a_refusal_releases_the_id() {
        let sends = pipeline(memory());
        let no = Upstream::failing(refused);
        let first = sends.run(request(1, None), no.clone()).await;
        assert!(matches!(first, Err(SendError::Upstream(_))), "{first:?}");
        let upstream = Upstream::ok();
        sends.run(request(1, None), upstream.clone()).await.unwrap();
        assert_eq!((no.calls(), upstream.calls()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_waits_for_the_first_attempt_within_its_deadline() {
        let sends = pipeline(memory());
        let slow = Upstream {
            delay: Duration::from_secs(2),
            ..Upstream::ok()
        };
        let first = tokio::spawn({
            let (sends, slow) = (sends.clone(), slow.clone());
            async move { sends.run(request(1, None), slow).await }
        });
        for _ in 0..1000 {
            if slow.calls() > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(slow.calls(), 1, "the first attempt calls the upstream");
        let started = Instant::now();
        let impatient = sends
            .run(request(1, Some(Duration::from_secs(1))), slow.clone())
            .await;
        assert!(matches!(
            impatient,
            Err(SendError::RequestInProgress { .. })
        ));
        assert!(started.elapsed() <= Duration::from_secs(1));
        let patient = sends
            .run(request(1, Some(Duration::from_secs(5))), slow.clone())
            .await
            .unwrap();
        assert_eq!(patient, first.await.unwrap().unwrap());
        assert_eq!(slow.calls(), 1);
    }

    #[tokio::test]
    async fn a_cancelled_caller_still_settles_the_record() {
        let sends = pipeline(memory());
        let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let gated = Upstream {
            gate: Some((Arc::clone(&started), Arc::clone(&release))),
            ..Upstream::ok()
        };
        let first = tokio::spawn({
            let (sends, gated) = (sends.clone(), gated.clone());
            async move { sends.run(request(1, None), gated).await }
        });
        tokio::time::timeout(Duration::from_secs(10), started.notified())
            .await
            .expect("the first attempt calls the upstream within 10 s");
        first.abort();
        let _ = first.await;
        release.notify_one();
        let replay = sends
            .run(request(1, Some(Duration::from_secs(5))), gated.clone())
            .await
            .unwrap();
        assert_eq!(replay.verification_id, "v1");
        assert_eq!(gated.calls(), 1);
    }

    #[tokio::test]
    async fn without_the_store_sends_fail_closed() {
        let sends = pipeline(Arc::new(Down));
        let upstream = Upstream::ok();
        for request in [
            request(1, None),
            SendRequest {
                request_id: None,
                ..request(1, None)
            },
        ] {
            let result = sends.run(request, upstream.clone()).await;
            assert!(matches!(result, Err(SendError::StateUnavailable(_))));
        }
        assert_eq!(upstream.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_id_is_remembered_for_a_day() {
        let sends = pipeline(memory());
        let upstream = Upstream::ok();
        let first = sends.run(request(1, None), upstream.clone()).await.unwrap();
        tokio::time::advance(idempotency::RECORD_TTL - Duration::from_secs(1)).await;
        let replay = sends.run(request(1, None), upstream.clone()).await.unwrap();
        assert_eq!(replay, first);
        tokio::time::advance(Duration::from_secs(1)).await;
        let later = sends.run(request(1, None), upstream.clone()).await.unwrap();
        assert_eq!(later.verification_id, "v2");
        assert_eq!(upstream.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quota_refusal_releases_the_id() {
        let sends = pipeline(memory());
        let upstream = Upstream::ok();
        let limited = Caller::anonymous().with_sends_per_minute(std::num::NonZeroU32::MIN);
        let as_limited = |request_id: &str| SendRequest {
            caller: limited.clone(),
            request_id: RequestId::parse(request_id).unwrap(),
            ..request(1, Some(Duration::from_secs(1)))
        };
        let other_id = "223e4567-e89b-12d3-a456-426614174000";
        sends
            .run(as_limited(other_id), upstream.clone())
            .await
            .unwrap();
        let refused = sends.run(as_limited(ID), upstream.clone()).await;
        assert!(matches!(refused, Err(SendError::CallerRateExceeded { .. })));
        tokio::time::advance(quota::WINDOW).await;
        let sent = sends.run(as_limited(ID), upstream.clone()).await.unwrap();
        assert_eq!(sent.verification_id, "v2");
        assert_eq!(upstream.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_costs_one_round_trip_to_admit_and_one_to_settle() {
        let store = Arc::new(Counting::default());
        // Every rule that counts: quota, pending, three velocity limits.
        let sends = pipeline_with(store.clone(), "");
        let upstream = Upstream::ok();
        let limited = Caller::anonymous().with_sends_per_minute(std::num::NonZeroU32::MAX);
        let first = SendRequest {
            caller: limited.clone(),
            ..request(1, None)
        };
        sends.run(first.clone(), upstream.clone()).await.unwrap();
        assert_eq!(store.trips(), ["batch", "write"]);
        // Without a request id too.
        let without = SendRequest {
            request_id: None,
            send: Send::Generated(new_send("+44 7400 123457")),
            ..first.clone()
        };
        sends.run(without, upstream.clone()).await.unwrap();
        assert_eq!(store.trips(), ["batch", "write"]);
        // A replay: one batch finds the record, nothing to settle.
        sends.run(first, upstream.clone()).await.unwrap();
        assert_eq!(store.trips(), ["batch"]);
        assert_eq!(upstream.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pending_verification_is_answered_and_replayed_without_a_send() {
        let sends = pipeline_with(memory(), "");
        let upstream = Upstream::ok();
        let first = SendRequest {
            request_id: None,
            ..request(1, None)
        };
        let sent = sends.run(first, upstream.clone()).await.unwrap();
        assert!(!sent.pending);
        let pending = sends.run(request(2, None), upstream.clone()).await.unwrap();
        assert!(pending.pending);
        assert_eq!(pending.verification_id, sent.verification_id);
        // The pending answer is the request id's record: replayed even once nothing is pending.
        tokio::time::advance(Duration::from_secs(3600)).await;
        let replay = sends.run(request(2, None), upstream.clone()).await.unwrap();
        assert_eq!(replay, pending);
        assert_eq!(upstream.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn guard_refusals_release_the_id_and_call_nothing() {
        let store = memory();
        let sends = pipeline_with(
            store.clone(),
            "[defaults]\none_pending = false\nper_number = { sends = 1, window = \"1h\" }\n",
        );
        let upstream = Upstream::ok();
        let other = SendRequest {
            request_id: None,
            ..request(1, None)
        };
        sends.run(other, upstream.clone()).await.unwrap();
        let refused = sends.run(request(1, None), upstream.clone()).await;
        assert!(matches!(refused, Err(SendError::Guard(_))), "{refused:?}");
        let claim = Key::new("idem", &[Caller::anonymous().name(), ID]);
        assert_eq!(store.get(&claim).await.unwrap(), None, "released");
        // A destination the rules refuse releases it too.
        let premium = SendRequest {
            send: Send::Generated(new_send("+44 909 879 0000")),
            ..request(1, None)
        };
        let refused = sends.run(premium, upstream.clone()).await;
        assert!(matches!(refused, Err(SendError::Guard(_))), "{refused:?}");
        assert_eq!(store.get(&claim).await.unwrap(), None, "released");
        assert_eq!(upstream.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn another_codes_pending_send_costs_one_more_batch_and_still_counts() {
        let store = Arc::new(Counting::default());
        let sends = pipeline_with(
            store.clone(),
            "[defaults]\nper_number = { sends = 2, window = \"1h\" }\n",
        );
        let upstream = Upstream::ok();
        let custom = |code: &str| {
            let mut send = new_send(NUMBER);
            send.body.code = Some(code.into());
            SendRequest {
                request_id: None,
                send: Send::Custom(send),
                ..request(1, None)
            }
        };
        sends.run(custom("1111"), upstream.clone()).await.unwrap();
        store.trips();
        let second = sends.run(custom("2222"), upstream.clone()).await.unwrap();
        assert!(!second.pending);
        assert_eq!(store.trips(), ["batch", "batch", "write"]);
        // The same code is answered with the pending one; a third code is over the limit.
        assert!(
            sends
                .run(custom("2222"), upstream.clone())
                .await
                .unwrap()
                .pending
        );
        let third = sends.run(custom("3333"), upstream.clone()).await;
        assert!(matches!(third, Err(SendError::Guard(_))), "{third:?}");
        assert_eq!(upstream.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resend_is_counted_against_the_original_and_recorded() {
        let store = Arc::new(Counting::default());
        let sends = pipeline_with(
            store.clone(),
            "[defaults]\nper_number = { sends = 2, window = \"1h\" }\n",
        );
        let upstream = Upstream::ok();
        let first = SendRequest {
            request_id: None,
            ..request(1, None)
        };
        let sent = sends.run(first, upstream.clone()).await.unwrap();
        store.trips();
        let resend = |verification_id: &str| SendRequest {
            request_id: None,
            send: Send::Resend(wire::ResendRequest {
                verification_id: verification_id.into(),
                channel: None,
            }),
            ..request(1, None)
        };
        let resent = sends
            .run(resend(&sent.verification_id), upstream.clone())
            .await
            .unwrap();
        assert_eq!(
            (resent.verification_id.as_str(), resent.order_id.as_str()),
            ("v2", "")
        );
        assert_eq!(store.trips(), ["batch", "batch", "write"]);
        // The resend became the pending one, and the number's limit is spent.
        let pending = sends.run(request(3, None), upstream.clone()).await.unwrap();
        assert_eq!(
            (pending.verification_id.as_str(), pending.pending),
            ("v2", true)
        );
        let over = sends.run(resend("v2"), upstream.clone()).await;
        assert!(matches!(over, Err(SendError::Guard(_))), "{over:?}");
        // A verification the guard never saw is resent uncounted, in one batch, and leaves
        // nothing to keep.
        store.trips();
        sends
            .run(resend("unknown"), upstream.clone())
            .await
            .unwrap();
        assert_eq!(store.trips(), ["batch"]);
        assert_eq!(upstream.calls(), 3);
    }
}

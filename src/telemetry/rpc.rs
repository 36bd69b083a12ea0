//! The per-RPC tower layer: request id, access-log line and gRPC metrics for every call.
//!
//! One [`RpcLayer`] wraps all routes in `server.rs`. For each call it takes `x-request-id` from
//! the request metadata (or generates one), returns it and `x-itnio-mode` in the response
//! metadata, runs the handler inside a `rpc` span (so upstream debug lines carry the request id)
//! and a task-local [`CallContext`] (so the upstream client can note ITNIO's status for the
//! line). The gRPC code is read where gRPC puts it: the response headers of a trailers-only
//! reply, else the trailers at the end of the body. When the body ends or is dropped (a
//! cancelled call), the call is counted and logged once:
//!
//! ```text
//! INFO rpc: request_id=5f0c… service=itnio.otp.v1.VerificationService method=SendVerification code=OK upstream_status=0 duration_ms=3
//! ```
//!
//! Health and reflection calls (kubelet probes, grpcurl) are logged at `debug`, counted like
//! every other call. Lines carry route names and codes only: never a request field.
//!
//! Caller identity: this layer is outermost, so refused calls are counted too; the auth layer
//! inside it fills the request's [`CallerSlot`], and the line gains `caller` and `account`.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, Ordering},
    },
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prost::Message;
use tokio::time::Instant;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use crate::caller::Caller;

use ::metrics::SharedString;

use super::metrics;

/// Metadata key of the request id, in requests and responses.
pub const REQUEST_ID: &str = "x-request-id";
/// Response metadata key saying which ITNIO the process calls (`live` or `sandbox`).
pub const MODE: &str = "x-itnio-mode";
/// Longest accepted caller-supplied request id; longer or odd ones are replaced.
const MAX_REQUEST_ID: usize = 128;
/// No upstream status noted (the stored value is an `i32` otherwise).
const NO_STATUS: i64 = i64::MIN;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the auth layer (inside this one) notes who called, once it knows: this layer puts an
/// empty slot into the request extensions, and the access line and the call's `rpc` span (so
/// every log line written during the call) gain `caller` and `account`.
#[derive(Debug, Clone)]
pub struct CallerSlot {
    caller: Arc<OnceLock<Caller>>,
    span: tracing::Span,
}

impl Default for CallerSlot {
    /// A slot recorded on no span.
    fn default() -> Self {
        Self::new(tracing::Span::none())
    }
}

impl CallerSlot {
    /// A slot whose caller is also recorded on `span`.
    fn new(span: tracing::Span) -> Self {
        Self {
            caller: Arc::default(),
            span,
        }
    }

    /// Records the caller of the request carrying this slot (the first call wins).
    pub fn fill(&self, caller: &Caller) {
        if self.caller.set(caller.clone()).is_ok() {
            self.span.record("caller", caller.name());
            self.span.record("account", caller.account());
        }
    }

    fn get(&self) -> Option<&Caller> {
        self.caller.get()
    }
}

tokio::task_local! {
    static CURRENT: Arc<CallContext>;
}

/// What the handler of one call tells the access line.
#[derive(Debug)]
pub struct CallContext {
    upstream_status: AtomicI64,
}

/// Notes ITNIO's business status of the current call's upstream attempt (the last one wins).
/// Outside a call (a WatchRecord poller) it does nothing.
pub fn note_upstream_status(status: Option<i32>) {
    let Some(status) = status else { return };
    let _ = CURRENT.try_with(|call| {
        call.upstream_status
            .store(i64::from(status), Ordering::Relaxed)
    });
}

/// Spawns `future` on behalf of the current call: inside its `rpc` span and its context, so
/// the task's log lines carry the call's request id, caller and account, and an upstream
/// status it notes lands on the call's access line. Outside a call it is a plain spawn.
pub fn spawn_in_call<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let context = CURRENT.try_with(Arc::clone).ok();
    crate::task::spawn(async move {
        match context {
            Some(context) => CURRENT.scope(context, future).await,
            None => future.await,
        }
    })
}

/// Wraps the gRPC routes; see the module docs.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    mode: HeaderValue,
}

impl RpcLayer {
    /// A layer for a process serving in `mode` (`live` or `sandbox`).
    pub fn new(mode: &'static str) -> Self {
        Self {
            mode: HeaderValue::from_static(mode),
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            mode: self.mode.clone(),
        }
    }
}

/// The service [`RpcLayer`] makes.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    mode: HeaderValue,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let name = RpcName::of(request.uri().path());
        let request_id = request_id(request.headers());
        request.headers_mut().insert(REQUEST_ID, request_id.clone());
        let span = tracing::info_span!(
            "rpc",
            request_id = request_id.to_str().unwrap_or_default(),
            service = name.service,
            method = name.method,
            caller = tracing::field::Empty,
            account = tracing::field::Empty,
        );
        let caller = CallerSlot::new(span.clone());
        request.extensions_mut().insert(caller.clone());
        let record = CallRecord::start(name, request_id.clone(), caller);
        // The clone that was polled ready is the one that serves (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call = CURRENT
            .scope(Arc::clone(&record.context), inner.call(request))
            .instrument(span);
        let mode = self.mode.clone();
        Box::pin(async move {
            let mut record = record;
            let Ok(mut response) = call.await;
            let headers = response.headers_mut();
            record.code = grpc_code(headers);
            headers.insert(REQUEST_ID, request_id);
            headers.insert(MODE, mode);
            Ok(response.map(|body| tonic::body::Body::new(ObservedBody { body, record })))
        })
    }
}

/// Takes the caller's `x-request-id` when it is short and plain, else makes a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|id| is_plain_id(id.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// Non-empty, at most [`MAX_REQUEST_ID`] bytes of `[A-Za-z0-9._:-]`: safe in a log line.
fn is_plain_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn new_request_id() -> HeaderValue {
    let id: u128 = rand::random();
    HeaderValue::try_from(format!("{id:032x}")).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The `grpc-status` in `headers` (response headers or trailers), if any.
fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse::<i32>().ok().map(Code::from_i32)
}

/// The interned names of one RPC, for labels and log fields without allocation.
#[derive(Debug, Clone, Copy)]
struct RpcName {
    service: &'static str,
    method: &'static str,
    /// Health and reflection: logged at debug.
    quiet: bool,
}

impl RpcName {
    const UNKNOWN: RpcName = RpcName {
        service: "unknown",
        method: "unknown",
        quiet: false,
    };

    /// The names of the RPC at `path` (`/pkg.Service/Method`); unknown paths share one name so
    /// a caller cannot grow the label set.
    fn of(path: &str) -> RpcName {
        static NAMES: OnceLock<HashMap<String, RpcName>> = OnceLock::new();
        NAMES
            .get_or_init(known_rpcs)
            .get(path)
            .copied()
            .unwrap_or(Self::UNKNOWN)
    }
}

/// Every RPC the server routes, from the descriptor sets it serves by reflection. Built once per
/// process; the names are leaked once (a fixed, small set) so labels can be `&'static str`.
fn known_rpcs() -> HashMap<String, RpcName> {
    let sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut names = HashMap::new();
    for set in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                let quiet = full.starts_with("grpc.");
                let service_name: &'static str = Box::leak(full.into_boxed_str());
                for method in &service.method {
                    let method_name: &'static str =
                        Box::leak(method.name().to_owned().into_boxed_str());
                    names.insert(
                        format!("/{service_name}/{method_name}"),
                        RpcName {
                            service: service_name,
                            method: method_name,
                            quiet,
                        },
                    );
                }
            }
        }
    }
    names
}

/// One call from start to its last frame; dropping it counts and logs the call once.
struct CallRecord {
    name: RpcName,
    started: Instant,
    request_id: HeaderValue,
    caller: CallerSlot,
    context: Arc<CallContext>,
    /// The gRPC code once known; still `None` when the call is dropped means it was cancelled.
    code: Option<Code>,
}

impl CallRecord {
    fn start(name: RpcName, request_id: HeaderValue, caller: CallerSlot) -> Self {
        metrics::rpc_started(name.service, name.method);
        Self {
            name,
            started: Instant::now(),
            request_id,
            caller,
            context: Arc::new(CallContext {
                upstream_status: AtomicI64::new(NO_STATUS),
            }),
            code: None,
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        let code_name = code_name(code);
        let duration = self.started.elapsed();
        let account = match self.caller.get() {
            Some(caller) => SharedString::from(caller.account_label()),
            None => SharedString::const_str(metrics::NO_ACCOUNT),
        };
        metrics::rpc_finished(
            self.name.service,
            self.name.method,
            code_name,
            account,
            duration,
        );
        let upstream_status = match self.context.upstream_status.load(Ordering::Relaxed) {
            NO_STATUS => None,
            status => Some(status),
        };
        let request_id = self.request_id.to_str().unwrap_or_default();
        let caller = self.caller.get().map(Caller::name);
        let account = self.caller.get().map(Caller::account);
        let duration_ms = millis(duration);
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    target: "itnio_otp_grpc::access",
                    $level,
                    request_id,
                    service = self.name.service,
                    method = self.name.method,
                    code = code_name,
                    upstream_status,
                    duration_ms,
                    caller,
                    account,
                    "rpc"
                )
            };
        }
        if self.name.quiet {
            line!(tracing::Level::DEBUG);
        } else {
            line!(tracing::Level::INFO);
        }
    }
}

/// A duration in (fractional) milliseconds, for the access line.
fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The canonical upper-case name of a gRPC code, as grpc-go and Prometheus conventions use.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The response body, watched for the trailers' `grpc-status`; owns the call's record.
struct ObservedBody<B> {
    body: B,
    record: CallRecord,
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_code) {
                    this.record.code = Some(code);
                }
            }
            // A body that fails mid-stream never delivers its status to the client.
            Poll::Ready(Some(Err(_))) => this.record.code = Some(Code::Internal),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    // Equivalent mutant (excluded in .cargo/mutants.toml): RpcService::poll_ready -> Ready(Ok(()))
    // — the service it wraps (AuthService over tonic's router) is always ready.
    use super::*;

    #[test]
    fn plain_request_ids_are_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(request_id(&headers), "abc-123_x.y:z");
        for bad in ["", "has space", "quote\"", "new\nline"] {
            if let Ok(value) = HeaderValue::from_str(bad) {
                headers.insert(REQUEST_ID, value);
                assert_ne!(request_id(&headers), bad, "{bad:?}");
            }
        }
        headers.insert(
            REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).expect("ascii"),
        );
        assert_eq!(request_id(&headers).len(), 32);
        headers.insert(
            REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(128)).expect("ascii"),
        );
        assert_eq!(request_id(&headers).len(), 128);
    }

    #[test]
    fn generated_request_ids_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn rpc_names_are_known_for_our_services_health_and_reflection() {
        let send = RpcName::of("/itnio.otp.v1.VerificationService/SendVerification");
        assert_eq!(send.service, "itnio.otp.v1.VerificationService");
        assert_eq!(send.method, "SendVerification");
        assert!(!send.quiet);
        let health = RpcName::of("/grpc.health.v1.Health/Check");
        assert_eq!(
            (health.service, health.method),
            ("grpc.health.v1.Health", "Check")
        );
        assert!(health.quiet);
        assert!(
            RpcName::of("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo").quiet
        );
        let unknown = RpcName::of("/itnio.otp.v1.VerificationService/Nope");
        assert_eq!((unknown.service, unknown.method), ("unknown", "unknown"));
    }

    #[test]
    fn durations_are_logged_in_milliseconds() {
        assert_eq!(millis(std::time::Duration::from_micros(2500)), 2.5);
        assert_eq!(millis(std::time::Duration::from_secs(3)), 3000.0);
    }

    #[test]
    fn grpc_codes_are_read_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_code(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(grpc_code(&headers), Some(Code::NotFound));
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }

    /// A response body that yields `frames` in order.
    struct Frames(std::collections::VecDeque<Result<Frame<bytes::Bytes>, std::io::Error>>);

    impl Body for Frames {
        type Data = bytes::Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn observed<B>(body: B) -> ObservedBody<B> {
        let record = CallRecord::start(
            RpcName::UNKNOWN,
            HeaderValue::from_static("test"),
            CallerSlot::default(),
        );
        ObservedBody { body, record }
    }

    fn next_frame<B: Body<Data = bytes::Bytes> + Unpin>(
        body: &mut ObservedBody<B>,
    ) -> Option<Result<Frame<bytes::Bytes>, B::Error>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => panic!("test bodies are always ready"),
        }
    }

    #[test]
    fn the_code_is_read_from_the_trailers_and_frames_pass_through() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("5"));
        let mut body = observed(Frames(
            [
                Ok(Frame::data(bytes::Bytes::from_static(b"reply"))),
                Ok(Frame::trailers(trailers)),
            ]
            .into(),
        ));
        let data = next_frame(&mut body).expect("a frame").expect("data");
        assert_eq!(
            data.into_data().ok(),
            Some(bytes::Bytes::from_static(b"reply"))
        );
        assert_eq!(body.record.code, None);
        assert!(next_frame(&mut body).expect("a frame").is_ok());
        assert_eq!(body.record.code, Some(Code::NotFound));
        assert!(next_frame(&mut body).is_none());
    }

    #[test]
    fn a_body_failing_mid_stream_is_an_internal_error() {
        let mut body = observed(Frames([Err(std::io::Error::other("reset"))].into()));
        assert!(next_frame(&mut body).expect("a frame").is_err());
        assert_eq!(body.record.code, Some(Code::Internal));
    }

    #[test]
    fn end_of_stream_and_size_hint_are_the_inner_bodys() {
        let full = observed(String::from("abc"));
        assert!(!full.is_end_stream());
        assert_eq!(full.size_hint().exact(), Some(3));
        let empty = observed(String::new());
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }

    #[test]
    fn the_upstream_status_is_noted_for_the_current_call_only() {
        let record = CallRecord::start(
            RpcName::UNKNOWN,
            HeaderValue::from_static("test"),
            CallerSlot::default(),
        );
        note_upstream_status(Some(-4));
        assert_eq!(
            record.context.upstream_status.load(Ordering::Relaxed),
            NO_STATUS
        );
        CURRENT.sync_scope(Arc::clone(&record.context), || {
            note_upstream_status(Some(-3));
            note_upstream_status(None);
        });
        assert_eq!(record.context.upstream_status.load(Ordering::Relaxed), -3);
    }

    #[tokio::test]
    async fn a_task_spawned_for_a_call_runs_in_its_span_and_context() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let span = tracing::info_span!("rpc", caller = tracing::field::Empty);
        let record = CallRecord::start(
            RpcName::UNKNOWN,
            HeaderValue::from_static("test"),
            CallerSlot::new(span.clone()),
        );
        record.caller.fill(&Caller::new("checkout", "brand-b"));
        let task = async {
            spawn_in_call(async {
                note_upstream_status(Some(-7));
                tracing::Span::current().id()
            })
            .await
            .expect("the task")
        };
        let seen = CURRENT
            .scope(Arc::clone(&record.context), task)
            .instrument(span.clone())
            .await;
        assert_eq!(seen, span.id(), "the task runs in the call's span");
        assert!(seen.is_some());
        assert_eq!(record.context.upstream_status.load(Ordering::Relaxed), -7);
        // Outside a call it is a plain task: nothing to note on.
        let outside = spawn_in_call(async { tracing::Span::current().id() }).await;
        assert_eq!(outside.expect("the task"), None);
    }

    #[test]
    fn the_first_caller_filled_in_wins() {
        let slot = CallerSlot::default();
        slot.fill(&Caller::new("checkout", "brand-b"));
        slot.fill(&Caller::new("other", "brand-c"));
        assert_eq!(slot.get().map(Caller::name), Some("checkout"));
    }

    #[test]
    fn a_finished_call_is_counted_with_its_code_and_account() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            let name = RpcName::of("/itnio.otp.v1.VerificationService/SendVerification");
            let caller = CallerSlot::default();
            caller.fill(&Caller::new("checkout", "brand-b"));
            let mut record = CallRecord::start(name, HeaderValue::from_static("a"), caller);
            record.code = Some(Code::NotFound);
            drop(record);
            // Dropped before its code was known: a cancelled call, on no account.
            drop(CallRecord::start(
                name,
                HeaderValue::from_static("b"),
                CallerSlot::default(),
            ));
        });
        let text = handle.render();
        for (code, account) in [("NOT_FOUND", "brand-b"), ("CANCELLED", "none")] {
            let line = format!(
                "grpc_server_requests_total{{service=\"itnio.otp.v1.VerificationService\",method=\"SendVerification\",code=\"{code}\",account=\"{account}\"}} 1"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("grpc_server_requests_in_flight{service=\"itnio.otp.v1.VerificationService\",method=\"SendVerification\"} 0"),
            "{text}"
        );
    }
}

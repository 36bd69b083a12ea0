//! The single choke point of the REST edge: every ITNIO call is built, signed, timed, sent,
//! logged and classified here, and every failure leaves as a typed [`UpstreamError`].
//!
//! The resource files (`apps.rs`, `templates.rs`, …) only pick an [`Endpoint`], a path id and a
//! body; they never touch HTTP. Behaviour shared by all 19 endpoints:
//! - headers `Api-Key`, `Timestamp` (Unix seconds), `Sign`, `Content-Type`, on GET too;
//! - the HTTP timeout of a call is `min(config.timeout, caller deadline)`, covering both attempts;
//! - status `-16` (timestamp expired: nothing was processed) is re-signed and retried once;
//! - redirects are not followed, so the signed headers never reach another host;
//! - one `debug` line per attempt, with the route template only (no ids, numbers, codes, secrets);
//! - a reply body larger than the byte cap is refused while it is read (Content-Length first,
//!   then chunk by chunk), so a runaway upstream cannot make us hold more than the cap;
//! - replies are decoded in one pass straight into the typed wire structs (no generic JSON value);
//! - on `https://` ALPN picks the version (HTTP/2 when the upstream offers it, else HTTP/1.1); on
//!   `http://` HTTP/1.1; [`HttpVersion`] forces one.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::concurrency::ConcurrencyLimit;
use super::endpoint::Endpoint;
use super::error::{BuildError, UpstreamError, sanitize_json_error};
use super::lenient::Scalar;
use super::sign::sign;
use super::status::UpstreamStatus;

const CONTENT_TYPE_JSON: HeaderValue = HeaderValue::from_static("application/json;charset=UTF-8");
// ITNIO's header names, built once: a name parsed from text per request costs two allocations
// (the lower-cased copy, and its promotion when reqwest clones the header map). HTTP/1.1 sends
// names in lower case either way.
const API_KEY: HeaderName = HeaderName::from_static("api-key");
const TIMESTAMP: HeaderName = HeaderName::from_static("timestamp");
const SIGN: HeaderName = HeaderName::from_static("sign");
/// Default cap on one reply body: ITNIO's largest documented replies (lists) are a few kB each;
/// an account with thousands of templates stays far below this.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Idle upstream connections kept per host; busier moments open more and close them after use.
const POOL_MAX_IDLE: usize = 64;
/// Below the keep-alive timeout of common HTTP servers (nginx 75 s), so a pooled connection is
/// dropped by us before the server closes it under a request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
const USER_AGENT: &str = concat!("itnio-otp-grpc/", env!("CARGO_PKG_VERSION"));
/// Longest `reason` text kept from a rejection; longer texts are cut.
const MAX_REASON_CHARS: usize = 200;
/// Longest path id put in a URL. Validated ids are far shorter (`convert::limits`); this only
/// keeps a URL from growing past what servers accept (~8 kB request lines) if one slipped by.
const MAX_PATH_ID_BYTES: usize = 256;

/// The HTTP version the upstream is spoken to with (`ITNIO_HTTP_VERSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HttpVersion {
    /// The upstream's choice: on `https://` ALPN offers `h2` and `http/1.1` and the server picks
    /// (HTTP/2: every call a stream on one connection); on `http://` HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1: a pool of keep-alive connections, one per call in flight.
    Http1,
    /// HTTP/2 only: every call is a stream on one shared connection (h2c with prior knowledge on
    /// `http://`, ALPN `h2` on `https://`). The upstream must speak it: the sandbox does.
    Http2,
}

/// Where and how to reach ITNIO. `Debug` shows neither the key nor the secret nor any userinfo
/// in the base URL.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// e.g. `https://api.itniotech.com/otp`; a trailing slash is fine.
    pub base_url: String,
    pub api_key: String,
    pub api_secret: String,
    /// Upper bound of one call (both attempts of a `-16` retry), unless the caller's deadline is
    /// shorter.
    pub timeout: Duration,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field(
                "base_url",
                &crate::telemetry::logging::redact_url(&self.base_url),
            )
            .field("api_key", &"<redacted>")
            .field("api_secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Cheap to clone: one pooled `reqwest::Client` (rustls, certificate verification on) and the
/// configuration behind an `Arc`.
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    http_version: HttpVersion,
    inner: Arc<Inner>,
    max_response_bytes: usize,
    in_flight: ConcurrencyLimit,
}

struct Inner {
    config: UpstreamConfig,
    /// The full URL of every route, by `Endpoint as usize`; ids are appended per call.
    routes: Vec<Url>,
    api_key: HeaderValue,
    /// `Timestamp` and `Sign` of the current second, shared by every call made in it.
    signed: Mutex<Option<SignedSecond>>,
}

struct SignedSecond {
    second: i64,
    timestamp: HeaderValue,
    sign: HeaderValue,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The `{status, reason, data}` envelope with `data` decoded as `T` in the same pass.
/// `status` and `reason` are read leniently (string or number) and borrowed from the body.
#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct Envelope<'a, T> {
    #[serde(default, borrow)]
    status: Option<Scalar<'a>>,
    #[serde(default, borrow)]
    reason: Option<Scalar<'a>>,
    #[serde(default)]
    data: Option<T>,
}

/// Root certificates for https upstreams: read from the system once per process, and only when
/// an https base URL asks for them (an `http://` upstream never pays for it).
fn system_roots() -> Result<&'static [reqwest::Certificate], BuildError> {
    static ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .filter_map(|der| reqwest::Certificate::from_der(der).ok())
            .collect()
    });
    if roots.is_empty() {
        return Err(BuildError::Client(
            "no CA root certificates could be loaded from the system".into(),
        ));
    }
    Ok(roots)
}

/// The pooled HTTP client for `base`'s scheme (redirects are off, so only that scheme is ever
/// used): CA roots only for https, TCP_NODELAY, keep-alive below common server timeouts.
fn http_client(
    base: &Url,
    timeout: Duration,
    version: HttpVersion,
) -> Result<reqwest::Client, BuildError> {
    let builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_keepalive(TCP_KEEPALIVE)
        .tcp_nodelay(true);
    let builder = match version {
        // reqwest offers both in ALPN on TLS and speaks HTTP/1.1 on plain TCP.
        HttpVersion::Auto => builder,
        HttpVersion::Http1 => builder.http1_only(),
        HttpVersion::Http2 => builder.http2_prior_knowledge(),
    };
    let builder = if base.scheme() == "https" {
        builder.tls_certs_only(system_roots()?.iter().cloned())
    } else {
        builder.tls_certs_only(std::iter::empty())
    };
    builder
        .build()
        .map_err(|e| BuildError::Client(e.to_string()))
}

impl UpstreamClient {
    /// A client letting ALPN choose the HTTP version ([`HttpVersion::default`]).
    pub fn new(config: UpstreamConfig) -> Result<Self, BuildError> {
        Self::new_with_http_version(config, HttpVersion::default())
    }

    /// A client speaking `version` to the upstream.
    pub fn new_with_http_version(
        config: UpstreamConfig,
        version: HttpVersion,
    ) -> Result<Self, BuildError> {
        if config.timeout.is_zero() {
            return Err(BuildError::ZeroTimeout);
        }
        let base =
            Url::parse(config.base_url.trim()).map_err(|e| BuildError::BaseUrl(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(BuildError::BaseUrl("expected an http(s) URL".into()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(BuildError::BaseUrl(
                "must not have a query or a fragment".into(),
            ));
        }
        let mut api_key = HeaderValue::from_str(&config.api_key)
            .map_err(|_| BuildError::Client("api key is not a valid header value".into()))?;
        api_key.set_sensitive(true);
        let http = http_client(&base, config.timeout, version)?;
        let routes = Endpoint::ALL
            .iter()
            .map(|endpoint| route_url(&base, *endpoint))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            http,
            http_version: version,
            inner: Arc::new(Inner {
                config,
                routes,
                api_key,
                signed: Mutex::new(None),
            }),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            in_flight: ConcurrencyLimit::default(),
        })
    }

    /// Shares `limit`'s slots for calls in flight (default: [`ConcurrencyLimit::default`], of
    /// this client alone); a call finding none free in time fails with
    /// [`UpstreamError::Overloaded`].
    pub fn with_concurrency_limit(mut self, limit: ConcurrencyLimit) -> Self {
        self.in_flight = limit;
        self
    }

    /// The slots for calls in flight this client takes from.
    pub fn concurrency_limit(&self) -> &ConcurrencyLimit {
        &self.in_flight
    }

    /// Sets the cap on one reply body (default [`DEFAULT_MAX_RESPONSE_BYTES`]); a larger reply
    /// fails with [`UpstreamError::ResponseTooLarge`].
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The HTTP version spoken to the upstream ([`Self::new_with_http_version`]).
    pub fn http_version(&self) -> HttpVersion {
        self.http_version
    }

    /// The byte cap on reply bodies ([`Self::with_max_response_bytes`]).
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    /// Calls `endpoint` and decodes the reply's `data` as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        id: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
        deadline: Option<Duration>,
    ) -> Result<T, UpstreamError> {
        self.exchange(endpoint, id, body, deadline).await
    }

    /// Calls an endpoint whose success reply carries no `data` worth reading.
    pub(crate) async fn call_no_data(
        &self,
        endpoint: Endpoint,
        body: &(impl Serialize + ?Sized),
        deadline: Option<Duration>,
    ) -> Result<(), UpstreamError> {
        self.exchange::<IgnoredAny>(endpoint, None, Some(body), deadline)
            .await
            .map(drop)
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        id: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
        deadline: Option<Duration>,
    ) -> Result<T, UpstreamError> {
        let budget = deadline.map_or(self.inner.config.timeout, |d| {
            d.min(self.inner.config.timeout)
        });
        let url = self.url(endpoint, id)?;
        let body = match body {
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| {
                UpstreamError::Connect {
                    endpoint,
                    detail: format!(
                        "request body could not be encoded: {}",
                        sanitize_json_error(&e)
                    ),
                }
            })?)),
            None => None,
        };
        let started = Instant::now();
        // Held for both attempts of a -16 retry: one caller's call is one slot.
        let _slot = self.in_flight.enter(endpoint, budget).await?;
        let mut attempt = 1;
        loop {
            let remaining = budget.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                // Only reachable before the first send (zero deadline) or after a -16 reply.
                return Err(if attempt == 1 {
                    UpstreamError::Timeout { endpoint }
                } else {
                    rejected(endpoint, UpstreamStatus::TimestampExpired.code(), None)
                });
            }
            match self
                .attempt(endpoint, &url, body.as_ref(), remaining, attempt)
                .await
            {
                Err(UpstreamError::Rejected { status: -16, .. }) if attempt == 1 => attempt += 1,
                other => return other,
            }
        }
    }

    /// One signed request with a fresh timestamp.
    async fn attempt<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        body: Option<&Bytes>,
        timeout: Duration,
        attempt: u32,
    ) -> Result<T, UpstreamError> {
        let (timestamp, signature) = self.signed_headers();
        let mut request = self
            .http
            .request(endpoint.method(), url.clone())
            .header(API_KEY, self.inner.api_key.clone())
            .header(TIMESTAMP, timestamp)
            .header(SIGN, signature)
            .header(CONTENT_TYPE, CONTENT_TYPE_JSON);
        if let Some(body) = body {
            request = request.body(body.clone());
        }
        let cap = self.max_response_bytes;

        let started = Instant::now();
        let exchange = async {
            let response = request.send().await.map_err(|e| send_error(endpoint, e))?;
            let http_status = response.status();
            if !http_status.is_success() {
                return Err((
                    Some(http_status.as_u16()),
                    UpstreamError::Http {
                        endpoint,
                        status: http_status.as_u16(),
                    },
                ));
            }
            let bytes = read_capped(endpoint, response, cap)
                .await
                .map_err(|e| (Some(http_status.as_u16()), e))?;
            Ok((http_status.as_u16(), bytes))
        };
        // The one timer of the attempt (send and body read): a reqwest per-request timeout of the
        // same length would only be a second timer, and a boxed future, per call.
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((http_status, bytes))) => {
                let result = decode(endpoint, &bytes);
                (Some(http_status), result)
            }
            Ok(Err((http_status, err))) => (http_status, Err(err)),
            Err(_) => (None, Err(UpstreamError::Timeout { endpoint })),
        };
        let (http_status, result) = outcome;
        let upstream_status = match &result {
            Ok(_) => Some(0),
            Err(UpstreamError::Rejected { status, .. }) => Some(*status),
            Err(_) => None,
        };
        tracing::debug!(
            endpoint = endpoint.as_str(),
            attempt,
            http_status,
            upstream_status,
            latency_ms = started.elapsed().as_millis() as u64,
            outcome = outcome_name(&result),
            "itnio call"
        );
        let failure = result.as_ref().err().map(|_| outcome_name(&result));
        crate::telemetry::upstream_attempt(
            endpoint.as_str(),
            upstream_status,
            failure,
            started.elapsed(),
        );
        result
    }

    /// `Timestamp` and `Sign` for now: computed once per second, then shared (cheap clones).
    fn signed_headers(&self) -> (HeaderValue, HeaderValue) {
        self.signed_headers_at(chrono::Utc::now().timestamp())
    }

    fn signed_headers_at(&self, second: i64) -> (HeaderValue, HeaderValue) {
        let mut signed = self
            .inner
            .signed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*signed {
            Some(s) if s.second == second => (s.timestamp.clone(), s.sign.clone()),
            _ => {
                let config = &self.inner.config;
                let timestamp = HeaderValue::from(second);
                let mut sign = HeaderValue::from_str(&sign(
                    &config.api_key,
                    &config.api_secret,
                    &second.to_string(),
                ))
                .unwrap_or_else(|_| unreachable!("a hex digest is a valid header value"));
                sign.set_sensitive(true);
                *signed = Some(SignedSecond {
                    second,
                    timestamp: timestamp.clone(),
                    sign: sign.clone(),
                });
                (timestamp, sign)
            }
        }
    }

    fn url(&self, endpoint: Endpoint, id: Option<&str>) -> Result<Url, UpstreamError> {
        debug_assert_eq!(endpoint.takes_id(), id.is_some(), "{endpoint}");
        let mut url = self.inner.routes[endpoint as usize].clone();
        let Some(id) = id else {
            return Ok(url);
        };
        // The `url` crate silently drops "." and ".." segments (which would change the route)
        // and strips tab, CR and LF from a pushed segment (which would query a different id).
        // `convert` refuses such ids first; this is the backstop, so no id is ever altered.
        if id.is_empty() || id == "." || id == ".." || id.len() > MAX_PATH_ID_BYTES {
            return Err(bad_path_id(endpoint, "empty, a dot segment or too long"));
        }
        if id.chars().any(char::is_control) {
            return Err(bad_path_id(endpoint, "has control characters"));
        }
        // `new` checked that the base URL can carry a path (`route_url`).
        let Ok(mut segments) = url.path_segments_mut() else {
            return Err(UpstreamError::Connect {
                endpoint,
                detail: "base URL cannot carry a path".into(),
            });
        };
        // Percent-encodes everything outside the path-segment set, '/' and '%' included.
        segments.push(id);
        drop(segments);
        Ok(url)
    }
}

/// A path id refused before anything is sent.
fn bad_path_id(endpoint: Endpoint, why: &str) -> UpstreamError {
    UpstreamError::Rejected {
        endpoint,
        status: UpstreamStatus::ParameterError.code(),
        reason: format!("path id is {why} (not sent)"),
    }
}

/// The URL of a route without its id: the base URL's path followed by the route's fixed path.
fn route_url(base: &Url, endpoint: Endpoint) -> Result<Url, BuildError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| BuildError::BaseUrl("cannot carry a path".into()))?
        .pop_if_empty()
        .extend(endpoint.fixed_segments());
    Ok(url)
}

/// Reads a reply body of at most `cap` bytes: a larger declared `Content-Length` is refused
/// before reading, and a body without one is refused as soon as it grows past the cap.
async fn read_capped(
    endpoint: Endpoint,
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Bytes, UpstreamError> {
    let too_large = || UpstreamError::ResponseTooLarge {
        endpoint,
        limit: cap,
    };
    let declared = response.content_length();
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut next = async || response.chunk().await.map_err(|e| read_error(endpoint, e));
    // Most replies arrive in one chunk: hand it over without copying.
    let Some(first) = next().await? else {
        return Ok(Bytes::new());
    };
    if first.len() > cap {
        return Err(too_large());
    }
    let Some(second) = next().await? else {
        return Ok(first);
    };
    let hint = declared.map_or(first.len() + second.len(), |n| n as usize);
    let mut body = Vec::with_capacity(hint.min(cap));
    let mut chunk = Some(second);
    body.extend_from_slice(&first);
    while let Some(bytes) = chunk {
        if body.len() + bytes.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&bytes);
        chunk = next().await?;
    }
    Ok(Bytes::from(body))
}

/// Decodes a 2xx reply: `status` must be 0, then `data` (absent or `null` read as `null`) is
/// `T`. One pass in the common case; a reply whose `data` does not fit `T` is read again for
/// its status only, because a rejection may carry any `data`.
pub(crate) fn decode<T: DeserializeOwned>(
    endpoint: Endpoint,
    bytes: &[u8],
) -> Result<T, UpstreamError> {
    let typed = match serde_json::from_slice::<Envelope<'_, T>>(bytes) {
        Ok(envelope) => {
            let data = check_status(endpoint, &envelope).map(|()| envelope.data)?;
            return match data {
                Some(data) => Ok(data),
                None => serde_json::from_slice(b"null"),
            }
            .map_err(|e| data_error(endpoint, &e));
        }
        Err(e) => e,
    };
    let envelope = serde_json::from_slice::<Envelope<'_, IgnoredAny>>(bytes).map_err(|e| {
        UpstreamError::Decode {
            endpoint,
            detail: format!("envelope: {}", sanitize_json_error(&e)),
        }
    })?;
    check_status(endpoint, &envelope)?;
    Err(data_error(endpoint, &typed))
}

fn data_error(endpoint: Endpoint, err: &serde_json::Error) -> UpstreamError {
    UpstreamError::Decode {
        endpoint,
        detail: format!("data: {}", sanitize_json_error(err)),
    }
}

/// `Ok` for status 0 (a string or a number); the rejection for any other integer.
fn check_status<T>(endpoint: Endpoint, envelope: &Envelope<'_, T>) -> Result<(), UpstreamError> {
    let status = match &envelope.status {
        Some(Scalar::Text(s)) => s.trim().parse::<i32>().ok(),
        Some(Scalar::Int(n)) => i32::try_from(*n).ok(),
        Some(Scalar::Uint(n)) => i32::try_from(*n).ok(),
        _ => None,
    }
    .ok_or_else(|| UpstreamError::Decode {
        endpoint,
        detail: "envelope: missing or non-integer status".into(),
    })?;
    if status == 0 {
        return Ok(());
    }
    let reason = match &envelope.reason {
        Some(Scalar::Text(s)) => Some(s.as_ref()),
        _ => None,
    };
    Err(rejected(endpoint, status, reason))
}

fn rejected(endpoint: Endpoint, status: i32, reason: Option<&str>) -> UpstreamError {
    let reason = match reason {
        Some(s) if !s.trim().is_empty() => scrub_reason(s),
        _ => UpstreamStatus::from_code(status).description().to_owned(),
    };
    UpstreamError::Rejected {
        endpoint,
        status,
        reason,
    }
}

/// Keeps an upstream `reason` short and free of anything that looks like a number or a code:
/// runs of 4+ digits become `****` (reasons are free text we do not control).
fn scrub_reason(reason: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.chars().count() >= 4 {
            out.push_str("****");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in reason.trim().chars().take(MAX_REASON_CHARS) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// A failure before any reply arrived. reqwest's own `Display` names the URL (which carries path
/// ids), so only the kind and the innermost cause (an OS or TLS error) are kept.
fn send_error(endpoint: Endpoint, err: reqwest::Error) -> (Option<u16>, UpstreamError) {
    if err.is_timeout() {
        return (None, UpstreamError::Timeout { endpoint });
    }
    let sent = !(err.is_connect() || err.is_builder());
    let kind = if err.is_connect() {
        "connection failed"
    } else if err.is_builder() {
        "request could not be built"
    } else {
        "connection lost before the reply"
    };
    let detail = match root_cause(&err) {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    };
    // Past connecting, hyper may have written the request: ITNIO may have processed it.
    let error = if sent {
        UpstreamError::Interrupted { endpoint, detail }
    } else {
        UpstreamError::Connect { endpoint, detail }
    };
    (None, error)
}

/// A failure while reading a reply whose status line already arrived: ITNIO has processed it.
/// A connection that broke under the body (reset, closed before the announced length) is
/// [`UpstreamError::Interrupted`], retryable like a reset before the status line; a body that
/// arrived whole but malformed (e.g. bad chunk framing) is [`UpstreamError::Decode`].
fn read_error(endpoint: Endpoint, err: reqwest::Error) -> UpstreamError {
    if err.is_timeout() {
        return UpstreamError::Timeout { endpoint };
    }
    if connection_broke(&err) {
        let detail = match root_cause(&err) {
            Some(cause) => format!("connection lost while reading the reply: {cause}"),
            None => "connection lost while reading the reply".to_owned(),
        };
        return UpstreamError::Interrupted { endpoint, detail };
    }
    UpstreamError::Decode {
        endpoint,
        detail: "reply body could not be read".into(),
    }
}

/// Whether an I/O error saying the connection broke is among the causes of `err`.
fn connection_broke(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut cause = err.source();
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            );
        }
        cause = error.source();
    }
    false
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = err.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

fn outcome_name<T>(result: &Result<T, UpstreamError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(UpstreamError::Rejected { .. }) => "rejected",
        Err(UpstreamError::Timeout { .. }) => "timeout",
        Err(UpstreamError::Connect { .. }) => "connect",
        Err(UpstreamError::Interrupted { .. }) => "interrupted",
        Err(UpstreamError::Http { .. }) => "http",
        Err(UpstreamError::Decode { .. }) => "decode",
        Err(UpstreamError::ResponseTooLarge { .. }) => "too_large",
        Err(UpstreamError::Overloaded { .. }) => "overloaded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> UpstreamClient {
        UpstreamClient::new(UpstreamConfig {
            base_url: base.into(),
            api_key: "key".into(),
            api_secret: "s3cr3t-value".into(),
            timeout: Duration::from_secs(5),
        })
        .expect("valid config")
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_ids() {
        let c = client("https://api.itniotech.com/otp/");
        assert_eq!(
            c.url(Endpoint::AppDetails, Some("mRELxtHc"))
                .expect("url")
                .as_str(),
            "https://api.itniotech.com/otp/app/details/mRELxtHc"
        );
        let c = client("https://api.itniotech.com/otp");
        assert_eq!(
            c.url(Endpoint::TemplateList, None).expect("url").as_str(),
            "https://api.itniotech.com/otp/template/list"
        );
        assert_eq!(
            c.url(Endpoint::VerificationRecord, Some("a/b?c#d%e f"))
                .expect("url")
                .as_str(),
            "https://api.itniotech.com/otp/verification/record/a%2Fb%3Fc%23d%25e%20f"
        );
        let longest = "9".repeat(MAX_PATH_ID_BYTES);
        assert!(
            c.url(Endpoint::VerificationRecord, Some(&longest))
                .expect("url")
                .as_str()
                .ends_with(&format!("/record/{longest}"))
        );
        let too_long = "9".repeat(MAX_PATH_ID_BYTES + 1);
        // The url crate would strip tab, CR and LF: a different id would be queried.
        for bad in [
            "",
            ".",
            "..",
            &too_long,
            "mREL\r\nxtHc",
            "mREL\txtHc",
            "a\0b",
            "a\u{85}b",
        ] {
            assert!(
                matches!(
                    c.url(Endpoint::AppDetails, Some(bad)),
                    Err(UpstreamError::Rejected { status: -22, .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn config_is_validated() {
        let mut config = UpstreamConfig {
            base_url: "ftp://x".into(),
            api_key: "k".into(),
            api_secret: "s".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            UpstreamClient::new(config.clone()),
            Err(BuildError::BaseUrl(_))
        ));
        config.base_url = "http://127.0.0.1:1".into();
        config.timeout = Duration::ZERO;
        assert!(matches!(
            UpstreamClient::new(config.clone()),
            Err(BuildError::ZeroTimeout)
        ));
        config.timeout = Duration::from_secs(1);
        config.api_key = "bad\nkey".into();
        assert!(UpstreamClient::new(config).is_err());
    }

    #[test]
    fn debug_redacts_the_key_the_secret_and_userinfo() {
        let c = client("https://proxy-user:proxy-pass@api.itniotech.com/otp");
        let shown = format!("{c:?} {:?}", c.config());
        for hidden in ["s3cr3t-value", "key\"", "proxy-user", "proxy-pass"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains("https://api.itniotech.com/otp"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn envelope_status_as_string_or_number() {
        let e = Endpoint::FlowList;
        assert_eq!(
            decode::<Vec<i32>>(e, br#"{"data":[1],"status":"0","reason":"success"}"#).expect("ok"),
            [1]
        );
        assert_eq!(
            decode::<Option<i32>>(e, br#"{"status":0,"data":null}"#).expect("ok"),
            None
        );
        assert_eq!(
            decode::<Option<i32>>(e, br#"{"status":" 0 "}"#).expect("ok"),
            None
        );
        for rejection in [
            &br#"{"status":-27,"reason":"Period total send limit"}"#[..],
            br#"{"data":{"x":1},"status":"-27","reason":"Period total send limit"}"#,
        ] {
            match decode::<Vec<i32>>(e, rejection) {
                Err(UpstreamError::Rejected { status, reason, .. }) => {
                    assert_eq!((status, reason.as_str()), (-27, "Period total send limit"))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        match decode::<Vec<i32>>(e, br#"{"status":-24,"reason":7}"#) {
            Err(UpstreamError::Rejected { reason, .. }) => assert_eq!(reason, "Data unexisting"),
            other => panic!("unexpected {other:?}"),
        }
        for bad in [
            &br#"{"reason":"x"}"#[..],
            br#"{"status":"zero"}"#,
            br#"{"status":0.0}"#,
            br#"{"status":4294967296}"#,
            br#"{"status":[0]}"#,
            b"[]",
            b"<html>",
        ] {
            match decode::<IgnoredAny>(e, bad) {
                Err(UpstreamError::Decode { detail, .. }) => {
                    assert!(detail.starts_with("envelope: "), "{detail}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        match decode::<Vec<i32>>(e, br#"{"status":"0","data":{"x":"9990012345"}}"#) {
            Err(UpstreamError::Decode { detail, .. }) => {
                assert!(detail.starts_with("data: "), "{detail}");
                assert!(!detail.contains("9990012345"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn signature_is_shared_within_a_second_and_renewed_after() {
        let c = client("http://127.0.0.1:1/otp");
        let (t1, s1) = c.signed_headers_at(1_630_468_800);
        assert_eq!(t1, "1630468800");
        assert_eq!(s1, sign("key", "s3cr3t-value", "1630468800"));
        assert!(s1.is_sensitive());
        let (t1_again, s1_again) = c.signed_headers_at(1_630_468_800);
        assert_eq!((&t1_again, &s1_again), (&t1, &s1));
        // Shared, not rebuilt: the same bytes in memory, not an equal copy.
        assert_eq!(t1_again.as_bytes().as_ptr(), t1.as_bytes().as_ptr());
        assert_eq!(s1_again.as_bytes().as_ptr(), s1.as_bytes().as_ptr());
        let (t2, s2) = c.signed_headers_at(1_630_468_801);
        assert_eq!(t2, "1630468801");
        assert_eq!(s2, sign("key", "s3cr3t-value", "1630468801"));
        assert_ne!(s1, s2);
    }

    #[test]
    fn default_cap_is_the_documented_4_mib() {
        assert_eq!(DEFAULT_MAX_RESPONSE_BYTES, 4_194_304);
        let c = client("http://127.0.0.1:1/otp");
        assert_eq!(c.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(c.with_max_response_bytes(10).max_response_bytes, 10);
    }

    #[test]
    fn https_uses_the_system_roots_and_http_needs_none() {
        assert!(
            !system_roots()
                .expect("this machine has a CA store")
                .is_empty()
        );
        client("https://api.itniotech.com/otp");
        client("http://127.0.0.1:1/otp");
    }

    #[test]
    fn empty_reasons_fall_back_to_the_description() {
        match decode::<IgnoredAny>(Endpoint::FlowList, br#"{"status":"-24","reason":"  "}"#) {
            Err(UpstreamError::Rejected { reason, .. }) => assert_eq!(reason, "Data unexisting"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn outcomes_are_named() {
        let e = Endpoint::FlowList;
        assert_eq!(outcome_name::<()>(&Ok(())), "ok");
        let too_large = UpstreamError::ResponseTooLarge {
            endpoint: e,
            limit: 1,
        };
        assert_eq!(outcome_name::<()>(&Err(too_large)), "too_large");
    }

    #[test]
    fn reasons_are_scrubbed() {
        assert_eq!(
            scrub_reason("number 8613512345678 blocked, code 1234 at -16"),
            "number **** blocked, code **** at -16"
        );
        assert_eq!(
            rejected(Endpoint::AppAdd, -20, None).to_string(),
            "POST /app/add: rejected with status -20: Data existing"
        );
        assert!(scrub_reason(&"x".repeat(1000)).len() <= MAX_REASON_CHARS);
    }

    #[test]
    fn the_client_debug_shows_its_config_and_no_secret() {
        let c = client("https://api.itniotech.com/otp");
        let shown = format!("{c:?}");
        assert!(
            shown.starts_with("UpstreamClient { config: UpstreamConfig {"),
            "{shown}"
        );
        assert!(shown.contains("https://api.itniotech.com/otp"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }

    #[tokio::test]
    async fn the_client_takes_its_slots_from_the_limit_it_was_given() {
        use crate::upstream::ConcurrencyConfig;
        let limit = ConcurrencyLimit::new(ConcurrencyConfig {
            max: 1,
            queue_wait: Duration::ZERO,
        });
        let _held = limit
            .enter(Endpoint::FlowList, Duration::from_secs(1))
            .await
            .expect("the only slot");
        let c = client("http://127.0.0.1:1/otp").with_concurrency_limit(limit);
        let shared = c
            .concurrency_limit()
            .enter(Endpoint::FlowList, Duration::from_secs(1))
            .await;
        assert!(
            matches!(shared, Err(UpstreamError::Overloaded { limit: 1, .. })),
            "{shared:?}"
        );
    }

    #[tokio::test]
    async fn no_time_left_is_a_timeout_and_nothing_is_sent() {
        // Nothing listens on port 1: a send would fail with Connect, not Timeout.
        let c = client("http://127.0.0.1:1/otp");
        let result = c
            .call::<IgnoredAny>(Endpoint::FlowList, None, None::<&()>, Some(Duration::ZERO))
            .await;
        assert!(
            matches!(
                result,
                Err(UpstreamError::Timeout {
                    endpoint: Endpoint::FlowList
                })
            ),
            "{result:?}"
        );
    }

    /// Collects what a `tracing` subscriber writes, for asserting on log lines.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_retry_of_an_expired_timestamp_is_logged_as_attempt_2() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"status":-16}"#))
            .expect(2)
            .mount(&server)
            .await;
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let result = {
            let _default = tracing::subscriber::set_default(subscriber);
            client(&format!("{}/otp", server.uri()))
                .call::<IgnoredAny>(Endpoint::FlowList, None, None::<&()>, None)
                .await
        };
        assert!(
            matches!(result, Err(UpstreamError::Rejected { status: -16, .. })),
            "{result:?}"
        );
        let logs = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8");
        let attempts: Vec<_> = logs
            .lines()
            .filter(|line| line.contains("itnio call"))
            .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("attempt=")))
            .collect();
        assert_eq!(attempts, ["attempt=1", "attempt=2"], "{logs}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_its_cause() {
        // Bound without SO_REUSEADDR and never listening: connections are refused, and no other
        // test can take the port meanwhile (a bound-then-dropped port-0 number can be).
        let reserved = tokio::net::TcpSocket::new_v4().expect("socket");
        reserved.bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let addr = reserved.local_addr().expect("addr");
        let result = client(&format!("http://{addr}/otp"))
            .call::<IgnoredAny>(Endpoint::FlowList, None, None::<&()>, None)
            .await;
        match result {
            // Nothing was sent: Connect (retryable anywhere), not Interrupted.
            Err(UpstreamError::Connect { detail, .. }) => {
                assert!(detail.starts_with("connection failed: "), "{detail}");
                assert!(detail.to_lowercase().contains("refused"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_rejected_report_is_an_error() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(r#"{"status":-24,"reason":"no such app"}"#),
            )
            .expect(1)
            .mount(&server)
            .await;
        let result = client(&format!("{}/otp", server.uri()))
            .call_no_data(Endpoint::BackfillRate, &serde_json::json!({}), None)
            .await;
        match result {
            Err(UpstreamError::Rejected { status, reason, .. }) => {
                assert_eq!((status, reason.as_str()), (-24, "no such app"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_upstreams_own_reason_is_kept() {
        // -27's description is "Period total send limit": a different text must come through.
        match decode::<IgnoredAny>(
            Endpoint::FlowList,
            br#"{"status":-27,"reason":"slow down"}"#,
        ) {
            Err(UpstreamError::Rejected { reason, .. }) => assert_eq!(reason, "slow down"),
            other => panic!("unexpected {other:?}"),
        }
    }

    // Equivalent mutant: `read_capped`'s `first.len() + second.len()` → `*` only changes the
    // capacity hint of the reassembly buffer (capped at the byte cap either way), never what is
    // read or refused. (`-` is caught: it underflows when the first piece is the smaller.)

    mod ids_reach_the_url_unchanged {
        use proptest::prelude::*;

        use super::*;
        use crate::convert::{apps, flows, records, templates};
        use crate::proto::v1 as pb;

        /// The URL of `endpoint` for `id` ends in exactly `/{id}`.
        fn assert_sent_as_is(endpoint: Endpoint, id: &str) -> Result<(), TestCaseError> {
            let url = client("https://api.itniotech.com/otp")
                .url(endpoint, Some(id))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(url.as_str().ends_with(&format!("/{id}")), "{}", url);
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_valid_id_is_accepted_and_sent_byte_for_byte(
                app_id in "[A-Za-z0-9_-]{4,32}",
                verification_id in "[A-Za-z0-9_-]{1,64}",
                numeric in 1i64..=i64::MAX,
            ) {
                apps::get_request(&pb::GetAppRequest { app_id: app_id.clone() })
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                assert_sent_as_is(Endpoint::AppDetails, &app_id)?;
                assert_sent_as_is(Endpoint::AppUpdate, &app_id)?;
                records::get_request(&pb::GetRecordRequest {
                    verification_id: verification_id.clone(),
                })
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
                assert_sent_as_is(Endpoint::VerificationRecord, &verification_id)?;
                let numeric = numeric.to_string();
                templates::get_request(&pb::GetTemplateRequest { template_id: numeric.clone() })
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                flows::get_request(&pb::GetFlowRequest { flow_id: numeric.clone() })
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                assert_sent_as_is(Endpoint::TemplateDetails, &numeric)?;
                assert_sent_as_is(Endpoint::FlowUpdate, &numeric)?;
            }

            #[test]
            fn an_id_with_any_other_character_is_refused_before_the_url(
                prefix in "[A-Za-z0-9]{2,8}",
                bad in any::<char>().prop_filter("outside the id alphabet", |c| {
                    !c.is_ascii_alphanumeric() && *c != '-' && *c != '_'
                }),
                suffix in "[A-Za-z0-9]{2,8}",
            ) {
                let id = format!("{prefix}{bad}{suffix}");
                let app = pb::GetAppRequest { app_id: id.clone() };
                let record = pb::GetRecordRequest { verification_id: id.clone() };
                let template = pb::GetTemplateRequest { template_id: id };
                prop_assert!(apps::get_request(&app).is_err());
                prop_assert!(records::get_request(&record).is_err());
                prop_assert!(templates::get_request(&template).is_err());
            }
        }
    }
}

//! The single choke point of the REST edge: every ITNIO call is built, signed, timed, sent,
//! logged and classified here, and every failure leaves as a typed [`UpstreamError`].
//!
//! The resource files (`apps.rs`, `templates.rs`, …) only pick an [`Endpoint`], a path id and a
//! body; they never touch HTTP. Behaviour shared by all 19 endpoints:
//! - headers `Api-Key`, `Timestamp` (Unix seconds), `Sign`, `Content-Type`, on GET too;
//! - the HTTP timeout of a call is `min(config.timeout, caller deadline)`, covering both attempts;
//! - status `-16` (timestamp expired: nothing was processed) is re-signed and retried once;
//! - redirects are not followed, so the signed headers never reach another host;
//! - one `debug` line per attempt, with the route template only (no ids, numbers, codes, secrets).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::endpoint::Endpoint;
use super::error::{BuildError, UpstreamError, sanitize_json_error};
use super::sign::sign;
use super::status::UpstreamStatus;

const CONTENT_TYPE_JSON: &str = "application/json;charset=UTF-8";
const USER_AGENT: &str = concat!("itnio-otp-grpc/", env!("CARGO_PKG_VERSION"));
/// Longest `reason` text kept from a rejection; longer texts are cut.
const MAX_REASON_CHARS: usize = 200;

/// Where and how to reach ITNIO. `Debug` redacts the secret.
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
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
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
    inner: Arc<Inner>,
}

struct Inner {
    config: UpstreamConfig,
    base: Url,
    api_key: HeaderValue,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The `{status, reason, data}` envelope, before its fields are interpreted.
#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    reason: Option<Value>,
    #[serde(default)]
    data: Option<Value>,
}

/// A `status:"0"` reply's `data` (`None` when absent or `null`).
type Data = Option<Value>;

impl UpstreamClient {
    pub fn new(config: UpstreamConfig) -> Result<Self, BuildError> {
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
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .map_err(|e| BuildError::Client(e.to_string()))?;
        Ok(Self {
            http,
            inner: Arc::new(Inner {
                config,
                base,
                api_key,
            }),
        })
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
        let data = self.exchange(endpoint, id, body, deadline).await?;
        T::deserialize(data.unwrap_or(Value::Null)).map_err(|e| UpstreamError::Decode {
            endpoint,
            detail: format!("data: {}", sanitize_json_error(&e)),
        })
    }

    /// Calls an endpoint whose success reply carries no `data` worth reading.
    pub(crate) async fn call_no_data(
        &self,
        endpoint: Endpoint,
        body: &(impl Serialize + ?Sized),
        deadline: Option<Duration>,
    ) -> Result<(), UpstreamError> {
        self.exchange(endpoint, None, Some(body), deadline)
            .await
            .map(drop)
    }

    async fn exchange(
        &self,
        endpoint: Endpoint,
        id: Option<&str>,
        body: Option<&(impl Serialize + ?Sized)>,
        deadline: Option<Duration>,
    ) -> Result<Data, UpstreamError> {
        let budget = deadline.map_or(self.inner.config.timeout, |d| {
            d.min(self.inner.config.timeout)
        });
        let url = self.url(endpoint, id)?;
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| UpstreamError::Connect {
                endpoint,
                detail: format!(
                    "request body could not be encoded: {}",
                    sanitize_json_error(&e)
                ),
            })?),
            None => None,
        };
        let started = Instant::now();
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
                .attempt(endpoint, &url, body.as_deref(), remaining, attempt)
                .await
            {
                Err(UpstreamError::Rejected { status: -16, .. }) if attempt == 1 => attempt += 1,
                other => return other,
            }
        }
    }

    /// One signed request with a fresh timestamp.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        url: &Url,
        body: Option<&[u8]>,
        timeout: Duration,
        attempt: u32,
    ) -> Result<Data, UpstreamError> {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let config = &self.inner.config;
        let signature = sign(&config.api_key, &config.api_secret, &timestamp);
        let mut request = self
            .http
            .request(endpoint.method(), url.clone())
            .timeout(timeout)
            .header("Api-Key", self.inner.api_key.clone())
            .header("Timestamp", timestamp)
            .header("Sign", signature)
            .header(CONTENT_TYPE, CONTENT_TYPE_JSON);
        if let Some(body) = body {
            request = request.body(body.to_vec());
        }

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
            let bytes = response
                .bytes()
                .await
                .map_err(|e| (Some(http_status.as_u16()), read_error(endpoint, e)))?;
            Ok((http_status.as_u16(), bytes))
        };
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((http_status, bytes))) => {
                let result = interpret(endpoint, &bytes);
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

    fn url(&self, endpoint: Endpoint, id: Option<&str>) -> Result<Url, UpstreamError> {
        debug_assert_eq!(endpoint.takes_id(), id.is_some(), "{endpoint}");
        let mut url = self.inner.base.clone();
        {
            // `new` checked that the base URL can carry a path.
            let Ok(mut segments) = url.path_segments_mut() else {
                return Err(UpstreamError::Connect {
                    endpoint,
                    detail: "base URL cannot carry a path".into(),
                });
            };
            segments.pop_if_empty().extend(endpoint.fixed_segments());
            if let Some(id) = id {
                // `url` silently drops "." and ".." segments, which would change the route.
                if id.is_empty() || id == "." || id == ".." {
                    return Err(UpstreamError::Rejected {
                        endpoint,
                        status: UpstreamStatus::ParameterError.code(),
                        reason: "path id is empty or a dot segment (not sent)".into(),
                    });
                }
                // Percent-encodes everything outside the path-segment set, '/' and '%' included.
                segments.push(id);
            }
        }
        Ok(url)
    }
}

/// Reads the envelope of a 2xx reply.
fn interpret(endpoint: Endpoint, bytes: &[u8]) -> Result<Data, UpstreamError> {
    let envelope: RawEnvelope =
        serde_json::from_slice(bytes).map_err(|e| UpstreamError::Decode {
            endpoint,
            detail: format!("envelope: {}", sanitize_json_error(&e)),
        })?;
    let status = match envelope.status {
        Some(Value::String(s)) => s.trim().parse::<i32>().ok(),
        Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        _ => None,
    }
    .ok_or_else(|| UpstreamError::Decode {
        endpoint,
        detail: "envelope: missing or non-integer status".into(),
    })?;
    if status != 0 {
        return Err(rejected(endpoint, status, envelope.reason.as_ref()));
    }
    Ok(envelope.data.filter(|d| !d.is_null()))
}

fn rejected(endpoint: Endpoint, status: i32, reason: Option<&Value>) -> UpstreamError {
    let reason = match reason {
        Some(Value::String(s)) if !s.trim().is_empty() => scrub_reason(s),
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
fn read_error(endpoint: Endpoint, err: reqwest::Error) -> UpstreamError {
    if err.is_timeout() {
        return UpstreamError::Timeout { endpoint };
    }
    UpstreamError::Decode {
        endpoint,
        detail: "reply body could not be read".into(),
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = err.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

fn outcome_name(result: &Result<Data, UpstreamError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(UpstreamError::Rejected { .. }) => "rejected",
        Err(UpstreamError::Timeout { .. }) => "timeout",
        Err(UpstreamError::Connect { .. }) => "connect",
        Err(UpstreamError::Interrupted { .. }) => "interrupted",
        Err(UpstreamError::Http { .. }) => "http",
        Err(UpstreamError::Decode { .. }) => "decode",
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
        for bad in ["", ".", ".."] {
            assert!(matches!(
                c.url(Endpoint::AppDetails, Some(bad)),
                Err(UpstreamError::Rejected { status: -22, .. })
            ));
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
    fn debug_redacts_the_secret() {
        let c = client("https://api.itniotech.com/otp");
        let shown = format!("{c:?} {:?}", c.config());
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn envelope_status_as_string_or_number() {
        let e = Endpoint::FlowList;
        assert_eq!(
            interpret(e, br#"{"status":"0","reason":"success","data":[1]}"#).expect("ok"),
            Some(serde_json::json!([1]))
        );
        assert_eq!(
            interpret(e, br#"{"status":0,"data":null}"#).expect("ok"),
            None
        );
        match interpret(e, br#"{"status":-27,"reason":"Period total send limit"}"#) {
            Err(UpstreamError::Rejected { status, reason, .. }) => {
                assert_eq!((status, reason.as_str()), (-27, "Period total send limit"))
            }
            other => panic!("unexpected {other:?}"),
        }
        for bad in [
            &br#"{"reason":"x"}"#[..],
            br#"{"status":"zero"}"#,
            b"[]",
            b"<html>",
        ] {
            assert!(matches!(
                interpret(e, bad),
                Err(UpstreamError::Decode { .. })
            ));
        }
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
}

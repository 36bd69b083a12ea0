//! Transport faults the sandbox can inject per endpoint (`POST /_sandbox/inject` with a
//! `fault`), beyond the business statuses: what a flaky network, a gateway or a broken server
//! does to a reply. Each fault answers one authenticated request in place of the handler.
//!
//! | fault | what the caller sees | handler runs? |
//! |---|---|---|
//! | `latency` (`latency_ms`) | the normal reply, `latency_ms` later | yes, after the wait |
//! | `http_status` (`http_status` 400–599) | that HTTP status with a gateway's HTML page | no |
//! | `reset_before_status` | the request is read, then a TCP reset; no byte of a reply | yes |
//! | `reset_mid_body` | status line, headers, half the body, then a TCP reset | yes |
//! | `truncated_body` | HTTP 200 whose body (and `Content-Length`) is the first half of the reply | yes |
//! | `non_json` | HTTP 200, `text/plain`, a body that is not JSON | no |
//! | `html_error_page` | HTTP 200, `text/html`, a maintenance page (as a misrouted proxy serves) | no |
//! | `wrong_content_type` | the normal reply labelled `text/html` | yes |
//! | `huge_body` (`bytes`, default 64 MiB) | HTTP 200, a valid-looking JSON envelope of `bytes` bytes, streamed chunked (never held in memory) | no |
//! | `trickle` | the normal reply's status and headers, then its body at 1 byte per second | yes |
//!
//! "Handler runs" means the request takes effect (an app is created, a code is sent) even
//! though its reply is lost or late, as when a real upstream fails after doing the work.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};

use super::wire::Wire;

/// Default size of a `huge_body` reply: far above any sensible client cap (the facade's default
/// `ITNIO_MAX_RESPONSE_BYTES` is 4 MiB).
pub const DEFAULT_HUGE_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Longest `latency_ms` accepted: ten minutes.
const MAX_LATENCY_MS: u64 = 600_000;
/// The real replies a fault mangles are small JSON documents; this only bounds a mistake.
const MAX_BUFFERED_REPLY: usize = 16 * 1024 * 1024;
/// How often a `trickle` sends its next byte.
const TRICKLE_INTERVAL: Duration = Duration::from_secs(1);
/// The size of one chunk of a `huge_body`.
const HUGE_CHUNK: usize = 64 * 1024;

/// One injectable transport fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Latency(Duration),
    HttpStatus(StatusCode),
    ResetBeforeStatus,
    ResetMidBody,
    TruncatedBody,
    NonJson,
    HtmlErrorPage,
    WrongContentType,
    HugeBody(u64),
    Trickle,
}

/// The parameters a fault may take, as `POST /_sandbox/inject` carries them.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultParams {
    pub latency_ms: Option<u64>,
    pub http_status: Option<u16>,
    pub bytes: Option<u64>,
}

impl Fault {
    /// Every fault name, as the control API spells it.
    pub const NAMES: [&'static str; 10] = [
        "latency",
        "http_status",
        "reset_before_status",
        "reset_mid_body",
        "truncated_body",
        "non_json",
        "html_error_page",
        "wrong_content_type",
        "huge_body",
        "trickle",
    ];

    /// The fault `name` with its parameters; a missing required parameter, one out of range or
    /// one the fault does not take is an error naming it.
    pub fn parse(name: &str, params: FaultParams) -> Result<Self, String> {
        let FaultParams {
            latency_ms,
            http_status,
            bytes,
        } = params;
        let takes = |latency: bool, status: bool, size: bool| {
            let stray = [
                ("latency_ms", latency_ms.is_some() && !latency),
                ("http_status", http_status.is_some() && !status),
                ("bytes", bytes.is_some() && !size),
            ];
            match stray.iter().find(|(_, stray)| *stray) {
                Some((param, _)) => Err(format!("fault {name:?} takes no {param}")),
                None => Ok(()),
            }
        };
        let fault = match name {
            "latency" => {
                takes(true, false, false)?;
                match latency_ms {
                    Some(ms) if ms <= MAX_LATENCY_MS => Self::Latency(Duration::from_millis(ms)),
                    _ => return Err(format!("latency needs latency_ms 0–{MAX_LATENCY_MS}")),
                }
            }
            "http_status" => {
                takes(false, true, false)?;
                match http_status.and_then(|s| StatusCode::from_u16(s).ok()) {
                    Some(s) if s.is_client_error() || s.is_server_error() => Self::HttpStatus(s),
                    _ => return Err("http_status needs http_status 400–599".into()),
                }
            }
            "huge_body" => {
                takes(false, false, true)?;
                Self::HugeBody(bytes.unwrap_or(DEFAULT_HUGE_BODY_BYTES))
            }
            other => {
                takes(false, false, false)?;
                match other {
                    "reset_before_status" => Self::ResetBeforeStatus,
                    "reset_mid_body" => Self::ResetMidBody,
                    "truncated_body" => Self::TruncatedBody,
                    "non_json" => Self::NonJson,
                    "html_error_page" => Self::HtmlErrorPage,
                    "wrong_content_type" => Self::WrongContentType,
                    "trickle" => Self::Trickle,
                    _ => {
                        return Err(format!(
                            "unknown fault {other:?}; expected one of {:?}",
                            Self::NAMES
                        ));
                    }
                }
            }
        };
        Ok(fault)
    }

    /// Answers `request` with this fault; `next` is the endpoint's handler.
    pub async fn apply(self, request: Request, next: Next) -> Response {
        let wire = request.extensions().get::<Wire>().cloned();
        match self {
            Self::Latency(wait) => {
                tokio::time::sleep(wait).await;
                next.run(request).await
            }
            Self::HttpStatus(status) => gateway_page(status),
            Self::ResetBeforeStatus => {
                let Some(wire) = wire else {
                    return unwired();
                };
                drop(next.run(request).await);
                wire.cut();
                // hyper's first write of this reply fails: not one byte of it leaves.
                StatusCode::OK.into_response()
            }
            Self::ResetMidBody => {
                let Some(wire) = wire else {
                    return unwired();
                };
                mangle(next.run(request).await, |body| reset_after_half(body, wire)).await
            }
            Self::TruncatedBody => {
                mangle(next.run(request).await, |body| {
                    Body::from(body.slice(..body.len() / 2))
                })
                .await
            }
            Self::NonJson => text(
                "text/plain; charset=utf-8",
                "upstream error: request could not be completed\n",
            ),
            Self::HtmlErrorPage => text("text/html; charset=utf-8", MAINTENANCE_PAGE),
            Self::WrongContentType => {
                let mut response = next.run(request).await;
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=iso-8859-1"),
                );
                response
            }
            Self::HugeBody(bytes) => huge_body(bytes),
            Self::Trickle => mangle(next.run(request).await, trickle).await,
        }
    }
}

/// Rebuilds `response` with the body `rebody` makes of its bytes. The `Content-Length` of the
/// whole reply is kept unless the new body knows its own exact size.
async fn mangle(response: Response, rebody: impl FnOnce(Bytes) -> Body) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BUFFERED_REPLY).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let full_length = HeaderValue::from(bytes.len());
    let body = rebody(bytes);
    if http_body::Body::size_hint(&body).exact().is_none() {
        parts.headers.insert(CONTENT_LENGTH, full_length);
    } else {
        parts.headers.remove(CONTENT_LENGTH);
    }
    Response::from_parts(parts, body)
}

/// Half of `body`, then (once hyper has flushed it) a cut wire and a body error, which makes
/// hyper drop the connection.
fn reset_after_half(body: Bytes, wire: Wire) -> Body {
    let half = body.slice(..body.len() / 2);
    let steps = stream::iter([Some(half), None]).then(move |step| {
        let wire = wire.clone();
        async move {
            match step {
                Some(half) => Ok(half),
                None => {
                    // Yield once so hyper flushes the half before the next poll.
                    tokio::task::yield_now().await;
                    wire.cut();
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "reset_mid_body",
                    ))
                }
            }
        }
    });
    Body::from_stream(steps)
}

/// `body` one byte per [`TRICKLE_INTERVAL`], the first at once.
fn trickle(body: Bytes) -> Body {
    let bytes = stream::iter(0..body.len()).then(move |i| {
        let byte = body.slice(i..=i);
        async move {
            if i > 0 {
                tokio::time::sleep(TRICKLE_INTERVAL).await;
            }
            Ok::<_, std::convert::Infallible>(byte)
        }
    });
    Body::from_stream(bytes)
}

/// `{"status":"0","reason":"success","data":["xxxx…","xxxx…",…]}` of about `size` bytes,
/// produced chunk by chunk as the client reads.
fn huge_body(size: u64) -> Response {
    const HEAD: &[u8] = br#"{"status":"0","reason":"success","data":["#;
    const TAIL: &[u8] = b"\"\"]}";
    let item = {
        let mut item = vec![b'x'; HUGE_CHUNK];
        item[0] = b'"';
        item[HUGE_CHUNK - 2] = b'"';
        item[HUGE_CHUNK - 1] = b',';
        Bytes::from(item)
    };
    let padding = size.saturating_sub((HEAD.len() + TAIL.len()) as u64);
    let items = padding.div_ceil(HUGE_CHUNK as u64);
    let chunks = stream::once(async { Bytes::from_static(HEAD) })
        .chain(stream::iter(0..items).map(move |_| item.clone()))
        .chain(stream::once(async { Bytes::from_static(TAIL) }))
        .map(Ok::<_, std::convert::Infallible>);
    let mut response = Body::from_stream(chunks).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What an nginx in front of the API answers on its own.
fn gateway_page(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("Error")
    );
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = (status, page).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

const MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Scheduled maintenance</title></head>\n<body><h1>We'll be back soon</h1><p>The service is down for scheduled maintenance.</p></body></html>\n";

fn text(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A reset fault on a router served without [`super::Sandbox::serve`]'s wired connections.
fn unwired() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        "connection resets need the sandbox served by Sandbox::serve",
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Result<Fault, String> {
        Fault::parse(name, FaultParams::default())
    }

    #[test]
    fn every_name_parses_and_parameters_are_checked() {
        let with = |latency_ms, http_status, bytes| FaultParams {
            latency_ms,
            http_status,
            bytes,
        };
        assert_eq!(
            Fault::parse("latency", with(Some(250), None, None)),
            Ok(Fault::Latency(Duration::from_millis(250)))
        );
        assert_eq!(
            Fault::parse("latency", with(Some(MAX_LATENCY_MS), None, None)),
            Ok(Fault::Latency(Duration::from_secs(600)))
        );
        assert!(Fault::parse("latency", with(Some(MAX_LATENCY_MS + 1), None, None)).is_err());
        assert!(parse("latency").is_err());
        for (status, ok) in [
            (399, false),
            (400, true),
            (429, true),
            (599, true),
            (600, false),
        ] {
            let parsed = Fault::parse("http_status", with(None, Some(status), None));
            assert_eq!(parsed.is_ok(), ok, "{status}");
        }
        assert!(parse("http_status").is_err());
        assert_eq!(
            parse("huge_body"),
            Ok(Fault::HugeBody(DEFAULT_HUGE_BODY_BYTES))
        );
        assert_eq!(
            Fault::parse("huge_body", with(None, None, Some(10))),
            Ok(Fault::HugeBody(10))
        );
        let plain = [
            ("reset_before_status", Fault::ResetBeforeStatus),
            ("reset_mid_body", Fault::ResetMidBody),
            ("truncated_body", Fault::TruncatedBody),
            ("non_json", Fault::NonJson),
            ("html_error_page", Fault::HtmlErrorPage),
            ("wrong_content_type", Fault::WrongContentType),
            ("trickle", Fault::Trickle),
        ];
        for (name, fault) in plain {
            assert_eq!(parse(name), Ok(fault));
        }
        for name in Fault::NAMES {
            let params = match name {
                "latency" => with(Some(1), None, None),
                "http_status" => with(None, Some(503), None),
                _ => FaultParams::default(),
            };
            assert!(Fault::parse(name, params).is_ok(), "{name}");
        }
        let error = parse("reset").unwrap_err();
        assert!(
            error.contains("unknown fault") && error.contains("trickle"),
            "{error}"
        );
    }

    #[test]
    fn stray_parameters_are_refused() {
        let cases = [
            (
                "trickle",
                FaultParams {
                    latency_ms: Some(1),
                    ..Default::default()
                },
                "latency_ms",
            ),
            (
                "latency",
                FaultParams {
                    latency_ms: Some(1),
                    http_status: Some(503),
                    bytes: None,
                },
                "http_status",
            ),
            (
                "http_status",
                FaultParams {
                    http_status: Some(503),
                    bytes: Some(1),
                    ..Default::default()
                },
                "bytes",
            ),
            (
                "huge_body",
                FaultParams {
                    latency_ms: Some(1),
                    ..Default::default()
                },
                "latency_ms",
            ),
        ];
        for (name, params, stray) in cases {
            let error = Fault::parse(name, params).unwrap_err();
            assert_eq!(error, format!("fault {name:?} takes no {stray}"));
        }
    }

    async fn collect(body: Body) -> Result<Bytes, axum::Error> {
        axum::body::to_bytes(body, usize::MAX).await
    }

    #[test]
    fn the_default_huge_body_is_the_documented_64_mib() {
        assert_eq!(DEFAULT_HUGE_BODY_BYTES, 67_108_864);
        assert_eq!(parse("huge_body"), Ok(Fault::HugeBody(67_108_864)));
    }

    #[tokio::test]
    async fn huge_bodies_are_valid_json_of_the_asked_size() {
        for size in [0, 100, 3 * HUGE_CHUNK as u64 + 7] {
            let response = huge_body(size);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert!(response.headers().get(CONTENT_LENGTH).is_none(), "streamed");
            let bytes = collect(response.into_body()).await.unwrap();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(value["status"], "0");
            assert!(bytes.len() as u64 >= size, "{} < {size}", bytes.len());
            assert!(
                bytes.len() as u64 <= size + HUGE_CHUNK as u64 + 64,
                "{size}"
            );
        }
    }

    #[tokio::test]
    async fn mangled_bodies_keep_or_fix_their_length() {
        let reply = || {
            let mut response = r#"{"status":"0"}"#.into_response();
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(14));
            response
        };
        let truncated = mangle(reply(), |b| Body::from(b.slice(..b.len() / 2))).await;
        assert!(
            truncated.headers().get(CONTENT_LENGTH).is_none(),
            "hyper sets 7"
        );
        assert_eq!(
            &collect(truncated.into_body()).await.unwrap()[..],
            br#"{"statu"#
        );

        let wire = Wire::default();
        let reset = mangle(reply(), |b| reset_after_half(b, wire.clone())).await;
        assert_eq!(
            reset.headers()[CONTENT_LENGTH],
            "14",
            "the whole reply is announced"
        );
        let mut body = reset.into_body();
        let first = http_body_util_frame(&mut body).await.unwrap().unwrap();
        assert_eq!(&first[..], br#"{"statu"#);
        assert!(!wire.is_cut(), "not before the half is out");
        assert!(http_body_util_frame(&mut body).await.unwrap().is_err());
        assert!(wire.is_cut());
    }

    /// The next data frame of `body`.
    async fn http_body_util_frame(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
        let frame = std::future::poll_fn(|cx| {
            http_body::Body::poll_frame(std::pin::Pin::new(&mut *body), cx)
        })
        .await?;
        Some(frame.map(|f| f.into_data().unwrap_or_default()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_sends_one_byte_a_second() {
        let mut body = trickle(Bytes::from_static(b"abc"));
        let started = tokio::time::Instant::now();
        let mut seen = Vec::new();
        while let Some(frame) = http_body_util_frame(&mut body).await {
            seen.push((frame.unwrap(), started.elapsed().as_secs()));
        }
        let expected: Vec<(Bytes, u64)> = vec![
            (Bytes::from_static(b"a"), 0),
            (Bytes::from_static(b"b"), 1),
            (Bytes::from_static(b"c"), 2),
        ];
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn gateway_pages_carry_their_status() {
        let response = gateway_page(StatusCode::BAD_GATEWAY);
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
        let page = collect(response.into_body()).await.unwrap();
        assert!(String::from_utf8_lossy(&page).contains("<title>502 Bad Gateway</title>"));
        let response = text("text/plain; charset=utf-8", "x");
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn replies_of_megabytes_are_mangled_too() {
        let big = "x".repeat(1024 * 1024);
        let truncated = mangle(big.into_response(), |b| Body::from(b.slice(..b.len() / 2))).await;
        assert_eq!(truncated.status(), StatusCode::OK);
        let bytes = collect(truncated.into_body()).await.unwrap();
        assert_eq!(bytes.len(), 512 * 1024);
    }

    #[tokio::test]
    async fn a_huge_body_streams_64_kib_items_and_hits_a_whole_size_exactly() {
        let head = br#"{"status":"0","reason":"success","data":["#.len();
        let size = (head + 4 + 2 * 65_536) as u64;
        let mut body = huge_body(size).into_body();
        let mut frames = Vec::new();
        while let Some(frame) = http_body_util_frame(&mut body).await {
            frames.push(frame.unwrap().len());
        }
        assert_eq!(frames, [head, 65_536, 65_536, 4]);
    }
}

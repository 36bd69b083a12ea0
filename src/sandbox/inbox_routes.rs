//! The inbox over HTTP (unsigned, like the other `/_sandbox/` endpoints):
//! - `GET /_sandbox/inbox`: the live web page (`inbox.html` + `inbox.js`, embedded in the binary);
//! - `GET /_sandbox/inbox.json?to=DIGITS&after=RFC3339&limit=N`: messages, newest first;
//! - `GET /_sandbox/inbox/stream?to=DIGITS`: Server-Sent Events, one `data:` JSON message per
//!   delivery (`id:` is the message id; a reconnect with `Last-Event-ID` replays what it
//!   missed). A subscriber that falls behind gets an `event: lagged` whose data is the number
//!   of messages it missed, and should re-read `inbox.json`.
//!
//! A stream holds no task of its own: it is a broadcast receiver that is dropped when the
//! client disconnects, and it ends when the server shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::clock;
use super::inbox::{Filter, Message};
use super::state::Shared;

const PAGE: &str = include_str!("inbox.html");
const SCRIPT: &str = include_str!("inbox.js");
/// The page loads nothing but itself and its script, and runs no inline script.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";
/// Comment lines keep idle streams open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/inbox", get(page))
        .route("/_sandbox/inbox.js", get(script))
        .route("/_sandbox/inbox.json", get(list))
        .route("/_sandbox/inbox/stream", get(stream))
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct InboxQuery {
    to: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// A 400 with a JSON reason, so a typo in a test shows instead of matching nothing.
fn bad_request(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"ok": false, "error": error})),
    )
        .into_response()
}

impl InboxQuery {
    /// `to` keeps its digits only (so `+999 00 1234 5678` works); `after` must be RFC 3339.
    fn filter(&self) -> Result<Filter, &'static str> {
        let to = match self.to.as_deref() {
            None | Some("") => None,
            Some(raw) => {
                let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
                if digits.is_empty() {
                    return Err("to must contain digits");
                }
                Some(digits)
            }
        };
        let after = match self.after.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(
                DateTime::parse_from_rfc3339(raw)
                    .map_err(|_| "after must be an RFC 3339 time")?
                    .with_timezone(&Utc),
            ),
        };
        Ok(Filter { to, after })
    }
}

/// `GET /_sandbox/inbox.json`.
async fn list(State(shared): State<Arc<Shared>>, Query(query): Query<InboxQuery>) -> Response {
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(error) => return bad_request(error),
    };
    let messages = shared
        .state()
        .inbox
        .list(&filter, query.limit.unwrap_or(usize::MAX));
    let now = clock::now();
    let out: Vec<_> = messages.iter().map(|m| m.at(now)).collect();
    Json(out).into_response()
}

/// `GET /_sandbox/inbox/stream`.
async fn stream(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<InboxQuery>,
    headers: HeaderMap,
) -> Response {
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(error) => return bad_request(error),
    };
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let (receiver, missed) = {
        // Under one lock: what was stored before subscribing is replayed, the rest is live.
        let state = shared.state();
        let missed = last_seen.map_or_else(Vec::new, |last| state.inbox.since(last, &filter));
        (state.inbox.subscribe(), missed)
    };
    let live = BroadcastStream::new(receiver).filter_map(move |item| match item {
        Ok(message) => filter.matches(&message).then(|| event(&message)),
        Err(BroadcastStreamRecvError::Lagged(missed)) => {
            Some(Event::default().event("lagged").data(missed.to_string()))
        }
    });
    let events = tokio_stream::iter(missed.iter().map(|m| event(m)).collect::<Vec<_>>())
        .chain(live)
        .map(Ok::<_, Infallible>);
    Sse::new(until_closed(events, &shared))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Ends `events` when the server shuts down, so a graceful shutdown never waits on a stream.
fn until_closed<S: Stream + Send + 'static>(
    events: S,
    shared: &Shared,
) -> impl Stream<Item = S::Item> + Send + 'static {
    futures_util::StreamExt::take_until(events, Box::pin(shared.closed()))
}

fn event(message: &Message) -> Event {
    let data =
        serde_json::to_string(&message.at(clock::now())).unwrap_or_else(|_| String::from("{}"));
    Event::default().id(message.id.to_string()).data(data)
}

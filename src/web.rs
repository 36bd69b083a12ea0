//! gRPC-Web for browser and edge callers: the CORS policy of the gRPC port.
//!
//! The port speaks gRPC-Web (`application/grpc-web[-text][+proto]`, over HTTP/1.1 or HTTP/2)
//! next to gRPC, translated by `tonic-web`. Which web origins may call from a browser is
//! `CORS_ALLOWED_ORIGINS`: a comma-separated list of origins (`https://app.example.com`), or
//! `*` for any. Unset, no origin is allowed: browsers refuse the preflight, while callers that
//! are not browsers (no CORS) still use gRPC-Web. The policy lets through the headers a
//! gRPC-Web client sends (deadline, bearer token, request id) and exposes the ones it reads
//! (status, message, error details, request id, mode).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// Request headers a gRPC-Web call carries besides the CORS-safelisted ones.
const ALLOWED_HEADERS: [&str; 6] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "x-request-id",
];

/// Response headers a gRPC-Web client reads (trailers-only errors arrive as headers).
const EXPOSED_HEADERS: [&str; 5] = [
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "x-request-id",
    "x-itnio-mode",
];

/// Which web origins may call the gRPC port from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// None: the default.
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// Exactly these origins.
    List(Vec<HeaderValue>),
}

/// Why `CORS_ALLOWED_ORIGINS` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginsError {
    /// An entry that is not `scheme://host[:port]`.
    #[error(
        "CORS_ALLOWED_ORIGINS: {0:?} is not an origin (scheme://host[:port], no path, no trailing slash)"
    )]
    NotAnOrigin(String),
    /// `*` together with named origins.
    #[error("CORS_ALLOWED_ORIGINS: `*` allows every origin and cannot be combined with others")]
    WildcardWithOthers,
}

impl AllowedOrigins {
    /// Parses the comma-separated `CORS_ALLOWED_ORIGINS` value; blank entries are ignored.
    pub fn parse(value: &str) -> Result<Self, OriginsError> {
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        if entries.contains(&"*") {
            return match entries.len() {
                1 => Ok(Self::Any),
                _ => Err(OriginsError::WildcardWithOthers),
            };
        }
        if entries.is_empty() {
            return Ok(Self::None);
        }
        entries
            .into_iter()
            .map(origin)
            .collect::<Result<_, _>>()
            .map(Self::List)
    }

    /// The CORS layer answering preflights and adding the response headers browsers check.
    pub fn layer(&self) -> CorsLayer {
        let allow_origin = match self {
            Self::None => AllowOrigin::list([]),
            Self::Any => AllowOrigin::any(),
            Self::List(origins) => AllowOrigin::list(origins.iter().cloned()),
        };
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::POST])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(PREFLIGHT_MAX_AGE)
    }
}

/// One origin as browsers send it: `http` or `https`, a host, an optional port, nothing else.
fn origin(entry: &str) -> Result<HeaderValue, OriginsError> {
    let refuse = || OriginsError::NotAnOrigin(entry.to_owned());
    let rest = entry
        .strip_prefix("https://")
        .or_else(|| entry.strip_prefix("http://"))
        .ok_or_else(refuse)?;
    let authority: http::uri::Authority = rest.parse().map_err(|_| refuse())?;
    if authority.as_str() != rest || rest.contains('@') || authority.host().is_empty() {
        return Err(refuse());
    }
    HeaderValue::from_str(entry).map_err(|_| refuse())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_blank_allows_no_origin() {
        assert_eq!(AllowedOrigins::parse(""), Ok(AllowedOrigins::None));
        assert_eq!(AllowedOrigins::parse(" , "), Ok(AllowedOrigins::None));
    }

    #[test]
    fn a_list_of_origins_is_kept_in_order() {
        let parsed = AllowedOrigins::parse("https://app.example.com, http://localhost:8080");
        assert_eq!(
            parsed,
            Ok(AllowedOrigins::List(vec![
                HeaderValue::from_static("https://app.example.com"),
                HeaderValue::from_static("http://localhost:8080"),
            ]))
        );
    }

    #[test]
    fn a_star_alone_allows_any_origin() {
        assert_eq!(AllowedOrigins::parse("*"), Ok(AllowedOrigins::Any));
        assert_eq!(
            AllowedOrigins::parse("*,https://a.example"),
            Err(OriginsError::WildcardWithOthers)
        );
    }

    #[test]
    fn entries_that_are_not_origins_are_refused() {
        for bad in [
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://",
            "https://exa mple.com",
        ] {
            assert_eq!(
                AllowedOrigins::parse(bad),
                Err(OriginsError::NotAnOrigin(bad.to_owned())),
                "{bad}"
            );
        }
    }
}

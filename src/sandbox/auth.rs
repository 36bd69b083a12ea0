//! Who may call the emulated API: the IP allow-list, the `Api-Key`/`Sign` check and the
//! `Timestamp` window, in the order the vendor documents them (-2, then -1, then -16).

use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

use super::config::SandboxConfig;
use super::envelope::ApiError;

/// Checks one request's caller and headers against the configuration at instant `now`.
pub fn check(
    config: &SandboxConfig,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    check_ip(&config.allowed_ips, peer)?;
    let timestamp = check_signature(config, headers)?;
    check_timestamp(timestamp, config.clock_skew, now)
}

/// `MD5(apiKey + apiSecret + timestamp)` as lowercase hex.
pub fn sign(api_key: &str, api_secret: &str, timestamp: &str) -> String {
    let digest = Md5::digest(format!("{api_key}{api_secret}{timestamp}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An empty list allows everyone; otherwise the peer must be listed (an unknown peer is not).
fn check_ip(allowed: &[IpAddr], peer: Option<IpAddr>) -> Result<(), ApiError> {
    if allowed.is_empty() {
        return Ok(());
    }
    match peer.map(|ip| ip.to_canonical()) {
        Some(ip) if allowed.iter().any(|a| a.to_canonical() == ip) => Ok(()),
        _ => Err(ApiError::RestrictedIp),
    }
}

/// Verifies key and signature, returning the signed `Timestamp` text.
fn check_signature<'h>(
    config: &SandboxConfig,
    headers: &'h HeaderMap,
) -> Result<&'h str, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Authentication)
    };
    let (key, timestamp, signature) = (header("Api-Key")?, header("Timestamp")?, header("Sign")?);
    if key != config.api_key {
        return Err(ApiError::Authentication);
    }
    if !sign(&config.api_key, &config.api_secret, timestamp).eq_ignore_ascii_case(signature.trim())
    {
        return Err(ApiError::Authentication);
    }
    Ok(timestamp)
}

/// The timestamp must be Unix seconds within `skew` of `now`.
fn check_timestamp(timestamp: &str, skew: Duration, now: DateTime<Utc>) -> Result<(), ApiError> {
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| ApiError::TimestampExpires)?;
    let drift = now.timestamp().abs_diff(seconds);
    if drift <= skew.as_secs() {
        Ok(())
    } else {
        Err(ApiError::TimestampExpires)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config() -> SandboxConfig {
        SandboxConfig::new("bDqJFiq9", "7bz1lzh9")
    }

    fn headers(key: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("Api-Key", key),
            ("Timestamp", timestamp),
            ("Sign", signature),
        ] {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn documented_example_signature() {
        assert_eq!(
            sign("bDqJFiq9", "7bz1lzh9", "1630468800"),
            "05d7a50893e22a5c4bb3216ae3396c7c"
        );
    }

    #[test]
    fn accepts_any_case_signature_within_skew() {
        let h = headers("bDqJFiq9", "1630468800", "05D7A50893E22A5C4BB3216AE3396C7C");
        assert_eq!(check(&config(), None, &h, at(1630468800 + 300)), Ok(()));
    }

    #[test]
    fn rejects_bad_key_signature_and_missing_headers() {
        let good = "05d7a50893e22a5c4bb3216ae3396c7c";
        let now = at(1630468800);
        assert_eq!(
            check(&config(), None, &headers("other", "1630468800", good), now),
            Err(ApiError::Authentication)
        );
        assert_eq!(
            check(
                &config(),
                None,
                &headers("bDqJFiq9", "1630468801", good),
                now
            ),
            Err(ApiError::Authentication)
        );
        assert_eq!(
            check(&config(), None, &HeaderMap::new(), now),
            Err(ApiError::Authentication)
        );
    }

    #[test]
    fn rejects_stale_or_non_numeric_timestamps() {
        let h = headers("bDqJFiq9", "1630468800", "05d7a50893e22a5c4bb3216ae3396c7c");
        assert_eq!(
            check(&config(), None, &h, at(1630468800 - 301)),
            Err(ApiError::TimestampExpires)
        );
        let word = sign("bDqJFiq9", "7bz1lzh9", "soon");
        assert_eq!(
            check(&config(), None, &headers("bDqJFiq9", "soon", &word), at(0)),
            Err(ApiError::TimestampExpires)
        );
    }

    #[test]
    fn ip_is_checked_first() {
        let mut config = config();
        config.allowed_ips = vec!["10.0.0.1".parse().unwrap()];
        let peer = "10.0.0.2".parse().ok();
        assert_eq!(
            check(&config, peer, &HeaderMap::new(), at(0)),
            Err(ApiError::RestrictedIp)
        );
        assert_eq!(
            check(&config, None, &HeaderMap::new(), at(0)),
            Err(ApiError::RestrictedIp)
        );
        let listed = "::ffff:10.0.0.1".parse().ok();
        assert_eq!(
            check(&config, listed, &HeaderMap::new(), at(0)),
            Err(ApiError::Authentication)
        );
    }
}

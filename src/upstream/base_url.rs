//! The base URL every ITNIO call is made under: ITNIO's production URL by default, or another
//! server speaking the same API (the sandbox, a proxy). Checked wherever one is configured (the
//! environment's `ITNIO_BASE_URL`, each `[[accounts]]` entry of the callers file) before anything
//! listens.

/// The ITNIO production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.itniotech.com/otp";

/// A base URL that is not an `http(s)://` URL with a host.
#[derive(Debug, thiserror::Error)]
#[error("ITNIO_BASE_URL must start with https:// or http:// (got {0:?})")]
pub struct BaseUrlError(pub String);

/// `base_url` (or [`DEFAULT_BASE_URL`] when absent) without trailing slashes, if it is an
/// `http(s)://` URL with a host.
pub fn check_base_url(base_url: Option<String>) -> Result<String, BaseUrlError> {
    let url = base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => {
            Ok(url.trim_end_matches('/').to_owned())
        }
        _ => Err(BaseUrlError(url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_needs_a_host() {
        for bad in ["https://", "http:///otp"] {
            assert!(
                matches!(check_base_url(Some(bad.into())), Err(BaseUrlError(_))),
                "{bad}"
            );
        }
    }
}

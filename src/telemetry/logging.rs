//! Log setup (text for terminals, JSON for collectors; [`LogFormat`] is what `LOG_FORMAT` picks)
//! and the redaction of URLs before they are logged: `user:password@` never reaches a log line.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr in `format`; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .init(),
    }
}

/// `url` without its userinfo (`https://user:pw@host/x` → `https://host/x`), for logging.
/// Text that is not a URL with an authority is returned as is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}{path}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn userinfo_is_removed() {
        assert_eq!(
            redact_url("https://user:pa%40ss@api.example.test:8443/otp?x=1"),
            "https://api.example.test:8443/otp?x=1"
        );
        assert_eq!(redact_url("http://token@host"), "http://host");
        assert_eq!(redact_url("http://a:b@c@host/p@q"), "http://host/p@q");
    }

    #[test]
    fn urls_without_userinfo_are_unchanged() {
        for url in [
            "https://api.itniotech.com/otp",
            "http://127.0.0.1:9/a@b",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}

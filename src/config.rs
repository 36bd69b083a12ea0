//! Command line and environment configuration, parsed and checked before any port is bound.
//!
//! `Cli` is what clap reads; [`Cli::into_command`] turns it into validated [`ServeConfig`] or
//! [`SandboxConfig`](crate::sandbox::SandboxConfig) values, so a bad setting stops the process
//! with a clear message instead of a half-started server. Secrets only ever live in [`Secret`],
//! whose `Debug` prints a placeholder.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::watch::WatchConfig;

/// The ITNIO production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.itniotech.com/otp";

/// gRPC facade for the ITNIO Tech OTP API.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<CliCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Serve the gRPC API (the default). Without ITNIO credentials it runs against the built-in sandbox.
    Serve(ServeArgs),
    /// Run only the ITNIO API emulator over HTTP, for other teams' tests.
    Sandbox(SandboxArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address the gRPC server listens on.
    #[arg(
        long = "listen",
        env = "GRPC_LISTEN_ADDR",
        default_value = "0.0.0.0:50051"
    )]
    listen: SocketAddr,
    /// ITNIO API key. Without key and secret the service runs against the in-process sandbox.
    #[arg(long, env = "ITNIO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// ITNIO API secret (prefer --api-secret-file).
    #[arg(long, env = "ITNIO_API_SECRET", hide_env_values = true)]
    api_secret: Option<String>,
    /// File holding the ITNIO API secret (trailing whitespace is ignored).
    #[arg(long, env = "ITNIO_API_SECRET_FILE")]
    api_secret_file: Option<PathBuf>,
    /// ITNIO API base URL.
    #[arg(long, env = "ITNIO_BASE_URL")]
    base_url: Option<String>,
    /// Timeout of one upstream HTTP call (the caller's gRPC deadline shortens it).
    #[arg(long, env = "ITNIO_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    upstream_timeout: Duration,
    /// Largest upstream reply body accepted, in bytes; a larger one fails the call.
    #[arg(long, env = "ITNIO_MAX_RESPONSE_BYTES", default_value_t = crate::upstream::client::DEFAULT_MAX_RESPONSE_BYTES)]
    max_response_bytes: usize,
    /// How long in-flight calls may finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Time speed-up of the in-process sandbox (1 = real time).
    #[arg(long, env = "SANDBOX_SPEED", default_value_t = 1.0)]
    sandbox_speed: f64,
    /// WatchRecord: waits between polls while a record does not change (the last repeats).
    #[arg(long, env = "WATCH_BACKOFF", default_value = "1s,2s,5s", value_delimiter = ',', value_parser = humantime::parse_duration)]
    watch_backoff: Vec<Duration>,
    /// WatchRecord: global cap on upstream record polls per second.
    #[arg(long, env = "WATCH_MAX_POLLS_PER_SECOND", default_value_t = 50)]
    watch_max_polls_per_second: u32,
    /// WatchRecord: how long to wait for a task-flow fallback after every attempt failed.
    #[arg(long, env = "WATCH_FLOW_SETTLE", default_value = "125s", value_parser = humantime::parse_duration)]
    watch_flow_settle: Duration,
}

#[derive(Debug, Args)]
struct SandboxArgs {
    /// Address the sandbox HTTP server listens on.
    #[arg(
        long = "listen",
        env = "SANDBOX_LISTEN_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// API key the sandbox accepts.
    #[arg(long, env = "SANDBOX_API_KEY", default_value = "sandbox-key")]
    api_key: String,
    /// API secret the sandbox accepts.
    #[arg(
        long,
        env = "SANDBOX_API_SECRET",
        default_value = "sandbox-secret",
        hide_env_values = true
    )]
    api_secret: String,
    /// Accepted clock skew of the Timestamp header.
    #[arg(long, env = "SANDBOX_CLOCK_SKEW", default_value = "300s", value_parser = humantime::parse_duration)]
    clock_skew: Duration,
    /// Time speed-up of deliveries, task flows and code expiry (1 = real time).
    #[arg(long, env = "SANDBOX_SPEED", default_value_t = 1.0)]
    speed: f64,
}

/// What the process was asked to do, with validated settings.
#[derive(Debug)]
pub enum Command {
    /// Serve the gRPC API.
    Serve(ServeConfig),
    /// Serve only the sandbox emulator.
    Sandbox {
        /// Where the sandbox listens.
        listen: SocketAddr,
        /// The emulator's settings.
        config: crate::sandbox::SandboxConfig,
    },
}

/// Everything the gRPC server needs, in one place.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// Which ITNIO API to call.
    pub upstream: UpstreamTarget,
    /// Timeout of one upstream HTTP call.
    pub upstream_timeout: Duration,
    /// Cap on one upstream reply body, in bytes.
    pub max_response_bytes: usize,
    /// How long in-flight calls may finish on shutdown.
    pub shutdown_grace: Duration,
    /// How WatchRecord polls.
    pub watch: WatchConfig,
}

/// The ITNIO API the service calls.
#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    /// The real API (or any server speaking it) with our credentials.
    Itnio {
        /// Base URL, e.g. `https://api.itniotech.com/otp`.
        base_url: String,
        /// API key (not secret, but not logged either).
        api_key: String,
        /// API secret.
        api_secret: Secret,
    },
    /// The in-process sandbox on a loopback port, with throwaway credentials.
    Sandbox {
        /// The sandbox's time speed-up.
        speed: f64,
    },
}

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A configuration problem, reported before anything listens.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Only one of key and secret was given.
    #[error("ITNIO_API_KEY and an API secret must be set together (got only the {0})")]
    HalfCredentials(&'static str),
    /// Both ways of giving the secret were used.
    #[error("set either ITNIO_API_SECRET or ITNIO_API_SECRET_FILE, not both")]
    TwoSecrets,
    /// The secret file could not be read.
    #[error("cannot read ITNIO_API_SECRET_FILE {path}: {source}")]
    SecretFile {
        /// The file named.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A credential was empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// The base URL is not an http(s) URL.
    #[error("ITNIO_BASE_URL must start with https:// or http:// (got {0:?})")]
    BaseUrl(String),
    /// A base URL was given without credentials.
    #[error("ITNIO_BASE_URL is set but ITNIO_API_KEY and a secret are not")]
    BaseUrlWithoutCredentials,
    /// A speed-up that is not a positive number.
    #[error("the sandbox speed must be a positive number (got {0})")]
    Speed(f64),
    /// A poll cap of zero would stop every watch.
    #[error("WATCH_MAX_POLLS_PER_SECOND must be at least 1")]
    ZeroRate,
    /// A reply cap of zero would refuse every reply.
    #[error("ITNIO_MAX_RESPONSE_BYTES must be at least 1")]
    ZeroResponseCap,
    /// A zero duration where one is needed.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
}

impl Cli {
    /// Validates the parsed arguments into what the process will do.
    pub fn into_command(self) -> Result<Command, ConfigError> {
        match self.command {
            Some(CliCommand::Sandbox(args)) => args.into_command(),
            Some(CliCommand::Serve(args)) => Ok(Command::Serve(args.into_config()?)),
            None => Ok(Command::Serve(self.serve.into_config()?)),
        }
    }
}

impl ServeArgs {
    fn into_config(self) -> Result<ServeConfig, ConfigError> {
        if self.upstream_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("ITNIO_TIMEOUT"));
        }
        if self.max_response_bytes == 0 {
            return Err(ConfigError::ZeroResponseCap);
        }
        let secret = read_secret(self.api_secret, self.api_secret_file)?;
        let upstream = match (self.api_key, secret) {
            (None, None) if self.base_url.is_some() => {
                return Err(ConfigError::BaseUrlWithoutCredentials);
            }
            (None, None) => UpstreamTarget::Sandbox {
                speed: check_speed(self.sandbox_speed)?,
            },
            (Some(_), None) => return Err(ConfigError::HalfCredentials("key")),
            (None, Some(_)) => return Err(ConfigError::HalfCredentials("secret")),
            (Some(api_key), Some(api_secret)) => UpstreamTarget::Itnio {
                base_url: check_base_url(self.base_url)?,
                api_key: non_empty(api_key, "ITNIO_API_KEY")?,
                api_secret,
            },
        };
        if self.watch_backoff.iter().any(Duration::is_zero) {
            return Err(ConfigError::ZeroDuration("WATCH_BACKOFF"));
        }
        if self.watch_max_polls_per_second == 0 {
            return Err(ConfigError::ZeroRate);
        }
        let watch = WatchConfig {
            backoff: self.watch_backoff,
            max_polls_per_second: self.watch_max_polls_per_second,
            flow_settle: self.watch_flow_settle,
            ..WatchConfig::default()
        };
        Ok(ServeConfig {
            listen: self.listen,
            upstream,
            upstream_timeout: self.upstream_timeout,
            max_response_bytes: self.max_response_bytes,
            shutdown_grace: self.shutdown_grace,
            watch,
        })
    }
}

impl SandboxArgs {
    fn into_command(self) -> Result<Command, ConfigError> {
        let mut config = crate::sandbox::SandboxConfig::new(
            non_empty(self.api_key, "SANDBOX_API_KEY")?,
            non_empty(self.api_secret, "SANDBOX_API_SECRET")?,
        );
        config.clock_skew = self.clock_skew;
        config.speed = check_speed(self.speed)?;
        Ok(Command::Sandbox {
            listen: self.listen,
            config,
        })
    }
}

fn read_secret(
    inline: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    let value = match (inline, file) {
        (Some(_), Some(_)) => return Err(ConfigError::TwoSecrets),
        (Some(value), None) => value,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|source| ConfigError::SecretFile { path, source })?
            .trim_end()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    Ok(Some(Secret::new(non_empty(value, "the ITNIO API secret")?)))
}

fn non_empty(value: String, what: &'static str) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::Empty(what))
    } else {
        Ok(value)
    }
}

fn check_base_url(base_url: Option<String>) -> Result<String, ConfigError> {
    let url = base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => {
            Ok(url.trim_end_matches('/').to_owned())
        }
        _ => Err(ConfigError::BaseUrl(url)),
    }
}

fn check_speed(speed: f64) -> Result<f64, ConfigError> {
    if speed.is_finite() && speed > 0.0 {
        Ok(speed)
    } else {
        Err(ConfigError::Speed(speed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, ConfigError> {
        let mut argv = vec!["itnio-otp-grpc"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("arguments parse")
            .into_command()
    }

    fn serve(args: &[&str]) -> ServeConfig {
        match parse(args).expect("valid config") {
            Command::Serve(config) => config,
            other => panic!("expected serve, got {other:?}"),
        }
    }

    // These tests pass flags only: they must not depend on the process environment, which the
    // test runner shares. Env names are covered by clap's own `env` handling.
    #[test]
    fn no_credentials_means_sandbox() {
        let config = serve(&["--listen", "127.0.0.1:0"]);
        assert!(matches!(config.upstream, UpstreamTarget::Sandbox { speed } if speed == 1.0));
    }

    #[test]
    fn credentials_select_itnio_with_default_url() {
        let config = serve(&["serve", "--api-key", "k", "--api-secret", "s"]);
        match config.upstream {
            UpstreamTarget::Itnio {
                base_url,
                api_secret,
                ..
            } => {
                assert_eq!(base_url, DEFAULT_BASE_URL);
                assert_eq!(api_secret.expose(), "s");
            }
            other => panic!("expected itnio, got {other:?}"),
        }
    }

    #[test]
    fn half_credentials_are_rejected() {
        assert!(matches!(
            parse(&["--api-key", "k"]),
            Err(ConfigError::HalfCredentials("key"))
        ));
        assert!(matches!(
            parse(&["--api-secret", "s"]),
            Err(ConfigError::HalfCredentials("secret"))
        ));
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let path = std::env::temp_dir().join(format!("itnio-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").expect("write temp file");
        let config = serve(&[
            "--api-key",
            "k",
            "--api-secret-file",
            path.to_str().expect("utf-8"),
        ]);
        std::fs::remove_file(&path).ok();
        assert!(
            matches!(config.upstream, UpstreamTarget::Itnio { api_secret, .. } if api_secret.expose() == "from-file")
        );
    }

    #[test]
    fn both_secret_sources_are_rejected() {
        assert!(matches!(
            parse(&[
                "--api-key",
                "k",
                "--api-secret",
                "s",
                "--api-secret-file",
                "/x"
            ]),
            Err(ConfigError::TwoSecrets)
        ));
    }

    #[test]
    fn bad_base_url_and_speed_are_rejected() {
        let bad_url = parse(&[
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--base-url",
            "ftp://x",
        ]);
        assert!(matches!(bad_url, Err(ConfigError::BaseUrl(_))));
        assert!(matches!(
            parse(&["--sandbox-speed", "0"]),
            Err(ConfigError::Speed(_))
        ));
        assert!(matches!(
            parse(&["--base-url", "https://example.test"]),
            Err(ConfigError::BaseUrlWithoutCredentials)
        ));
    }

    #[test]
    fn watch_settings_parse() {
        let config = serve(&[
            "--watch-backoff",
            "100ms,1s",
            "--watch-max-polls-per-second",
            "7",
        ]);
        assert_eq!(
            config.watch.backoff,
            [Duration::from_millis(100), Duration::from_secs(1)]
        );
        assert_eq!(config.watch.max_polls_per_second, 7);
        assert_eq!(
            config.max_response_bytes,
            crate::upstream::client::DEFAULT_MAX_RESPONSE_BYTES
        );
        assert_eq!(
            serve(&["--max-response-bytes", "1000"]).max_response_bytes,
            1000
        );
        assert!(matches!(
            parse(&["--max-response-bytes", "0"]),
            Err(ConfigError::ZeroResponseCap)
        ));
        assert!(matches!(
            parse(&["--watch-max-polls-per-second", "0"]),
            Err(ConfigError::ZeroRate)
        ));
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let config = serve(&["--api-key", "k", "--api-secret", "hunter2-secret"]);
        assert!(!format!("{config:?}").contains("hunter2-secret"));
    }
}

//! Command line and environment configuration, parsed and checked before any port is bound.
//!
//! `Cli` is what clap reads; [`Cli::into_command`] turns it into validated [`ServeConfig`] or
//! [`SandboxConfig`](crate::sandbox::SandboxConfig) values, so a bad setting stops the process
//! with a clear message instead of a half-started server. Secrets only ever live in [`Secret`],
//! whose `Debug` prints a placeholder.

use std::{
    error::Error as _, ffi::OsString, net::SocketAddr, num::NonZeroUsize, path::PathBuf, sync::Arc,
    time::Duration,
};

use clap::{
    Args, CommandFactory, Parser, Subcommand, ValueEnum,
    error::{ContextKind, ContextValue, ErrorKind},
};
use tokio_rustls::rustls::ServerConfig;

use crate::{
    auth::{CallersFile, CallersFileError},
    guard::{Policy, PolicyError},
    phone::{Country, NON_GEOGRAPHIC, PhoneRules, TEST_COUNTRY},
    reload::Loaded,
    secret::Secret,
    store::StoreConfig,
    telemetry::logging::LogFormat,
    tls::{TlsError, TlsFiles},
    transport::TransportConfig,
    upstream::{
        ConcurrencyConfig,
        base_url::{BaseUrlError, check_base_url},
        client::HttpVersion,
    },
    watch::WatchConfig,
    web::{AllowedOrigins, OriginsError},
};

/// gRPC facade for the ITNIO Tech OTP API.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<CliCommand>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log line format: `text` for terminals, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Threads that run calls (the tokio runtime's workers). Default: the CPUs this process may
    /// use, counting a container's CPU limit (a Kubernetes `limits.cpu: "1"` gives 1).
    #[arg(long, env = "WORKER_THREADS", global = true)]
    worker_threads: Option<NonZeroUsize>,
}

/// Which ITNIO API the service calls (`ITNIO_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The real ITNIO API; credentials are required.
    Live,
    /// The in-process sandbox, whatever credentials are set.
    Sandbox,
}

impl Mode {
    /// The name used in logs, metrics and response metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Sandbox => "sandbox",
        }
    }
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Serve the gRPC API (the default). Without ITNIO credentials it runs against the built-in sandbox.
    Serve(Box<ServeArgs>),
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
    /// `live` requires credentials, `sandbox` always uses the in-process sandbox; unset, the
    /// sandbox runs when no credentials are set.
    #[arg(long, env = "ITNIO_MODE", value_enum)]
    mode: Option<Mode>,
    /// Address of the admin HTTP server (`/metrics`).
    #[arg(
        long = "metrics-listen",
        env = "METRICS_LISTEN_ADDR",
        default_value = "0.0.0.0:9090"
    )]
    metrics_listen: SocketAddr,
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
    /// HTTP version spoken to ITNIO: `auto` (on https, ALPN picks HTTP/2 when ITNIO offers it,
    /// else HTTP/1.1; on http, HTTP/1.1), `http1` (a connection per call in flight) or `http2`
    /// (one multiplexed connection; the upstream must speak HTTP/2).
    #[arg(long, env = "ITNIO_HTTP_VERSION", value_enum, default_value_t = HttpVersion::Auto)]
    http_version: HttpVersion,
    /// How long in-flight calls may finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Time speed-up of the in-process sandbox (1 = real time).
    #[arg(long, env = "SANDBOX_SPEED", default_value_t = 1.0)]
    sandbox_speed: f64,
    /// Address of the in-process sandbox (its inbox page is logged at start); port 0 = any free port.
    #[arg(long, env = "SANDBOX_LISTEN_ADDR", default_value = "127.0.0.1:0")]
    sandbox_listen: SocketAddr,
    /// WatchRecord: waits between polls while a record does not change (the last repeats).
    #[arg(long, env = "WATCH_BACKOFF", default_value = "1s,2s,5s", value_delimiter = ',', value_parser = humantime::parse_duration)]
    watch_backoff: Vec<Duration>,
    /// WatchRecord: global cap on upstream record polls per second.
    #[arg(long, env = "WATCH_MAX_POLLS_PER_SECOND", default_value_t = 50)]
    watch_max_polls_per_second: u32,
    /// WatchRecord: distinct records one caller (or, without CALLERS_FILE, one connection) may
    /// watch at once; one more fails with RESOURCE_EXHAUSTED.
    #[arg(long, env = "WATCH_MAX_RECORDS_PER_CALLER", default_value_t = crate::watch::DEFAULT_MAX_RECORDS_PER_CALLER)]
    watch_max_records_per_caller: usize,
    /// WatchRecord: how long to wait for a task-flow fallback after every attempt failed.
    #[arg(long, env = "WATCH_FLOW_SETTLE", default_value = "125s", value_parser = humantime::parse_duration)]
    watch_flow_settle: Duration,
    /// Redis for state shared by replicas (idempotency records, quotas, poll budget), e.g.
    /// redis://redis:6379/0. Unset: in process memory (one replica).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    guard: GuardArgs,
    #[command(flatten)]
    transport: TransportArgs,
}

/// Limits of the gRPC port and of calls to ITNIO: what one client or a stalled upstream can
/// make the process hold.
#[derive(Debug, Args)]
struct TransportArgs {
    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(long, env = "GRPC_MAX_CONCURRENT_STREAMS", default_value_t = crate::transport::DEFAULT_MAX_CONCURRENT_STREAMS)]
    max_concurrent_streams: u32,
    /// Open gRPC connections; beyond it new connections are closed as soon as accepted.
    #[arg(long, env = "GRPC_MAX_CONNECTIONS", default_value_t = crate::transport::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Time a new connection has to send its first request (TLS handshake and HTTP/2 preface
    /// included) before it is closed.
    #[arg(long, env = "GRPC_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// A connection without any call in progress for this long is closed.
    #[arg(long, env = "GRPC_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Time a call has, after its headers, to send its whole request message; a slower one
    /// fails with DEADLINE_EXCEEDED (reason REQUEST_BODY_TIMEOUT).
    #[arg(long, env = "GRPC_REQUEST_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    request_body_timeout: Duration,
    /// How often an HTTP/2 PING checks that a client is still there.
    #[arg(long, env = "GRPC_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    keepalive_interval: Duration,
    /// How long a keepalive PING may go unanswered before the connection is closed.
    #[arg(long, env = "GRPC_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    keepalive_timeout: Duration,
    /// Largest request message in bytes; a larger one fails with RESOURCE_EXHAUSTED.
    #[arg(long, env = "GRPC_MAX_MESSAGE_BYTES", default_value_t = crate::transport::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// ITNIO calls in flight at once, over all accounts; beyond it calls are shed with
    /// RESOURCE_EXHAUSTED (reason UPSTREAM_CONCURRENCY_EXCEEDED).
    #[arg(long, env = "UPSTREAM_MAX_CONCURRENCY", default_value_t = crate::upstream::concurrency::DEFAULT_MAX_CONCURRENCY)]
    upstream_max_concurrency: usize,
    /// How long a call may wait for one of the UPSTREAM_MAX_CONCURRENCY slots before it is shed.
    #[arg(long, env = "UPSTREAM_QUEUE_WAIT", default_value = "50ms", value_parser = humantime::parse_duration)]
    upstream_queue_wait: Duration,
}

/// The send guard and how phone numbers are read.
#[derive(Debug, Args)]
struct GuardArgs {
    /// TOML policy of the send guard (countries, number types, velocity limits, pending sends,
    /// check attempts; per app and per caller). Unset: the documented defaults.
    #[arg(long, env = "GUARD_POLICY_FILE")]
    guard_policy_file: Option<PathBuf>,
    /// Only log and count what the send guard would refuse.
    #[arg(long, env = "GUARD_DRY_RUN")]
    guard_dry_run: bool,
    /// ISO 3166 region in which phone numbers without "+" are read (e.g. US). Unset: E.164 only.
    #[arg(long, env = "PHONE_DEFAULT_REGION")]
    phone_default_region: Option<String>,
    /// Accept the sandbox's 999… test numbers outside sandbox mode (when ITNIO_BASE_URL points
    /// at a standalone sandbox). Always on in sandbox mode.
    #[arg(long, env = "ALLOW_TEST_NUMBERS")]
    allow_test_numbers: bool,
}

/// Who may call and over what: callers file, TLS, the plaintext health port.
#[derive(Debug, Args)]
struct SecurityArgs {
    /// TOML file of callers (token hashes or client certificate subjects, allowed methods,
    /// ITNIO account) and extra ITNIO accounts. Without it every caller is anonymous.
    #[arg(long, env = "CALLERS_FILE")]
    callers_file: Option<PathBuf>,
    /// Serve without CALLERS_FILE even though real ITNIO credentials are configured.
    #[arg(long, env = "ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,
    /// PEM certificate chain of the gRPC port; with TLS_KEY_FILE it serves TLS only.
    #[arg(long, env = "TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// PEM CA certificates: set, every client must present a certificate they signed (mTLS).
    #[arg(long, env = "TLS_CLIENT_CA_FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Extra plaintext port serving only grpc.health.v1 (for Kubernetes probes when TLS is on).
    #[arg(long = "health-listen", env = "HEALTH_LISTEN_ADDR")]
    health_listen: Option<SocketAddr>,
    /// How often CALLERS_FILE and the TLS files are checked for changes (SIGHUP reloads at once).
    #[arg(long, env = "FILE_POLL_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    file_poll_interval: Duration,
    /// Web origins allowed to call from a browser over gRPC-Web (comma-separated, or `*`).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "")]
    cors_allowed_origins: String,
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
    /// How long verifications, records and inbox messages are kept [default: twice the longest
    /// code expiry, 2 × 60 min ÷ SANDBOX_SPEED].
    #[arg(long, env = "SANDBOX_TTL", value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// Cap on stored verifications (and their records); the oldest is evicted first.
    #[arg(long, env = "SANDBOX_MAX_VERIFICATIONS", default_value_t = crate::sandbox::DEFAULT_MAX_VERIFICATIONS)]
    max_verifications: usize,
    /// Cap on stored inbox messages; the oldest is evicted first.
    #[arg(long, env = "SANDBOX_MAX_INBOX_MESSAGES", default_value_t = crate::sandbox::DEFAULT_MAX_INBOX_MESSAGES)]
    max_inbox_messages: usize,
}

/// What the process was asked to do, with validated settings.
#[derive(Debug)]
pub enum Command {
    /// Serve the gRPC API.
    Serve(Box<ServeConfig>),
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
    /// Where the admin HTTP server (`/metrics`) listens.
    pub metrics_listen: SocketAddr,
    /// Which ITNIO API to call.
    pub upstream: UpstreamTarget,
    /// Timeout of one upstream HTTP call.
    pub upstream_timeout: Duration,
    /// Cap on one upstream reply body, in bytes.
    pub max_response_bytes: usize,
    /// HTTP version spoken to the upstream.
    pub http_version: HttpVersion,
    /// How long in-flight calls may finish on shutdown.
    pub shutdown_grace: Duration,
    /// How WatchRecord polls.
    pub watch: WatchConfig,
    /// Callers file, TLS, health port.
    pub security: SecurityConfig,
    /// Where state shared by replicas lives.
    pub store: StoreConfig,
    /// The send guard's policy.
    pub guard: Policy,
    /// How phone numbers are read.
    pub phones: PhoneRules,
    /// Limits of the gRPC port.
    pub transport: TransportConfig,
    /// The cap on ITNIO calls in flight.
    pub upstream_concurrency: ConcurrencyConfig,
}

/// Who may call and over what, loaded and checked before anything listens.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// The callers file; `None` lets every caller in as anonymous on the `default` account.
    pub callers: Option<Loaded<PathBuf, CallersFile>>,
    /// TLS on the gRPC port.
    pub tls: Option<Loaded<TlsFiles, Arc<ServerConfig>>>,
    /// Where to serve plaintext grpc.health.v1 besides the gRPC port.
    pub health_listen: Option<SocketAddr>,
    /// How often the files above are checked for changes.
    pub file_poll_interval: Duration,
    /// Web origins allowed to call over gRPC-Web from a browser.
    pub cors_allowed_origins: AllowedOrigins,
}

impl Default for SecurityConfig {
    /// No callers file, no TLS, no health port: anyone may call, in plaintext.
    fn default() -> Self {
        Self {
            callers: None,
            tls: None,
            health_listen: None,
            file_poll_interval: Duration::from_secs(5),
            cors_allowed_origins: AllowedOrigins::None,
        }
    }
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
        /// Where the sandbox listens (loopback port 0 by default).
        listen: SocketAddr,
    },
}

impl UpstreamTarget {
    /// `live` for the ITNIO API, `sandbox` for the in-process emulator.
    pub fn mode(&self) -> Mode {
        match self {
            Self::Itnio { .. } => Mode::Live,
            Self::Sandbox { .. } => Mode::Sandbox,
        }
    }

    /// Whether calls can cost money and reach real phones (`ITNIO_MODE=live`, or credentials
    /// with the mode unset), so that callers must be authenticated.
    pub fn is_live(&self) -> bool {
        matches!(self.mode(), Mode::Live)
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
    #[error(transparent)]
    BaseUrl(#[from] BaseUrlError),
    /// `ITNIO_MODE=live` without credentials.
    #[error(
        "ITNIO_MODE=live needs ITNIO_API_KEY and ITNIO_API_SECRET_FILE (or ITNIO_API_SECRET); \
         refusing to start against the sandbox"
    )]
    LiveWithoutCredentials,
    /// A base URL was given without credentials.
    #[error("ITNIO_BASE_URL is set but ITNIO_API_KEY and a secret are not")]
    BaseUrlWithoutCredentials,
    /// A speed-up that is not a positive number.
    #[error("the sandbox speed must be a positive number (got {0})")]
    Speed(f64),
    /// A poll cap of zero would stop every watch.
    #[error("WATCH_MAX_POLLS_PER_SECOND must be at least 1")]
    ZeroRate,
    /// A cap of zero would keep nothing.
    #[error("{0} must be at least 1")]
    ZeroCap(&'static str),
    /// `REDIS_URL` does not parse (the message never repeats it: it may hold a password).
    #[error("{0}")]
    RedisUrl(String),
    /// A reply cap of zero would refuse every reply.
    #[error("ITNIO_MAX_RESPONSE_BYTES must be at least 1")]
    ZeroResponseCap,
    /// A zero duration where one is needed.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// The callers file is unusable.
    #[error(transparent)]
    Callers(#[from] CallersFileError),
    /// `CORS_ALLOWED_ORIGINS` does not list origins.
    #[error(transparent)]
    Origins(#[from] OriginsError),
    /// The TLS files are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// Only one of certificate and key was given.
    #[error("TLS_CERT_FILE and TLS_KEY_FILE must be set together")]
    HalfTls,
    /// A client CA without a server certificate.
    #[error("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE")]
    ClientCaWithoutTls,
    /// The send guard's policy file is unusable.
    #[error(transparent)]
    GuardPolicy(#[from] PolicyError),
    /// `PHONE_DEFAULT_REGION` is not a region.
    #[error("PHONE_DEFAULT_REGION: {0}")]
    DefaultRegion(String),
    /// Real credentials but nobody checks who calls.
    #[error(
        "real ITNIO credentials are configured but CALLERS_FILE is not: anyone who reaches the port could send OTPs on the account; set CALLERS_FILE, or pass --allow-unauthenticated"
    )]
    Unauthenticated,
}

/// Why the command line and environment were not accepted.
#[derive(Debug)]
pub enum CliError {
    /// `--help` or `--version`: not an error; `clap::Error::exit` prints it and exits 0.
    Info(clap::Error),
    /// A value that does not parse or an unknown flag: the message names the environment
    /// variable when the value came from there.
    Invalid(String),
}

impl Cli {
    /// How many worker threads the runtime gets: `WORKER_THREADS`, or else the CPUs available to
    /// the process (`std::thread::available_parallelism` reads the cgroup CPU quota too).
    pub fn worker_threads(&self) -> usize {
        self.worker_threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get)
    }

    /// Parses `args` and the environment. Unlike clap's own exit (code 2, naming the flag), a bad
    /// value read from the environment is reported by its variable name, so it can be fixed where
    /// it was set.
    pub fn parse_args<I, T>(args: I) -> Result<Self, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        Self::try_parse_from(&args).map_err(|error| match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => CliError::Info(error),
            _ => CliError::Invalid(describe_parse_error(&error, &args)),
        })
    }

    /// Validates the parsed arguments into what the process will do.
    pub fn into_command(self) -> Result<Command, ConfigError> {
        match self.command {
            Some(CliCommand::Sandbox(args)) => args.into_command(),
            Some(CliCommand::Serve(args)) => Ok(Command::Serve(Box::new(args.into_config()?))),
            None => Ok(Command::Serve(Box::new(self.serve.into_config()?))),
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
        let sandbox = || {
            check_speed(self.sandbox_speed).map(|speed| UpstreamTarget::Sandbox {
                speed,
                listen: self.sandbox_listen,
            })
        };
        let upstream = match (self.mode, self.api_key, secret) {
            (Some(Mode::Sandbox), _, _) => sandbox()?,
            (Some(Mode::Live), None, None) => return Err(ConfigError::LiveWithoutCredentials),
            (None, None, None) if self.base_url.is_some() => {
                return Err(ConfigError::BaseUrlWithoutCredentials);
            }
            (None, None, None) => sandbox()?,
            (_, Some(_), None) => return Err(ConfigError::HalfCredentials("key")),
            (_, None, Some(_)) => return Err(ConfigError::HalfCredentials("secret")),
            (_, Some(api_key), Some(api_secret)) => UpstreamTarget::Itnio {
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
            max_records_per_caller: at_least_one(
                self.watch_max_records_per_caller,
                "WATCH_MAX_RECORDS_PER_CALLER",
            )?,
            ..WatchConfig::default()
        };
        let store = match self.redis_url {
            None => StoreConfig::Memory,
            Some(url) => {
                crate::store::check_redis_url(&url).map_err(ConfigError::RedisUrl)?;
                StoreConfig::Redis { url }
            }
        };
        let security = self.security.into_config(&upstream)?;
        let (guard, phones) = self.guard.into_config(&upstream)?;
        let (transport, upstream_concurrency) = self.transport.into_config()?;
        Ok(ServeConfig {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            upstream,
            upstream_timeout: self.upstream_timeout,
            max_response_bytes: self.max_response_bytes,
            http_version: self.http_version,
            shutdown_grace: self.shutdown_grace,
            watch,
            store,
            security,
            guard,
            phones,
            transport,
            upstream_concurrency,
        })
    }
}

impl GuardArgs {
    fn into_config(self, upstream: &UpstreamTarget) -> Result<(Policy, PhoneRules), ConfigError> {
        let policy = match &self.guard_policy_file {
            Some(path) => Policy::load(path)?,
            None => Policy::default(),
        };
        let default_region = match self.phone_default_region.as_deref() {
            None | Some("") => None,
            Some(region) => match region.parse::<Country>() {
                Ok(country) if ![NON_GEOGRAPHIC, TEST_COUNTRY].contains(&country) => Some(country),
                Ok(_) => {
                    return Err(ConfigError::DefaultRegion(format!(
                        "{region:?} is not a region"
                    )));
                }
                Err(message) => return Err(ConfigError::DefaultRegion(message)),
            },
        };
        let phones = PhoneRules {
            default_region,
            test_numbers: self.allow_test_numbers || upstream.mode() == Mode::Sandbox,
        };
        Ok((policy.with_dry_run(self.guard_dry_run), phones))
    }
}

impl TransportArgs {
    fn into_config(self) -> Result<(TransportConfig, ConcurrencyConfig), ConfigError> {
        let durations = [
            (self.handshake_timeout, "GRPC_HANDSHAKE_TIMEOUT"),
            (self.idle_timeout, "GRPC_IDLE_TIMEOUT"),
            (self.request_body_timeout, "GRPC_REQUEST_BODY_TIMEOUT"),
            (self.keepalive_interval, "GRPC_KEEPALIVE_INTERVAL"),
            (self.keepalive_timeout, "GRPC_KEEPALIVE_TIMEOUT"),
        ];
        if let Some((_, name)) = durations.iter().find(|(d, _)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration(name));
        }
        let transport = TransportConfig {
            max_concurrent_streams: at_least_one(
                self.max_concurrent_streams as usize,
                "GRPC_MAX_CONCURRENT_STREAMS",
            )? as u32,
            max_connections: at_least_one(self.max_connections, "GRPC_MAX_CONNECTIONS")?,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
            request_body_timeout: self.request_body_timeout,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            max_message_bytes: at_least_one(self.max_message_bytes, "GRPC_MAX_MESSAGE_BYTES")?,
        };
        let upstream = ConcurrencyConfig {
            max: at_least_one(self.upstream_max_concurrency, "UPSTREAM_MAX_CONCURRENCY")?,
            queue_wait: self.upstream_queue_wait,
        };
        Ok((transport, upstream))
    }
}

impl SecurityArgs {
    fn into_config(self, upstream: &UpstreamTarget) -> Result<SecurityConfig, ConfigError> {
        if self.file_poll_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("FILE_POLL_INTERVAL"));
        }
        if self.callers_file.is_none() && upstream.is_live() && !self.allow_unauthenticated {
            return Err(ConfigError::Unauthenticated);
        }
        let callers = match self.callers_file {
            None => None,
            Some(path) => {
                let attempt = crate::auth::file::load(&path);
                Some(Loaded {
                    value: attempt.result?,
                    fingerprint: attempt.fingerprint,
                    source: path,
                })
            }
        };
        let files = match (
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_client_ca_file,
        ) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            (None, None, Some(_)) => return Err(ConfigError::ClientCaWithoutTls),
            _ => return Err(ConfigError::HalfTls),
        };
        let tls = match files {
            None => None,
            Some(files) => {
                let attempt = crate::tls::load(&files);
                Some(Loaded {
                    value: Arc::new(attempt.result?),
                    fingerprint: attempt.fingerprint,
                    source: files,
                })
            }
        };
        Ok(SecurityConfig {
            callers,
            tls,
            health_listen: self.health_listen,
            file_poll_interval: self.file_poll_interval,
            cors_allowed_origins: AllowedOrigins::parse(&self.cors_allowed_origins)?,
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
        if self.ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(ConfigError::ZeroDuration("SANDBOX_TTL"));
        }
        config.ttl = self.ttl;
        config.max_verifications =
            at_least_one(self.max_verifications, "SANDBOX_MAX_VERIFICATIONS")?;
        config.max_inbox_messages =
            at_least_one(self.max_inbox_messages, "SANDBOX_MAX_INBOX_MESSAGES")?;
        Ok(Command::Sandbox {
            listen: self.listen,
            config,
        })
    }
}

/// One line saying what was wrong: by environment variable when the value came from there.
/// Echoing the value is safe: the secret settings are plain strings, which never fail to parse.
fn describe_parse_error(error: &clap::Error, args: &[OsString]) -> String {
    let Some(env) = env_source(error, args) else {
        let rendered = error.render().to_string();
        return rendered
            .trim_start_matches("error: ")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => format!("{value:?}"),
        _ => "the value".to_owned(),
    };
    let reason = match (error.source(), error.get(ContextKind::ValidValue)) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) => {
            format!("expected one of {}", valid.join(", "))
        }
        _ => "not a valid value".to_owned(),
    };
    format!("{env}: {value} is invalid: {reason}")
}

/// The environment variable a rejected value was read from; `None` when the value was given on
/// the command line.
fn env_source(error: &clap::Error, args: &[OsString]) -> Option<String> {
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let given = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a.strip_prefix("--")
            .is_some_and(|rest| rest == long || rest.starts_with(&format!("{long}=")))
    });
    if given {
        return None;
    }
    // `--mode sandbox` is a value, not the `sandbox` subcommand.
    let in_sandbox = args
        .windows(2)
        .any(|pair| pair[1] == "sandbox" && pair[0] != "--mode");
    let root = Cli::command();
    let command = if in_sandbox {
        root.find_subcommand("sandbox")?.clone()
    } else {
        root
    };
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?;
    let env = arg.get_env()?.to_string_lossy().into_owned();
    std::env::var_os(&env).map(|_| env)
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

fn at_least_one(cap: usize, what: &'static str) -> Result<usize, ConfigError> {
    if cap == 0 {
        Err(ConfigError::ZeroCap(what))
    } else {
        Ok(cap)
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
    use crate::upstream::base_url::DEFAULT_BASE_URL;

    fn parse(args: &[&str]) -> Result<Command, ConfigError> {
        let mut argv = vec!["itnio-otp-grpc"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("arguments parse")
            .into_command()
    }

    fn serve(args: &[&str]) -> ServeConfig {
        match parse(args).expect("valid config") {
            Command::Serve(config) => *config,
            other => panic!("expected serve, got {other:?}"),
        }
    }

    // These tests pass flags only: they must not depend on the process environment, which the
    // test runner shares. Env names are covered by clap's own `env` handling.
    #[test]
    fn no_credentials_means_sandbox() {
        let config = serve(&["--listen", "127.0.0.1:0"]);
        assert!(matches!(
            config.upstream,
            UpstreamTarget::Sandbox { speed, listen } if speed == 1.0 && listen.port() == 0 && listen.ip().is_loopback()
        ));
    }

    #[test]
    fn sandbox_bounds_parse() {
        let Command::Sandbox { config, .. } = parse(&[
            "sandbox",
            "--ttl",
            "90s",
            "--max-verifications",
            "7",
            "--max-inbox-messages",
            "3",
        ])
        .expect("valid") else {
            panic!("expected the sandbox command");
        };
        assert_eq!(
            (
                config.ttl,
                config.max_verifications,
                config.max_inbox_messages
            ),
            (Some(Duration::from_secs(90)), 7, 3)
        );
        assert!(matches!(
            parse(&["sandbox", "--max-verifications", "0"]),
            Err(ConfigError::ZeroCap("SANDBOX_MAX_VERIFICATIONS"))
        ));
        assert!(matches!(
            parse(&["sandbox", "--max-inbox-messages", "0"]),
            Err(ConfigError::ZeroCap("SANDBOX_MAX_INBOX_MESSAGES"))
        ));
        assert!(matches!(
            parse(&["sandbox", "--ttl", "0s"]),
            Err(ConfigError::ZeroDuration("SANDBOX_TTL"))
        ));
    }

    #[test]
    fn credentials_select_itnio_with_default_url() {
        let config = serve(&[
            "serve",
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--allow-unauthenticated",
        ]);
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
            "--allow-unauthenticated",
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
    fn guard_and_phone_settings_are_read_and_checked() {
        let live = [
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--allow-unauthenticated",
        ];
        let config = serve(&live);
        assert_eq!(config.guard, Policy::default());
        assert_eq!(
            config.phones,
            PhoneRules::default(),
            "live: E.164, no test numbers"
        );
        assert!(
            serve(&[]).phones.test_numbers,
            "sandbox mode takes test numbers"
        );
        let config = serve(&[&live[..], &["--allow-test-numbers", "--guard-dry-run"]].concat());
        assert!(config.phones.test_numbers);
        assert!(config.guard.dry_run);
        let config = serve(&["--phone-default-region", "us"]);
        assert_eq!(config.phones.default_region, "US".parse().ok());
        assert_eq!(
            serve(&["--phone-default-region", ""]).phones.default_region,
            None
        );
        for bad in ["USA", "ZZ", "XT"] {
            assert!(
                matches!(
                    parse(&["--phone-default-region", bad]),
                    Err(ConfigError::DefaultRegion(_))
                ),
                "{bad}"
            );
        }
        let dir = std::env::temp_dir().join(format!("guard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("guard.toml");
        std::fs::write(
            &file,
            "dry_run = true\n[defaults]\nmax_check_attempts = 3\n",
        )
        .expect("write");
        let path = file.to_str().expect("utf-8");
        let config = serve(&["--guard-policy-file", path]);
        assert!(config.guard.dry_run);
        let rules = config.guard.rules("app", "caller");
        assert_eq!(rules.max_check_attempts.map(|n| n.get()), Some(3));
        std::fs::write(&file, "[defaults]\nmax_check_attempts = \"three\"\n").expect("write");
        match parse(&["--guard-policy-file", path]) {
            Err(ConfigError::GuardPolicy(e)) => assert!(e.to_string().contains("guard.toml")),
            other => panic!("expected a policy error, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn transport_limits_parse_with_defaults_and_refuse_zero() {
        let config = serve(&[]);
        assert_eq!(config.transport, TransportConfig::default());
        assert_eq!(config.upstream_concurrency, ConcurrencyConfig::default());
        assert_eq!(
            config.watch.max_records_per_caller,
            crate::watch::DEFAULT_MAX_RECORDS_PER_CALLER
        );
        let config = serve(&[
            "--max-concurrent-streams",
            "7",
            "--max-connections",
            "8",
            "--handshake-timeout",
            "2s",
            "--idle-timeout",
            "3s",
            "--request-body-timeout",
            "6s",
            "--keepalive-interval",
            "4s",
            "--keepalive-timeout",
            "5s",
            "--max-message-bytes",
            "9",
            "--upstream-max-concurrency",
            "10",
            "--upstream-queue-wait",
            "11ms",
            "--watch-max-records-per-caller",
            "12",
        ]);
        assert_eq!(
            config.transport,
            TransportConfig {
                max_concurrent_streams: 7,
                max_connections: 8,
                handshake_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(3),
                request_body_timeout: Duration::from_secs(6),
                keepalive_interval: Duration::from_secs(4),
                keepalive_timeout: Duration::from_secs(5),
                max_message_bytes: 9,
            }
        );
        assert_eq!(
            config.upstream_concurrency,
            ConcurrencyConfig {
                max: 10,
                queue_wait: Duration::from_millis(11)
            }
        );
        assert_eq!(config.watch.max_records_per_caller, 12);
        for (flag, name) in [
            ("--max-concurrent-streams", "GRPC_MAX_CONCURRENT_STREAMS"),
            ("--max-connections", "GRPC_MAX_CONNECTIONS"),
            ("--max-message-bytes", "GRPC_MAX_MESSAGE_BYTES"),
            ("--upstream-max-concurrency", "UPSTREAM_MAX_CONCURRENCY"),
            (
                "--watch-max-records-per-caller",
                "WATCH_MAX_RECORDS_PER_CALLER",
            ),
        ] {
            assert!(
                matches!(parse(&[flag, "0"]), Err(ConfigError::ZeroCap(n)) if n == name),
                "{flag}"
            );
        }
        for (flag, name) in [
            ("--handshake-timeout", "GRPC_HANDSHAKE_TIMEOUT"),
            ("--idle-timeout", "GRPC_IDLE_TIMEOUT"),
            ("--request-body-timeout", "GRPC_REQUEST_BODY_TIMEOUT"),
            ("--keepalive-interval", "GRPC_KEEPALIVE_INTERVAL"),
            ("--keepalive-timeout", "GRPC_KEEPALIVE_TIMEOUT"),
        ] {
            assert!(
                matches!(parse(&[flag, "0s"]), Err(ConfigError::ZeroDuration(n)) if n == name),
                "{flag}"
            );
        }
    }

    #[test]
    fn redis_url_selects_the_shared_store_and_is_checked() {
        assert_eq!(serve(&[]).store, StoreConfig::Memory);
        let config = serve(&["--redis-url", "redis://127.0.0.1:6379/0"]);
        assert_eq!(
            config.store,
            StoreConfig::Redis {
                url: "redis://127.0.0.1:6379/0".into()
            }
        );
        match parse(&["--redis-url", "http://user:pa55word@redis"]) {
            Err(ConfigError::RedisUrl(message)) => assert!(!message.contains("pa55word")),
            other => panic!("expected a REDIS_URL error, got {other:?}"),
        }
    }

    #[test]
    fn modes_are_named_for_logs_and_metrics() {
        assert_eq!(Mode::Live.as_str(), "live");
        assert_eq!(Mode::Sandbox.as_str(), "sandbox");
    }

    #[test]
    fn help_and_version_are_information_not_errors() {
        for flag in ["--help", "--version"] {
            assert!(
                matches!(
                    Cli::parse_args(["itnio-otp-grpc", flag]),
                    Err(CliError::Info(_))
                ),
                "{flag}"
            );
        }
    }

    #[test]
    fn the_flow_settle_wait_is_read() {
        // Not the default (125 s), which the watch config would fall back to.
        let config = serve(&["--watch-flow-settle", "30s"]);
        assert_eq!(config.watch.flow_settle, Duration::from_secs(30));
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let config = serve(&[
            "--api-key",
            "k",
            "--api-secret",
            "hunter2-secret",
            "--allow-unauthenticated",
        ]);
        assert!(!format!("{config:?}").contains("hunter2-secret"));
    }

    #[test]
    fn live_credentials_without_callers_file_need_an_explicit_opt_out() {
        assert!(matches!(
            parse(&["--api-key", "k", "--api-secret", "s"]),
            Err(ConfigError::Unauthenticated)
        ));
        let config = serve(&[
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--allow-unauthenticated",
        ]);
        assert!(config.upstream.is_live() && config.security.callers.is_none());
        assert!(!serve(&[]).upstream.is_live());
    }

    #[test]
    fn security_settings_are_checked() {
        assert!(matches!(
            parse(&["--tls-cert-file", "/c.pem"]),
            Err(ConfigError::HalfTls)
        ));
        assert!(matches!(
            parse(&[
                "--tls-key-file",
                "/k.pem",
                "--tls-client-ca-file",
                "/ca.pem"
            ]),
            Err(ConfigError::HalfTls)
        ));
        assert!(matches!(
            parse(&["--tls-client-ca-file", "/ca.pem"]),
            Err(ConfigError::ClientCaWithoutTls)
        ));
        assert!(matches!(
            parse(&[
                "--tls-cert-file",
                "/nonexistent/c.pem",
                "--tls-key-file",
                "/k.pem"
            ]),
            Err(ConfigError::Tls(_))
        ));
        assert!(matches!(
            parse(&["--callers-file", "/nonexistent/callers.toml"]),
            Err(ConfigError::Callers(_))
        ));
        assert!(matches!(
            parse(&["--file-poll-interval", "0s"]),
            Err(ConfigError::ZeroDuration("FILE_POLL_INTERVAL"))
        ));
        assert!(matches!(
            parse(&["--cors-allowed-origins", "console.example.com"]),
            Err(ConfigError::Origins(_))
        ));
        assert_eq!(
            serve(&["--cors-allowed-origins", "*"])
                .security
                .cors_allowed_origins,
            AllowedOrigins::Any
        );
        let config = serve(&[
            "--health-listen",
            "127.0.0.1:0",
            "--file-poll-interval",
            "250ms",
        ]);
        assert_eq!(config.security.health_listen, "127.0.0.1:0".parse().ok());
        assert_eq!(
            config.security.file_poll_interval,
            Duration::from_millis(250)
        );
        assert!(config.security.tls.is_none());
        assert_eq!(config.security.cors_allowed_origins, AllowedOrigins::None);
    }

    #[test]
    fn a_callers_file_is_loaded_before_anything_listens() {
        let path = std::env::temp_dir().join(format!("itnio-callers-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[[callers]]\nname = \"ops\"\nclient_subject = \"CN=ops\"\nallow = [\"*\"]\n",
        )
        .expect("write temp file");
        let config = serve(&[
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--callers-file",
            path.to_str().expect("utf-8"),
        ]);
        std::fs::remove_file(&path).ok();
        let callers = config.security.callers.expect("callers file");
        assert_eq!(callers.source, path);
        assert_eq!(callers.value.policy.rules()[0].caller.name(), "ops");
    }
}

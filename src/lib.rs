//! itnio-otp-grpc: the ITNIO Tech OTP REST API behind a typed gRPC API.
//!
//! ```text
//!  gRPC caller ──► server (tonic: health, reflection, 5 services)
//!                    └─► service/*   thin adapters: request ─► convert ─► upstream ─► convert ─► response
//!                          ├─► convert/*   proto ⇄ wire, validation with field violations
//!                          ├─► send/*      the three sends: idempotency + quota + guard in one store round trip
//!                          └─► upstream/*  the signed REST client (one choke point), wire types, status codes
//!                                 └─► HTTPS ─► ITNIO (or the in-process sandbox over loopback HTTP)
//!  proto.rs   the generated gRPC types and the descriptor set for reflection
//!  watch/*    WatchRecord: one shared upstream poller per watched record, fanned out to streams
//!  sandbox/*  an emulator of the whole ITNIO OTP API; shares no types with upstream/
//!  telemetry/* per-RPC layer (request id, access line, metrics), /metrics, log setup
//!  error.rs   the one place upstream and validation failures become gRPC statuses
//!  fuzzing.rs entry points of the fuzz targets in fuzz/ and their invariants (hidden, not API)
//!  auth/*     callers file, bearer-token / client-certificate check, the tower layer that attaches the Caller
//!  caller.rs  who is calling (attached by the auth layer) and on which ITNIO account
//!  accounts.rs  the ITNIO accounts by name: each call goes to its caller's account
//!  transport/ limits of the gRPC port: connections, streams, handshake/idle timeouts, message size
//!  tls.rs     rustls for the gRPC port (optionally mTLS), certificates reloaded on change
//!  web.rs     gRPC-Web's CORS policy (CORS_ALLOWED_ORIGINS)
//!  reload.rs  hot-swapped configuration: SIGHUP or a file change, a broken file keeps the old one
//!  send/      the send pipeline: SendVerification, SendCustomCode and ResendVerification from a
//!             checked request to the response; one store round trip admits a send (request_id
//!             claim, caller quota, guard), ITNIO is called, one more settles it; SendError, quota
//!  idempotency/  request_id records (AIP-155): claim, settle, what a repeat reads
//!  guard/     the send guard against SMS pumping: destinations, velocity, pending sends, check cap
//!  phone.rs   phone numbers parsed against the numbering plans: country and number type
//!  store/     shared state (idempotency records, quotas, guard counters, poll budget): memory or
//!             Redis, behind one small trait with a batch (admit) and writes (settle)
//!  config.rs  flags + environment, validated before anything listens; main.rs only wires it up
//!  task.rs    the one way to start a background task: inside the span that started it
//!  small leaves that many modules share, so none has to import another for them:
//!    limits.rs    LimitError, a request past one of the service's own limits (error.rs maps it)
//!    secret.rs    Secret, an API secret that never shows in Debug output or logs
//!    shutdown.rs  `stopped`, the shutdown signal every long-lived loop selects on
//!    hex.rs       lower_hex, for the request signature and the guard's store keys
//! ```
//!
//! Arrows point down only: `server` and `config` sit on top, `error` above the modules whose
//! failures it maps, the small leaves at the bottom. `tests/module_graph.rs` fails on any cycle
//! between these modules (and between the files of `sandbox/`).

// Unit tests start tasks and read clocks as they need: the rules of `clippy.toml` are for the
// code that ships, which the non-test build of this crate checks.
#![cfg_attr(
    test,
    allow(
        clippy::disallowed_methods,
        reason = "tests spawn plain tasks; the shipped code is checked without cfg(test)"
    )
)]

pub mod accounts;
pub mod auth;
pub mod caller;
pub mod config;
pub mod convert;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod hex;
pub mod idempotency;
pub mod limits;
pub mod phone;
pub mod proto;
pub mod reload;
pub mod sandbox;
pub mod secret;
pub mod send;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod task;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod upstream;
pub mod watch;
pub mod web;

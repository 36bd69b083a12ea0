//! Transport limits of the gRPC port: how many connections, how many streams per connection,
//! how long a connection may take to start and may sit idle, HTTP/2 keepalive, and the largest
//! request message.
//!
//! ```text
//!  TCP accept ─► connection::accept  over GRPC_MAX_CONNECTIONS: closed at once
//!                 └─► Guarded socket  no request within GRPC_HANDSHAKE_TIMEOUT (TLS + preface +
//!                      │              first headers), or no stream for GRPC_IDLE_TIMEOUT: closed
//!                      └─► hyper/h2   SETTINGS_MAX_CONCURRENT_STREAMS, keepalive PINGs
//!                           └─► StreamLayer      marks the connection busy while a stream lives;
//!                                │               request body not ended within
//!                                │               GRPC_REQUEST_BODY_TIMEOUT: DEADLINE_EXCEEDED
//!                                └─► … services  messages over GRPC_MAX_MESSAGE_BYTES:
//!                                                RESOURCE_EXHAUSTED (MessageSizeLayer)
//! ```
//!
//! The plaintext health port (`HEALTH_LISTEN_ADDR`) has its own listener and is not counted, so
//! probes still get an answer while the gRPC port is full.

pub mod connection;
mod message_size;
mod streams;

use std::time::Duration;

pub use connection::{Connections, Guarded, accept};
pub use message_size::MessageSizeLayer;
pub use streams::StreamLayer;

/// Default `GRPC_MAX_CONCURRENT_STREAMS`: what most gRPC servers and proxies advertise.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default `GRPC_MAX_CONNECTIONS`: well below a typical descriptor limit (the upstream pool,
/// the health and admin ports need descriptors too).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `GRPC_MAX_MESSAGE_BYTES`: the largest request of this API (a flow with all its
/// nodes, a template text) is a few kB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The limits of the gRPC port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// HTTP/2 streams one connection may have open at once (advertised in SETTINGS).
    pub max_concurrent_streams: u32,
    /// Open connections; beyond it new ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time from accept to the first request headers (TLS and HTTP/2 preface included).
    pub handshake_timeout: Duration,
    /// Time a connection may stay open without any stream.
    pub idle_timeout: Duration,
    /// Time from a stream's headers to the end of its request (one message in this API).
    pub request_body_timeout: Duration,
    /// How often an HTTP/2 PING checks that the peer is still there.
    pub keepalive_interval: Duration,
    /// How long the PING's answer may take before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Largest request message, in bytes (encoded, as on the wire).
    pub max_message_bytes: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            request_body_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

//! The admin HTTP server on its own port (`METRICS_LISTEN_ADDR`): `GET /metrics` in the
//! Prometheus text format. Kept off the gRPC port so scraping never competes with callers and
//! the port can stay cluster-internal.

use std::future::Future;

use axum::{Router, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

/// The Prometheus text exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    super::metrics::install();
    let router = Router::new().route("/metrics", get(metrics));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        super::metrics::render(),
    )
}

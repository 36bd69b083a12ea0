//! The one place the crate starts a background task.
//!
//! A task started with a bare `tokio::spawn` loses the span it was started in: its log lines no
//! longer carry the request id, the watched account or the component that owns it. `spawn` runs
//! the future inside the span current at the call, so a background task logs like the code that
//! started it. `clippy.toml` bans `tokio::spawn` everywhere else in `src/` and names this module.

use std::future::Future;

use tokio::task::JoinHandle;
use tracing::{Instrument, Span};

/// Starts `future` on the current runtime inside the span current at this call.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_in(Span::current(), future)
}

/// Starts `future` on the current runtime inside `span` (a span made for the task itself).
#[allow(
    clippy::disallowed_methods,
    reason = "the one sanctioned tokio::spawn: the future is instrumented first"
)]
pub fn spawn_in<F>(span: Span, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.instrument(span))
}

#[cfg(test)]
mod tests {
    use tracing::{Level, Span, span};

    fn current_name() -> Option<&'static str> {
        Span::current().metadata().map(|m| m.name())
    }

    /// A task runs in the span current where it was started, or in the one it was given.
    #[tokio::test]
    async fn a_task_runs_in_the_span_it_was_started_in() {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let outer = span!(Level::INFO, "outer");
        let inherited = outer.in_scope(|| super::spawn(async { current_name() }));
        assert_eq!(inherited.await.expect("task"), Some("outer"));
        let own = super::spawn_in(span!(Level::INFO, "own"), async { current_name() });
        assert_eq!(own.await.expect("task"), Some("own"));
    }
}

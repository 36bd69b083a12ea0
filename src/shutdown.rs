//! The server's shutdown signal as the long-lived loops see it: a `tokio::sync::watch` of `bool`
//! that turns `true` once shutdown begins. The server, the record pollers and the file
//! reloaders all select on [`stopped`]; it sits at the bottom of the crate so none of them has
//! to import another for it.

use tokio::sync::watch;

/// Resolves once the server's shutdown signal (a `watch` turned true) has fired.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens after shutdown began.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

//! No cold first send: libphonenumber's metadata (and the regular expressions it brings) is loaded
//! before health says SERVING, not by the first SendVerification (72.8 ms in the access log once,
//! ~1 ms for the next ones).
//!
//! The check is deterministic rather than a timing: the metadata is a process-wide lazy static,
//! so this file holds exactly one test, the only code of its process that could load it. Keep it
//! that way: a second test here could load the metadata first and hide a missing warm-up.

mod common;

use once_cell::sync::Lazy;
use phonenumber::metadata::DATABASE;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn the_phone_metadata_is_loaded_before_health_says_serving() {
    assert!(
        Lazy::get(&DATABASE).is_none(),
        "nothing in this process may load the metadata before the server starts"
    );
    let app = common::spawn_app().await;
    let reply = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(reply.status, ServingStatus::Serving as i32);
    assert!(
        Lazy::get(&DATABASE).is_some(),
        "health says SERVING but the phone number metadata is not loaded: the first send would load it"
    );
    app.shutdown().await;
}

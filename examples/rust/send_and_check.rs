//! Sends a code to a sandbox test number and checks it: the smallest useful client.
//!
//! Run against a server in sandbox mode:
//! `ITNIO_OTP_GRPC_ADDR=localhost:50051 cargo run --example send_and_check`
//!
//! Outside this repository, generate the same clients from `proto/` with `tonic-prost-build`
//! (see this crate's `build.rs`) instead of using `itnio_otp_grpc::proto`.

use itnio_otp_grpc::proto::v1::{
    CheckVerificationRequest, CreateAppRequest, CreateTemplateRequest, SendVerificationRequest,
    app_service_client::AppServiceClient, template_service_client::TemplateServiceClient,
    verification_service_client::VerificationServiceClient,
};
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("ITNIO_OTP_GRPC_ADDR").unwrap_or_else(|_| "localhost:50051".into());
    // One HTTP/2 connection, shared by every client (clones are cheap).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let suffix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() % 100_000_000;

    // An app holds code expiry and send limits; a template shapes the code and the message.
    let app = AppServiceClient::new(channel.clone())
        .create_app(CreateAppRequest {
            name: format!("rust-app-{suffix}"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .app
        .ok_or("CreateApp returned no app")?;
    let template = TemplateServiceClient::new(channel.clone())
        .create_template(CreateTemplateRequest {
            app_id: app.app_id.clone(),
            name: format!("rust-tpl-{suffix}"),
            text: "Your code is ##code##".into(),
            code_length: Some(4),
            ..Default::default()
        })
        .await?
        .into_inner()
        .template
        .ok_or("CreateTemplate returned no template")?;

    // In sandbox mode, numbers starting with 999 are test numbers; a 4-digit numeric code is "1234".
    let mut verifications = VerificationServiceClient::new(channel);
    let sent = verifications
        .send_verification(SendVerificationRequest {
            app_id: app.app_id,
            template_id: template.template_id,
            phone_number: "+999 00 1234 5678".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "sent verification {} to {}",
        sent.verification_id, sent.phone_number
    );

    let checked = verifications
        .check_verification(CheckVerificationRequest {
            verification_id: sent.verification_id,
            code: "1234".into(),
        })
        .await?
        .into_inner();
    // A wrong or expired code is not an error: it is a match state.
    println!("match state: {}", checked.match_state().as_str_name());
    Ok(())
}

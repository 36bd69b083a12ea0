//! End to end: apps, templates and flows through gRPC, against the sandbox over real HTTP.

mod common;

use itnio_otp_grpc::proto::v1::{self as pb, Channel, CodeType, FlowTrigger, Language, LimitUnit};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn apps_are_created_read_and_updated() {
    let app = common::spawn_app().await;
    let mut apps = app.apps();
    let created = apps
        .create_app(pb::CreateAppRequest {
            name: "checkout".into(),
            code_expiry_minutes: Some(10),
            period_total_send_limit: Some(pb::PeriodLimit {
                enabled: true,
                unit: LimitUnit::Day as i32,
                period: 1,
                limit: 10_000_000_000,
            }),
            period_phone_send_limit: None,
        })
        .await
        .expect("create")
        .into_inner()
        .app
        .expect("app");
    assert_eq!(created.name, "checkout");
    assert_eq!(created.code_expiry_minutes, 10);
    assert!(created.create_time.is_some());
    let limit = created.period_total_send_limit.expect("limit");
    assert_eq!((limit.enabled, limit.limit), (true, 10_000_000_000));

    let fetched = apps
        .get_app(pb::GetAppRequest {
            app_id: created.app_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .app
        .expect("app");
    assert_eq!(fetched.app_id, created.app_id);

    let updated = apps
        .update_app(pb::UpdateAppRequest {
            app_id: created.app_id.clone(),
            name: "checkout-v2".into(),
            code_expiry_minutes: Some(3),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
        .app
        .expect("app");
    assert_eq!(
        (updated.name.as_str(), updated.code_expiry_minutes),
        ("checkout-v2", 3)
    );
    assert!(!updated.period_total_send_limit.is_some_and(|l| l.enabled));
    app.shutdown().await;
}

#[tokio::test]
async fn duplicate_and_unknown_apps_map_to_precise_codes() {
    let app = common::spawn_app().await;
    let mut apps = app.apps();
    let request = pb::CreateAppRequest {
        name: "duplicate".into(),
        ..Default::default()
    };
    apps.create_app(request.clone()).await.expect("first");
    let status = apps.create_app(request).await.expect_err("second");
    assert_eq!(status.code(), Code::AlreadyExists);
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("info");
    assert_eq!(info.reason, "DATA_EXISTS");
    assert_eq!(info.metadata["upstream_status"], "-20");
    assert_eq!(info.metadata["endpoint"], "POST /app/add");

    let status = apps
        .get_app(pb::GetAppRequest {
            app_id: "nope1234".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    app.shutdown().await;
}

#[tokio::test]
async fn templates_round_trip_with_every_setting() {
    let app = common::spawn_app().await;
    let (app_id, _) = app.app_and_template("tpl").await;
    let mut templates = app.templates();
    let created = templates
        .create_template(pb::CreateTemplateRequest {
            app_id: app_id.clone(),
            name: "voice-login".into(),
            text: "Your code is ##code##".into(),
            code_type: CodeType::Alphanumeric as i32,
            code_length: Some(8),
            speech_rate: Some(70),
            language: Language::Jp as i32,
            max_duration_seconds: Some(120),
            repeat_count: Some(3),
            sender_id: "ACME".into(),
        })
        .await
        .expect("create")
        .into_inner()
        .template
        .expect("template");
    assert!(created.template_id.parse::<u64>().is_ok());
    assert_eq!(created.code_type, CodeType::Alphanumeric as i32);
    assert_eq!(created.language, Language::Jp as i32);
    assert_eq!((created.code_length, created.repeat_count), (8, 3));
    assert_eq!(created.speech_rate, 70);
    assert_eq!(created.max_duration_seconds, 120);
    assert_eq!(
        created.sender_id, "ACME",
        "the sender id reaches ITNIO and comes back"
    );
    assert_eq!(
        (created.app_id.as_str(), created.name.as_str()),
        (app_id.as_str(), "voice-login")
    );

    let updated = templates
        .update_template(pb::UpdateTemplateRequest {
            template_id: created.template_id.clone(),
            name: "voice-login-2".into(),
            text: "##code## again".into(),
            ..Default::default()
        })
        .await
        .expect("update")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(updated.name, "voice-login-2");
    assert_eq!(updated.code_length, 4, "defaults apply on replace");

    let fetched = templates
        .get_template(pb::GetTemplateRequest {
            template_id: created.template_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .template
        .expect("template");
    assert_eq!(fetched.text, "##code## again");
    assert_eq!(fetched.name, "voice-login-2");
    assert_eq!(
        (fetched.speech_rate, fetched.max_duration_seconds),
        (50, 59),
        "an update replaces every setting, so the documented defaults apply"
    );
    assert_eq!(fetched.sender_id, "", "the replaced sender id is gone");

    let listed = templates
        .list_templates(pb::ListTemplatesRequest {})
        .await
        .expect("list")
        .into_inner()
        .templates;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|t| t.template_id == created.template_id));
    app.shutdown().await;
}

#[tokio::test]
async fn flows_round_trip() {
    let app = common::spawn_app().await;
    let mut flows = app.flows();
    let node = |seconds, trigger: FlowTrigger, channel: Channel| pb::FlowNode {
        waiting_time_seconds: seconds,
        trigger: trigger as i32,
        channel: channel as i32,
        channel_cut: false,
    };
    let created = flows
        .create_flow(pb::CreateFlowRequest {
            name: "sms-then-call".into(),
            nodes: vec![node(30, FlowTrigger::SendFailed, Channel::Call)],
        })
        .await
        .expect("create")
        .into_inner()
        .flow
        .expect("flow");
    assert_eq!(created.nodes.len(), 1);
    assert_eq!(created.nodes[0].channel, Channel::Call as i32);

    let updated = flows
        .update_flow(pb::UpdateFlowRequest {
            flow_id: created.flow_id.clone(),
            name: "sms-then-call".into(),
            nodes: vec![
                node(30, FlowTrigger::SendFailed, Channel::Call),
                node(120, FlowTrigger::NotVerified, Channel::Sms),
            ],
        })
        .await
        .expect("update")
        .into_inner()
        .flow
        .expect("flow");
    assert_eq!(updated.nodes[1].trigger, FlowTrigger::NotVerified as i32);

    let fetched = flows
        .get_flow(pb::GetFlowRequest {
            flow_id: created.flow_id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .flow
        .expect("flow");
    assert_eq!(fetched.nodes.len(), 2);
    let listed = flows
        .list_flows(pb::ListFlowsRequest {})
        .await
        .expect("list")
        .into_inner()
        .flows;
    assert_eq!(listed.len(), 1);
    app.shutdown().await;
}

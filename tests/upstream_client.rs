//! The upstream client against a real HTTP server (wiremock on a random port): the exact
//! requests it sends, how it decodes the documented replies, and where each failure lands.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use itnio_otp_grpc::upstream::{
    AppRequest, CheckRequest, ConversionRateReport, ConversionReport, Endpoint, FlowNode,
    FlowRequest, OrderRecordRequest, PeriodLimit, ResendRequest, SendRequest, TemplateRequest,
    UpstreamClient, UpstreamConfig, UpstreamError, client::HttpVersion, sign,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "bDqJFiq9";
const SECRET: &str = "7bz1lzh9-very-secret";
const PHONE: &str = "91856321412";
const CODE: &str = "583901";

fn client_with(server: &MockServer, timeout: Duration) -> UpstreamClient {
    UpstreamClient::new(UpstreamConfig {
        base_url: format!("{}/otp", server.uri()),
        api_key: KEY.into(),
        api_secret: SECRET.into(),
        timeout,
    })
    .expect("valid config")
}

fn client(server: &MockServer) -> UpstreamClient {
    client_with(server, Duration::from_secs(5))
}

fn ok(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"status":"0","reason":"success","data":data}))
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 1, "exactly one request expected");
    requests.remove(0)
}

/// Headers every call carries, with a signature that matches the timestamp actually sent.
fn assert_signed(req: &Request) {
    let header = |name: &str| {
        req.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .expect("ascii header")
            .to_owned()
    };
    assert_eq!(header("Api-Key"), KEY);
    let timestamp = header("Timestamp");
    let now = chrono::Utc::now().timestamp();
    let sent: i64 = timestamp.parse().expect("unix seconds");
    assert!((now - sent).abs() < 60, "timestamp is current unix seconds");
    assert_eq!(header("Sign"), sign(KEY, SECRET, &timestamp));
    assert_eq!(header("Content-Type"), "application/json;charset=UTF-8");
    assert!(header("User-Agent").starts_with("itnio-otp-grpc/"));
}

fn send_request() -> SendRequest {
    SendRequest {
        app_id: "mRELxtHc".into(),
        template_id: Some(455),
        code: None,
        flow_id: Some(1),
        to: PHONE.into(),
        channel: Some("sms".into()),
        order_id: None,
    }
}

#[tokio::test]
async fn create_app_sends_signed_json_with_numbers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/app/add"))
        .respond_with(ok(json!({"name":"test_app","appId":"mRELxtHc",
            "periodTotalSendLimit":{"unit":1,"period":1,"limit":1,"enabled":true},
            "periodPhoneSendLimit":{"unit":1,"period":1,"limit":1,"enabled":true},
            "codeExpiry":5,"createTime":"2022-01-01T00:00:00+08:00"})))
        .expect(1)
        .mount(&server)
        .await;
    let limit = PeriodLimit {
        enabled: true,
        unit: Some(1),
        period: Some(1),
        limit: Some(1),
    };
    let app = client(&server)
        .create_app(
            &AppRequest {
                app_id: None,
                name: "test_app".into(),
                code_expiry: Some(5),
                period_total_send_limit: Some(limit.clone()),
                period_phone_send_limit: Some(PeriodLimit::disabled()),
            },
            None,
        )
        .await
        .expect("created");
    assert_eq!(app.app_id, "mRELxtHc");
    assert_eq!(app.period_total_send_limit, Some(limit));

    let req = only_request(&server).await;
    assert_signed(&req);
    assert_eq!(
        req.body_json::<Value>().expect("json body"),
        json!({"name":"test_app","codeExpiry":5,
            "periodTotalSendLimit":{"enabled":true,"unit":1,"period":1,"limit":1},
            "periodPhoneSendLimit":{"enabled":false,"unit":null,"period":null,"limit":null}})
    );
}

#[tokio::test]
async fn updates_use_put_and_repeat_the_id_in_the_body() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/otp/app/update/mRELxtHc"))
        .respond_with(ok(json!({"appId":"mRELxtHc","name":"renamed"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/otp/template/update/455"))
        .respond_with(ok(
            json!({"templateId":455,"name":"name","text":"##code##"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/otp/flow/update/1"))
        .respond_with(ok(json!({"flowId":1,"name":"name",
            "flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":0}]})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let app = c
        .update_app(
            "mRELxtHc",
            &AppRequest {
                name: "renamed".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("updated app");
    assert_eq!(app.name, "renamed");
    let template = c
        .update_template(
            "455",
            &TemplateRequest {
                name: "name".into(),
                text: "##code##".into(),
                code_length: Some(6),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("updated template");
    assert_eq!(template.template_id, "455");
    let flow = c
        .update_flow(
            "1",
            &FlowRequest {
                flow_id: None,
                name: "name".into(),
                flow: vec![FlowNode {
                    waiting_time: 30,
                    status: 1,
                    channel: "sms".into(),
                    channel_cut: Some(0),
                }],
            },
            None,
        )
        .await
        .expect("updated flow");
    assert_eq!(flow.flow_id, "1");
    assert_eq!(flow.flow[0].waiting_time, 30);

    let requests = server.received_requests().await.expect("recording is on");
    let bodies: Vec<Value> = requests
        .iter()
        .inspect(|r| assert_signed(r))
        .map(|r| r.body_json().expect("json body"))
        .collect();
    assert_eq!(bodies[0], json!({"appId":"mRELxtHc","name":"renamed"}));
    assert_eq!(
        bodies[1],
        json!({"templateId":"455","name":"name","text":"##code##","codeLength":6})
    );
    assert_eq!(
        bodies[2],
        json!({"flowId":"1","name":"name",
            "flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":0}]})
    );
}

#[tokio::test]
async fn get_is_signed_and_path_ids_are_percent_encoded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/otp/verification/record/a%2Fb%3Fc"))
        .respond_with(ok(json!({"verificationId":"a/b?c",
            "verifications":{"matched":-1,"channel":"sms"},
            "sms":{"submitTm":"2022-07-12T13:39:45+08:00","mcc":"460","mnc":10,"status":-1}})))
        .expect(1)
        .mount(&server)
        .await;
    let record = client(&server)
        .get_record("a/b?c", Some(Duration::from_secs(2)))
        .await
        .expect("record");
    assert_eq!(record.sms.len(), 1, "sms as an object becomes one attempt");
    assert_eq!(record.sms[0].mcc, Some(460));
    assert!(record.call.is_empty());

    let req = only_request(&server).await;
    assert_signed(&req);
    assert!(req.body.is_empty(), "GET has no body");
}

#[tokio::test]
async fn order_record_decodes_the_documented_example() {
    let server = MockServer::start().await;
    let body = r#"{"status":"0","reason":"success","data":{"orderId":"1234566","flowId":1,
 "verifications":{"matched":0,"verifiedDate":"2022-07-12T13:39:47+08:00","oriReceiver":"91856321412","channel":"call","orderId":"1234566"},
 "sms":[{"submitTm":"2022-07-12T13:39:45+08:00","sendTm":"2022-07-12T13:39:45+08:00","doneTm":"2022-07-12T13:39:49+08:00",
   "mcc":460,"mnc":10,"sender":"","chargeCnt":1,"pay":"0.000002","status":0,"reason":"successR"}],
 "call":[{"terminationCode":100005,"terminationReason":"Temporarily Unavailable","submitTime":"2022-07-12T13:59:55+08:00",
   "callTime":"2022-07-12T13:59:56+08:00","ringingTime":"2022-07-12T13:59:56+08:00","answerTime":"2022-07-12T13:59:56+08:00",
   "hangupTime":"2022-07-12T13:59:56+08:00","callDuration":0,"chargedDuration":0,"displayNum":null,
   "billPeriodstring":"20+20","code":"661","rate":"0.138","costEur":"0"}]}}"#;
    Mock::given(method("POST"))
        .and(path("/otp/verification/orderId/record"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let record = client(&server)
        .get_order_record(
            &OrderRecordRequest {
                app_id: "ad454212".into(),
                order_id: "1234566".into(),
            },
            None,
        )
        .await
        .expect("record");
    assert_eq!(record.order_id.as_deref(), Some("1234566"));
    assert_eq!(record.flow_id.as_deref(), Some("1"));
    assert_eq!(
        record.verifications.as_ref().and_then(|v| v.matched),
        Some(0)
    );
    assert_eq!(record.sms.len(), 1);
    assert_eq!(record.sms[0].reason.as_deref(), Some("successR"));
    assert_eq!(record.call.len(), 1);
    assert_eq!(record.call[0].cost.as_deref(), Some("0"));
    assert_eq!(record.call[0].bill_periodstring.as_deref(), Some("20+20"));

    let req = only_request(&server).await;
    assert_signed(&req);
    assert_eq!(
        req.body_json::<Value>().expect("json"),
        json!({"appId":"ad454212","orderId":"1234566"})
    );
}

#[tokio::test]
async fn send_with_numeric_ids_and_numeric_status() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/verification/send"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status":0,
            "reason":"success","data":{"verificationId":"22206051443051000003","to":PHONE,"channel":"sms"}})))
        .expect(1)
        .mount(&server)
        .await;
    let sent = client(&server)
        .send_verification(&send_request(), None)
        .await
        .expect("sent");
    assert_eq!(sent.verification_id, "22206051443051000003");
    let req = only_request(&server).await;
    assert_signed(&req);
    assert_eq!(
        req.body_json::<Value>().expect("json"),
        json!({"appId":"mRELxtHc","templateId":455,"flowId":1,"to":PHONE,"channel":"sms"})
    );
}

#[tokio::test]
async fn lists_accept_arrays_objects_and_null() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/otp/flow/list"))
        .respond_with(ok(json!([{"flowId":1,"name":"测试任务流",
            "flow":[{"waitingTime":30,"status":2,"channel":"sms","channelCut":0}]}])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/otp/template/list"))
        .respond_with(ok(json!({"templateId":1,"name":"only","text":"##code##"})))
        .mount(&server)
        .await;
    let c = client(&server);
    let flows = c.list_flows(None).await.expect("flows");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].flow[0].status, 2);
    let templates = c.list_templates(None).await.expect("templates");
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].template_id, "1");

    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/otp/template/list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status":"0","data":null})))
        .mount(&server)
        .await;
    assert!(c.list_templates(None).await.expect("empty").is_empty());
}

#[tokio::test]
async fn report_endpoints_accept_replies_without_data() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/backfillRate"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status":"0","reason":"success"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .report_conversion_rate(
            &ConversionRateReport {
                app_id: "mRELxtHc".into(),
                mcc: "460".into(),
                backfill_number: Some("100".into()),
                backfill_cardinal_number: Some("1000".into()),
                backfill_now: "10".into(),
                callback_time: "2023-01-29T09:59:58+08:00".into(),
            },
            None,
        )
        .await
        .expect("reported");
    assert_signed(&only_request(&server).await);
}

#[tokio::test]
async fn creates_post_their_bodies_and_decode_the_created_resource() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/template/add"))
        .respond_with(ok(
            json!({"templateId":455,"appId":"mRELxtHc","name":"login",
            "text":"##code## is your code","codeLength":6,"senderId":"ACME"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/otp/flow/add"))
        .respond_with(ok(json!({"flowId":7,"name":"fallback",
            "flow":[{"waitingTime":60,"status":2,"channel":"call","channelCut":1}]})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let template = c
        .create_template(
            &TemplateRequest {
                app_id: Some("mRELxtHc".into()),
                name: "login".into(),
                text: "##code## is your code".into(),
                code_length: Some(6),
                sender_id: Some("ACME".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("created template");
    assert_eq!(
        (template.template_id.as_str(), template.sender_id.as_deref()),
        ("455", Some("ACME"))
    );
    let flow = c
        .create_flow(
            &FlowRequest {
                flow_id: None,
                name: "fallback".into(),
                flow: vec![FlowNode {
                    waiting_time: 60,
                    status: 2,
                    channel: "call".into(),
                    channel_cut: Some(1),
                }],
            },
            None,
        )
        .await
        .expect("created flow");
    assert_eq!(flow.flow_id, "7");
    assert_eq!(flow.flow[0].channel, "call");

    let requests = server.received_requests().await.expect("recording is on");
    let bodies: Vec<Value> = requests
        .iter()
        .inspect(|r| assert_signed(r))
        .map(|r| r.body_json().expect("json body"))
        .collect();
    assert_eq!(
        bodies,
        [
            json!({"appId":"mRELxtHc","name":"login","text":"##code## is your code",
                "codeLength":6,"senderId":"ACME"}),
            json!({"name":"fallback",
                "flow":[{"waitingTime":60,"status":2,"channel":"call","channelCut":1}]}),
        ]
    );
}

#[tokio::test]
async fn resend_decodes_the_new_id_and_a_conversion_report_posts_its_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/verification/resend"))
        .respond_with(ok(
            json!({"verificationId":"22206051443051000004","to":PHONE,
            "channel":"call"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/otp/postback/backfill"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status":"0","reason":"success"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let sent = c
        .resend_verification(
            &ResendRequest {
                verification_id: "22206051443051000003".into(),
                channel: Some("call".into()),
            },
            None,
        )
        .await
        .expect("resent");
    assert_eq!(sent.verification_id, "22206051443051000004");
    assert_eq!(sent.channel.as_deref(), Some("call"));
    c.report_conversion(
        &ConversionReport {
            app_id: "mRELxtHc".into(),
            verification_id: "22206051443051000004".into(),
            number: Some(PHONE.into()),
            time: "1681184764000".into(),
        },
        None,
    )
    .await
    .expect("reported");

    let requests = server.received_requests().await.expect("recording is on");
    let sent: Vec<(String, Value)> = requests
        .iter()
        .inspect(|r| assert_signed(r))
        .map(|r| (r.url.path().to_owned(), r.body_json().expect("json body")))
        .collect();
    assert_eq!(
        sent,
        [
            (
                "/otp/verification/resend".to_owned(),
                json!({"verificationId":"22206051443051000003","channel":"call"})
            ),
            (
                "/otp/postback/backfill".to_owned(),
                json!({"appId":"mRELxtHc","verificationId":"22206051443051000004",
                    "number":PHONE,"time":"1681184764000"})
            ),
        ]
    );
}

#[tokio::test]
async fn non_zero_status_is_rejected_with_code_and_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/verification/sendRule"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status":"-27","reason":"Period total send limit"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .send_custom_code(
            &SendRequest {
                code: Some(CODE.into()),
                ..send_request()
            },
            None,
        )
        .await
        .expect_err("rejected");
    match &err {
        UpstreamError::Rejected {
            endpoint,
            status,
            reason,
        } => {
            assert_eq!(*endpoint, Endpoint::VerificationSendRule);
            assert_eq!(*status, -27);
            assert_eq!(reason, "Period total send limit");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.upstream_status().map(|s| s.name()),
        Some("PERIOD_TOTAL_LIMIT")
    );
}

#[tokio::test]
async fn expired_timestamp_is_retried_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/verification/verify"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status":"-16","reason":"timestamp expires"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/otp/verification/verify"))
        .respond_with(ok(json!({"verificationId":"v1","matched":0})))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    let checked = client(&server)
        .check_verification(
            &CheckRequest {
                verification_id: "v1".into(),
                code: CODE.into(),
            },
            None,
        )
        .await
        .expect("second attempt succeeds");
    assert_eq!(checked.matched, Some(0));
    let requests = server.received_requests().await.expect("recording is on");
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_signed(r);
    }
}

#[tokio::test]
async fn expired_timestamp_twice_is_rejected() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/otp/app/details/mRELxtHc"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status":"-16","reason":"timestamp expires"})),
        )
        .expect(2)
        .mount(&server)
        .await;
    let err = client(&server)
        .get_app("mRELxtHc", None)
        .await
        .expect_err("rejected");
    assert!(
        matches!(err, UpstreamError::Rejected { status: -16, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn http_errors_are_http() {
    for code in [500u16, 429, 404, 302] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/otp/flow/details/1"))
            .respond_with(
                ResponseTemplate::new(code)
                    .insert_header("Location", "http://elsewhere.invalid/")
                    .set_body_string(format!("oops {PHONE}")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server)
            .get_flow("1", None)
            .await
            .expect_err("http error");
        match &err {
            UpstreamError::Http { endpoint, status } => {
                assert_eq!((*endpoint, *status), (Endpoint::FlowDetails, code));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.to_string().contains(PHONE));
    }
}

#[tokio::test]
async fn unreadable_bodies_are_decode_errors_without_values() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/otp/template/details/1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!("<html>{PHONE}</html>")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/otp/template/details/2"))
        .respond_with(ok(json!({"templateId":2,"codeLength":format!("x{PHONE}")})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/otp/template/details/3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"reason":"no status"})))
        .mount(&server)
        .await;
    let c = client(&server);
    for id in ["1", "2", "3"] {
        let err = c.get_template(id, None).await.expect_err("decode");
        assert!(
            matches!(
                err,
                UpstreamError::Decode {
                    endpoint: Endpoint::TemplateDetails,
                    ..
                }
            ),
            "{err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PHONE), "{shown}");
    }
}

#[tokio::test]
async fn slow_reply_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/otp/flow/list"))
        .respond_with(ok(json!([])).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = client_with(&server, Duration::from_millis(150))
        .list_flows(None)
        .await
        .expect_err("timeout");
    assert!(
        matches!(
            err,
            UpstreamError::Timeout {
                endpoint: Endpoint::FlowList
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn caller_deadline_shorter_than_config_timeout_applies() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/otp/flow/list"))
        .respond_with(ok(json!([])).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let started = Instant::now();
    let err = client_with(&server, Duration::from_secs(10))
        .list_flows(Some(Duration::from_millis(150)))
        .await
        .expect_err("timeout");
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // A longer deadline than the config timeout does not extend it.
    let started = Instant::now();
    let err = client_with(&server, Duration::from_millis(150))
        .list_flows(Some(Duration::from_secs(60)))
        .await
        .expect_err("timeout");
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn refused_connection_is_connect() {
    // Held, never listening: refused, and no other test can listen on it meanwhile.
    let (_reserved, addr) = common::sockets::refusing_addr();
    let c = UpstreamClient::new(UpstreamConfig {
        base_url: format!("http://{addr}/otp"),
        api_key: KEY.into(),
        api_secret: SECRET.into(),
        timeout: Duration::from_secs(2),
    })
    .expect("valid config");
    let err = c
        .get_record("22206051443051000003", None)
        .await
        .expect_err("refused");
    match &err {
        UpstreamError::Connect { endpoint, .. } => {
            assert_eq!(*endpoint, Endpoint::VerificationRecord)
        }
        other => panic!("unexpected {other:?}"),
    }
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("22206051443051000003"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[tokio::test]
async fn nothing_printable_leaks_secret_phone_or_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/otp/verification/sendRule"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status":"-29","reason":format!("content {CODE} to {PHONE} has sensitive words")}),
        ))
        .mount(&server)
        .await;
    let c = client(&server);
    let req = SendRequest {
        code: Some(CODE.into()),
        ..send_request()
    };
    let err = c.send_custom_code(&req, None).await.expect_err("rejected");
    let check = CheckRequest {
        verification_id: "v1".into(),
        code: CODE.into(),
    };
    let shown = format!("{err} {err:?} {req:?} {check:?} {c:?} {:?}", c.config());
    for needle in [SECRET, PHONE, CODE] {
        assert!(!shown.contains(needle), "{needle} leaked: {shown}");
    }
}

/// An HTTP/1.1 server that reads one request and writes `reply` raw, then closes (with a TCP
/// reset when `reset`). Returns its base URL.
async fn raw_server(reply: &'static [u8], reset: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/otp", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the client closed before a whole request");
            request.extend_from_slice(&buf[..n]);
        }
        stream.write_all(reply).await.expect("write");
        stream.flush().await.expect("flush");
        if reset {
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO)).expect("linger");
        }
    });
    base
}

fn raw_client(base: &str) -> UpstreamClient {
    UpstreamClient::new(UpstreamConfig {
        base_url: base.to_owned(),
        api_key: KEY.into(),
        api_secret: SECRET.into(),
        timeout: Duration::from_secs(5),
    })
    .expect("valid config")
}

#[tokio::test]
async fn a_connection_lost_under_the_body_is_interrupted_and_bad_framing_is_a_decode_error() {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"status\":\"0\",";
    for reset in [false, true] {
        // Fewer bytes than announced, then a FIN (UnexpectedEof) or a reset.
        let err = raw_client(&raw_server(HEAD, reset).await)
            .list_flows(None)
            .await
            .expect_err("cut short");
        match &err {
            UpstreamError::Interrupted { endpoint, detail } => {
                assert_eq!(*endpoint, Endpoint::FlowList);
                assert!(
                    detail.starts_with("connection lost while reading the reply"),
                    "{detail}"
                );
            }
            other => panic!("reset {reset}: expected Interrupted, got {other:?}"),
        }
        assert!(err.may_have_been_processed());
    }
    // A chunk size that is no hex number: the reply itself is broken, not the connection.
    let bad_chunk: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    let err = raw_client(&raw_server(bad_chunk, false).await)
        .list_flows(None)
        .await
        .expect_err("bad framing");
    assert!(
        matches!(
            err,
            UpstreamError::Decode {
                endpoint: Endpoint::FlowList,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn http2_is_spoken_only_when_configured() {
    let (base_url, connections) = common::h2_only_upstream().await;
    let config = UpstreamConfig {
        base_url: base_url.clone(),
        api_key: KEY.into(),
        api_secret: SECRET.into(),
        timeout: Duration::from_secs(5),
    };
    let http2 =
        UpstreamClient::new_with_http_version(config.clone(), HttpVersion::Http2).expect("http2");
    assert_eq!(http2.http_version(), HttpVersion::Http2);
    // Several calls at once share the one connection as streams.
    let calls = (0..8).map(|_| http2.list_flows(None));
    for flows in futures_util::future::join_all(calls).await {
        assert!(flows.expect("HTTP/2 call").is_empty());
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    // The default lets ALPN choose, and there is no ALPN on http://: HTTP/1.1, which an
    // HTTP/2-only server cannot answer.
    let http1 = UpstreamClient::new(config).expect("valid config");
    assert_eq!(http1.http_version(), HttpVersion::Auto);
    let refused = http1
        .list_flows(None)
        .await
        .expect_err("HTTP/1.1 to h2-only");
    assert!(
        matches!(refused, UpstreamError::Interrupted { .. }),
        "{refused:?}"
    );
}

//! End to end: the sandbox as a test double. Codes are read from the inbox (JSON and the live
//! SSE stream) and checked through the real gRPC server, which calls the sandbox under the
//! vendor's own base path `/otp`. Everything runs on port 0; waits are polls with deadlines.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use itnio_otp_grpc::proto::v1::{
    self as pb, Channel, FlowTrigger, MatchState, app_service_client::AppServiceClient,
    flow_service_client::FlowServiceClient, verification_service_client::VerificationServiceClient,
};
use itnio_otp_grpc::sandbox::Sandbox;
use serde_json::Value;
use tokio::sync::oneshot;

/// How long any single wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// A sandbox (100× speed), the gRPC server calling it at `<sandbox>/otp`, and an HTTP client.
struct Double {
    sandbox: Sandbox,
    channel: tonic::transport::Channel,
    server_stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    sandbox_url: String,
    http: reqwest::Client,
    sandbox_stop: Option<oneshot::Sender<()>>,
    sandbox_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Double {
    let common::RunningSandbox {
        sandbox,
        url: sandbox_url,
        stop: sandbox_stop,
        task: sandbox_task,
        ..
    } = common::start_sandbox(common::sandbox_config()).await;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr, server) = common::spawn_server(
        common::upstream_config(&format!("{sandbox_url}/otp")),
        async move {
            let _ = stop_rx.await;
        },
    )
    .await;
    Double {
        sandbox,
        channel: common::connect(addr).await,
        server_stop: Some(stop_tx),
        server,
        sandbox_url,
        http: reqwest::Client::new(),
        sandbox_stop: Some(sandbox_stop),
        sandbox_task,
    }
}

/// One Server-Sent Events connection, read event by event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

/// One event: its `event:` name (empty for plain messages) and `data:`.
#[derive(Debug)]
struct Event {
    name: String,
    data: String,
}

impl Events {
    async fn next(&mut self) -> Event {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut name, mut data) = (String::new(), Vec::new());
                    for line in block.lines() {
                        if let Some(value) = line.strip_prefix("event:") {
                            name = value.trim().to_owned();
                        } else if let Some(value) = line.strip_prefix("data:") {
                            data.push(value.trim_start().to_owned());
                        }
                    }
                    if name.is_empty() && data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    return Event {
                        name,
                        data: data.join("\n"),
                    };
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event before the deadline")
    }

    /// The next plain message event, as JSON.
    async fn message(&mut self) -> Value {
        let event = self.next().await;
        assert_eq!(event.name, "", "{event:?}");
        serde_json::from_str(&event.data).unwrap()
    }
}

impl Double {
    fn verifications(&self) -> VerificationServiceClient<tonic::transport::Channel> {
        VerificationServiceClient::new(self.channel.clone())
    }

    /// Creates an app and a 4-digit numeric template; returns (app_id, template_id).
    async fn app_and_template(&self, name: &str) -> (String, String) {
        common::app_and_template(&self.channel, name).await
    }

    async fn inbox(&self, query: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/_sandbox/inbox.json?{query}", self.sandbox_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Polls `inbox.json` until it holds at least `count` messages for `to`.
    async fn wait_for_messages(&self, to: &str, count: usize) -> Vec<Value> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let messages = self.inbox(&format!("to={to}")).await;
                if messages.as_array().unwrap().len() >= count {
                    return messages.as_array().unwrap().clone();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the messages before the deadline")
    }

    async fn stream(&self, query: &str) -> Events {
        self.stream_after(query, None).await
    }

    /// A stream resumed after message `last_event_id`, as a reconnecting EventSource asks.
    async fn stream_after(&self, query: &str, last_event_id: Option<u64>) -> Events {
        let mut request = self.http.get(format!(
            "{}/_sandbox/inbox/stream?{query}",
            self.sandbox_url
        ));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            response,
            buffer: String::new(),
        }
    }

    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_sandbox/stats", self.sandbox_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn send(&self, request: pb::SendVerificationRequest) -> pb::SendVerificationResponse {
        self.verifications()
            .send_verification(request)
            .await
            .expect("send")
            .into_inner()
    }

    async fn check(&self, verification_id: &str, code: &str) -> i32 {
        self.verifications()
            .check_verification(pb::CheckVerificationRequest {
                verification_id: verification_id.into(),
                code: code.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .match_state
    }

    async fn stop(mut self) {
        if let Some(stop) = self.server_stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await.unwrap();
        if let Some(stop) = self.sandbox_stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(DEADLINE, self.sandbox_task)
            .await
            .expect("the sandbox stops even with open streams")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn an_sms_to_a_real_looking_number_is_read_from_the_inbox_and_matches() {
    let double = start().await;
    let (app_id, template_id) = double.app_and_template("inbox-sms").await;
    let sent = double
        .send(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id: template_id.clone(),
            phone_number: "+44 7400 900123".into(),
            order_id: "inbox-order-1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(sent.phone_number, "447400900123");

    let messages = double.wait_for_messages("447400900123", 1).await;
    let message = &messages[0];
    let code = message["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 4);
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(message["to"], "447400900123");
    assert_eq!(message["channel"], "sms");
    assert_eq!(message["text"], format!("{code} is your code"));
    assert_eq!(message["verificationId"], sent.verification_id.as_str());
    assert_eq!(message["orderId"], "inbox-order-1");
    assert_eq!(message["appId"], app_id.as_str());
    assert_eq!(message["templateId"].to_string(), template_id);
    let time = message["time"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(time).unwrap();

    // `to` accepts the number as people write it; `after` excludes the message itself.
    assert_eq!(
        double
            .inbox("to=%2B44%207400%20900123")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(double.inbox("to=447400900124").await, serde_json::json!([]));
    let after = time.replace('+', "%2B");
    assert_eq!(
        double
            .inbox(&format!("to=447400900123&after={after}"))
            .await,
        serde_json::json!([])
    );

    assert_eq!(
        double.check(&sent.verification_id, &code).await,
        MatchState::Matched as i32
    );
    double.stop().await;
}

#[tokio::test]
async fn a_call_arrives_on_the_stream_and_its_code_matches() {
    let double = start().await;
    let (app_id, template_id) = double.app_and_template("inbox-call").await;
    let mut events = double.stream("to=4915112345678").await;
    // Another number's message must not reach this stream.
    double
        .send(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id: template_id.clone(),
            phone_number: "+4915112345679".into(),
            ..Default::default()
        })
        .await;
    let sent = double
        .send(pb::SendVerificationRequest {
            app_id,
            template_id,
            phone_number: "+4915112345678".into(),
            channel: Channel::Call as i32,
            ..Default::default()
        })
        .await;
    let message = events.message().await;
    assert_eq!(message["to"], "4915112345678");
    assert_eq!(message["channel"], "call");
    assert_eq!(message["verificationId"], sent.verification_id.as_str());
    assert_eq!(message["status"], "sending");
    let code = message["code"].as_str().unwrap();
    assert_eq!(
        double.check(&sent.verification_id, code).await,
        MatchState::Matched as i32
    );
    double.stop().await;
}

#[tokio::test]
async fn a_flow_fallback_call_is_pushed_when_it_fires_and_matches() {
    let double = start().await;
    let (app_id, template_id) = double.app_and_template("inbox-flow").await;
    let flow = FlowServiceClient::new(double.channel.clone())
        .create_flow(pb::CreateFlowRequest {
            name: "inbox-fallback".into(),
            nodes: vec![pb::FlowNode {
                waiting_time_seconds: 30,
                trigger: FlowTrigger::SendFailed as i32,
                channel: Channel::Call as i32,
                channel_cut: false,
            }],
        })
        .await
        .expect("flow")
        .into_inner()
        .flow
        .expect("flow");
    // 99901…: a test number whose SMS always fails; calls are answered.
    let mut events = double.stream("to=99901123456").await;
    let sent = double
        .send(pb::SendVerificationRequest {
            app_id,
            template_id,
            flow_id: flow.flow_id,
            phone_number: "+99901123456".into(),
            ..Default::default()
        })
        .await;
    let sms = events.message().await;
    assert_eq!(
        (sms["channel"].as_str(), sms["finalStatus"].as_str()),
        (Some("sms"), Some("failed"))
    );
    assert_eq!(
        sms["code"],
        common::TEST_CODE,
        "test numbers keep their known code"
    );
    // Nobody reads the record: the call is pushed when the flow fires it.
    let call = events.message().await;
    assert_eq!(call["channel"], "call");
    assert_eq!(call["finalStatus"], "delivered");
    assert_eq!(call["verificationId"], sent.verification_id.as_str());
    let code = call["code"].as_str().unwrap();
    assert_eq!(
        double.check(&sent.verification_id, code).await,
        MatchState::Matched as i32
    );
    let listed = double.wait_for_messages("99901123456", 2).await;
    assert_eq!(
        listed.len(),
        2,
        "each attempt is delivered once: {listed:?}"
    );
    assert_eq!(
        listed.len(),
        2,
        "each attempt is delivered once: {listed:?}"
    );
    assert_eq!(
        (listed[0]["channel"].as_str(), listed[1]["channel"].as_str()),
        (Some("call"), Some("sms"))
    );
    double.stop().await;
}

#[tokio::test]
async fn a_reconnecting_stream_replays_what_it_missed() {
    let double = start().await;
    let (app_id, template_id) = double.app_and_template("inbox-replay").await;
    let mut ids = Vec::new();
    for number in ["+4915112340001", "+4915112340002", "+4915112340001"] {
        let sent = double
            .send(pb::SendVerificationRequest {
                app_id: app_id.clone(),
                template_id: template_id.clone(),
                phone_number: number.into(),
                // Two codes to one number on purpose: not the pending one again.
                replace_pending: true,
                ..Default::default()
            })
            .await;
        ids.push(sent.verification_id);
    }
    let first_id = double.inbox("to=4915112340001").await[1]["id"]
        .as_u64()
        .unwrap();
    // Resumed after the first message: the third (same number) is replayed, the second (another number) is not.
    let mut events = double
        .stream_after("to=4915112340001", Some(first_id))
        .await;
    let replayed = events.message().await;
    assert_eq!(replayed["verificationId"], ids[2].as_str());
    // Then live messages follow.
    let live = double
        .send(pb::SendVerificationRequest {
            app_id,
            template_id,
            phone_number: "+4915112340001".into(),
            replace_pending: true,
            ..Default::default()
        })
        .await;
    assert_eq!(
        events.message().await["verificationId"],
        live.verification_id.as_str()
    );
    double.stop().await;
}

#[tokio::test]
async fn closed_streams_leave_nothing_behind_and_shutdown_ends_open_ones() {
    let double = start().await;
    let first = double.stream("").await;
    let _second = double.stream("to=99900123456").await;
    assert_eq!(double.stats().await["stored"]["liveStreams"], 2);
    drop(first);
    tokio::time::timeout(DEADLINE, async {
        while double.stats().await["stored"]["liveStreams"] != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed stream is dropped");
    // `_second` is still open: stopping must not wait for it.
    double.stop().await;
}

#[tokio::test]
async fn reset_clears_everything_but_ids_keep_counting() {
    let double = start().await;
    let (app_id, template_id) = double.app_and_template("inbox-reset").await;
    double
        .send(pb::SendVerificationRequest {
            app_id: app_id.clone(),
            template_id: template_id.clone(),
            phone_number: common::TEST_NUMBER.into(),
            ..Default::default()
        })
        .await;
    double.wait_for_messages("9990012345678", 1).await;
    let reset = double
        .http
        .post(format!("{}/_sandbox/reset", double.sandbox_url))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(double.inbox("").await, serde_json::json!([]));
    let stats = double.stats().await;
    assert_eq!(
        (
            stats["total"].as_u64(),
            stats["stored"]["verifications"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let gone = AppServiceClient::new(double.channel.clone())
        .get_app(pb::GetAppRequest { app_id })
        .await
        .expect_err("the app is gone");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let (app_id, next_template) = double.app_and_template("inbox-reset").await;
    assert!(next_template.parse::<i64>().unwrap() > template_id.parse::<i64>().unwrap());
    // The same through the library handle.
    double
        .send(pb::SendVerificationRequest {
            app_id,
            template_id: next_template,
            phone_number: common::TEST_NUMBER.into(),
            ..Default::default()
        })
        .await;
    double.wait_for_messages("9990012345678", 1).await;
    double.sandbox.reset();
    assert_eq!(double.inbox("").await, serde_json::json!([]));
    assert_eq!(double.stats().await["stored"]["verifications"], 0);
    double.stop().await;
}

#[tokio::test]
async fn bad_inbox_queries_are_400() {
    let double = start().await;
    for query in ["to=abc", "after=yesterday"] {
        for path in ["inbox.json", "inbox/stream"] {
            let response = double
                .http
                .get(format!("{}/_sandbox/{path}?{query}", double.sandbox_url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{path}?{query}");
        }
    }
    double.stop().await;
}

#[tokio::test]
async fn the_page_and_its_script_are_served_with_a_strict_policy() {
    let double = start().await;
    let page = double
        .http
        .get(format!("{}/_sandbox/inbox", double.sandbox_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline'; script"));
    let html = page.text().await.unwrap();
    assert!(html.contains("inbox.js") && !html.contains("http://") && !html.contains("https://"));
    let script = double
        .http
        .get(format!("{}/_sandbox/inbox.js", double.sandbox_url))
        .send()
        .await
        .unwrap();
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        !script.text().await.unwrap().contains("innerHTML"),
        "message text is never parsed as HTML"
    );
    double.stop().await;
}

/// A correctly signed vendor request, like the vendor's SDK or a curl script sends.
async fn signed(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Value {
    use md5::{Digest, Md5};
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sign: String = Md5::digest(format!(
        "{}{}{timestamp}",
        common::API_KEY,
        common::API_SECRET
    ))
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    let mut request = http
        .request(method, url)
        .header("Api-Key", common::API_KEY)
        .header("Timestamp", timestamp)
        .header("Sign", sign)
        .header("Content-Type", "application/json;charset=utf-8");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn the_api_answers_under_every_base_path_with_ids_that_never_occur_in_a_base_url() {
    let double = start().await;
    let (http, url) = (&double.http, &double.sandbox_url);
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let app = signed(
        http,
        post.clone(),
        &format!("{url}/v3/otp/app/add"),
        Some(serde_json::json!({"name":"base-paths"})),
    )
    .await;
    let app_id = app["data"]["appId"].as_str().unwrap();
    let template = signed(
        http,
        post.clone(),
        &format!("{url}/otp/template/add"),
        Some(serde_json::json!({"appId": app_id, "name":"base-paths", "text":"##code##"})),
    )
    .await;
    let template_id = template["data"]["templateId"].as_i64().unwrap();
    assert!(
        template_id > itnio_otp_grpc::sandbox::TEMPLATE_ID_BASE,
        "{template}"
    );
    assert!(!url.contains(&template_id.to_string()));
    let flow = signed(
        http,
        post,
        &format!("{url}/flow/add"),
        Some(serde_json::json!({"name":"base-paths","flow":[{"waitingTime":30,"status":1,"channel":"call"}]})),
    )
    .await;
    let flow_id = flow["data"]["flowId"].as_i64().unwrap();
    assert!(flow_id > itnio_otp_grpc::sandbox::FLOW_ID_BASE, "{flow}");
    for base in ["", "/otp", "/v3/otp"] {
        let details = signed(
            http,
            get.clone(),
            &format!("{url}{base}/template/details/{template_id}"),
            None,
        )
        .await;
        assert_eq!(details["data"]["templateId"], template_id, "{base}");
        let details = signed(
            http,
            get.clone(),
            &format!("{url}{base}/flow/details/{flow_id}"),
            None,
        )
        .await;
        assert_eq!(details["data"]["flowId"], flow_id, "{base}");
    }
    // sendRule: the caller's code, and without a template a default text.
    let sent = signed(
        http,
        reqwest::Method::POST,
        &format!("{url}/v3/otp/verification/sendRule"),
        Some(serde_json::json!({"appId": app_id, "to": "4915112349999", "code": "98765"})),
    )
    .await;
    assert_eq!(sent["status"], "0", "{sent}");
    let message = &double.wait_for_messages("4915112349999", 1).await[0];
    assert_eq!(
        (message["code"].as_str(), message["text"].as_str()),
        (Some("98765"), Some("Your verification code is 98765"))
    );
    assert!(message["templateId"].is_null());
    // Unsigned is still refused under a base path; counters use the bare route names.
    let unsigned: Value = http
        .get(format!("{url}/otp/flow/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unsigned["status"], "-1");
    let stats = double.stats().await;
    assert_eq!(stats["byEndpoint"]["GET /template/details/{templateId}"], 3);
    assert_eq!(stats["byEndpoint"]["POST /app/add"], 1);
    assert_eq!(stats["byEndpoint"]["GET /flow/list"], 1);
    double.stop().await;
}

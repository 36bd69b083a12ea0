//! End-to-end tests of the sandbox over real HTTP: bind port 0, serve, and talk to it with a
//! plain HTTP client that signs requests itself, exactly as the wire format documents.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use itnio_otp_grpc::sandbox::{FLOW_ID_BASE, Sandbox, SandboxConfig};
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const KEY: &str = "bDqJFiq9";
const SECRET: &str = "7bz1lzh9";

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A running sandbox and a client for it; the server stops when this is dropped.
struct Harness {
    base: String,
    http: reqwest::Client,
    sandbox: Sandbox,
    _stop: oneshot::Sender<()>,
}

async fn start(config: SandboxConfig) -> Harness {
    let running = common::start_sandbox(config).await;
    Harness {
        base: running.url,
        http: reqwest::Client::new(),
        sandbox: running.sandbox,
        _stop: running.stop,
    }
}

/// A sandbox whose emulated time runs `speed` times faster than real time.
async fn at_speed(speed: f64) -> Harness {
    let mut config = SandboxConfig::new(KEY, SECRET);
    config.speed = speed;
    start(config).await
}

/// Real-time speed, for tests where time must not matter.
async fn real_time() -> Harness {
    at_speed(1.0).await
}

/// Speed 100: a 30 s flow wait takes 0.3 s.
async fn fast() -> Harness {
    at_speed(100.0).await
}

impl Harness {
    /// Sends a request with the given header values (None leaves a header out).
    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        key: Option<&str>,
        timestamp: Option<&str>,
        sign: Option<&str>,
    ) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in [("Api-Key", key), ("Timestamp", timestamp), ("Sign", sign)] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json;charset=UTF-8")
                .body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "every API reply is HTTP 200");
        response.json().await.unwrap()
    }

    /// A correctly signed request.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let timestamp = unix_now().to_string();
        let sign = md5_hex(&format!("{KEY}{SECRET}{timestamp}"));
        let body = body.map(|b| b.to_string());
        self.raw(
            method,
            path,
            body.as_deref(),
            Some(KEY),
            Some(&timestamp),
            Some(&sign),
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// Creates an app and returns its appId.
    async fn app(&self, body: Value) -> String {
        let reply = self.post("/app/add", body).await;
        assert_eq!(reply["status"], "0", "{reply}");
        reply["data"]["appId"].as_str().unwrap().to_owned()
    }

    /// Creates a template for `app_id` and returns its templateId.
    async fn template(&self, app_id: &str, name: &str) -> i64 {
        let body = json!({"appId": app_id, "name": name, "text": "##code## is your code", "codeType": 1, "codeLength": 4});
        let reply = self.post("/template/add", body).await;
        assert_eq!(reply["status"], "0", "{reply}");
        reply["data"]["templateId"].as_i64().unwrap()
    }

    /// An app plus a template, ready to send.
    async fn ready(&self, app_name: &str) -> (String, i64) {
        let app_id = self.app(json!({"name": app_name})).await;
        let template_id = self.template(&app_id, &format!("{app_name}-t")).await;
        (app_id, template_id)
    }

    async fn send(&self, body: Value) -> Value {
        self.post("/verification/send", body).await
    }

    async fn verify(&self, id: &str, code: &str) -> Value {
        self.post(
            "/verification/verify",
            json!({"verificationId": id, "code": code}),
        )
        .await
    }

    async fn record(&self, id: &str) -> Value {
        self.get(&format!("/verification/record/{id}")).await
    }
}

fn status(reply: &Value) -> &str {
    reply["status"]
        .as_str()
        .unwrap_or_else(|| panic!("status is not a string: {reply}"))
}

/// Asserts an error envelope: the status, the EN reason, and no `data` key.
fn assert_error(reply: &Value, code: &str, reason: &str) {
    assert_eq!(status(reply), code, "{reply}");
    assert_eq!(reply["reason"], reason, "{reply}");
    assert!(reply.get("data").is_none(), "errors carry no data: {reply}");
}

/// Reads with `read` until `ready` holds, failing after 10 s of real time with the last reply:
/// the sandbox's emulated clock runs on wall time, so waiting for it is polling, not sleeping.
async fn eventually<F, Fut>(what: &str, mut read: F, ready: impl Fn(&Value) -> bool) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = read().await;
        if ready(&reply) {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 10 s; last reply: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_sandbox_accepts_the_documented_signature_example() {
    // The API document's example, header values copied literally: key, secret, 2021 timestamp.
    let mut config = SandboxConfig::new(KEY, SECRET);
    config.clock_skew = Duration::from_secs(100 * 365 * 24 * 3600);
    let h = start(config).await;
    let call = |sign: &'static str| {
        h.raw(
            Method::GET,
            "/template/list",
            None,
            Some(KEY),
            Some("1630468800"),
            Some(sign),
        )
    };
    assert_eq!(status(&call("05d7a50893e22a5c4bb3216ae3396c7c").await), "0");
    assert_error(
        &call("05d7a50893e22a5c4bb3216ae3396c7d").await,
        "-1",
        "Authentication error",
    );
}

#[tokio::test]
async fn authentication_failures() {
    let h = real_time().await;
    let ts = unix_now().to_string();
    let good = md5_hex(&format!("{KEY}{SECRET}{ts}"));
    let path = "/template/list";
    let wrong_key = h
        .raw(
            Method::GET,
            path,
            None,
            Some("other"),
            Some(&ts),
            Some(&good),
        )
        .await;
    assert_error(&wrong_key, "-1", "Authentication error");
    let wrong_sign = h
        .raw(
            Method::GET,
            path,
            None,
            Some(KEY),
            Some(&ts),
            Some(&md5_hex("x")),
        )
        .await;
    assert_error(&wrong_sign, "-1", "Authentication error");
    let missing = h
        .raw(Method::GET, path, None, Some(KEY), Some(&ts), None)
        .await;
    assert_error(&missing, "-1", "Authentication error");
    let upper = h
        .raw(
            Method::GET,
            path,
            None,
            Some(KEY),
            Some(&ts),
            Some(&good.to_uppercase()),
        )
        .await;
    assert_eq!(status(&upper), "0");

    let old = (unix_now() - 301).to_string();
    let stale = h
        .raw(
            Method::GET,
            path,
            None,
            Some(KEY),
            Some(&old),
            Some(&md5_hex(&format!("{KEY}{SECRET}{old}"))),
        )
        .await;
    assert_error(&stale, "-16", "timestamp expires");
    let word = h
        .raw(
            Method::GET,
            path,
            None,
            Some(KEY),
            Some("now"),
            Some(&md5_hex(&format!("{KEY}{SECRET}now"))),
        )
        .await;
    assert_error(&word, "-16", "timestamp expires");
    // Failed requests are counted too.
    assert_eq!(h.sandbox.request_count_for("GET /template/list"), 6);
}

#[tokio::test]
async fn ip_allow_list() {
    let mut config = SandboxConfig::new(KEY, SECRET);
    config.allowed_ips = vec!["10.1.2.3".parse().unwrap()];
    let h = start(config).await;
    assert_error(&h.get("/flow/list").await, "-2", "Restricted IP access");

    let mut config = SandboxConfig::new(KEY, SECRET);
    config.allowed_ips = vec!["127.0.0.1".parse().unwrap()];
    let h = start(config).await;
    assert_eq!(status(&h.get("/flow/list").await), "0");
}

#[tokio::test]
async fn apps_lifecycle_with_quirky_inputs() {
    let h = real_time().await;
    let sample = json!({"name":"test_app","codeExpiry":"5","appId":"ignored",
        "periodTotalSendLimit":{"enabled":true,"unit":1,"period":1,"limit":"1"},
        "periodPhoneSendLimit":{"enabled":false,"unit":null,"period":null,"limit":null}});
    let added = h.post("/app/add", sample).await;
    assert_eq!(status(&added), "0", "{added}");
    assert_eq!(added["reason"], "success");
    let app = &added["data"];
    let app_id = app["appId"].as_str().unwrap();
    assert_eq!(app_id.len(), 8);
    assert_eq!(app["codeExpiry"], 5);
    assert_eq!(
        app["periodTotalSendLimit"],
        json!({"unit":1,"period":1,"limit":1,"enabled":true})
    );
    assert_eq!(app["periodPhoneSendLimit"]["enabled"], false);
    assert!(app["createTime"].as_str().unwrap().ends_with("+08:00"));

    let details = h.get(&format!("/app/details/{app_id}")).await;
    assert_eq!(details["data"], *app);

    let updated = h
        .put(
            &format!("/app/update/{app_id}"),
            json!({"appId": app_id, "name":"renamed","codeExpiry":null}),
        )
        .await;
    assert_eq!(status(&updated), "0", "{updated}");
    assert_eq!(
        (
            updated["data"]["name"].as_str(),
            updated["data"]["codeExpiry"].as_i64()
        ),
        (Some("renamed"), Some(5))
    );
    assert_eq!(updated["data"]["createTime"], app["createTime"]);

    let other = h.app(json!({"name":"other_app"})).await;
    assert_error(
        &h.post("/app/add", json!({"name":"renamed"})).await,
        "-20",
        "Data existing",
    );
    assert_error(
        &h.put(&format!("/app/update/{other}"), json!({"name":"renamed"}))
            .await,
        "-20",
        "Data existing",
    );
    assert_error(
        &h.get("/app/details/nothere1").await,
        "-24",
        "Data unexisting",
    );
    assert_error(
        &h.put("/app/update/nothere1", json!({"name":"whatever"}))
            .await,
        "-24",
        "Data unexisting",
    );
    assert_error(
        &h.post("/app/add", json!({"name":"abc"})).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.post("/app/add", json!({"name":"good name","codeExpiry":0}))
            .await,
        "-22",
        "Parameter exception",
    );
    let half_limit = json!({"name":"good name","periodTotalSendLimit":{"enabled":true,"unit":1}});
    assert_error(
        &h.post("/app/add", half_limit).await,
        "-22",
        "Parameter exception",
    );
    let not_json = h.call(Method::POST, "/app/add", None).await;
    assert_error(&not_json, "-22", "Parameter exception");
}

#[tokio::test]
async fn templates_lifecycle() {
    let h = real_time().await;
    let app_id = h.app(json!({"name":"tmpl_app"})).await;
    let body = json!({"appId": app_id, "name":"name","text":"##code## is your verification,expires in 5 minutes! ",
        "codeType":"1","codeLength":"6","speechRate":50,"language":"EN","maxDuration":59,"repeatCnt":1,"senderId":"senderId"});
    let added = h.post("/template/add", body).await;
    assert_eq!(status(&added), "0", "{added}");
    let id = added["data"]["templateId"].as_i64().unwrap();
    assert_eq!(
        (
            added["data"]["codeLength"].as_i64(),
            added["data"]["appId"].as_str()
        ),
        (Some(6), Some(app_id.as_str()))
    );

    let update = json!({"templateId": id.to_string(), "name":"renamed","text":" ##code## is yours","codeType":2,"language":null});
    let updated = h.put(&format!("/template/update/{id}"), update).await;
    assert_eq!(status(&updated), "0", "{updated}");
    assert_eq!(
        (
            updated["data"]["codeType"].as_i64(),
            updated["data"]["codeLength"].as_i64()
        ),
        (Some(2), Some(4))
    );
    assert_eq!(updated["data"]["language"], "EN");
    assert_eq!(updated["data"]["appId"], app_id.as_str());

    assert_eq!(
        h.get(&format!("/template/details/{id}")).await["data"],
        updated["data"]
    );
    let second = h.template(&app_id, "second").await;
    assert_eq!(second, id + 1);
    let list = h.get("/template/list").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));

    let dup = json!({"appId": app_id, "name":"renamed","text":"##code##"});
    assert_error(&h.post("/template/add", dup).await, "-20", "Data existing");
    let no_app = json!({"appId":"nothere1","name":"fresh","text":"##code##"});
    assert_error(
        &h.post("/template/add", no_app).await,
        "-24",
        "Data unexisting",
    );
    let no_placeholder = json!({"appId": app_id, "name":"fresh","text":"no code"});
    assert_error(
        &h.post("/template/add", no_placeholder).await,
        "-22",
        "Parameter exception",
    );
    let bad_language = json!({"appId": app_id, "name":"fresh","text":"##code##","language":"FR"});
    assert_error(
        &h.post("/template/add", bad_language).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.get("/template/details/999").await,
        "-24",
        "Data unexisting",
    );
    assert_error(
        &h.get("/template/details/abc").await,
        "-22",
        "Parameter exception",
    );
}

#[tokio::test]
async fn flows_lifecycle() {
    let h = real_time().await;
    let added = h.post("/flow/add", json!({"name":"name","flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":1}]})).await;
    assert_eq!(
        added,
        json!({"status":"0","reason":"success","data":{"flowId":FLOW_ID_BASE + 1,"name":"name",
        "flow":[{"waitingTime":30,"status":1,"channel":"sms","channelCut":1}]}})
    );
    let update = json!({"flowId":"1","name":"name","flow":[{"waitingTime":"30","status":2,"channel":"call","channelCut":"0"}]});
    let first = FLOW_ID_BASE + 1;
    let updated = h.put(&format!("/flow/update/{first}"), update).await;
    assert_eq!(
        updated["data"]["flow"][0],
        json!({"waitingTime":30,"status":2,"channel":"call","channelCut":0})
    );
    assert_eq!(
        h.get(&format!("/flow/details/{first}")).await["data"],
        updated["data"]
    );
    h.post(
        "/flow/add",
        json!({"name":"other","flow":[{"waitingTime":60,"status":1,"channel":"call"}]}),
    )
    .await;
    let list = h.get("/flow/list").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));

    assert_error(
        &h.put(
            &format!("/flow/update/{}", first + 1),
            json!({"name":"name","flow":[{"waitingTime":30,"status":1,"channel":"sms"}]}),
        )
        .await,
        "-20",
        "Data existing",
    );
    assert_error(
        &h.post("/flow/add", json!({"name":"third","flow":[]})).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.post(
            "/flow/add",
            json!({"name":"third","flow":[{"waitingTime":121,"status":1,"channel":"sms"}]}),
        )
        .await,
        "-22",
        "Parameter exception",
    );
    assert_error(&h.get("/flow/details/7").await, "-24", "Data unexisting");
}

#[tokio::test]
async fn send_and_verify_a_test_number() {
    let h = real_time().await;
    let (app_id, template_id) = h.ready("verify_app").await;
    let sent = h.send(json!({"appId": app_id, "templateId": template_id.to_string(), "flowId": null, "to":"99900123456","channel":"sms","orderId":null})).await;
    assert_eq!(status(&sent), "0", "{sent}");
    let id = sent["data"]["verificationId"].as_str().unwrap();
    assert_eq!(id.len(), 20);
    assert_eq!(
        (
            sent["data"]["to"].as_str(),
            sent["data"]["channel"].as_str()
        ),
        (Some("99900123456"), Some("sms"))
    );
    assert!(sent["data"].get("snaUrl").is_none());

    let wrong = h.verify(id, "9999").await;
    assert_eq!(
        (status(&wrong), wrong["data"]["matched"].as_i64()),
        ("0", Some(2))
    );
    let right = h.verify(id, "1234").await;
    assert_eq!(
        right["data"],
        json!({"verificationId": id, "to":"99900123456","channel":"sms","matched":0})
    );
    assert_eq!(h.verify(id, "1234").await["data"]["matched"], 4);
    assert_eq!(h.record(id).await["data"]["verifications"]["matched"], 0);
    let unknown = h.verify("22206051443051000003", "1234").await;
    assert_eq!(
        (status(&unknown), unknown["data"]["matched"].as_i64()),
        ("0", Some(3))
    );
    assert_error(&h.verify(id, "123").await, "-22", "Parameter exception");
}

#[tokio::test]
async fn codes_expire_in_emulated_time() {
    let mut config = SandboxConfig::new(KEY, SECRET);
    config.speed = 600.0; // 1 minute of codeExpiry lasts 0.1 s
    let h = start(config).await;
    let app_id = h.app(json!({"name":"expiry_app","codeExpiry":1})).await;
    let template_id = h.template(&app_id, "expiry_t").await;
    let sent = h
        .send(json!({"appId": app_id, "templateId": template_id, "to":"99900123456"}))
        .await;
    let id = sent["data"]["verificationId"].as_str().unwrap();
    eventually(
        "code expiry",
        || h.record(id),
        |r| r["data"]["verifications"]["matched"] == 5,
    )
    .await;
    assert_eq!(h.verify(id, "1234").await["data"]["matched"], 5);
    assert_eq!(h.record(id).await["data"]["verifications"]["matched"], 5);
}

#[tokio::test]
async fn send_validation_and_lookups() {
    let h = real_time().await;
    let (app_id, template_id) = h.ready("send_app").await;
    let base = json!({"appId": app_id, "templateId": template_id, "to":"91856321412"});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    assert_error(
        &h.send(with("to", json!("12345"))).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.send(with("to", json!("9185632141a"))).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.send(with("channel", json!("fax"))).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.send(with("templateId", Value::Null)).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.send(with("orderId", json!("x".repeat(65)))).await,
        "-22",
        "Parameter exception",
    );
    assert_error(
        &h.send(with("templateId", json!(999))).await,
        "-24",
        "Data unexisting",
    );
    assert_error(
        &h.send(with("flowId", json!(999))).await,
        "-24",
        "Data unexisting",
    );
    assert_error(
        &h.send(with("appId", json!("nothere1"))).await,
        "-24",
        "Data unexisting",
    );

    assert_eq!(
        status(&h.send(with("orderId", json!("order-1"))).await),
        "0"
    );
    assert_error(
        &h.send(with("orderId", json!("order-1"))).await,
        "-20",
        "Data existing",
    );

    let sna = h.send(with("channel", json!("sna"))).await;
    assert!(
        sna["data"]["snaUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://sandbox.invalid/sna/")
    );

    let rule = json!({"appId": app_id, "templateId": null, "code":"12345", "to":"91856321412"});
    let rule_sent = h.post("/verification/sendRule", rule).await;
    assert_eq!(status(&rule_sent), "0", "{rule_sent}");
    let id = rule_sent["data"]["verificationId"].as_str().unwrap();
    assert_eq!(h.verify(id, "12345").await["data"]["matched"], 0);
    let no_code = json!({"appId": app_id, "to":"91856321412"});
    assert_error(
        &h.post("/verification/sendRule", no_code).await,
        "-22",
        "Parameter exception",
    );
}

#[tokio::test]
async fn resend_issues_a_new_id_with_the_same_code() {
    let h = real_time().await;
    let (app_id, template_id) = h.ready("resend_app").await;
    let sent = h
        .send(json!({"appId": app_id, "templateId": template_id, "to":"99900123456"}))
        .await;
    let first = sent["data"]["verificationId"].as_str().unwrap();
    let resent = h
        .post(
            "/verification/resend",
            json!({"verificationId": first, "channel":"call"}),
        )
        .await;
    assert_eq!(status(&resent), "0", "{resent}");
    let second = resent["data"]["verificationId"].as_str().unwrap();
    assert_ne!(first, second);
    assert_eq!(resent["data"]["channel"], "call");
    assert_eq!(h.verify(second, "1234").await["data"]["matched"], 0);
    let unknown = h
        .post(
            "/verification/resend",
            json!({"verificationId":"22206051443051000003"}),
        )
        .await;
    assert_error(&unknown, "-24", "Data unexisting");
}

/// A resend is a verification of its own: its code lasts `codeExpiry` from the resend (not from
/// the first send), it carries none of the first's checks, no order id (which keeps naming the
/// first) and no task flow (the first's fallback call is not repeated).

#[tokio::test]
async fn a_resend_starts_afresh() {
    let mut config = SandboxConfig::new(KEY, SECRET);
    config.speed = 600.0; // 10 minutes of codeExpiry last 1 s
    let h = start(config).await;
    let app_id = h.app(json!({"name":"fresh_app","codeExpiry":10})).await;
    let template_id = h.template(&app_id, "fresh_t").await;
    // Unless verified, a call follows 30 emulated seconds (0.05 s) after the SMS.
    let flow = h.post("/flow/add", json!({"name":"fresh_flow","flow":[{"waitingTime":30,"status":2,"channel":"call","channelCut":0}]})).await;
    let flow_id = flow["data"]["flowId"].as_i64().unwrap().to_string();
    let expired = |id: String| {
        let h = &h;
        async move {
            let started = tokio::time::Instant::now();
            eventually(
                "code expiry",
                || h.record(&id),
                |r| r["data"]["verifications"]["matched"] == 5,
            )
            .await;
            started.elapsed()
        }
    };
    // Ten emulated minutes are at least 0.8 s here (a late read only makes it longer).
    let at_least = Duration::from_millis(800);
    let sent = h
        .send(json!({"appId": app_id, "templateId": template_id, "flowId": flow_id, "to":"99900123456", "orderId":"order-fresh"}))
        .await;
    let first = sent["data"]["verificationId"].as_str().unwrap().to_owned();
    let lasted = expired(first.clone()).await;
    assert!(lasted >= at_least, "the first code lasted {lasted:?}");
    let record = h.record(&first).await;
    assert_eq!(
        record["data"]["call"].as_array().map(Vec::len),
        Some(1),
        "{record}"
    );
    assert_eq!(h.verify(&first, "1234").await["data"]["matched"], 5);

    let resend = || async {
        let reply = h
            .post("/verification/resend", json!({"verificationId": first}))
            .await;
        assert_eq!(status(&reply), "0", "{reply}");
        reply["data"]["verificationId"].as_str().unwrap().to_owned()
    };
    let second = resend().await;
    let record = h.record(&second).await;
    let fresh = &record["data"]["verifications"];
    assert!(fresh["verifiedDate"].is_null(), "{record}");
    assert!(fresh["orderId"].is_null(), "{record}");
    assert_eq!(h.verify(&second, "1234").await["data"]["matched"], 0);
    let by_order = h
        .post(
            "/verification/orderId/record",
            json!({"appId": app_id, "orderId":"order-fresh"}),
        )
        .await;
    assert_eq!(
        by_order["data"]["verifications"]["matched"], 5,
        "{by_order}"
    );

    let third = resend().await;
    let lasted = expired(third.clone()).await;
    assert!(lasted >= at_least, "the resent code lasted {lasted:?}");
    // Expired well after its SMS, with no call: the flow stayed with the first.
    let record = h.record(&third).await;
    assert_eq!(
        record["data"]["sms"].as_array().map(Vec::len),
        Some(1),
        "{record}"
    );
    assert!(
        record["data"]["call"].as_array().is_none_or(Vec::is_empty),
        "{record}"
    );
}

/// A resent code's SMS is sent at the resend: it is on its way again even when the first one's
/// was delivered long ago.
#[tokio::test]
async fn a_resent_sms_is_sent_at_the_resend() {
    let h = at_speed(2.0).await; // an SMS is delivered 4 emulated seconds (2 s) after its send
    let (app_id, template_id) = h.ready("resent_sms_app").await;
    let sent = h
        .send(json!({"appId": app_id, "templateId": template_id, "to":"99900123456"}))
        .await;
    let first = sent["data"]["verificationId"].as_str().unwrap();
    eventually(
        "the first SMS delivered",
        || h.record(first),
        |r| r["data"]["verifications"]["matched"] == -1,
    )
    .await;
    let resent = h
        .post("/verification/resend", json!({"verificationId": first}))
        .await;
    let second = resent["data"]["verificationId"].as_str().unwrap();
    let record = h.record(second).await;
    assert_eq!(record["data"]["verifications"]["matched"], 1, "{record}");
}

#[tokio::test]
async fn period_limits() {
    let h = real_time().await;
    let total = json!({"name":"total_app","periodTotalSendLimit":{"enabled":true,"unit":1,"period":1,"limit":2}});
    let app_id = h.app(total).await;
    let template_id = h.template(&app_id, "total_t").await;
    let send = |to: &str| json!({"appId": app_id, "templateId": template_id, "to": to});
    assert_eq!(status(&h.send(send("91856321411")).await), "0");
    let first = h.send(send("91856321412")).await;
    assert_eq!(status(&first), "0");
    assert_error(
        &h.send(send("91856321413")).await,
        "-27",
        "Period total send limit",
    );
    let id = first["data"]["verificationId"].as_str().unwrap();
    assert_error(
        &h.post("/verification/resend", json!({"verificationId": id}))
            .await,
        "-27",
        "Period total send limit",
    );

    let phone = json!({"name":"phone_app","periodPhoneSendLimit":{"enabled":true,"unit":"2","period":"1","limit":"1"}});
    let app_id = h.app(phone).await;
    let template_id = h.template(&app_id, "phone_t").await;
    let send = |to: &str| json!({"appId": app_id, "templateId": template_id, "to": to});
    assert_eq!(status(&h.send(send("91856321412")).await), "0");
    assert_error(
        &h.send(send("91856321412")).await,
        "-28",
        "Period phone send limit",
    );
    assert_eq!(status(&h.send(send("91856321413")).await), "0");
}

#[tokio::test]
async fn sms_timeline_unfolds() {
    // The SMS is "sending" for 4 emulated seconds: at speed 2 the first read has 2 s of real
    // time to land in that window (the exact timeline at fixed instants is a unit test in
    // src/sandbox/records.rs); the delivery is then awaited by polling.
    let h = at_speed(2.0).await;
    let (app_id, template_id) = h.ready("timeline_app").await;
    let sent = h
        .send(json!({"appId": app_id, "templateId": template_id, "to":"99900123456"}))
        .await;
    let id = sent["data"]["verificationId"].as_str().unwrap();
    let early = h.record(id).await;
    assert_eq!(status(&early), "0");
    let sms = &early["data"]["sms"][0];
    assert_eq!(sms["status"], -1);
    assert!(sms["submitTm"].as_str().unwrap().ends_with("+08:00"));
    assert!(sms["doneTm"].is_null());
    assert_eq!(early["data"]["verifications"]["matched"], 1);
    assert_eq!(early["data"]["verifications"]["oriReceiver"], "99900123456");
    assert_eq!(early["data"]["call"], json!([]));
    let done = eventually(
        "SMS delivery",
        || h.record(id),
        |r| r["data"]["sms"][0]["doneTm"].is_string(),
    )
    .await;
    let sms = &done["data"]["sms"][0];
    assert_eq!(
        (sms["status"].as_i64(), sms["reason"].as_str()),
        (Some(0), Some("success"))
    );
    assert!(sms["sendTm"].is_string() && sms["doneTm"].is_string());
    assert_eq!(done["data"]["verifications"]["matched"], -1);
    assert_eq!(done["data"]["verificationId"], id);
    assert_error(
        &h.record("22206051443051000003").await,
        "-24",
        "Data unexisting",
    );
}

#[tokio::test]
async fn scripted_failures_show_in_records() {
    let h = fast().await;
    let (app_id, template_id) = h.ready("failure_app").await;
    let sms = h
        .send(json!({"appId": app_id, "templateId": template_id, "to":"99901123456"}))
        .await;
    let call = h.send(json!({"appId": app_id, "templateId": template_id, "to":"99902123456","channel":"call"})).await;
    let sms_record = eventually(
        "SMS failure",
        || h.record(sms["data"]["verificationId"].as_str().unwrap()),
        |r| r["data"]["sms"][0]["doneTm"].is_string(),
    )
    .await;
    assert_eq!(
        (
            sms_record["data"]["sms"][0]["status"].as_i64(),
            sms_record["data"]["sms"][0]["reason"].as_str()
        ),
        (Some(1), Some("failed"))
    );
    let call_record = eventually(
        "call hang-up",
        || h.record(call["data"]["verificationId"].as_str().unwrap()),
        |r| r["data"]["call"][0]["hangupTime"].is_string(),
    )
    .await;
    let entry = &call_record["data"]["call"][0];
    assert_eq!(
        (
            entry["terminationCode"].as_i64(),
            entry["terminationReason"].as_str()
        ),
        (Some(100_005), Some("Temporarily Unavailable"))
    );
    assert!(entry["answerTime"].is_null() && entry["hangupTime"].is_string());
    assert_eq!(
        (
            entry["callDuration"].as_i64(),
            entry["chargedDuration"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(call_record["data"]["sms"], json!([]));
}

#[tokio::test]
async fn flow_falls_back_from_sms_to_call() {
    let h = fast().await;
    let (app_id, template_id) = h.ready("flow_app").await;
    let flow = h.post("/flow/add", json!({"name":"fallback","flow":[{"waitingTime":30,"status":1,"channel":"call","channelCut":0}]})).await;
    let flow_id = flow["data"]["flowId"].as_i64().unwrap();
    let body = json!({"appId": app_id, "templateId": template_id, "flowId": flow_id.to_string(), "to":"99901123456", "orderId":"order-42"});
    let sent = h.send(body).await;
    assert_eq!(status(&sent), "0", "{sent}");
    let id = sent["data"]["verificationId"].as_str().unwrap();
    let record = eventually(
        "the call fallback",
        || {
            h.post(
                "/verification/orderId/record",
                json!({"appId": app_id, "orderId":"order-42"}),
            )
        },
        |r| r["data"]["call"][0]["terminationCode"].is_i64(),
    )
    .await;
    assert_eq!(status(&record), "0", "{record}");
    let data = &record["data"];
    assert_eq!(
        (data["orderId"].as_str(), data["flowId"].as_i64()),
        (Some("order-42"), Some(flow_id))
    );
    assert_eq!(data["sms"][0]["status"], 1);
    assert_eq!(data["call"][0]["terminationCode"], 0);
    assert_eq!(data["call"][0]["costEur"], "0.0460");
    assert_eq!(data["verifications"]["channel"], "call");
    assert_eq!(data["verifications"]["orderId"], "order-42");
    assert_eq!(
        h.verify(id, "1234").await["data"],
        json!({"verificationId": id, "to":"99901123456","channel":"call","matched":0})
    );
    let unknown = h
        .post(
            "/verification/orderId/record",
            json!({"appId": app_id, "orderId":"nope"}),
        )
        .await;
    assert_error(&unknown, "-24", "Data unexisting");
}

#[tokio::test]
async fn callbacks() {
    let h = real_time().await;
    let (app_id, template_id) = h.ready("callback_app").await;
    let rate = json!({"appId": app_id,"mcc":460,"backfillNumber":"100","backfillCardinalNumber":"1000","backfillNow":"10","callbackTime":"2023-01-29T09:59:58+08:00"});
    assert_eq!(
        h.post("/backfillRate", rate.clone()).await,
        json!({"status":"0","reason":"success"})
    );
    let mut bad = rate.clone();
    bad["backfillNow"] = json!("10.123");
    assert_error(
        &h.post("/backfillRate", bad).await,
        "-22",
        "Parameter exception",
    );
    let mut bad = rate;
    bad["callbackTime"] = json!("yesterday");
    assert_error(
        &h.post("/backfillRate", bad).await,
        "-22",
        "Parameter exception",
    );

    let sent = h
        .send(json!({"appId": app_id, "templateId": template_id, "to":"99900123456"}))
        .await;
    let id = sent["data"]["verificationId"].as_str().unwrap();
    let postback = json!({"appId": app_id, "verificationId": id, "number":"99900123456", "time":"1681184764000"});
    assert_eq!(
        h.post("/postback/backfill", postback).await,
        json!({"status":"0","reason":"success"})
    );
    assert_error(
        &h.post(
            "/postback/backfill",
            json!({"appId": app_id, "verificationId": id}),
        )
        .await,
        "-22",
        "Parameter exception",
    );
}

#[tokio::test]
async fn injection_and_counts() {
    let h = real_time().await;
    let (app_id, template_id) = h.ready("inject_app").await;
    let send = json!({"appId": app_id, "templateId": template_id, "to":"91856321412"});
    h.sandbox.inject_status("POST /verification/send", "-27", 1);
    assert_error(
        &h.send(send.clone()).await,
        "-27",
        "Period total send limit",
    );
    assert_eq!(status(&h.send(send.clone()).await), "0");

    let http = reqwest::Client::new();
    let ok: Value = http
        .post(format!("{}/_sandbox/inject", h.base))
        .json(&json!({"endpoint":"POST /verification/send","status":"-10","times":2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok, json!({"ok": true}));
    assert_eq!(status(&h.send(send.clone()).await), "-10");
    assert_eq!(status(&h.send(send.clone()).await), "-10");
    assert_eq!(status(&h.send(send).await), "0");
    let typo = http
        .post(format!("{}/_sandbox/inject", h.base))
        .json(&json!({"endpoint":"POST /nope","status":"-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status(), 400);

    h.get("/template/details/1").await;
    let stats: Value = http
        .get(format!("{}/_sandbox/stats", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], 8);
    assert_eq!(stats["byEndpoint"]["POST /verification/send"], 5);
    assert_eq!(stats["byEndpoint"]["GET /template/details/{templateId}"], 1);
    assert_eq!(h.sandbox.request_count(), 8);
    assert_eq!(h.sandbox.request_count_for("POST /app/add"), 1);
    assert_eq!(h.sandbox.request_count_for("POST /template/add"), 1);
}

/// Every documented endpoint is routed under exactly the name counters and injections use.
#[tokio::test]
async fn every_endpoint_answers_an_injection_under_its_name() {
    let h = real_time().await;
    for endpoint in itnio_otp_grpc::sandbox::ENDPOINTS {
        h.sandbox.inject_status(endpoint, "-18", 1);
        let (method, template) = endpoint.split_once(' ').unwrap();
        let path: String = template
            .split('/')
            .map(|part| if part.starts_with('{') { "1" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method != Method::GET).then(|| json!({}));
        let reply = h.call(method, &path, body).await;
        assert_error(&reply, "-18", "Port program unusual");
        assert_eq!(h.sandbox.request_count_for(endpoint), 1, "{endpoint}");
    }
    assert_eq!(h.sandbox.request_count(), 19);
}

/// Concurrent sends never overshoot a period limit.
#[tokio::test]
async fn concurrent_sends_respect_the_total_limit() {
    let h = std::sync::Arc::new(real_time().await);
    let limited = json!({"name":"busy_app","periodTotalSendLimit":{"enabled":true,"unit":1,"period":1,"limit":5}});
    let app_id = h.app(limited).await;
    let template_id = h.template(&app_id, "busy_t").await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (h, app_id) = (h.clone(), app_id.clone());
        sends.spawn(async move {
            let to = format!("9185632{i:04}");
            let reply = h
                .send(json!({"appId": app_id, "templateId": template_id, "to": to}))
                .await;
            status(&reply).to_owned()
        });
    }
    let statuses = sends.join_all().await;
    assert_eq!(statuses.iter().filter(|s| *s == "0").count(), 5);
    assert_eq!(statuses.iter().filter(|s| *s == "-27").count(), 15);
}

#[tokio::test]
async fn callbacks_name_an_existing_app_and_its_own_verification() {
    let h = real_time().await;
    let (app_id, template_id) = h.ready("callback_owner").await;
    let other_app = h.app(json!({"name": "callback_other"})).await;
    let sent = h
        .send(json!({"appId": app_id, "templateId": template_id, "to":"99900123456"}))
        .await;
    let id = sent["data"]["verificationId"].as_str().unwrap();
    // An ISO-8601 time is accepted as well as epoch digits.
    let postback = json!({"appId": app_id, "verificationId": id, "number":"99900123456", "time":"2023-04-11T11:46:04+08:00"});
    assert_eq!(
        h.post("/postback/backfill", postback).await,
        json!({"status":"0","reason":"success"})
    );
    // The verification exists, but belongs to another app.
    let foreign = json!({"appId": other_app, "verificationId": id, "time":"1681184764000"});
    assert_error(
        &h.post("/postback/backfill", foreign).await,
        "-24",
        "Data unexisting",
    );
    let rate = json!({"appId":"nosuchap","mcc":"460","backfillNow":"10","callbackTime":"2023-01-29T09:59:58+08:00"});
    assert_error(
        &h.post("/backfillRate", rate).await,
        "-24",
        "Data unexisting",
    );
}

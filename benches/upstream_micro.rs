//! Criterion micro-benchmarks of the upstream request path's CPU pieces: signing, request body
//! encoding and reply decoding. Decoding is measured two ways side by side: straight into the
//! typed wire structs (what the client does) and through a generic `serde_json::Value` first
//! (what it did before issue 10). Run: `cargo bench --bench upstream_micro`.

use criterion::{Criterion, criterion_group, criterion_main};
use itnio_otp_grpc::upstream::{Flow, FlowNode, FlowRequest, Record, SendRequest, lenient, sign};
use serde::Deserialize;
use std::hint::black_box;

/// The reply shape with `data` decoded as a lenient list of flows.
#[derive(Deserialize)]
struct FlowListReply {
    #[serde(default, deserialize_with = "lenient::one_or_many")]
    data: Vec<Flow>,
}

/// The reply shape with `data` decoded as a record.
#[derive(Deserialize)]
struct RecordReply {
    #[serde(default)]
    data: Option<Record>,
}

fn flow_list_reply(flows: usize) -> Vec<u8> {
    let items: Vec<String> = (0..flows)
        .map(|n| {
            format!(
                r#"{{"flowId":{n},"name":"flow-{n}","flow":[{{"waitingTime":30,"status":1,"channel":"sms","channelCut":"0"}},{{"waitingTime":60,"status":2,"channel":"call","channelCut":1}}]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"status":"0","reason":"success","data":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

const RECORD_REPLY: &[u8] = br#"{"status":"0","reason":"success","data":{"verificationId":"22611231955000000001","verifications":{"matched":"0","verifiedDate":"2026-11-23 19:55:10","oriReceiver":"9990012345678","channel":"sms"},"sms":[{"submitTm":"2026-11-23 19:55:00","sendTm":"2026-11-23 19:55:01","doneTm":"2026-11-23 19:55:03","mcc":"460","mnc":0,"sender":"ITNIO","chargeCnt":1,"pay":"0.0100","status":0,"reason":"DELIVRD","settlePay":"0.0100","settlePrice":"0.0100","settleCurrency":"USD","quoteExchange":"1"}],"call":[]}}"#;

fn signing(c: &mut Criterion) {
    c.bench_function("sign (MD5 of key + secret + timestamp, hex)", |b| {
        b.iter(|| {
            sign(
                black_box("bDqJFiq9"),
                black_box("7bz1lzh9"),
                black_box("1630468800"),
            )
        })
    });
}

fn encoding(c: &mut Criterion) {
    let send = SendRequest {
        app_id: "mRELxtHc".into(),
        template_id: Some(455),
        to: "9990012345678".into(),
        ..Default::default()
    };
    c.bench_function("encode SendRequest", |b| {
        b.iter(|| serde_json::to_vec(black_box(&send)))
    });
    let flow = FlowRequest {
        flow_id: None,
        name: "fallback".into(),
        flow: vec![
            FlowNode {
                waiting_time: 30,
                status: 1,
                channel: "sms".into(),
                channel_cut: Some(0),
            };
            3
        ],
    };
    c.bench_function("encode FlowRequest (3 nodes)", |b| {
        b.iter(|| serde_json::to_vec(black_box(&flow)))
    });
}

fn decoding(c: &mut Criterion) {
    let flows = flow_list_reply(3);
    let mut group = c.benchmark_group("decode flow list (3 flows)");
    group.bench_function("typed, one pass", |b| {
        b.iter(|| serde_json::from_slice::<FlowListReply>(black_box(&flows)).map(|r| r.data))
    });
    group.bench_function("via serde_json::Value", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&flows))?;
            serde_json::from_value::<FlowListReply>(value).map(|r| r.data)
        })
    });
    group.finish();

    let many = flow_list_reply(1000);
    let mut group = c.benchmark_group("decode flow list (1000 flows)");
    group.bench_function("typed, one pass", |b| {
        b.iter(|| serde_json::from_slice::<FlowListReply>(black_box(&many)).map(|r| r.data))
    });
    group.bench_function("via serde_json::Value", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&many))?;
            serde_json::from_value::<FlowListReply>(value).map(|r| r.data)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decode record");
    group.bench_function("typed, one pass", |b| {
        b.iter(|| serde_json::from_slice::<RecordReply>(black_box(RECORD_REPLY)).map(|r| r.data))
    });
    group.bench_function("via serde_json::Value", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(RECORD_REPLY))?;
            serde_json::from_value::<RecordReply>(value).map(|r| r.data)
        })
    });
    group.finish();
}

criterion_group!(benches, signing, encoding, decoding);
criterion_main!(benches);

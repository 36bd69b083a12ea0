//! The byte cap on upstream replies (issue 9 item 2), against real HTTP servers: a reply with a
//! `Content-Length` over the cap, a chunked reply with none that would never end, and the exact
//! boundary. Over the cap a call fails with `ResponseTooLarge`, which reaches gRPC callers as
//! UNAVAILABLE with reason `UPSTREAM_RESPONSE_TOO_LARGE`.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;

use std::time::Duration;

use itnio_otp_grpc::upstream::{Endpoint, UpstreamClient, UpstreamConfig, UpstreamError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;
use tonic_types::StatusExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CAP: usize = 4096;

fn client(base_url: &str, cap: usize) -> UpstreamClient {
    UpstreamClient::new(UpstreamConfig {
        base_url: base_url.to_owned(),
        api_key: common::API_KEY.into(),
        api_secret: common::API_SECRET.into(),
        timeout: Duration::from_secs(5),
    })
    .expect("valid config")
    .with_max_response_bytes(cap)
}

/// A `/flow/list` reply of exactly `len` bytes: a valid envelope padded with spaces.
fn flow_list_body(len: usize) -> Vec<u8> {
    let mut body = serde_json::to_vec(&json!({"status":"0","reason":"success","data":[
        {"flowId":1,"name":"fallback","flow":[{"waitingTime":30,"status":1,"channel":"call"}]}
    ]}))
    .expect("json");
    assert!(body.len() <= len, "padding target too small");
    body.resize(len, b' ');
    body
}

async fn mock_flow_list(body: Vec<u8>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/otp/flow/list"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn content_length_at_the_cap_is_read_and_one_byte_more_is_refused() {
    let server = mock_flow_list(flow_list_body(CAP)).await;
    let flows = client(&format!("{}/otp", server.uri()), CAP)
        .list_flows(None)
        .await
        .expect("a reply of exactly the cap is accepted");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].name, "fallback");

    let server = mock_flow_list(flow_list_body(CAP + 1)).await;
    match client(&format!("{}/otp", server.uri()), CAP)
        .list_flows(None)
        .await
    {
        Err(UpstreamError::ResponseTooLarge { endpoint, limit }) => {
            assert_eq!((endpoint, limit), (Endpoint::FlowList, CAP));
        }
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
}

/// An HTTP/1.1 server answering one request with a chunked 200 reply (no Content-Length) made
/// of `pieces`, written one chunk at a time until they run out or the client hangs up. Returns
/// the base URL and a handle yielding how many body bytes were written.
async fn chunked_server(
    pieces: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> (String, tokio::task::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/otp", listener.local_addr().expect("addr"));
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read request");
            assert!(n > 0, "client closed before sending a request");
            request.extend_from_slice(&buf[..n]);
        }
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head).await.expect("head");
        let mut written = 0;
        for piece in pieces {
            let frame = [
                format!("{:x}\r\n", piece.len()).into_bytes(),
                piece,
                b"\r\n".to_vec(),
            ]
            .concat();
            if socket.write_all(&frame).await.is_err() || socket.flush().await.is_err() {
                return written;
            }
            written += frame.len();
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
        written
    });
    (base, handle)
}

#[tokio::test]
async fn chunked_reply_without_length_is_cut_off_at_the_cap() {
    // 64 MiB on offer in 16 KiB chunks: the client must hang up after about 64 KiB.
    const OFFERED_CHUNKS: usize = 4096;
    let prefix = br#"{"status":"0","data":["#.to_vec();
    let pieces =
        std::iter::once(prefix).chain(std::iter::repeat_n(vec![b' '; 16 * 1024], OFFERED_CHUNKS));
    let (base, server) = chunked_server(pieces).await;
    let result = client(&base, 64 * 1024).list_flows(None).await;
    assert!(
        matches!(
            result,
            Err(UpstreamError::ResponseTooLarge { limit: 65_536, .. })
        ),
        "{result:?}"
    );
    let written = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops writing once the client hangs up")
        .expect("server task");
    assert!(
        written < 16 * 1024 * OFFERED_CHUNKS / 4,
        "the client kept reading: {written} bytes written"
    );
}

#[tokio::test]
async fn chunked_reply_at_the_cap_is_reassembled_and_one_byte_more_is_refused() {
    let body = flow_list_body(3000);
    let pieces: Vec<Vec<u8>> = body.chunks(700).map(<[u8]>::to_vec).collect();
    let (base, _) = chunked_server(pieces.clone().into_iter()).await;
    let flows = client(&base, body.len())
        .list_flows(None)
        .await
        .expect("a chunked reply of exactly the cap is accepted");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].flow.len(), 1);

    let (base, _) = chunked_server(pieces.into_iter()).await;
    let result = client(&base, body.len() - 1).list_flows(None).await;
    assert!(
        matches!(result, Err(UpstreamError::ResponseTooLarge { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn empty_reply_is_a_decode_error() {
    let (base, _) = chunked_server(std::iter::empty()).await;
    let result = client(&base, CAP).list_flows(None).await;
    assert!(
        matches!(result, Err(UpstreamError::Decode { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn grpc_callers_get_unavailable_with_the_reason() {
    let server = mock_flow_list(flow_list_body(CAP + 1)).await;
    let mut config = common::upstream_config(&format!("{}/otp", server.uri()));
    config.max_response_bytes = CAP;
    let (addr, _server) = common::spawn_server(config, std::future::pending()).await;
    let channel = common::connect(addr).await;
    let status = itnio_otp_grpc::proto::v1::flow_service_client::FlowServiceClient::new(channel)
        .list_flows(itnio_otp_grpc::proto::v1::ListFlowsRequest {})
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::Unavailable);
    let details = status.get_error_details();
    let info = details.error_info().expect("error info");
    assert_eq!(info.reason, "UPSTREAM_RESPONSE_TOO_LARGE");
    assert_eq!(info.domain, "itniotech.com");
    assert_eq!(info.metadata["endpoint"], "GET /flow/list");
    assert_eq!(info.metadata["limit_bytes"], CAP.to_string());
}

//! End to end across replicas: two service processes (the real binary) sharing a real
//! `redis-server`, ITNIO behind a fault proxy counting what reaches it; and Redis killed mid-test.

#![allow(clippy::disallowed_methods, reason = "tests start plain tasks")]

mod common;
mod faults;

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use common::{TEST_NUMBER, binary::Binary, redis::RedisServer, temp::TempDir};
use faults::{Fault, FaultProxy, SEND, sandbox_behind_proxy};
use itnio_otp_grpc::{
    caller::Caller,
    proto::v1::{
        self as pb, record_service_client::RecordServiceClient,
        verification_service_client::VerificationServiceClient,
    },
    send::{SendError, quota},
    store::{
        Batch, Key, MemoryStore, Op, Put, RedisStore, Reply, SharedStore, Store, WindowCount, Write,
    },
};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt;

const LONG: Duration = Duration::from_secs(10);

/// The service binary running as its own process, as replicas run in production; killed when
/// dropped.
struct Replica {
    addr: SocketAddr,
    _binary: Binary,
}

impl Replica {
    /// Starts the binary against ITNIO at `base_url`, sharing state in `redis_url`, with the
    /// send guard in dry-run: these replicas resend to one number on purpose.
    async fn start(base_url: &str, redis_url: &str) -> Self {
        Self::start_with(base_url, redis_url, &[("GUARD_DRY_RUN", "true")]).await
    }

    /// Like [`Replica::start`], with the send guard as `envs` set it.
    async fn start_with(base_url: &str, redis_url: &str, envs: &[(&str, &str)]) -> Self {
        let mut command = common::binary::command(&[
            ("ALLOW_UNAUTHENTICATED", "true"),
            ("ITNIO_BASE_URL", base_url),
            ("ITNIO_API_KEY", common::API_KEY),
            ("ITNIO_API_SECRET", common::API_SECRET),
            ("ITNIO_TIMEOUT", "5s"),
            ("REDIS_URL", redis_url),
            // The sandbox behind the proxy is called as ITNIO: its test numbers apply.
            ("ALLOW_TEST_NUMBERS", "true"),
        ]);
        command.envs(envs.iter().copied());
        let binary = Binary::spawn(command);
        Self {
            addr: binary.addr("gRPC server listening").await,
            _binary: binary,
        }
    }
}

struct Client {
    channel: Channel,
}

impl Client {
    async fn of(replica: &Replica) -> Self {
        Self {
            channel: common::connect(replica.addr).await,
        }
    }

    async fn send(
        &self,
        request: pb::SendVerificationRequest,
        timeout: Duration,
    ) -> Result<pb::SendVerificationResponse, Status> {
        let mut request = Request::new(request);
        request.set_timeout(timeout);
        VerificationServiceClient::new(self.channel.clone())
            .send_verification(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Redis, the sandbox behind a proxy, two replicas, and an app with a template.
struct Cluster {
    redis: RedisServer,
    proxy: FaultProxy,
    a: Client,
    b: Client,
    _replicas: [Replica; 2],
    app_id: String,
    template_id: String,
}

impl Cluster {
    async fn start() -> Self {
        let redis = RedisServer::start().await;
        let (_sandbox, proxy) = sandbox_behind_proxy().await;
        let replicas = [
            Replica::start(&proxy.url(), &redis.url()).await,
            Replica::start(&proxy.url(), &redis.url()).await,
        ];
        let (a, b) = (
            Client::of(&replicas[0]).await,
            Client::of(&replicas[1]).await,
        );
        let (app_id, template_id) = common::app_and_template(&a.channel, "idem").await;
        Self {
            redis,
            proxy,
            a,
            b,
            _replicas: replicas,
            app_id,
            template_id,
        }
    }

    fn request(&self, request_id: &str) -> pb::SendVerificationRequest {
        pb::SendVerificationRequest {
            app_id: self.app_id.clone(),
            template_id: self.template_id.clone(),
            phone_number: TEST_NUMBER.into(),
            request_id: request_id.to_owned(),
            ..Default::default()
        }
    }
}

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_retry_on_another_replica_is_deduplicated_under_every_fault() {
    let cluster = Cluster::start().await;
    for fault in Fault::ALL {
        let request_id = new_id();
        let before = cluster.proxy.count(SEND);
        cluster.proxy.inject(SEND, fault);
        let timeout = match fault {
            Fault::Slow(delay) => delay / 3,
            _ => LONG,
        };
        cluster
            .a
            .send(cluster.request(&request_id), timeout)
            .await
            .expect_err("the fault fails the first attempt");
        let retry = cluster
            .b
            .send(cluster.request(&request_id), LONG)
            .await
            .expect_err("never sent twice");
        assert_eq!(retry.code(), Code::FailedPrecondition, "{fault:?}");
        assert_eq!(reason(&retry), "OUTCOME_UNKNOWN", "{fault:?}");
        let sends = cluster.proxy.count(SEND) - before;
        println!(
            "two replicas, fault {fault:?}: upstream POST /verification/send per retried call = {sends}"
        );
        assert_eq!(sends, 1, "{fault:?}");
    }
}

#[tokio::test]
async fn replicas_replay_and_wait_for_each_other() {
    let cluster = Cluster::start().await;
    // Answered on A, replayed by B.
    let request_id = new_id();
    let first = cluster
        .a
        .send(cluster.request(&request_id), LONG)
        .await
        .expect("send");
    let replay = cluster
        .b
        .send(cluster.request(&request_id), LONG)
        .await
        .expect("replay");
    assert_eq!(replay, first);
    assert_eq!(cluster.proxy.count(SEND), 1);

    // Reused for another request on the other replica.
    let mut different = cluster.request(&request_id);
    different.channel = pb::Channel::Call as i32;
    let reused = cluster.b.send(different, LONG).await.expect_err("reused");
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");

    // In flight on A: a repeat on B waits for it.
    let request_id = new_id();
    cluster
        .proxy
        .inject(SEND, Fault::Slow(Duration::from_millis(800)));
    let channel = cluster.a.channel.clone();
    let request = cluster.request(&request_id);
    let first = tokio::spawn(async move { Client { channel }.send(request, LONG).await });
    cluster.proxy.wait_for(SEND, 2).await;
    let repeat = cluster
        .b
        .send(cluster.request(&request_id), LONG)
        .await
        .expect("waits for A");
    assert_eq!(repeat, first.await.expect("task").expect("first"));
    assert_eq!(cluster.proxy.count(SEND), 2);
}

/// Calls per command since the last `CONFIG RESETSTAT`, from `INFO commandstats`.
async fn command_calls(redis: &RedisServer) -> std::collections::HashMap<String, u64> {
    let client = redis::Client::open(redis.url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// A send is admitted in one round trip to Redis (one script) and settled in one more (one
/// MULTI/EXEC pipeline), with or without a request id; the script's own commands run inside
/// Redis.
#[tokio::test]
async fn a_send_is_two_redis_round_trips() {
    let cluster = Cluster::start().await;
    // The first send loads the script (EVALSHA, then EVAL on NOSCRIPT).
    cluster
        .a
        .send(cluster.request(&new_id()), LONG)
        .await
        .expect("send");
    let client = redis::Client::open(cluster.redis.url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut connection)
        .await
        .expect("CONFIG RESETSTAT");
    for request_id in [new_id(), new_id(), String::new()] {
        cluster
            .a
            .send(cluster.request(&request_id), LONG)
            .await
            .expect("send");
    }
    let calls = command_calls(&cluster.redis).await;
    // Inside the script: INCR, PEXPIRE, PTTL, SET NX and GET; inside MULTI: SETs.
    assert_eq!(calls.get("evalsha"), Some(&3), "{calls:?}");
    assert_eq!(calls.get("exec"), Some(&3), "{calls:?}");
    assert_eq!(calls.get("multi"), Some(&3), "{calls:?}");
    assert_eq!(calls.get("eval"), None, "{calls:?}");
    assert_eq!(cluster.proxy.count(SEND), 4);
}

#[tokio::test]
async fn with_redis_killed_sends_fail_closed_and_reads_keep_working() {
    let mut cluster = Cluster::start().await;
    let sent = cluster
        .a
        .send(cluster.request(&new_id()), LONG)
        .await
        .expect("send while Redis is up");
    let before = cluster.proxy.count(SEND);

    cluster.redis.kill().await;
    for request_id in [new_id(), String::new()] {
        for client in [&cluster.a, &cluster.b] {
            let status = client
                .send(cluster.request(&request_id), LONG)
                .await
                .expect_err("fails closed");
            assert_eq!(status.code(), Code::Unavailable);
            assert_eq!(reason(&status), "STATE_STORE_UNAVAILABLE");
            assert!(status.get_error_details().retry_info().is_some());
        }
    }
    assert_eq!(cluster.proxy.count(SEND), before, "nothing reached ITNIO");
    let record = RecordServiceClient::new(cluster.b.channel.clone())
        .get_record(pb::GetRecordRequest {
            verification_id: sent.verification_id.clone(),
        })
        .await
        .expect("reads keep working")
        .into_inner();
    assert!(record.record.is_some());

    // Redis back: sends work again without restarting the replicas.
    cluster.redis.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match cluster.a.send(cluster.request(&new_id()), LONG).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(reason(&status), "STATE_STORE_UNAVAILABLE");
                assert!(tokio::time::Instant::now() < deadline, "never reconnected");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(cluster.proxy.count(SEND), before + 1);
}

#[tokio::test]
async fn a_caller_quota_is_shared_by_replicas() {
    let redis = RedisServer::start().await;
    let replicas: [SharedStore; 2] = [
        Arc::new(RedisStore::connect(&redis.url()).expect("store")),
        Arc::new(RedisStore::connect(&redis.url()).expect("store")),
    ];
    let caller = Caller::new("checkout", "default")
        .with_sends_per_minute(NonZeroU32::new(3).expect("non-zero"));
    // The quota's count, as a send's admission batch runs it.
    let admit = |store: &SharedStore| {
        let (store, caller) = (store.clone(), caller.clone());
        async move {
            let batch = Batch {
                ops: vec![quota::count(&caller)],
                release: None,
            };
            let replies = store.run(&batch).await?;
            quota::read(&caller, replies.replies.first())
        }
    };
    for i in 0..3 {
        admit(&replicas[i % 2]).await.expect("within the limit");
    }
    for store in &replicas {
        match admit(store).await {
            Err(SendError::CallerRateExceeded { retry_after, .. }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60));
            }
            other => panic!("expected the shared limit, got {other:?}"),
        }
    }
}

/// Two replicas (two processes) on one Redis enforce one send guard: the pending verification,
/// the per-number limit and the check cap are shared, and each refusal stays off the upstream.
#[tokio::test]
async fn the_send_guard_is_shared_by_replicas() {
    const VERIFY: &str = "POST /verification/verify";
    let redis = RedisServer::start().await;
    let (_sandbox, proxy) = sandbox_behind_proxy().await;
    let dir = TempDir::new("guard-redis");
    let policy = dir.write(
        "guard.toml",
        "[defaults]\nper_number = { sends = 3, window = \"1h\" }\nmax_check_attempts = 2\n",
    );
    let envs = [("GUARD_POLICY_FILE", policy.to_str().expect("utf-8"))];
    let replicas = [
        Replica::start_with(&proxy.url(), &redis.url(), &envs).await,
        Replica::start_with(&proxy.url(), &redis.url(), &envs).await,
    ];
    let (a, b) = (
        Client::of(&replicas[0]).await,
        Client::of(&replicas[1]).await,
    );
    let (app_id, template_id) = common::app_and_template(&a.channel, "idem").await;
    let request = |replace_pending| pb::SendVerificationRequest {
        app_id: app_id.clone(),
        template_id: template_id.clone(),
        phone_number: TEST_NUMBER.into(),
        replace_pending,
        ..Default::default()
    };

    let first = a.send(request(false), LONG).await.expect("first send");
    let pending = b.send(request(false), LONG).await.expect("pending");
    assert!(pending.pending, "replica b sees a's pending verification");
    assert_eq!(pending.verification_id, first.verification_id);
    assert_eq!(proxy.count(SEND), 1);
    b.send(request(true), LONG)
        .await
        .expect("second to the number");
    a.send(request(true), LONG)
        .await
        .expect("third to the number");
    let refused = b.send(request(true), LONG).await.expect_err("fourth");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "SEND_RATE_EXCEEDED");
    assert_eq!(proxy.count(SEND), 3, "one limit for both replicas");

    let check = |client: &Client| {
        let channel = client.channel.clone();
        let verification_id = first.verification_id.clone();
        async move {
            VerificationServiceClient::new(channel)
                .check_verification(pb::CheckVerificationRequest {
                    verification_id,
                    code: "0000".into(),
                })
                .await
        }
    };
    check(&a).await.expect("first check");
    check(&b).await.expect("second check");
    let capped = check(&a).await.expect_err("third check");
    assert_eq!(capped.code(), Code::FailedPrecondition);
    assert_eq!(reason(&capped), "TOO_MANY_CHECK_ATTEMPTS");
    assert_eq!(proxy.count(VERIFY), 2);
}

/// The same contract, checked on both backends.
async fn store_contract(store: SharedStore) {
    let key = Key::new("contract", &[&new_id()]);
    let ttl = Duration::from_secs(60);
    assert_eq!(store.get(&key).await.expect("get"), None);
    assert!(
        store
            .put(&key, b"one", ttl, Put::IfAbsent)
            .await
            .expect("put")
    );
    assert!(
        !store
            .put(&key, b"two", ttl, Put::IfAbsent)
            .await
            .expect("put")
    );
    assert_eq!(store.get(&key).await.expect("get"), Some(b"one".to_vec()));
    assert!(
        store
            .put(&key, b"three", ttl, Put::Always)
            .await
            .expect("put")
    );
    assert_eq!(store.get(&key).await.expect("get"), Some(b"three".to_vec()));
    store.delete(&key).await.expect("delete");
    assert_eq!(store.get(&key).await.expect("get"), None);

    let short = Key::new("contract", &[&new_id()]);
    store
        .put(&short, b"x", Duration::from_millis(50), Put::Always)
        .await
        .expect("put");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.get(&short).await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let counter = Key::new("contract", &[&new_id()]);
    let window = Duration::from_secs(30);
    let first = store.increment(&counter, window).await.expect("incr");
    let second = store.increment(&counter, window).await.expect("incr");
    assert_eq!((first.count, second.count), (1, 2));
    assert!(second.resets_in <= window && second.resets_in > Duration::from_secs(25));
}

/// The admission batch and the settling writes, as both backends must run them; returns what
/// each batch answered (counters' windows in whole seconds), for comparing the backends.
async fn batch_contract(store: SharedStore) -> Vec<(Vec<Reply>, bool)> {
    let id = new_id();
    let key = |name: &str| Key::new("batch", &[&id, name]);
    let minute = Duration::from_secs(60);
    let claim = |name: &str, value: &[u8]| Op::Claim {
        key: key(name),
        value: value.to_vec(),
        ttl: minute,
    };
    let count = Op::Count {
        key: key("n"),
        window: minute,
        limit: Some(2),
    };
    let slide = |enforce| Op::Slide {
        current: key("s1"),
        previous: key("s0"),
        ttl: minute,
        weight: (1, 2),
        limit: 3,
        enforce,
    };
    let read = |stop_if_found| Op::Read {
        key: key("r"),
        stop_if_found,
    };
    let run = |ops: Vec<Op>, release: Option<&str>| {
        let (store, batch) = (
            store.clone(),
            Batch {
                ops,
                release: release.map(&key),
            },
        );
        async move {
            let replies = store.run(&batch).await.expect("batch");
            let seconds = replies.replies.into_iter().map(|reply| match reply {
                Reply::Counted(mut counted) => {
                    counted.resets_in =
                        Duration::from_secs(counted.resets_in.as_millis().div_ceil(1000) as u64);
                    Reply::Counted(counted)
                }
                other => other,
            });
            (seconds.collect::<Vec<_>>(), replies.stopped)
        }
    };
    let mut answers = vec![
        // Everything passes: one round trip, nothing stops.
        run(
            vec![
                claim("c1", b"v1"),
                count.clone(),
                read(true),
                slide(true),
                Op::Delete { key: key("d") },
            ],
            Some("c1"),
        )
        .await,
    ];
    store
        .write(&[
            Write::Put {
                key: key("r"),
                value: b"pending".to_vec(),
                ttl: minute,
            },
            // A previous bucket of 4: half of it in view.
            Write::Put {
                key: key("s0"),
                value: b"4".to_vec(),
                ttl: minute,
            },
        ])
        .await
        .expect("write");
    // A claim taken, a found value, a quota past its limit (releasing the claim).
    answers.push(run(vec![claim("c1", b"v2")], None).await);
    answers.push(run(vec![read(true), count.clone()], None).await);
    answers.push(
        run(
            vec![claim("c2", b"v"), count.clone(), count.clone()],
            Some("c2"),
        )
        .await,
    );
    // A dry-run limit stops without releasing; an enforced one releases; so does a refusal.
    answers.push(run(vec![claim("c3", b"v"), slide(false)], Some("c3")).await);
    answers.push(run(vec![claim("c4", b"v"), slide(true)], Some("c4")).await);
    answers.push(run(vec![claim("c5", b"v"), Op::Refuse, read(false)], Some("c5")).await);
    let kept = |name: &'static str| {
        let store = store.clone();
        let key = key(name);
        async move { store.get(&key).await.expect("get").is_some() }
    };
    assert_eq!(
        (
            kept("c2").await,
            kept("c3").await,
            kept("c4").await,
            kept("c5").await
        ),
        (false, true, false, false),
        "claims released by refusals only"
    );
    store
        .write(&[Write::Delete { key: key("c1") }])
        .await
        .expect("write");
    assert!(!kept("c1").await);
    answers
}

#[tokio::test]
async fn both_backends_keep_the_store_contract() {
    store_contract(Arc::new(MemoryStore::default())).await;
    let redis = RedisServer::start().await;
    store_contract(Arc::new(RedisStore::connect(&redis.url()).expect("store"))).await;
    let counted = |count| {
        Reply::Counted(WindowCount {
            count,
            resets_in: Duration::from_secs(60),
        })
    };
    let memory = batch_contract(Arc::new(MemoryStore::default())).await;
    assert_eq!(
        memory,
        [
            (
                vec![
                    Reply::Claimed,
                    counted(1),
                    Reply::Read(None),
                    Reply::Slid {
                        current: 1,
                        previous: 0
                    },
                    Reply::Deleted
                ],
                false
            ),
            (vec![Reply::Taken(b"v1".to_vec())], true),
            (vec![Reply::Read(Some(b"pending".to_vec()))], true),
            (vec![Reply::Claimed, counted(2), counted(3)], true),
            (
                vec![
                    Reply::Claimed,
                    Reply::Slid {
                        current: 2,
                        previous: 4
                    }
                ],
                true
            ),
            (
                vec![
                    Reply::Claimed,
                    Reply::Slid {
                        current: 3,
                        previous: 4
                    }
                ],
                true
            ),
            (vec![Reply::Claimed, Reply::Refused], true),
        ]
    );
    let redis = batch_contract(Arc::new(RedisStore::connect(&redis.url()).expect("store"))).await;
    assert_eq!(redis, memory);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_prompt_store_error() {
    let mut redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url()).expect("store");
    redis.kill().await;
    let started = tokio::time::Instant::now();
    let key = Key::new("contract", &["down"]);
    assert!(store.get(&key).await.is_err());
    assert!(store.put(&key, b"x", LONG, Put::IfAbsent).await.is_err());
    assert!(store.increment(&key, LONG).await.is_err());
    assert!(store.delete(&key).await.is_err());
    let batch = Batch {
        ops: vec![Op::Read {
            key: key.clone(),
            stop_if_found: false,
        }],
        release: None,
    };
    assert!(store.run(&batch).await.is_err());
    assert!(store.write(&[Write::Delete { key }]).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

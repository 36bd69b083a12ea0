//! One poller per watched record: polls the upstream, publishes changes, decides finality.

use std::sync::Arc;

use tokio::{sync::watch, time::Instant};
use tracing::debug;

use super::{PollState, PollerKey, WatchHub, WatchKey, Watcher, changes};
use crate::{
    convert::records::from_wire,
    proto::v1::Record,
    shutdown::stopped,
    telemetry::metrics::{self, PollerGauge},
    upstream::{OrderRecordRequest, UpstreamClient, UpstreamError, UpstreamStatus},
};

/// Polls `key` through `upstream` (its account's client) until its record is final, polling
/// fails for good, or no stream is left. Its polls come out of the share of `owner`, the
/// watcher whose stream started it.
pub(super) async fn run(
    hub: WatchHub,
    upstream: UpstreamClient,
    key: PollerKey,
    sender: watch::Sender<PollState>,
    owner: Watcher,
) {
    let _running = PollerGauge::start();
    let shared = &hub.shared;
    let mut stop = shared.stop.clone();
    let started = Instant::now();
    let mut last_change = started;
    let mut current: Option<Arc<Record>> = None;
    let mut quiet_polls = 0_usize;
    let mut errors = 0_u32;
    loop {
        tokio::select! {
            () = shared.budget.acquire(&owner) => {}
            () = sender.closed() => if hub.retire(&key, &sender) { return } else { continue },
            () = stopped(&mut stop) => break,
        }
        let wait = match poll(&upstream, &key.1).await {
            Ok(record) => {
                errors = 0;
                let changed = current.as_deref() != Some(&record);
                if changed {
                    last_change = Instant::now();
                    quiet_polls = 0;
                } else {
                    quiet_polls += 1;
                }
                let last = is_final(&hub, &record, started, last_change);
                if changed || last {
                    let record = Arc::new(record);
                    current = Some(Arc::clone(&record));
                    sender.send_replace(PollState::Record { record, last });
                }
                if last {
                    break;
                }
                backoff_step(&shared.config.backoff, quiet_polls)
            }
            Err(error) if is_transient(&error) && errors < shared.config.max_consecutive_errors => {
                errors += 1;
                debug!(endpoint = %error.endpoint().as_str(), errors, "transient error while watching");
                backoff_step(&shared.config.backoff, errors as usize)
            }
            Err(error) => {
                sender.send_replace(PollState::Failed(error.into()));
                break;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = sender.closed() => if hub.retire(&key, &sender) { return },
            () = stopped(&mut stop) => break,
        }
    }
    hub.retire(&key, &sender);
}

async fn poll(upstream: &UpstreamClient, key: &WatchKey) -> Result<Record, UpstreamError> {
    metrics::watch_poll();
    let record = match key {
        WatchKey::Verification(id) => upstream.get_record(id, None).await?,
        WatchKey::Order { app_id, order_id } => {
            let request = OrderRecordRequest {
                app_id: app_id.clone(),
                order_id: order_id.clone(),
            };
            upstream.get_order_record(&request, None).await?
        }
    };
    Ok(from_wire(record))
}

/// Final when settled by match state, when every attempt failed and no flow fallback came in
/// time, or when the longest possible code expiry has passed.
fn is_final(hub: &WatchHub, record: &Record, started: Instant, last_change: Instant) -> bool {
    let config = &hub.shared.config;
    changes::is_settled(record)
        || (changes::all_attempts_failed(record) && last_change.elapsed() >= config.flow_settle)
        || started.elapsed() >= config.max_lifetime
}

/// Worth retrying: the upstream may answer next time.
fn is_transient(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Timeout { .. }
        | UpstreamError::Connect { .. }
        | UpstreamError::Interrupted { .. }
        | UpstreamError::Decode { .. }
        | UpstreamError::Overloaded { .. } => true,
        UpstreamError::Http { status, .. } => *status == 429 || *status >= 500,
        // The same record will not shrink below the cap by asking again.
        UpstreamError::ResponseTooLarge { .. } => false,
        UpstreamError::Rejected { status, .. } => {
            UpstreamStatus::from_code(*status) == UpstreamStatus::SystemError
        }
    }
}

/// The `step`th wait of a backoff schedule; the last entry repeats.
fn backoff_step(schedule: &[std::time::Duration], step: usize) -> std::time::Duration {
    schedule
        .get(step)
        .or(schedule.last())
        .copied()
        .unwrap_or(std::time::Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{store::MemoryStore, upstream::UpstreamConfig, watch::WatchConfig};

    #[test]
    fn only_failures_a_retry_can_cure_are_transient() {
        use crate::upstream::Endpoint;
        let endpoint = Endpoint::VerificationRecord;
        let http = |status| UpstreamError::Http { endpoint, status };
        let rejected = |status| UpstreamError::Rejected {
            endpoint,
            status,
            reason: String::new(),
        };
        let detail = String::new;
        let transient = [
            UpstreamError::Timeout { endpoint },
            UpstreamError::Connect {
                endpoint,
                detail: detail(),
            },
            UpstreamError::Decode {
                endpoint,
                detail: detail(),
            },
            http(429),
            http(500),
            http(503),
            rejected(-18),
            UpstreamError::Overloaded { endpoint, limit: 1 },
        ];
        for error in &transient {
            assert!(is_transient(error), "{error}");
        }
        for error in [http(400), http(404), http(428), rejected(-24), rejected(-1)] {
            assert!(!is_transient(&error), "{error}");
        }
    }

    #[test]
    fn backoff_grows_then_holds() {
        let schedule = [
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(5),
        ];
        let steps: Vec<_> = (0..5)
            .map(|i| backoff_step(&schedule, i).as_secs())
            .collect();
        assert_eq!(steps, [1, 2, 5, 5, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn final_when_settled_when_failed_long_enough_or_when_too_old() {
        use crate::proto::v1::{DeliveryStatus, MatchState, SmsAttempt, VerificationOutcome};
        let (_stop_tx, stop) = watch::channel(false);
        let config = WatchConfig {
            flow_settle: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(100),
            ..WatchConfig::default()
        };
        let hub = WatchHub::new(config, stop, Arc::new(MemoryStore::default()));
        let sms = |status: DeliveryStatus| SmsAttempt {
            status: status as i32,
            ..Default::default()
        };
        let pending = Record {
            sms_attempts: vec![sms(DeliveryStatus::Sending)],
            ..Default::default()
        };
        let failed = Record {
            sms_attempts: vec![sms(DeliveryStatus::Failed)],
            ..Default::default()
        };
        let matched = Record {
            outcome: Some(VerificationOutcome {
                match_state: MatchState::Matched as i32,
                ..Default::default()
            }),
            ..pending.clone()
        };
        let started = Instant::now();
        tokio::time::advance(Duration::from_secs(50)).await;
        let last_change = Instant::now();
        let is_final = |record: &Record| is_final(&hub, record, started, last_change);
        assert!(is_final(&matched), "a matched code settles at once");
        assert!(!is_final(&pending));
        assert!(!is_final(&failed), "a flow fallback may still come");
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!is_final(&failed), "9 s after the last change");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(is_final(&failed), "10 s after the last change");
        assert!(
            !is_final(&pending),
            "an attempt still sending keeps it open"
        );
        tokio::time::advance(Duration::from_secs(39)).await;
        assert!(!is_final(&pending), "99 s after the start");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            is_final(&pending),
            "100 s after the start: the code has expired"
        );
    }

    /// Starts a poller of verification "1" on `server` for `config`; its published states.
    fn start(server: &wiremock::MockServer, config: WatchConfig) -> watch::Receiver<PollState> {
        let (stop_tx, stop) = watch::channel(false);
        // Never sent: the hub must not see a shutdown.
        std::mem::forget(stop_tx);
        let hub = WatchHub::new(config, stop, Arc::new(MemoryStore::default()));
        let upstream = UpstreamClient::new(UpstreamConfig {
            base_url: server.uri(),
            api_key: "k".into(),
            api_secret: "s".into(),
            timeout: Duration::from_secs(5),
        })
        .expect("client");
        let key: PollerKey = ("default".into(), WatchKey::Verification("1".into()));
        let (sender, states) = watch::channel(PollState::Pending);
        tokio::spawn(run(hub, upstream, key, sender, Watcher::Connection(None)));
        states
    }

    async fn reply(server: &wiremock::MockServer, body: &'static str) {
        use wiremock::{Mock, ResponseTemplate, matchers::path};
        Mock::given(path("/verification/record/1"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn transient_errors_are_retried_up_to_the_limit_then_end_the_watch() {
        let server = wiremock::MockServer::start().await;
        reply(&server, r#"{"status":-18,"reason":"busy"}"#).await;
        let config = WatchConfig {
            backoff: vec![Duration::from_millis(1)],
            max_consecutive_errors: 2,
            ..WatchConfig::default()
        };
        let mut states = start(&server, config);
        tokio::time::timeout(
            Duration::from_secs(10),
            states.wait_for(|s| matches!(s, PollState::Failed(_))),
        )
        .await
        .expect("the watch ends within 10 s")
        .expect("with the error, published before the poller stops");
        let polls = server.received_requests().await.expect("recorded").len();
        assert_eq!(
            polls, 3,
            "two errors are tolerated, the third ends the watch"
        );
    }

    #[tokio::test]
    async fn a_record_is_published_once_and_polling_goes_on_while_it_is_open() {
        let server = wiremock::MockServer::start().await;
        reply(&server, r#"{"status":0,"data":{"verificationId":"1"}}"#).await;
        let config = WatchConfig {
            backoff: vec![Duration::from_millis(1)],
            ..WatchConfig::default()
        };
        let mut states = start(&server, config);
        tokio::time::timeout(
            Duration::from_secs(10),
            states.wait_for(|s| matches!(s, PollState::Record { last: false, .. })),
        )
        .await
        .expect("the first record within 10 s")
        .expect("published");
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.received_requests().await.expect("recorded").len() < 3 {
            assert!(Instant::now() < deadline, "no third poll within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The unchanged record was not published again, and the poller still runs.
        assert_eq!(states.has_changed().ok(), Some(false));
    }

    #[tokio::test]
    async fn an_unchanged_record_is_polled_less_and_less_often() {
        let server = wiremock::MockServer::start().await;
        reply(&server, r#"{"status":0,"data":{"verificationId":"1"}}"#).await;
        let config = WatchConfig {
            backoff: vec![Duration::from_millis(1), Duration::from_secs(1)],
            ..WatchConfig::default()
        };
        let started = Instant::now();
        let _states = start(&server, config);
        let deadline = started + Duration::from_secs(10);
        while server.received_requests().await.expect("recorded").len() < 3 {
            assert!(Instant::now() < deadline, "no third poll within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Poll (the record is new), 1 ms, poll (unchanged: one quiet poll), 1 s, poll.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1),
            "the third poll came after {elapsed:?}, before the second backoff step"
        );
    }
}

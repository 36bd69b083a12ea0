//! The process's Prometheus metrics, through the `metrics` facade and
//! `metrics-exporter-prometheus`.
//!
//! Every metric name is a constant here and every recording goes through a function here, so the
//! list in the README is this file. Label values are `&'static str` (route templates, interned
//! RPC names, fixed status strings), so recording allocates no label strings. The recorder is
//! global (one per process); [`install`] is idempotent so in-process tests can start many servers.

use std::{sync::OnceLock, time::Duration};

use metrics::{
    SharedString, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// gRPC calls handled, by `service`, `method` and `code`.
pub const GRPC_REQUESTS: &str = "grpc_server_requests_total";
/// gRPC call duration until the last response frame, by `service` and `method`.
pub const GRPC_DURATION: &str = "grpc_server_request_duration_seconds";
/// gRPC calls in progress (streams included), by `service` and `method`.
pub const GRPC_IN_FLIGHT: &str = "grpc_server_requests_in_flight";
/// ITNIO HTTP attempts, by `endpoint` (route template) and `upstream_status` (ITNIO's status
/// string, or `none` when no envelope was read).
pub const UPSTREAM_REQUESTS: &str = "itnio_upstream_requests_total";
/// ITNIO attempt latency, by `endpoint`.
pub const UPSTREAM_DURATION: &str = "itnio_upstream_request_duration_seconds";
/// Failed ITNIO attempts, by `endpoint` and `kind` (rejected, timeout, connect, http, decode).
pub const UPSTREAM_ERRORS: &str = "itnio_upstream_errors_total";
/// Open WatchRecord streams.
pub const WATCH_STREAMS: &str = "itnio_watch_streams_open";
/// Record pollers running (one per watched verification or order).
pub const WATCH_POLLERS: &str = "itnio_watch_pollers_active";
/// Record polls made by WatchRecord pollers.
pub const WATCH_POLLS: &str = "itnio_watch_polls_total";
/// Calls the send guard refused (or, in dry-run, would have), by `reason`, `country` (ISO
/// 3166 code: bounded) and `dry_run`.
pub const GUARD_REFUSALS: &str = "itnio_guard_refusals_total";
/// Sends answered with the verification already pending for the number and app, by `country`
/// and `dry_run`.
pub const GUARD_PENDING_RETURNED: &str = "itnio_guard_pending_returned_total";
/// Round trips to the shared state store, by `backend` (memory or redis) and `operation` (get,
/// put, delete, increment, batch, write): a send costs one batch and one write.
pub const STORE_ROUND_TRIPS: &str = "itnio_store_round_trips_total";
/// Always 1, labelled with `version` and `mode` (live or sandbox).
pub const BUILD_INFO: &str = "itnio_otp_grpc_build_info";

/// Latency buckets in seconds: a loopback sandbox call (~1 ms) up to the default 10 s timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once and returns the handle that renders it. If another
/// recorder was installed first (a host program's), metrics go there and this renders nothing.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Only an empty bucket list is refused, and LATENCY_BUCKETS is not empty; were it ever
        // refused, histograms would render as summaries instead.
        let recorder = recorder().unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_ok() {
            describe();
        }
        handle
    })
}

fn recorder() -> Result<PrometheusRecorder, BuildError> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(GRPC_DURATION.into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(UPSTREAM_DURATION.into()), &LATENCY_BUCKETS)?
        .build_recorder())
}

/// The text exposition of every metric, for `GET /metrics`.
pub fn render() -> String {
    install().render()
}

fn describe() {
    describe_counter!(
        GRPC_REQUESTS,
        "gRPC calls handled, by service, method and code"
    );
    describe_histogram!(GRPC_DURATION, metrics::Unit::Seconds, "gRPC call duration");
    describe_gauge!(GRPC_IN_FLIGHT, "gRPC calls in progress, streams included");
    describe_counter!(
        UPSTREAM_REQUESTS,
        "ITNIO HTTP attempts, by endpoint and upstream status"
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "ITNIO attempt latency"
    );
    describe_counter!(
        UPSTREAM_ERRORS,
        "failed ITNIO attempts, by endpoint and kind"
    );
    describe_gauge!(WATCH_STREAMS, "open WatchRecord streams");
    describe_gauge!(WATCH_POLLERS, "record pollers running");
    describe_counter!(WATCH_POLLS, "record polls made by WatchRecord pollers");
    describe_gauge!(BUILD_INFO, "build version and ITNIO mode (live or sandbox)");
    describe_counter!(
        GUARD_REFUSALS,
        "calls the send guard refused (dry_run=true: would have), by reason and country"
    );
    describe_counter!(
        STORE_ROUND_TRIPS,
        "round trips to the shared state store, by backend and operation"
    );
    describe_counter!(
        GUARD_PENDING_RETURNED,
        "sends answered with the verification pending for the number and app, by country"
    );
}

fn dry_run_label(dry_run: bool) -> &'static str {
    if dry_run { "true" } else { "false" }
}

/// The send guard refused a call (or would have, in dry-run).
pub(crate) fn guard_refusal(reason: &'static str, country: &str, dry_run: bool) {
    counter!(GUARD_REFUSALS, "reason" => reason, "country" => country.to_owned(), "dry_run" => dry_run_label(dry_run))
        .increment(1);
}

/// The send guard answered a send with the pending verification (or would have, in dry-run).
pub(crate) fn guard_pending_returned(country: &str, dry_run: bool) {
    counter!(GUARD_PENDING_RETURNED, "country" => country.to_owned(), "dry_run" => dry_run_label(dry_run))
        .increment(1);
}

/// One round trip to the shared state store.
pub(crate) fn store_round_trip(backend: &'static str, operation: &'static str) {
    counter!(STORE_ROUND_TRIPS, "backend" => backend, "operation" => operation).increment(1);
}

/// Publishes the build info gauge for the mode this process serves.
pub fn build_info(mode: &'static str) {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "mode" => mode).set(1.0);
}

/// The `account` label of calls no caller was attached to.
pub(crate) const NO_ACCOUNT: &str = "none";

/// A gRPC call has started.
pub(crate) fn rpc_started(service: &'static str, method: &'static str) {
    gauge!(GRPC_IN_FLIGHT, "service" => service, "method" => method).increment(1.0);
}

/// A gRPC call on `account` (the caller's ITNIO account; [`NO_ACCOUNT`] for calls refused before
/// authentication and for health and reflection) has ended with `code` after `duration`.
pub(crate) fn rpc_finished(
    service: &'static str,
    method: &'static str,
    code: &'static str,
    account: SharedString,
    duration: Duration,
) {
    gauge!(GRPC_IN_FLIGHT, "service" => service, "method" => method).decrement(1.0);
    counter!(GRPC_REQUESTS, "service" => service, "method" => method, "code" => code, "account" => account)
        .increment(1);
    histogram!(GRPC_DURATION, "service" => service, "method" => method)
        .record(duration.as_secs_f64());
}

/// One ITNIO HTTP attempt: `upstream_status` is ITNIO's business status when an envelope was
/// read, `error_kind` names the failure (`None` on success).
pub(crate) fn upstream_attempt(
    endpoint: &'static str,
    upstream_status: Option<i32>,
    error_kind: Option<&'static str>,
    duration: Duration,
) {
    let status = upstream_status_label(upstream_status);
    counter!(UPSTREAM_REQUESTS, "endpoint" => endpoint, "upstream_status" => status).increment(1);
    histogram!(UPSTREAM_DURATION, "endpoint" => endpoint).record(duration.as_secs_f64());
    if let Some(kind) = error_kind {
        counter!(UPSTREAM_ERRORS, "endpoint" => endpoint, "kind" => kind).increment(1);
    }
}

/// ITNIO's status codes as label values without formatting: `0` to `-29`, else `other`.
fn upstream_status_label(status: Option<i32>) -> &'static str {
    const LABELS: [&str; 30] = [
        "0", "-1", "-2", "-3", "-4", "-5", "-6", "-7", "-8", "-9", "-10", "-11", "-12", "-13",
        "-14", "-15", "-16", "-17", "-18", "-19", "-20", "-21", "-22", "-23", "-24", "-25", "-26",
        "-27", "-28", "-29",
    ];
    match status {
        None => "none",
        Some(code) => code
            .checked_neg()
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| LABELS.get(n))
            .copied()
            .unwrap_or("other"),
    }
}

/// Counts one record poll.
pub(crate) fn watch_poll() {
    counter!(WATCH_POLLS).increment(1);
}

/// Counts an open WatchRecord stream for as long as it lives.
#[derive(Debug)]
pub(crate) struct StreamGauge(());

impl StreamGauge {
    pub(crate) fn open() -> Self {
        gauge!(WATCH_STREAMS).increment(1.0);
        Self(())
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        gauge!(WATCH_STREAMS).decrement(1.0);
    }
}

/// Counts a running record poller for as long as it lives.
#[derive(Debug)]
pub(crate) struct PollerGauge(());

impl PollerGauge {
    pub(crate) fn start() -> Self {
        gauge!(WATCH_POLLERS).increment(1.0);
        Self(())
    }
}

impl Drop for PollerGauge {
    fn drop(&mut self) {
        gauge!(WATCH_POLLERS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_status_labels_are_the_status_strings() {
        assert_eq!(upstream_status_label(Some(0)), "0");
        assert_eq!(upstream_status_label(Some(-1)), "-1");
        assert_eq!(upstream_status_label(Some(-27)), "-27");
        assert_eq!(upstream_status_label(Some(-29)), "-29");
        assert_eq!(upstream_status_label(Some(-30)), "other");
        assert_eq!(upstream_status_label(Some(5)), "other");
        assert_eq!(upstream_status_label(Some(i32::MIN)), "other");
        assert_eq!(upstream_status_label(None), "none");
    }

    /// Runs `record` against a fresh recorder built like the process's (a thread-local one, so
    /// tests running in parallel never share values) and returns its text exposition.
    fn rendered(record: impl FnOnce()) -> String {
        let recorder = recorder().expect("latency buckets");
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, record);
        handle.render()
    }

    /// The value of the sample `name` carrying at least `labels`, from a text exposition.
    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            let wanted = labels
                .iter()
                .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
            (metric == name && wanted).then(|| value.parse().ok())?
        })
    }

    #[test]
    fn guard_decisions_are_counted_by_reason_country_and_dry_run() {
        let text = rendered(|| {
            guard_refusal("caller_quota", "ZZ", true);
            guard_refusal("caller_quota", "ZZ", false);
            guard_refusal("caller_quota", "ZZ", false);
            guard_pending_returned("YY", true);
        });
        let refused = |dry_run| {
            sample(
                &text,
                GUARD_REFUSALS,
                &[
                    ("reason", "caller_quota"),
                    ("country", "ZZ"),
                    ("dry_run", dry_run),
                ],
            )
        };
        assert_eq!(refused("true"), Some(1.0), "{text}");
        assert_eq!(refused("false"), Some(2.0), "{text}");
        assert_eq!(
            sample(
                &text,
                GUARD_PENDING_RETURNED,
                &[("country", "YY"), ("dry_run", "true")]
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn build_info_names_the_version_and_mode() {
        let text = rendered(|| build_info("sandbox"));
        assert_eq!(
            sample(
                &text,
                BUILD_INFO,
                &[("version", env!("CARGO_PKG_VERSION")), ("mode", "sandbox")]
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn rpcs_are_counted_timed_and_tracked_in_flight() {
        let text = rendered(|| {
            rpc_started("test.Service", "Started");
            rpc_started("test.Service", "Started");
            rpc_finished(
                "test.Service",
                "Started",
                "NOT_FOUND",
                SharedString::const_str("brand-b"),
                Duration::from_secs(2),
            );
        });
        let rpc = [("service", "test.Service"), ("method", "Started")];
        assert_eq!(sample(&text, GRPC_IN_FLIGHT, &rpc), Some(1.0), "{text}");
        let finished = [
            ("service", "test.Service"),
            ("method", "Started"),
            ("code", "NOT_FOUND"),
            ("account", "brand-b"),
        ];
        assert_eq!(sample(&text, GRPC_REQUESTS, &finished), Some(1.0), "{text}");
        // 2 s falls in the 2.5 s bucket, not the 1 s one: the latency buckets apply.
        let bucket = |le| {
            let name = format!("{GRPC_DURATION}_bucket");
            sample(&text, &name, &[rpc[0], rpc[1], ("le", le)])
        };
        assert_eq!(bucket("1"), Some(0.0), "{text}");
        assert_eq!(bucket("2.5"), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, &format!("{GRPC_DURATION}_sum"), &rpc),
            Some(2.0),
            "{text}"
        );
    }

    #[test]
    fn upstream_attempts_are_counted_by_status_and_failures_by_kind() {
        let text = rendered(|| {
            upstream_attempt("/test/ok", Some(-3), None, Duration::from_millis(3));
            upstream_attempt("/test/ok", None, Some("timeout"), Duration::from_secs(2));
        });
        let requests = |status| {
            sample(
                &text,
                UPSTREAM_REQUESTS,
                &[("endpoint", "/test/ok"), ("upstream_status", status)],
            )
        };
        assert_eq!(requests("-3"), Some(1.0), "{text}");
        assert_eq!(requests("none"), Some(1.0), "{text}");
        assert_eq!(
            sample(
                &text,
                UPSTREAM_ERRORS,
                &[("endpoint", "/test/ok"), ("kind", "timeout")]
            ),
            Some(1.0),
            "{text}"
        );
        let bucket = |le| {
            let name = format!("{UPSTREAM_DURATION}_bucket");
            sample(&text, &name, &[("endpoint", "/test/ok"), ("le", le)])
        };
        assert_eq!(bucket("0.005"), Some(1.0), "{text}");
        assert_eq!(bucket("2.5"), Some(2.0), "{text}");
    }

    #[test]
    fn watch_gauges_follow_the_streams_and_pollers_alive() {
        let recorder = recorder().expect("latency buckets");
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            let stream = StreamGauge::open();
            let pollers = [PollerGauge::start(), PollerGauge::start()];
            watch_poll();
            watch_poll();
            let text = handle.render();
            assert_eq!(sample(&text, WATCH_STREAMS, &[]), Some(1.0), "{text}");
            assert_eq!(sample(&text, WATCH_POLLERS, &[]), Some(2.0), "{text}");
            assert_eq!(sample(&text, WATCH_POLLS, &[]), Some(2.0), "{text}");
            drop(stream);
            drop(pollers);
            let text = handle.render();
            assert_eq!(sample(&text, WATCH_STREAMS, &[]), Some(0.0), "{text}");
            assert_eq!(sample(&text, WATCH_POLLERS, &[]), Some(0.0), "{text}");
        });
    }

    #[test]
    fn metrics_are_described() {
        let text = rendered(|| {
            describe();
            watch_poll();
        });
        assert!(
            text.contains(&format!(
                "# HELP {WATCH_POLLS} record polls made by WatchRecord pollers"
            )),
            "{text}"
        );
    }

    #[test]
    fn the_process_recorder_renders_what_is_recorded() {
        install();
        build_info("sandbox");
        let text = render();
        assert_eq!(
            sample(&text, BUILD_INFO, &[("mode", "sandbox")]),
            Some(1.0),
            "{text}"
        );
    }
}

#!/usr/bin/env bash
# Benchmark (issue 9): 10,000 concurrent streams on one HTTP/2 connection, measured the way the
# issue measured it, with h2load (nghttp2-client): GetApp in sandbox mode, `-c 1 -m 10000`,
# 10,000 requests and then 100,000 more, printing the facade's RSS after each and after 5 s idle.
#
#   scripts/bench-streams-rss.sh [BIN ...]
#
# Each BIN (default: target/release/itnio-otp-grpc) is started in turn, so a release build of an
# older commit and of this one compare side by side in one run. Needs h2load on PATH
# (`apt-get install nghttp2-client`) and grpcurl (./.venv/bin/grpcurl, which
# tests/interop/run.sh installs, or on PATH). Not part of ./scripts/test.sh: minutes, not seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v h2load >/dev/null || { echo "h2load not found: apt-get install nghttp2-client" >&2; exit 1; }
grpcurl=$(command -v grpcurl || echo .venv/bin/grpcurl)
[[ -x $grpcurl ]] || { echo "grpcurl not found: run tests/interop/run.sh once, or put it on PATH" >&2; exit 1; }
(($#)) || set -- target/release/itnio-otp-grpc

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
body=$(mktemp)
trap 'rm -f "$body"' EXIT

for bin in "$@"; do
    port=$(free_port)
    GRPC_LISTEN_ADDR=127.0.0.1:$port HEALTH_LISTEN_ADDR=127.0.0.1:0 METRICS_LISTEN_ADDR=127.0.0.1:0 \
        ITNIO_MODE=sandbox ALLOW_UNAUTHENTICATED=true RUST_LOG=warn "$bin" >/dev/null 2>&1 &
    pid=$!
    ready=false
    for _ in $(seq 1 100); do
        if "$grpcurl" -plaintext "127.0.0.1:$port" list >/dev/null 2>&1; then ready=true; break; fi
        sleep 0.1
    done
    $ready || { echo "$bin did not start" >&2; kill "$pid"; exit 1; }
    app=$("$grpcurl" -plaintext -d '{"name":"streams-rss","code_expiry_minutes":60}' \
        "127.0.0.1:$port" itnio.otp.v1.AppService/CreateApp |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["app"]["appId"])')
    # One gRPC message: GetAppRequest { app_id } behind the 5-byte length prefix.
    python3 -c '
import sys
app = sys.argv[1].encode()
message = b"\x0a" + bytes([len(app)]) + app
sys.stdout.buffer.write(b"\x00" + len(message).to_bytes(4, "big") + message)' "$app" >"$body"
    load() {
        h2load -n "$1" -c 1 -m 10000 -d "$body" -H 'content-type: application/grpc' -H 'te: trailers' \
            "http://127.0.0.1:$port/itnio.otp.v1.AppService/GetApp" | grep -E '^(requests|finished in)' | sed 's/^/    /'
    }
    echo "== $bin"
    echo "RSS at start: $(rss_mb "$pid") MB"
    load 10000
    echo "RSS after 10,000 requests: $(rss_mb "$pid") MB"
    load 100000
    echo "RSS after 100,000 more: $(rss_mb "$pid") MB"
    sleep 5
    echo "RSS after 5 s idle: $(rss_mb "$pid") MB"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done

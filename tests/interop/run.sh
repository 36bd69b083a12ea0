#!/usr/bin/env bash
# The interop suite: the service as seen from clients no one here wrote.
#
#   tests/interop/run.sh
#
# Installs its own tools (./.venv from requirements.txt, ./node_modules from package-lock.json),
# lints the protos and checks for breaking changes, builds the server, starts ONE server in
# sandbox mode on a free port, then runs the Python and Node journeys, gRPC-Web from Connect's
# Node client (HTTP/1.1 and HTTP/2, error details, CORS preflights), the grpcurl checks and
# the three examples against it, plus the sandbox inbox page in headless chromium (installed
# with apt-get if missing; screenshot in target/interop/inbox.png) and a curl walk-through of a
# standalone sandbox; secure.sh starts two more servers (TLS + callers file, mTLS) for the token,
# TLS and mTLS checks from grpcurl, Python and Node. Each check prints `ok - ...`; the last line
# is the summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
logs="$repo/target/interop"
mkdir -p "$logs"

say() { printf '\n==> %s\n' "$*"; }
passed=0
failed=0

# step NAME CMD...: runs CMD with its output shown and logged; counts its `ok -` lines.
step() {
  local name="$1" log="$logs/$1.log"
  shift
  say "$name: $*"
  if timeout 180 "$@" 2>&1 | tee "$log"; then
    passed=$((passed + $(grep -c '^ok - ' "$log" || true)))
  else
    failed=$((failed + 1))
    echo "FAILED: $name (log: $log)" >&2
  fi
}

say "tools: python3 -m venv .venv; pip install -r tests/interop/requirements.txt"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt

say "tools: npm ci"
# The lock is complete only where the registry serves every platform's optional buf binary;
# where it is not, npm ci refuses and npm install (same pinned versions, lock untouched) is used.
if ! npm ci --no-audit --no-fund >"$logs/npm-ci.log" 2>&1; then
  echo "npm ci refused (log: $logs/npm-ci.log); npm install --no-save"
  npm install --no-save --no-audit --no-fund
fi
export PATH="$repo/.venv/bin:$repo/node_modules/.bin:$PATH"

say "tools: Debian chromium, chromium-driver, curl, jq (apt-get, only if missing)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v curl >/dev/null || ! command -v jq >/dev/null; then
  sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  # Waits for another apt/dpkg run to finish instead of failing on its lock.
  $sudo apt-get -o DPkg::Lock::Timeout=600 update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium chromium-driver curl jq
fi
chromium --version 2>/dev/null && chromedriver --version

step buf tests/interop/buf.sh

say "build: cargo build --bin itnio-otp-grpc --example send_and_check"
cargo build --bin itnio-otp-grpc --example send_and_check

say "descriptors for the gRPC-Web client: buf build proto/ and tests/interop/protos/"
buf build -o "$logs/otp.binpb"
buf build tests/interop/protos -o "$logs/rpc.binpb"

web_origin=http://localhost:8080
say "server: GRPC_LISTEN_ADDR=127.0.0.1:0 METRICS_LISTEN_ADDR=127.0.0.1:0 SANDBOX_SPEED=100 CORS_ALLOWED_ORIGINS=$web_origin target/debug/itnio-otp-grpc"
# Sandbox mode means no ITNIO credentials: make sure none leak in from the caller's environment.
env -u ITNIO_API_KEY -u ITNIO_API_SECRET -u ITNIO_API_SECRET_FILE -u ITNIO_BASE_URL -u ITNIO_MODE GRPC_LISTEN_ADDR=127.0.0.1:0 METRICS_LISTEN_ADDR=127.0.0.1:0 SANDBOX_SPEED=100 \
  CORS_ALLOWED_ORIGINS="$web_origin" target/debug/itnio-otp-grpc 2>"$logs/server.log" &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" || true' EXIT
addr=""
for _ in $(seq 300); do # up to 30 s
  addr="$(grep -o 'gRPC server listening addr=[0-9.]*:[0-9]*' "$logs/server.log" | head -1 | cut -d= -f2 || true)"
  [[ -n "$addr" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$logs/server.log" >&2; echo "server exited before listening" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$addr" ]] || { cat "$logs/server.log" >&2; echo "server did not log its address within 30 s" >&2; exit 1; }
echo "listening on $addr"
export ITNIO_OTP_GRPC_ADDR="$addr"
inbox_url="$(grep -o 'inbox=http://[^ ]*' "$logs/server.log" | head -1 | cut -d= -f2 || true)"
[[ -n "$inbox_url" ]] || { cat "$logs/server.log" >&2; echo "the server did not log its sandbox inbox URL" >&2; exit 1; }
echo "sandbox inbox at $inbox_url"

step python .venv/bin/python tests/interop/journey.py "$addr"
step node node tests/interop/journey.js "$addr"
step grpc-web node tests/interop/grpc_web.js "$addr" "$logs/otp.binpb" "$logs/rpc.binpb" "$web_origin"
step grpcurl tests/interop/grpcurl.sh "$addr"
step browser .venv/bin/python tests/interop/inbox_browser.py "$addr" "$inbox_url" "$logs/inbox.png"
step curl tests/interop/curl_walkthrough.sh target/debug/itnio-otp-grpc
step grpcurl-errors tests/interop/grpcurl_errors.sh target/debug/itnio-otp-grpc "$logs"
step secure tests/interop/secure.sh

# example NAME CMD...: runs an example and checks that it printed a matched code.
example() {
  local name="$1"
  shift
  step "example-$name" tests/interop/expect_matched.sh "$name" "$@"
}
example rust target/debug/examples/send_and_check
example python env PYTHONPATH="$(.venv/bin/python tests/interop/gen_stubs.py)" .venv/bin/python examples/python/send_and_check.py
example node node examples/node/send_and_check.js

echo
echo "interop: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]

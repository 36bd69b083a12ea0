#!/usr/bin/env bash
# grpcurl decodes every kind of error detail through server reflection alone (no .proto files):
# ErrorInfo, BadRequest, QuotaFailure and RetryInfo, and `describe google.rpc.*` works.
# Usage: tests/interop/grpcurl_errors.sh BINARY LOG_DIR   (grpcurl on PATH)
# Starts its own pair: the `sandbox` subcommand (whose /_sandbox/inject scripts upstream
# failures) and the service in ITNIO_MODE=live pointed at it.
# Prints one `ok - ...` line per check; exits non-zero on the first failure.
set -euo pipefail

bin="$1"
logs="$2"
g() { grpcurl -plaintext -max-time 15 "$@"; }
ok() { echo "ok - grpcurl errors: $*"; }
fail() { echo "not ok - grpcurl errors: $*" >&2; exit 1; }
json() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

# addr_of LOG NEEDLE: the addr= of the first log line containing NEEDLE (waits up to 30 s).
addr_of() {
  local addr=""
  for _ in $(seq 300); do
    addr="$(grep -o "$2.*addr=[0-9.]*:[0-9]*" "$1" | head -1 | sed 's/.*addr=//' || true)"
    [[ -n "$addr" ]] && { echo "$addr"; return; }
    sleep 0.1
  done
  cat "$1" >&2
  fail "no '$2' line in $1 within 30 s"
}

pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait || true' EXIT

"$bin" sandbox --listen 127.0.0.1:0 2>"$logs/errors-sandbox.log" &
pids+=($!)
sandbox="$(addr_of "$logs/errors-sandbox.log" 'ITNIO sandbox listening')"

env -u ITNIO_API_SECRET_FILE ITNIO_MODE=live ITNIO_API_KEY=sandbox-key ITNIO_API_SECRET=sandbox-secret ALLOW_TEST_NUMBERS=true \
  ITNIO_BASE_URL="http://$sandbox" GRPC_LISTEN_ADDR=127.0.0.1:0 METRICS_LISTEN_ADDR=127.0.0.1:0 ALLOW_UNAUTHENTICATED=true \
  "$bin" 2>"$logs/errors-facade.log" &
pids+=($!)
addr="$(addr_of "$logs/errors-facade.log" 'gRPC server listening')"

for m in ErrorInfo BadRequest QuotaFailure RetryInfo; do
  grep -q "google.rpc.$m is a message" <<<"$(g "$addr" describe "google.rpc.$m")" \
    || fail "describe google.rpc.$m"
done
ok "describe google.rpc.ErrorInfo, BadRequest, QuotaFailure, RetryInfo"

# inject STATUS: the sandbox answers the next POST /verification/send with STATUS.
inject() {
  python3 - "$sandbox" "$1" <<'PY'
import json, sys, urllib.request
body = json.dumps({"endpoint": "POST /verification/send", "status": sys.argv[2]}).encode()
request = urllib.request.Request(f"http://{sys.argv[1]}/_sandbox/inject", body, {"Content-Type": "application/json"})
assert json.load(urllib.request.urlopen(request))["ok"]
PY
}

# error_of ARGS...: grpcurl's error output of a call that must fail.
error_of() {
  local out
  if out="$(g "$@" 2>&1)"; then fail "expected an error from $*: $out"; fi
  echo "$out"
}

err="$(error_of -d '{"name":"ab"}' "$addr" itnio.otp.v1.AppService/CreateApp)"
grep -q 'Code: InvalidArgument' <<<"$err" || fail "bad CreateApp: $err"
grep -q '"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":\[{"field":"name"' <<<"$err" \
  || fail "BadRequest not decoded: $err"
grep -q '"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"itniotech.com".*"reason":"INVALID_REQUEST"' <<<"$err" \
  || fail "ErrorInfo not decoded: $err"
ok "InvalidArgument shows BadRequest and ErrorInfo decoded"

app_id="$(json app.appId <<<"$(g -d '{"name":"errors-app"}' "$addr" itnio.otp.v1.AppService/CreateApp)")"
template_id="$(json template.templateId <<<"$(g -d "{\"app_id\":\"$app_id\",\"name\":\"errors-tpl\",\"text\":\"Code ##code##\"}" \
  "$addr" itnio.otp.v1.TemplateService/CreateTemplate)")"
send="{\"app_id\":\"$app_id\",\"template_id\":\"$template_id\",\"phone_number\":\"+999 00 1234 5678\"}"

inject -27
err="$(error_of -d "$send" "$addr" itnio.otp.v1.VerificationService/SendVerification)"
grep -q 'Code: ResourceExhausted' <<<"$err" || fail "-27: $err"
grep -q '"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":\[{' <<<"$err" \
  || fail "QuotaFailure not decoded: $err"
grep -q '"reason":"PERIOD_TOTAL_LIMIT"' <<<"$err" || fail "ErrorInfo reason for -27: $err"
grep -q '"upstream_status":"-27"' <<<"$err" || fail "ErrorInfo metadata for -27: $err"
ok "ResourceExhausted (-27) shows QuotaFailure and ErrorInfo decoded"

inject -18
err="$(error_of -d "$send" "$addr" itnio.otp.v1.VerificationService/SendVerification)"
grep -q 'Code: Unavailable' <<<"$err" || fail "-18: $err"
grep -q '"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1s"' <<<"$err" \
  || fail "RetryInfo not decoded: $err"
grep -q '"reason":"SYSTEM_ERROR"' <<<"$err" || fail "ErrorInfo reason for -18: $err"
ok "Unavailable (-18) shows RetryInfo and ErrorInfo decoded"

g -d "$send" "$addr" itnio.otp.v1.VerificationService/SendVerification >/dev/null \
  || fail "a send after the injected failures"
ok "the next send succeeds"

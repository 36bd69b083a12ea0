#!/usr/bin/env bash
# grpcurl against the running server, using server reflection only (no .proto files).
# Usage: tests/interop/grpcurl.sh HOST:PORT   (grpcurl on PATH; the server in sandbox mode)
# Prints one `ok - ...` line per check; exits non-zero on the first failure.
set -euo pipefail

addr="$1"
run="$(date +%s%N | tail -c 9)"

g() { grpcurl -plaintext -max-time 15 "$@"; }
ok() { echo "ok - grpcurl: $*"; }
fail() { echo "not ok - grpcurl: $*" >&2; exit 1; }
# json FIELD.PATH < JSON: one field of grpcurl's output (proto3 JSON: lowerCamelCase names).
json() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

services="$(g "$addr" list)"
for s in itnio.otp.v1.AppService itnio.otp.v1.TemplateService itnio.otp.v1.FlowService \
         itnio.otp.v1.VerificationService itnio.otp.v1.RecordService grpc.health.v1.Health \
         grpc.reflection.v1alpha.ServerReflection; do
  grep -qx "$s" <<<"$services" || fail "list lacks $s; got: $services"
done
# grpcurl 1.8.6 speaks reflection v1alpha; the server's v1alpha service lists itself, not v1.
ok "list shows the 5 services, health and reflection"

desc="$(g "$addr" describe itnio.otp.v1.VerificationService)"
for m in SendVerification SendCustomCode ResendVerification CheckVerification ReportConversion ReportConversionRate; do
  grep -q "rpc $m (" <<<"$desc" || fail "describe lacks $m: $desc"
done
grep -q 'stream .itnio.otp.v1.WatchRecordResponse' <<<"$(g "$addr" describe itnio.otp.v1.RecordService)" \
  || fail "describe RecordService lacks the WatchRecord server stream"
ok "describe VerificationService lists its 6 methods; RecordService has the WatchRecord stream"

health="$(g -d '{"service":""}' "$addr" grpc.health.v1.Health/Check)"
[[ "$(json status <<<"$health")" == SERVING ]] || fail "health: $health"
health="$(g -d '{"service":"itnio.otp.v1.RecordService"}' "$addr" grpc.health.v1.Health/Check)"
[[ "$(json status <<<"$health")" == SERVING ]] || fail "health RecordService: $health"
ok "Health/Check is SERVING for the server and for itnio.otp.v1.RecordService"

app="$(g -d "{\"name\":\"curl-app-$run\",\"code_expiry_minutes\":1}" "$addr" itnio.otp.v1.AppService/CreateApp)"
app_id="$(json app.appId <<<"$app")"
[[ "$(json app.name <<<"$app")" == "curl-app-$run" ]] || fail "CreateApp: $app"
ok "unary AppService/CreateApp -> app_id $app_id"

tpl="$(g -d "{\"app_id\":\"$app_id\",\"name\":\"curl-tpl-$run\",\"text\":\"Code ##code##\",\"code_length\":4}" \
  "$addr" itnio.otp.v1.TemplateService/CreateTemplate)"
template_id="$(json template.templateId <<<"$tpl")"
sent="$(g -d "{\"app_id\":\"$app_id\",\"template_id\":\"$template_id\",\"phone_number\":\"+999 00 1234 5678\"}" \
  "$addr" itnio.otp.v1.VerificationService/SendVerification)"
vid="$(json verificationId <<<"$sent")"
check="$(g -d "{\"verification_id\":\"$vid\",\"code\":\"1234\"}" "$addr" itnio.otp.v1.VerificationService/CheckVerification)"
[[ "$(json matchState <<<"$check")" == MATCH_STATE_MATCHED ]] || fail "CheckVerification: $check"
ok "unary SendVerification + CheckVerification(1234) -> MATCH_STATE_MATCHED"

# Server stream: grpcurl prints each message and exits 0 only when the stream ends with OK.
watch="$(g -d "{\"verification_id\":\"$vid\"}" "$addr" itnio.otp.v1.RecordService/WatchRecord)" \
  || fail "WatchRecord did not end with OK: $watch"
grep -q '"RECORD_CHANGE_INITIAL"' <<<"$watch" || fail "WatchRecord: no initial message: $watch"
grep -q '"final": true' <<<"$watch" || fail "WatchRecord: no final message: $watch"
ok "server stream RecordService/WatchRecord ends with OK after a final message"

# Errors: grpcurl exits non-zero and prints the status code and message.
if err="$(g -d '{"name":"ab"}' "$addr" itnio.otp.v1.AppService/CreateApp 2>&1)"; then
  fail "CreateApp with a 2-character name succeeded: $err"
fi
grep -q 'Code: InvalidArgument' <<<"$err" || fail "bad CreateApp: $err"
ok "CreateApp with a bad name -> Code: InvalidArgument"

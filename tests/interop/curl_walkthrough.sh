#!/usr/bin/env bash
# curl_walkthrough.sh BINARY: the README's curl walk-through, run for real. Starts the
# standalone sandbox (`BINARY sandbox`) on a free port and drives it with curl under the vendor's
# base path /otp/, signing each request (Sign = md5(Api-Key + secret + Timestamp)): create an
# app and a template, send a code to a real-looking number, read it from the inbox, check it.
set -euo pipefail
binary="$1"
log="$(mktemp)"
SANDBOX_LISTEN_ADDR=127.0.0.1:0 SANDBOX_API_KEY=walk-key SANDBOX_API_SECRET=walk-secret \
  "$binary" sandbox 2>"$log" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null && wait "$pid" || true; rm -f "$log"' EXIT
addr=""
for _ in $(seq 100); do # up to 10 s
  addr="$(grep -o 'ITNIO sandbox listening addr=[0-9.]*:[0-9]*' "$log" | head -1 | cut -d= -f2 || true)"
  [[ -n "$addr" ]] && break
  sleep 0.1
done
[[ -n "$addr" ]] || { cat "$log" >&2; echo "the sandbox did not log its address" >&2; exit 1; }

# --- the walk-through, as in the README ---
BASE="http://$addr/otp"
KEY=walk-key
SECRET=walk-secret
itnio() { # itnio METHOD PATH [JSON]
  local ts sign
  ts="$(date +%s)"
  sign="$(printf '%s%s%s' "$KEY" "$SECRET" "$ts" | md5sum | cut -d' ' -f1)"
  curl -sS --fail -X "$1" "$BASE$2" -H "Api-Key: $KEY" -H "Timestamp: $ts" -H "Sign: $sign" \
    -H 'Content-Type: application/json;charset=UTF-8' ${3:+--data "$3"}
}
app_id="$(itnio POST /app/add '{"name":"curl-walk","codeExpiry":5}' | jq -er .data.appId)"
template_id="$(itnio POST /template/add "{\"appId\":\"$app_id\",\"name\":\"curl-walk\",\"text\":\"Your code is ##code##\",\"codeLength\":6}" | jq -er .data.templateId)"
sent="$(itnio POST /verification/send "{\"appId\":\"$app_id\",\"templateId\":$template_id,\"to\":\"4915112345678\"}")"
verification_id="$(jq -er .data.verificationId <<<"$sent")"
code="$(curl -sS --fail "http://$addr/_sandbox/inbox.json?to=4915112345678" | jq -er '.[0].code')"
matched="$(itnio POST /verification/verify "{\"verificationId\":\"$verification_id\",\"code\":\"$code\"}" | jq -er .data.matched)"
# --- end ---

echo "app $app_id, template $template_id, verification $verification_id, code $code, matched $matched"
[[ "$template_id" -gt 900000000 ]]
echo "ok - curl: signed requests under /otp/ create an app and a template (templateId $template_id)"
[[ "$code" =~ ^[0-9]{6}$ ]]
echo "ok - curl: the code sent to a real-looking number is read from /_sandbox/inbox.json"
[[ "$matched" == 0 ]]
echo "ok - curl: /otp/verification/verify with that code answers matched 0"
status="$(itnio GET /app/details/"$app_id" | jq -er .status)"
curl -sS --fail -X POST "http://$addr/_sandbox/reset" | jq -e .ok >/dev/null
after="$(itnio GET /app/details/"$app_id" | jq -er .status)"
[[ "$status" == 0 && "$after" == -24 ]]
echo "ok - curl: POST /_sandbox/reset forgets the app (details: status $status, then $after)"

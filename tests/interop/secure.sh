#!/usr/bin/env bash
# Caller tokens, TLS and mTLS seen from grpcurl, Python grpcio and Node grpc-js.
#
#   tests/interop/secure.sh   (run by run.sh: grpcurl, .venv and node_modules on PATH, binary built)
#
# Makes throwaway certificates, writes a callers file (a token whose SHA-256 is listed, and a
# client-certificate subject), starts two servers in sandbox mode — TLS with the callers file,
# and mTLS — and runs the checks against them. Prints one `ok - ...` line per check.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
work="$repo/target/interop/secure"
rm -rf "$work" && mkdir -p "$work"

ok() { echo "ok - $*"; }
fail() { echo "not ok - $*" >&2; exit 1; }

.venv/bin/python tests/interop/make_certs.py "$work"
token="interop-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(16))')"
hash="$(printf '%s' "$token" | .venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
cat >"$work/callers.toml" <<TOML
[[callers]]
name = "interop"
token_sha256 = "$hash"
allow = ["itnio.otp.v1.AppService/*"]

[[callers]]
name = "interop-mtls"
client_subject = "CN=interop-client,O=Acme"
allow = ["itnio.otp.v1.AppService/*"]
TOML

pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" || true; done' EXIT
# start NAME ENV=VALUE...: starts the binary in sandbox mode; sets $addr to the port it logs.
start() {
  local name="$1" log="$work/$1.log"
  shift
  env -u ITNIO_API_KEY -u ITNIO_API_SECRET -u ITNIO_API_SECRET_FILE -u ITNIO_BASE_URL -u ITNIO_MODE \
    GRPC_LISTEN_ADDR=127.0.0.1:0 METRICS_LISTEN_ADDR=127.0.0.1:0 SANDBOX_SPEED=100 CALLERS_FILE="$work/callers.toml" \
    TLS_CERT_FILE="$work/server.pem" TLS_KEY_FILE="$work/server.key" "$@" \
    target/debug/itnio-otp-grpc 2>"$log" &
  pids+=($!)
  addr=""
  for _ in $(seq 300); do # up to 30 s
    addr="$(grep -o 'gRPC server listening addr=[0-9.]*:[0-9]*' "$log" | head -1 | cut -d= -f2 || true)"
    [[ -n "$addr" ]] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log" >&2; fail "$name server exited"; }
    sleep 0.1
  done
  cat "$log" >&2
  fail "$name server did not log its address"
}

start tls
tls_addr="localhost:${addr##*:}"
start mtls TLS_CLIENT_CA_FILE="$work/ca.pem"
mtls_addr="localhost:${addr##*:}"
echo "TLS on $tls_addr, mTLS on $mtls_addr"

g() { grpcurl -max-time 15 -cacert "$work/ca.pem" "$@"; }
out="$(g -H "authorization: Bearer $token" -d '{"name": "grpcurl-tls"}' "$tls_addr" itnio.otp.v1.AppService/CreateApp)"
grep -q '"appId"' <<<"$out" || fail "grpcurl: TLS + token CreateApp: $out"
ok "grpcurl: -cacert and a bearer token: CreateApp answers (reflection over TLS)"
if out="$(g -d '{"name": "grpcurl-no-token"}' "$tls_addr" itnio.otp.v1.AppService/CreateApp 2>&1)"; then
  fail "grpcurl: a call without a token succeeded: $out"
fi
grep -q 'Code: Unauthenticated' <<<"$out" || fail "grpcurl: no token: $out"
ok "grpcurl: no token: Unauthenticated"
if out="$(grpcurl -plaintext -max-time 5 "$tls_addr" list 2>&1)"; then
  fail "grpcurl: plaintext was served on the TLS port: $out"
fi
ok "grpcurl: plaintext is refused on the TLS port"
out="$(g -cert "$work/client.pem" -key "$work/client.key" -d '{"name": "grpcurl-mtls"}' "$mtls_addr" itnio.otp.v1.AppService/CreateApp)"
grep -q '"appId"' <<<"$out" || fail "grpcurl: mTLS CreateApp: $out"
ok "grpcurl: mTLS with -cert/-key: the certificate names the caller"

.venv/bin/python tests/interop/secure.py "$tls_addr" "$mtls_addr" "$work" "$token"
node tests/interop/secure.js "$tls_addr" "$mtls_addr" "$work" "$token"
grep -q "$token" "$work"/*.log && fail "the token appears in a server log"
ok "the token never appears in the server logs"

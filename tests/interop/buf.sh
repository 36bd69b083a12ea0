#!/usr/bin/env bash
# Lints proto/ and fails on any breaking change to the public API (buf from node_modules).
#
# Breaking changes are checked against two baselines:
#   - the main branch (local `main`, else `origin/main`): what this branch would change;
#   - the commit that first published the v1 protos: on main itself the first check compares
#     main with main, so this one is what catches a breaking change already merged.
# Needs a full clone (a shallow one lacks the baseline commits; fetch with --unshallow).
# Prints one `ok - ...` line per check; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

buf=node_modules/.bin/buf
ok() { echo "ok - buf: $*"; }
fail() { echo "not ok - buf: $*" >&2; exit 1; }

$buf lint || fail "buf lint"
ok "lint (STANDARD) proto/"

main_ref=""
for ref in main origin/main; do
  if git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then main_ref="$ref"; break; fi
done
[[ -n "$main_ref" ]] || fail "no main or origin/main branch to compare with (git fetch origin main)"
v1_commit="$(git log --diff-filter=A --format=%H -- proto/itnio/otp/v1/apps.proto | tail -1)"
[[ -n "$v1_commit" ]] || fail "cannot find the commit that added proto/itnio/otp/v1 (shallow clone?)"

# subdir=proto: the baseline's module root, whether or not that commit had a buf.yaml yet.
for against in "$main_ref" "$v1_commit"; do
  $buf breaking --against ".git#ref=$against,subdir=proto" || fail "breaking change against $against"
  ok "no breaking change against $against"
done

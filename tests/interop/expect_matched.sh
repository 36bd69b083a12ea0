#!/usr/bin/env bash
# expect_matched.sh NAME CMD...: runs an example client; passes if it printed a matched code.
set -euo pipefail
name="$1"
shift
output="$("$@")"
echo "$output"
grep -q '^match state: MATCH_STATE_MATCHED$' <<<"$output"
echo "ok - example $name: prints MATCH_STATE_MATCHED"

#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a bounded time each.
#
#   scripts/fuzz.sh                      every target for 5 s (what ./scripts/test.sh runs)
#   scripts/fuzz.sh 600                  every target for 10 minutes
#   scripts/fuzz.sh 3600 request_validation   one target for an hour
#
# Targets: upstream_reply, request_validation, grpc_timeout (fuzz/fuzz_targets/). Each starts
# from its checked-in seeds in fuzz/corpus/<target>/, which are only read: the inputs a run
# discovers go to a scratch directory (kept under fuzz/target/corpus-run/ for a longer run to
# pick up). A crash or a broken invariant fails the run and leaves the input in
# fuzz/artifacts/<target>/; reproduce it with `cargo +nightly fuzz run --sanitizer none <target>
# <file>`, fix it, and add a regression test (and the file to the seeds if it is small).
#
# Installs the nightly toolchain and cargo-fuzz when missing, and fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-5}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(upstream_reply request_validation grpc_timeout)
fi
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "error: seconds must be a positive integer, got '$seconds'" >&2
    exit 2
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "==> installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the crate forbids `unsafe`, so AddressSanitizer would only slow the run down and
# instrument the C dependencies for nothing; panics and broken invariants are what we look for.
build_flags=(--sanitizer none)
# A short smoke run (the test command's 5 s) builds without optimisation: the build is most of
# its cost, and a few seconds of slower fuzzing still replays the seeds and explores around them.
# Longer runs build optimised, where executions per second matter.
if ((seconds <= 60)); then
    build_flags+=(--dev)
fi
cargo +nightly fuzz build "${build_flags[@]}"

for target in "${targets[@]}"; do
    seeds="fuzz/corpus/$target"
    if [[ ! -d $seeds ]]; then
        echo "error: no fuzz target '$target' (no $seeds)" >&2
        exit 2
    fi
    scratch="fuzz/target/corpus-run/$target"
    log="fuzz/target/$target.log"
    mkdir -p "$scratch"
    echo "==> fuzz $target for ${seconds}s (log: $log)"
    if ! cargo +nightly fuzz run "${build_flags[@]}" "$target" "$scratch" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "error: fuzz target '$target' failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" | tr '\n' ' '
    echo
done

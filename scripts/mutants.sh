#!/usr/bin/env bash
# Mutation testing with cargo-mutants: do the tests fail when the code is wrong?
#
#   scripts/mutants.sh                  mutants on the lines changed against main (committed since
#                                       the merge base, plus uncommitted and untracked files in src/)
#   scripts/mutants.sh --base REF       ... changed against REF instead of main
#   scripts/mutants.sh --all            every mutant in the crate (hours on 2 cores; not part of
#                                       ./scripts/test.sh)
#
# Every other argument goes to `cargo mutants` unchanged, e.g. one file, building and running
# only the tests that can catch its mutants (the mapping is in .cargo/mutants.toml):
#
#   scripts/mutants.sh --all -f src/error.rs --cargo-arg=--lib --cargo-arg=--test=e2e_errors
#
# Settings (excluded files, timeouts) live in .cargo/mutants.toml so every run is alike. Results
# go to mutants.out/ (missed.txt, timeout.txt, caught.txt, unviable.txt). The in-diff run is what
# every change passes before it lands: each missed mutant gets a test or a stated reason.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

base=main
all=false
passthrough=()
while (($#)); do
    case "$1" in
        --all) all=true ;;
        --base)
            base=${2:?--base needs a git ref}
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            passthrough+=("$@")
            break
            ;;
        *) passthrough+=("$1") ;;
    esac
    shift
done

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "==> installing cargo-mutants (crates.io)"
    cargo install cargo-mutants --locked
fi

if $all; then
    exec cargo mutants "${passthrough[@]}"
fi

merge_base=$(git merge-base "$base" HEAD) || {
    echo "error: no merge base with '$base' (fetch it, or pass --base REF)" >&2
    exit 2
}
diff_file=$(mktemp "${TMPDIR:-/tmp}/mutants-diff.XXXXXX")
trap 'rm -f "$diff_file"' EXIT
# The working tree against the merge base: commits since `base` plus uncommitted edits.
git diff --no-color --no-ext-diff "$merge_base" -- src >"$diff_file"
# New files not yet added to git count as changed throughout.
while IFS= read -r -d '' untracked; do
    git diff --no-color --no-index -- /dev/null "$untracked" >>"$diff_file" || true
done < <(git ls-files --others --exclude-standard -z -- src)

if [[ ! -s $diff_file ]]; then
    echo "No changes under src/ against $base ($merge_base): no mutants to test."
    exit 0
fi
echo "==> cargo mutants on the lines changed against $base ($(git rev-parse --short "$merge_base"))"
# Not `exec`: the trap removes the diff file once cargo-mutants is done with it.
cargo mutants --in-diff "$diff_file" "${passthrough[@]}"

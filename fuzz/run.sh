#!/usr/bin/env bash
# Runs every fuzz target (or those named as arguments) for a bounded time, for CI.
#
#   FUZZ_SECONDS=20 fuzz/run.sh [target...]
#
# Seeds are generated into fuzz/corpus/<target>/ first (examples/seeds.rs), next to whatever the
# corpus already holds. Exits non-zero if any target crashes, fails an assertion, times out or
# runs out of memory; the input is then in fuzz/artifacts/<target>/, and replays with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"
# cargo-fuzz passes nightly-only flags (-Zsanitizer); this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo run --quiet --release --example seeds -- corpus

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT
failed=()
for target in "${targets[@]}"; do
    echo "=== $target: ${seconds}s"
    # -a: debug assertions and overflow checks, so arithmetic on peer data is checked too.
    # -timeout: one input taking this long is a hang worth reporting.
    # regressions/<target>/ holds inputs that once broke the project; they run first, every time.
    corpora=("corpus/$target")
    if [ -d "regressions/$target" ]; then corpora+=("regressions/$target"); fi
    if ! cargo fuzz run -a "$target" "${corpora[@]}" -- -max_total_time="$seconds" -timeout=10 \
        2>&1 | tee "$log_dir/$target.log"; then
        failed+=("$target")
    fi
done

echo "=== summary"
for target in "${targets[@]}"; do
    # libFuzzer ends with "Done <runs> runs in <seconds> second(s)".
    done_line="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log_dir/$target.log" || true)"
    if [ -n "$done_line" ]; then
        read -r _ runs _ _ secs _ <<<"$done_line"
        echo "$target: $runs runs in ${secs}s ($((runs / (secs > 0 ? secs : 1))) runs/s)"
    else
        echo "$target: FAILED (see fuzz/artifacts/$target/)"
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashing targets: ${failed[*]}" >&2
    exit 1
fi

#!/usr/bin/env bash
# Run each cargo-fuzz target (fuzz/) for SECONDS (default 60) and print one summary line
# per target: seconds run, executions, and whether it crashed. Needs a nightly toolchain
# (libFuzzer's sanitizer flags are nightly-only) and cargo-fuzz. Not run by CI.
#   scripts/fuzz.sh [seconds] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(packet config lists edns_mac)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain. cargo-fuzz needs one for -Zsanitizer:" >&2
    echo "  rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz missing; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

status=0
summary=()
# Seeds, so the fuzzer starts from real inputs instead of growing them from nothing
# (libFuzzer's length limit grows slowly: unseeded, `lists` stayed under 15 bytes in 60 s).
seed() {
    local dir=fuzz/corpus/$1
    shift
    [ -z "$(ls -A "$dir" 2>/dev/null)" ] || return 0
    for f in "$@"; do
        if [ -f "$f" ]; then head -c 4096 "$f" >"$dir/seed-$(basename "$f")"; fi
    done
}
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    case $t in
        lists) seed lists blocklists/*.txt ;;
        config) seed config config/*.toml config/examples/*.toml ;;
    esac
    log="fuzz/fuzz-$t.log"
    echo "--- fuzz $t for ${SECONDS_PER_TARGET}s (log: $log)"
    start=$(date +%s)
    # -rss_limit_mb: the filter of the embedded lists is big; libFuzzer's 2 GB default
    # is enough, the explicit limit documents it.
    if cargo +nightly fuzz run "$t" -- -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        verdict="no crash"
    else
        verdict="CRASH (see $log and fuzz/artifacts/$t/)"
        status=1
    fi
    took=$(($(date +%s) - start))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    summary+=("$t: ${took}s wall (incl. build), ${execs:-?} executions, $verdict")
done
echo "--- summary"
printf '%s\n' "${summary[@]}"
exit $status

#!/usr/bin/env bash
# Build the release binary and run the shared side-by-side harness (dnsmasq, unbound,
# the bare upstream and metaguard with the same 100k list), hit logging to SQLite on.
# Usage: benches/compare.sh [harness options...]   e.g. --reps 1 --duration 10
# Everything stays on 127.0.0.1 (see ../shared/bench/README.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_DIR:-$repo/../shared/bench}
[[ -x $bench/compare.sh ]] || { echo "no harness at $bench (set BENCH_DIR)" >&2; exit 1; }
"$bench/setup.sh" >/dev/null
cargo build --release --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/metaguard
cd "$bench"
exec ./compare.sh --target-name metaguard --json "${BENCH_JSON:-/tmp/metaguard-bench.json}" "$@" --target \
  "$bin serve --config /dev/null --listen \$BENCH_LISTEN_ADDR:\$BENCH_LISTEN_PORT --upstream \$BENCH_UPSTREAM --blocklist \$BENCH_BLOCKLIST_HOSTS --db \$BENCH_RUN_DIR/metaguard.db"

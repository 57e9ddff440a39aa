#!/usr/bin/env bash
# Build the release binary and run the shared side-by-side harness (dnsmasq, unbound,
# the bare upstream and metaguard with the same 100k list), hit logging to SQLite on.
# Usage: benches/compare.sh [harness options...]   e.g. --reps 1 --duration 10
# MG_BIN: measure that binary instead of building target/release/metaguard (e.g. an older
# commit's, built elsewhere). MG_CONFIG: a config file instead of /dev/null (the built-in
# defaults), e.g. one with `[server] threads = 2`. The harness is found beside the main checkout (also from a
# git worktree) unless BENCH_DIR says where.
# Everything stays on 127.0.0.1 (see ../shared/bench/README.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$repo/.git")
bench=${BENCH_DIR:-$(dirname "$common")/../shared/bench}
[[ -x $bench/compare.sh ]] || { echo "no harness at $bench (set BENCH_DIR)" >&2; exit 1; }
"$bench/setup.sh" >/dev/null
bin=${MG_BIN:-$repo/target/release/metaguard}
[[ -n ${MG_BIN:-} ]] || cargo build --release --manifest-path "$repo/Cargo.toml"
cd "$bench"
exec ./compare.sh --target-name metaguard --json "${BENCH_JSON:-/tmp/metaguard-bench.json}" "$@" --target \
  "$bin serve --config ${MG_CONFIG:-/dev/null} --listen \$BENCH_LISTEN_ADDR:\$BENCH_LISTEN_PORT --upstream \$BENCH_UPSTREAM --blocklist \$BENCH_BLOCKLIST_HOSTS --db \$BENCH_RUN_DIR/metaguard.db"

#!/usr/bin/env bash
# Build the .deb with cargo-deb (installed on first use). Extra arguments go to cargo deb,
# e.g. `scripts/build-deb.sh --target aarch64-unknown-linux-gnu` after
# scripts/cross-build.sh (cargo-deb then looks in target/<triple>/release).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb"
    cargo install cargo-deb --locked
fi
cargo deb "$@"
ls -l target/debian/*.deb

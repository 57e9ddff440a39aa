#!/usr/bin/env bash
# Re-take docs/screenshots/{report,household,device,live,lists,status,controls,device-controls}-{360,1280}.png:
# the browser tests (tests/browser/, headless Chromium over WebDriver) write them when
# METAGUARD_SCREENSHOTS names a directory. Needs Debian's chromium and chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."
METAGUARD_SCREENSHOTS=docs/screenshots CI=1 cargo test --test browser -- --test-threads=1 "$@"
ls -l docs/screenshots/

#!/usr/bin/env bash
# Cross-build release binaries for a Raspberry Pi (aarch64: Pi 3/4/5 with a 64-bit OS;
# armv7: Pi 2/3 with 32-bit Raspberry Pi OS, many ARM routers) with Debian's cross
# toolchains, then smoke-test each binary under qemu-user (qemu-aarch64-static,
# qemu-arm-static) against a loopback upstream (dnsmasq): one blocked and one allowed
# query with dig.
#
#   scripts/cross-build.sh                  # both targets, then both checks
#   TARGETS=aarch64-unknown-linux-gnu scripts/cross-build.sh
#   SKIP_CHECK=1 scripts/cross-build.sh
#
# Not run by CI (two release builds with LTO take many minutes).
#
# musl (OpenWrt and other routers, whose libc is musl): name the targets, e.g.
#   TARGETS="aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf" scripts/cross-build.sh
# Debian packages no musl cross C compiler (SQLite and ring need one), so these build
# with cargo-zigbuild, zig acting as the C compiler and linker; the script installs both
# (zig from PyPI's ziglang package). The binaries are static and run under qemu-user as is.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=${TARGETS:-"aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"}

need_pkgs=()
command -v aarch64-linux-gnu-gcc >/dev/null || need_pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v arm-linux-gnueabihf-gcc >/dev/null || need_pkgs+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
if [ -z "${SKIP_CHECK:-}" ]; then
    { command -v qemu-aarch64-static && command -v qemu-arm-static; } >/dev/null ||
        need_pkgs+=(qemu-user-static)
    command -v dnsmasq >/dev/null || need_pkgs+=(dnsmasq-base)
    command -v dig >/dev/null || need_pkgs+=(dnsutils)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

# Linker and C compiler (SQLite is bundled, ring has C and assembly) per target.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar

case " $TARGETS " in
*-musl*)
    python3 -m ziglang version >/dev/null 2>&1 || pip3 install --quiet ziglang
    cargo zigbuild --help >/dev/null 2>&1 || cargo install --locked cargo-zigbuild
    ;;
esac

for t in $TARGETS; do
    rustup target add "$t"
    case $t in
    *-musl*) cargo zigbuild --release --target "$t" ;;
    *) cargo build --release --target "$t" ;;
    esac
    ls -l "target/$t/release/metaguard"
done

[ -n "${SKIP_CHECK:-}" ] && exit 0

# Smoke test of each built binary under qemu-user: one blocked and one allowed query
# against a loopback dnsmasq upstream. Every packet stays on 127.0.0.1.
. scripts/loopback-upstream.sh
start_upstream # every name is 192.0.2.1
cat >"$tmp/metaguard.toml" <<CONF
[filter]
lists_dir = "$tmp/no-lists"
[clients]
neighbours = false
leases = []
CONF

check() { # target qemu sysroot
    local t=$1 qemu=$2 sysroot=$3 port log
    echo "--- $t smoke test under $qemu"
    port=$(free_port)
    log="$tmp/metaguard-$t.log"
    "$qemu" -L "$sysroot" "target/$t/release/metaguard" \
        serve --config "$tmp/metaguard.toml" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$UPPORT" --db "$tmp/$t.db" 2>"$log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        grep -q "listening on" "$log" && break
        sleep 0.1
    done
    cat "$log"
    local blocked allowed
    blocked=$(dig +short +time=3 +tries=1 @127.0.0.1 -p "$port" connect.facebook.net A)
    allowed=$(dig +short +time=3 +tries=1 @127.0.0.1 -p "$port" example.com A)
    kill "$pid" 2>/dev/null || true
    echo "connect.facebook.net -> $blocked (want 0.0.0.0)"
    echo "example.com          -> $allowed (want 192.0.2.1)"
    if [ "$blocked" != "0.0.0.0" ] || [ "$allowed" != "192.0.2.1" ]; then
        echo "$t binary FAILED under qemu"
        return 1
    fi
    echo "$t binary OK under qemu"
}

for t in $TARGETS; do
    case $t in
    aarch64-unknown-linux-gnu) check "$t" qemu-aarch64-static /usr/aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) check "$t" qemu-arm-static /usr/arm-linux-gnueabihf ;;
    aarch64-unknown-linux-musl) check "$t" qemu-aarch64-static / ;;
    armv7-unknown-linux-musleabihf) check "$t" qemu-arm-static / ;;
    *) echo "no smoke test for $t" ;;
    esac
done

#!/usr/bin/env bash
# Soak test: the release binary under steady mixed load for MINUTES (default 10) against a
# loopback upstream (dnsmasq answering 192.0.2.1 for everything, else a python3 responder).
# Samples RSS, open fds and threads every 10 s into a CSV, then checks that after a 1 min
# warm-up RSS and fds stay within 10 % (fds: at least 2) of the first post-warm-up sample
# and that the log has no panic. Exit 0 = flat and panic-free. Not run by CI.
#   scripts/soak.sh [minutes]        SOAK_QPS (default 2000), SOAK_OUT (result dir)
#   SOAK_FAST_BUILD=1: build the release profile without fat LTO (quicker, same code paths)
# Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-10}
QPS=${SOAK_QPS:-2000}
OUT=${SOAK_OUT:-$(mktemp -d /tmp/metaguard-soak.XXXXXX)}
mkdir -p "$OUT"
DURATION=$((MINUTES * 60))
WARMUP=60
[ "$DURATION" -gt "$WARMUP" ] || { echo "soak.sh: need more than 1 minute" >&2; exit 2; }

echo "--- building release (results in $OUT)"
if [ "${SOAK_FAST_BUILD:-0}" = 1 ]; then
    export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fi
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/metaguard

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port)
PORT=$(free_port)

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

if command -v dnsmasq >/dev/null 2>&1; then
    dnsmasq --keep-in-foreground --conf-file=/dev/null --no-hosts --no-resolv \
        --port "$UP_PORT" --address=/#/192.0.2.1 --listen-address=127.0.0.1 \
        --bind-interfaces --cache-size=0 --user="$(id -un)" >"$OUT/upstream.log" 2>&1 &
else
    python3 - "$UP_PORT" >"$OUT/upstream.log" 2>&1 <<'PY' &
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    q, a = s.recvfrom(4096)
    if len(q) < 12:
        continue
    i = 12
    while i < len(q) and q[i] != 0:
        i += q[i] + 1
    qend = i + 5
    qtype = q[i + 1:i + 3]
    hdr = q[:2] + b"\x81\x80" + b"\x00\x01" + (b"\x00\x01" if qtype == b"\x00\x01" else b"\x00\x00") + b"\x00\x00\x00\x00"
    ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01" if qtype == b"\x00\x01" else b""
    s.sendto(hdr + q[12:qend] + ans, a)
PY
fi
PIDS+=($!)

cat >"$OUT/metaguard.toml" <<TOML
[server]
listen = ["127.0.0.1:$PORT"]
[server.rate_limit]
qps = 0
[upstream]
servers = ["127.0.0.1:$UP_PORT"]
[filter]
lists_dir = "$OUT/lists"
[store]
db = "$OUT/metaguard.db"
[clients]
neighbours = false
leases = []
TOML

RUST_LOG=${RUST_LOG:-info} "$BIN" serve --config "$OUT/metaguard.toml" >"$OUT/server.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 100); do
    grep -q "listening on" "$OUT/server.log" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$OUT/server.log"; echo "server died" >&2; exit 1; }
    sleep 0.1
done
grep -q "listening on" "$OUT/server.log" || { echo "server did not start" >&2; exit 1; }

# Mixed queries: random names (cache churn), blocked and logged Meta names, AAAA, TXT.
python3 - "$OUT/queries.txt" <<'PY'
import random, sys
meta = ["connect.facebook.net", "an.facebook.com", "graph.facebook.com", "www.facebook.com",
        "graph.instagram.com", "web.whatsapp.com", "pixel.facebook.com"]
with open(sys.argv[1], "w") as f:
    for i in range(200000):
        r = random.random()
        if r < 0.25:
            f.write(f"{random.choice(meta)} A\n")
        elif r < 0.35:
            f.write(f"site{random.randrange(500)}.example AAAA\n")
        elif r < 0.40:
            f.write(f"t{random.randrange(100000)}.example TXT\n")
        else:
            f.write(f"r{random.getrandbits(40):x}.soak.example A\n")
PY

echo "--- load: ${MINUTES} min at up to ${QPS} qps on 127.0.0.1:$PORT (server pid $SERVER)"
if command -v dnsperf >/dev/null 2>&1; then
    dnsperf -s 127.0.0.1 -p "$PORT" -d "$OUT/queries.txt" -l "$DURATION" -Q "$QPS" -c 8 -q 64 \
        >"$OUT/load.log" 2>&1 &
else
    python3 - "$PORT" "$DURATION" "$QPS" "$OUT/queries.txt" >"$OUT/load.log" 2>&1 <<'PY' &
import random, socket, struct, sys, time
port, dur, qps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
lines = open(sys.argv[4]).read().split("\n")[:-1]
types = {"A": 1, "AAAA": 28, "TXT": 16}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
end, sent, got = time.time() + dur, 0, 0
while time.time() < end and sent < qps * dur:
    name, t = lines[sent % len(lines)].split()
    q = struct.pack(">HHHHHH", sent & 0xffff, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q += struct.pack(">HH", types[t], 1)
    s.sendto(q, ("127.0.0.1", port))
    sent += 1
    try:
        s.recv(4096); got += 1
    except socket.timeout:
        pass
print(f"sent {sent} answered {got}")
PY
fi
LOAD=$!
PIDS+=("$LOAD")

CSV="$OUT/samples.csv"
echo "t_s,rss_kb,fds,threads" >"$CSV"
start=$(date +%s)
while :; do
    t=$(($(date +%s) - start))
    kill -0 "$SERVER" 2>/dev/null || { echo "server died during the soak" >&2; exit 1; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER/status")
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$SERVER/status")
    fds=$(ls "/proc/$SERVER/fd" | wc -l)
    echo "$t,$rss,$fds,$thr" >>"$CSV"
    [ "$t" -lt "$DURATION" ] || break
    sleep 10
done
wait "$LOAD" || true
kill -TERM "$SERVER"
wait "$SERVER" || true

echo "--- load"
tail -n 25 "$OUT/load.log"
echo "--- samples ($CSV)"
column -s, -t <"$CSV" | sed -n '1p;0~3p'
flat=0
python3 - "$CSV" "$WARMUP" <<'PY' || flat=1
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
warm = [r for r in rows if int(r["t_s"]) >= int(sys.argv[2])]
base, ok = warm[0], True
for key, slack in (("rss_kb", 0), ("fds", 2)):
    b = int(base[key])
    top = max(int(r[key]) for r in warm)
    last = int(warm[-1][key])
    limit = max(b * 1.10, b + slack)
    flat = top <= limit
    ok &= flat
    print(f"{key}: after warm-up {b}, max {top}, last {last}, limit {limit:.0f}: {'flat' if flat else 'GROWING'}")
thr = sorted({int(r['threads']) for r in warm})
print(f"threads after warm-up: {thr}")
sys.exit(0 if ok else 1)
PY
panics=$(grep -c "panicked" "$OUT/server.log" || true)
echo "panics in the log: $panics"
if [ "$flat" -ne 0 ] || [ "$panics" -ne 0 ]; then
    echo "SOAK FAILED" >&2
    exit 1
fi
echo "SOAK OK"

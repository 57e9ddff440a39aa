#!/usr/bin/env bash
# Boot a real systemd on this machine and install the .deb into it, then check the units
# the way a household meets them. systemd runs as PID 1 of its own PID, mount, network
# and UTS namespaces, on a throwaway overlay of / (upper layer on a tmpfs): nothing it or
# dpkg writes reaches the host, and its network is its own loopback.
#
#   scripts/build-deb.sh && scripts/systemd-smoke.sh [path/to/metaguard_*.deb]
#   SMOKE_NO_IPV6=1 scripts/systemd-smoke.sh   # as on a host with IPv6 turned off
#
# Checks:
#   - `dpkg -i`: the postinst enables and starts metaguard.service and the report timer;
#   - Type=notify: the unit is active only after READY=1, and the watchdog is pinged;
#   - the resolver runs as a dynamic user with CAP_NET_BIND_SERVICE and nothing else,
#     binds 127.0.0.1:53 and [::1]:53 and answers a blocked and an allowed name over UDP
#     and TCP (upstream: a dnsmasq on 127.0.0.2:53 inside the namespace, named by its
#     /etc/resolv.conf);
#   - hits land in the state directory (/var/lib/private/metaguard with DynamicUser=);
#   - `systemctl reload` (SIGHUP) keeps it answering; a crash (SIGABRT) is restarted by
#     Restart=on-failure;
#   - metaguard-report.service writes the weekly report file;
#   - `dpkg --purge` stops the units and removes the config and the hit log.
#
# Needs root with CAP_SYS_ADMIN (namespaces, mounts); installs systemd, dnsmasq and dig
# when missing. CI runs it (.ci/run); where namespaces cannot be made (an unprivileged
# container) it says so and skips.
set -euo pipefail
cd "$(dirname "$0")/.."
DEB=${1:-$(ls -t target/debian/metaguard_*_amd64.deb 2>/dev/null | head -1)}
[ -f "$DEB" ] || { echo "no .deb: run scripts/build-deb.sh first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (namespaces, mounts)" >&2; exit 2; }
if ! unshare --pid --fork --mount --net --uts --ipc --cgroup true 2>/dev/null; then
    echo "WARNING: cannot create namespaces here; systemd smoke test SKIPPED" >&2
    exit 0
fi
need=()
[ -x /lib/systemd/systemd ] || need+=(systemd)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
command -v dig >/dev/null || need+=(dnsutils)
command -v pgrep >/dev/null || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
log="$work/systemd.console"
cp "$DEB" "$work/metaguard.deb"

# Inside the new namespaces (this shell is PID 1 there): a tmpfs for the overlay's upper
# layer, the overlay as the new root, then exec systemd as PID 1.
inner='
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 smoke "$WORK"
mkdir -p "$WORK/upper" "$WORK/work" "$WORK/root"
mount -t overlay smoke -o lowerdir=/,upperdir="$WORK/upper",workdir="$WORK/work" "$WORK/root"
cd "$WORK/root"
# A /dev of its own (as systemd-nspawn makes one): the host devtmpfs is not shared.
mount -t tmpfs -o mode=0755,nosuid dev dev
for d in null zero full random urandom tty; do
    touch "dev/$d"
    mount --bind "/dev/$d" "dev/$d"
done
mkdir -p dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts dev/pts
ln -s pts/ptmx dev/ptmx
mount -t tmpfs -o mode=1777 shm dev/shm
cp "$DEB_COPY" root/metaguard.deb # not /tmp: tmpfiles empties it at boot
mkdir -p etc/systemd/system
printf "[Unit]\nDescription=metaguard smoke test\nWants=sysinit.target\nAfter=sysinit.target\n" \
    >etc/systemd/system/metaguard-smoke.target
mkdir -p oldroot
pivot_root . oldroot
mount -t proc proc /proc
umount -l /oldroot
rmdir /oldroot
if [ "$NO_IPV6" = 1 ]; then # as on a host with IPv6 turned off
    echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6
    echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6
fi
exec env -i container=metaguard-smoke PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=metaguard-smoke.target
'
mkdir -p "$work/mnt"
cp "$work/metaguard.deb" "$work/deb.copy"
WORK="$work/mnt" DEB_COPY="$work/deb.copy" NO_IPV6="${SMOKE_NO_IPV6:-0}" \
    unshare --pid --fork --mount --net --uts --ipc --cgroup --propagation private \
    bash -c "$inner" >"$log" 2>&1 &
unshare_pid=$!

pid1=""
cleanup() {
    [ -n "$pid1" ] && kill -s SIGRTMIN+4 "$pid1" 2>/dev/null # poweroff
    sleep 1
    kill "$unshare_pid" 2>/dev/null || true
    wait "$unshare_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 100); do
    pid1=$(pgrep -P "$unshare_pid" || true)
    [ -n "$pid1" ] && [ "$(cat /proc/"$pid1"/comm 2>/dev/null)" = systemd ] && break
    sleep 0.1
done
[ -n "$pid1" ] || { echo "systemd did not start"; cat "$log"; exit 1; }
in_ns() { nsenter -t "$pid1" -m -u -n -p -r -w "$@"; }
for _ in $(seq 300); do
    state=$(in_ns systemctl is-system-running 2>/dev/null || true)
    case $state in running | degraded) break ;; esac
    sleep 0.1
done
echo "systemd $(in_ns systemctl --version | head -1 | cut -d' ' -f2) booted: $state"
# From here a failing step is a failed check, reported with the journal at the end.
set +e

# Can this machine's systemd apply the unit's sandbox at all? A oneshot /bin/true with
# every [Service] line of metaguard.service that is not about the process itself. If it
# fails, the host (not metaguard) is missing a kernel feature: say which lines, skip.
probe_unit() { # extra lines for [Service]
    {
        printf '[Service]\nType=oneshot\nExecStart=/bin/true\n'
        printf '%s\n' "$@"
    } | in_ns sh -c 'cat >/etc/systemd/system/metaguard-probe.service'
    in_ns systemctl daemon-reload
    in_ns systemctl start metaguard-probe.service 2>/dev/null
}
mapfile -t sandbox < <(sed -n '/^\[Service\]/,/^\[Install\]/p' systemd/metaguard.service |
    grep -E '^[A-Za-z]+=' |
    grep -vE '^(Type|NotifyAccess|ExecStart|ExecReload|Restart|RestartSec|WatchdogSec|TimeoutStopSec)=')
if ! probe_unit "${sandbox[@]}"; then
    echo "WARNING: this machine's systemd cannot run the unit's sandbox; the lines that fail alone:"
    user=(DynamicUser=yes User=metaguard Group=metaguard)
    probe_unit "${user[@]}" || echo "  ${user[*]}"
    # A system call filter line after the first adds to or takes from the allow-list
    # that the first (@system-service) starts: it is probed on top of that one.
    first_filter=$(printf '%s\n' "${sandbox[@]}" | grep -m1 '^SystemCallFilter=' || true)
    for line in "${sandbox[@]}"; do
        base=()
        [[ $line == SystemCallFilter=* && $line != "$first_filter" ]] && base=("$first_filter")
        probe_unit "${user[@]}" "${base[@]}" "$line" || echo "  $line"
    done
    in_ns journalctl --no-pager -o cat -n 8 -u metaguard-probe.service
    echo "WARNING: systemd smoke test SKIPPED (host limitation, see above)"
    exit 0
fi
echo "ok    the unit's sandbox (${#sandbox[@]} lines) runs under this systemd"
# Leave no trace of the probe for the install below.
in_ns rm -rf /etc/systemd/system/metaguard-probe.service /var/lib/private/metaguard \
    /var/lib/metaguard /etc/metaguard
in_ns systemctl daemon-reload

fail=0
check() { # description, then a command that must succeed
    local what=$1
    shift
    if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; fail=1; fi
}
prop() { in_ns systemctl show -P "$2" "$1"; }
journal_has() { in_ns journalctl -u metaguard.service -o cat | grep -q "$1"; }
wait_active() {
    for _ in $(seq 100); do
        [ "$(prop metaguard.service ActiveState)" = active ] && return 0
        sleep 0.1
    done
    return 1
}
ask() { # server port name [dig options] -> the first A in the answer
    local server=$1 port=$2 name=$3
    shift 3
    in_ns dig +short +time=2 +tries=1 "$@" "@$server" -p "$port" "$name" A | head -1
}
answer() { ask 127.0.0.1 53 "$1" "+$2"; } # name notcp|tcp, on the household's port 53

# The household's router, as /etc/resolv.conf names it (the shipped config forwards to
# resolv.conf's nameservers): a dnsmasq on the namespace's 127.0.0.2 that answers every
# name with 192.0.2.1. /etc/resolv.conf is replaced, not followed (it may be a link).
in_ns dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --listen-address=127.0.0.2 \
    --bind-interfaces --port 53 --address=/#/192.0.2.1 --user=root
in_ns sh -c 'rm -f /etc/resolv.conf && echo "nameserver 127.0.0.2" >/etc/resolv.conf'

in_ns dpkg -i /root/metaguard.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; exit 1; }
check "dpkg -i enables and starts metaguard.service" wait_active
check "  and it answers on 127.0.0.1:5335 (the shipped config)" \
    test "$(ask 127.0.0.1 5335 example.org)" = 192.0.2.1
check "  and the weekly report timer" test "$(prop metaguard-report.timer ActiveState)" = active
check "  the timer is enabled" test "$(in_ns systemctl is-enabled metaguard-report.timer)" = enabled

# The household's config: port 53 on loopback, the namespace's upstream; the weekly
# report goes to the default [report] dir.
in_ns sh -c 'cat >/etc/metaguard/metaguard.toml' <<'CONF'
[server]
listen = ["127.0.0.1:53", "[::1]:53"]
[upstream]
servers = ["127.0.0.2:53"]
[clients]
neighbours = false
CONF
in_ns systemctl restart metaguard.service 2>/dev/null
check "restarted with port 53 (Type=notify: active after READY=1)" wait_active
main=$(prop metaguard.service MainPID)
check "runs as the dynamic user metaguard" test "$(in_ns ps -o user= -p "$main")" = metaguard
caps=$(in_ns grep -E '^Cap(Eff|Bnd)' /proc/"$main"/status | awk '{print $2}' | sort -u)
check "capabilities: CAP_NET_BIND_SERVICE only (0x400)" test "$caps" = 0000000000000400
# The dashboard's threads put themselves in SCHED_IDLE (5; SystemCallFilter=sched_setscheduler):
# field 41 of /proc/PID/task/TID/stat.
web_policy=$(in_ns sh -c "for t in /proc/$main/task/*; do [ \"\$(cat \$t/comm)\" = metaguard-web ] && cut -d')' -f2 \$t/stat | awk '{print \$39}'; done" | sort -u | tr '\n' ' ')
check "dashboard threads in SCHED_IDLE ($web_policy)" test "$web_policy" = "5 "
check "blocked over UDP: connect.facebook.net -> 0.0.0.0" test "$(answer connect.facebook.net notcp)" = 0.0.0.0
check "blocked over TCP" test "$(answer connect.facebook.net tcp)" = 0.0.0.0
check "allowed over UDP: example.com -> 192.0.2.1" test "$(answer example.com notcp)" = 192.0.2.1
check "allowed over TCP" test "$(answer www.example.com tcp)" = 192.0.2.1
if in_ns grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
    check "answers on [::1]:53" test "$(ask ::1 53 pixel.facebook.com)" = 0.0.0.0
else
    check "no IPv6 here: [::1]:53 skipped with a warning" \
        journal_has 'IPv6 is off on this host: not listening on \[::1\]:53'
fi
line=$(in_ns journalctl -u metaguard.service -o cat | grep -m1 'listening on')
check "journal lines: no colour codes, no timestamp of their own ($line)" \
    test "${line#*INFO }" != "$line" -a "${line%%INFO*}" = " "
wd=$(prop metaguard.service WatchdogUSec)
check "watchdog armed ($wd)" test "$wd" = 30s
ts0=$(prop metaguard.service WatchdogTimestampMonotonic)
sleep 32 # past WatchdogSec=30s: without pings systemd would have killed it
check "watchdog pinged (last ping moved on)" test "$(prop metaguard.service WatchdogTimestampMonotonic)" != "$ts0"
check "  and the resolver was not killed for a missed ping" test "$(prop metaguard.service MainPID)" = "$main"
check "hit log in the state directory" in_ns test -s /var/lib/private/metaguard/metaguard.db
hits=$(in_ns metaguard log --db /var/lib/private/metaguard/metaguard.db 2>/dev/null | grep -c facebook || true)
check "hits logged ($hits lines name facebook)" test "$hits" -ge 2

in_ns systemctl reload metaguard.service
check "reload keeps the same process" test "$(prop metaguard.service MainPID)" = "$main"
check "  and it still answers" test "$(answer connect.facebook.net notcp)" = 0.0.0.0

# SIGABRT, as an abort would (a kill(2)-sent SIGSEGV is absorbed by Rust's stack-overflow
# handler: no faulting instruction to re-run).
in_ns kill -ABRT "$main"
for _ in $(seq 100); do
    new=$(prop metaguard.service MainPID)
    [ "$new" != 0 ] && [ "$new" != "$main" ] && [ "$(prop metaguard.service ActiveState)" = active ] && break
    sleep 0.1
done
check "a crash (SIGABRT) is restarted (pid $main -> $new)" test "$new" != "$main" -a "$new" != 0
check "  NRestarts=1" test "$(prop metaguard.service NRestarts)" = 1
check "  and it answers again" test "$(answer connect.facebook.net notcp)" = 0.0.0.0

in_ns systemctl start metaguard-report.service || true
check "weekly report service succeeds" test "$(prop metaguard-report.service Result)" = success
check "  and writes last week's HTML file" in_ns sh -c 'ls /var/lib/private/metaguard/reports/*-W*.html >/dev/null'

in_ns dpkg --purge metaguard >>"$work/dpkg.log" 2>&1
check "dpkg --purge stops the resolver" test "$(prop metaguard.service ActiveState)" != active
check "  removes the hit log" in_ns test ! -e /var/lib/private/metaguard
check "  and the config" in_ns test ! -e /etc/metaguard/metaguard.toml

if [ "$fail" != 0 ]; then
    # Last, so that a CI log's tail shows why.
    echo "--- dpkg"
    tail -5 "$work/dpkg.log"
    echo "--- journal (metaguard.service, metaguard-report.service)"
    in_ns journalctl --no-pager -o short-monotonic -n 30 -u metaguard.service -u metaguard-report.service
    echo "FAILED: see the checks above and the journal"
    exit 1
fi
echo "all checks passed"

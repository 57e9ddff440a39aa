# Sourced by scripts that run metaguard against a loopback upstream: a temp dir ($tmp)
# removed on exit with every process in $pids, free_port, and start_upstream, which
# starts dnsmasq on 127.0.0.1:$UPPORT answering every name with 192.0.2.1 (its arguments
# are passed on to dnsmasq, e.g. --local-ttl=3600). Every packet stays on 127.0.0.1.
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_upstream() {
    UPPORT=$(free_port)
    dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
        --listen-address=127.0.0.1 --bind-interfaces --port "$UPPORT" \
        --address=/#/192.0.2.1 --pid-file="$tmp/dnsmasq.pid" --user="$(id -un)" "$@" 2>"$tmp/dnsmasq.log" &
    pids+=($!)
}

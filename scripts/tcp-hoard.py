#!/usr/bin/env python3
"""TCP hoarders for scripts/tcp-hoard-rss.sh: 256 connections from 127.0.0.2-9 (32 each)
that send queries for a large answer and never read; then one query from 127.0.0.20,
timed. Prints the server's RSS while they are open. Loopback only.
    tcp-hoard.py PORT PID QUERIES_PER_CONNECTION"""
import socket
import struct
import sys
import time

port, pid, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


def query(name, qtype, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)


def frame(b):
    return struct.pack(">H", len(b)) + b


def rss():
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) // 1024
    return out


print(f"before: RSS {rss()['VmRSS']} MiB")
burst = b"".join(frame(query("big.test", 16, i)) for i in range(per))
conns = []
for host in range(2, 10):
    for _ in range(32):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((f"127.0.0.{host}", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        conns.append([s, 0])
# Keep sending until every connection has sent its queries or its send buffer is full.
deadline = time.time() + 10
while time.time() < deadline and any(c[1] < len(burst) for c in conns):
    for c in conns:
        if c[1] < len(burst):
            try:
                c[1] += c[0].send(burst[c[1]:])
            except (BlockingIOError, ConnectionError, OSError):
                pass
    time.sleep(0.05)
one = len(frame(query("big.test", 16, 0)))
print(f"hoarders: 256 connections, {sum(c[1] for c in conns) // one} queries sent, never read")
peak = 0
for _ in range(10):
    time.sleep(0.5)
    peak = max(peak, rss()["VmRSS"])
t0 = time.time()
s = socket.socket()
s.settimeout(1.0)
s.bind(("127.0.0.20", 0))
try:
    s.connect(("127.0.0.1", port))
    s.sendall(frame(query("other.test", 1, 4242)))
    n = struct.unpack(">H", s.recv(2, socket.MSG_WAITALL))[0]
    ans = s.recv(n, socket.MSG_WAITALL)
    print(f"new client from 127.0.0.20: answered in {(time.time() - t0) * 1000:.0f} ms ({len(ans)} bytes)")
except OSError as e:
    print(f"new client from 127.0.0.20: NOT answered within 1 s ({e})")
r = rss()
print(f"with the hoarders open: RSS {r['VmRSS']} MiB, peak sampled {peak} MiB, VmHWM {r['VmHWM']} MiB")

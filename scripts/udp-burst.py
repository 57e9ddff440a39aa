#!/usr/bin/env python3
"""Bursts of queries from one local UDP socket, sent back to back, and how many of each
burst are answered within 3 s (docs/performance.md, issue 16).

    scripts/udp-burst.py PORT [BURSTS] [LABEL] [SIZE]

Sends BURSTS (default 10) bursts of SIZE (default 300) queries to 127.0.0.1:PORT: a
third for connect.facebook.net (blocked by the built-in lists), a third for
warm0..9.example, a third for names new in each burst. Prints LABEL and the number
answered per burst. Load the CPUs meanwhile (e.g. three `while :; do :; done` loops) to
see what the receive buffer keeps while the server's thread waits for a CPU.
Loopback only."""
import socket
import struct
import sys


def query(i, name):
    header = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    return header + qname + struct.pack(">HH", 1, 1)


def name(burst, i):
    if i % 3 == 0:
        return "connect.facebook.net"
    if i % 3 == 1:
        return "warm%d.example" % (i % 10)
    return "new%d-%d.example" % (burst, i)


def main():
    port = int(sys.argv[1])
    bursts = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    label = sys.argv[3] if len(sys.argv) > 3 else ""
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    answered = []
    for burst in range(bursts):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        packets = [query(i, name(burst, i)) for i in range(size)]
        for p in packets:
            s.sendto(p, ("127.0.0.1", port))
        s.settimeout(3)
        got = 0
        try:
            while got < size:
                s.recv(4096)
                got += 1
        except socket.timeout:
            pass
        answered.append(got)
        s.close()
    print(label, answered)


if __name__ == "__main__":
    main()

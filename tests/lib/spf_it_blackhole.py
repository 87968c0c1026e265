#!/usr/bin/python3
"""
NAME
    spf_it_blackhole.py - a DNS server that never answers

SYNOPSIS
    spf_it_blackhole.py PORT COUNTFILE

DESCRIPTION
    Binds UDP 127.0.0.1:PORT, reads every datagram and answers none of
    them. COUNTFILE holds the number of datagrams read so far (it is
    written, as 0, once the socket is bound). SIGTERM stops it.
"""
import os
import signal
import socket
import sys


def write_count(path, n):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % n)
    os.replace(tmp, path)


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    n = 0
    write_count(path, n)
    while True:
        sock.recvfrom(4096)
        n += 1
        write_count(path, n)


if __name__ == "__main__":
    main()

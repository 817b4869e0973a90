#!/usr/bin/python3
"""Probes a connection limit of thresholdd from outside, as one caller.

    conn_limit.py tcp:PORT|unix:PATH HELD REQUEST [EXTRA_SENDS] [LINGER]

Opens HELD connections and waits for the broker to name and count them,
then one more, which sends EXTRA_SENDS (if given, before the broker looks
at it) and reports whether the broker closed it unanswered.  Then REQUEST
(a request path, "GET" unless it starts with "POST ") is sent on the last
held connection; prints

    closed|open FIRST-LINE-OF-THE-ANSWER LAST-LINE-OF-THE-ANSWER

and keeps the connections open for LINGER seconds (default 0).
"""
import socket
import sys
import time


def connect(where):
    kind, _, addr = where.partition(":")
    if kind == "tcp":
        return socket.create_connection(("127.0.0.1", int(addr)))
    s = socket.socket(socket.AF_UNIX)
    s.connect(addr)
    return s


def http(request):
    method, path = ("POST", request[5:]) if request.startswith("POST ") else ("GET", request)
    body = b"{}" if method == "POST" else b""
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def main():
    where, held_n, request = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    extra_sends = sys.argv[4] if len(sys.argv) > 4 else ""
    linger = float(sys.argv[5]) if len(sys.argv) > 5 else 0
    held = [connect(where) for _ in range(held_n)]
    time.sleep(1.5)  # the broker names and counts them (slowly under sanitizers)
    extra = connect(where)
    if extra_sends:
        try:
            extra.sendall(http(extra_sends))
        except OSError:
            pass
    extra.settimeout(5)
    try:
        closed = extra.recv(1) == b""
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    held[-1].sendall(http(request))
    held[-1].settimeout(5)
    answer = held[-1].recv(4096).decode(errors="replace").splitlines() or [""]
    print("closed" if closed else "open", answer[0], answer[-1], flush=True)
    time.sleep(linger)


if __name__ == "__main__":
    main()
